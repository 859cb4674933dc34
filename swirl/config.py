"""The run configuration: the sections each subsystem defines (engines, data, models, tools, generation,
judging, training, evaluation), composed into one `RunConfig` and loaded from YAML. This module composes and
cross-checks; it defines only the run's own sections (`run:`, `warmup:`, `stages:`) and the configs a run
derives from its own (the warm-up's round, the round that starts from an adapter).

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
from pydantic import BaseModel, Field, ValidationError, model_validator

from swirl.data.config import DatasetSpec, IngestConfig
from swirl.engines.config import EngineConfig
from swirl.episodes import GenerateConfig
from swirl.evaluation.config import EvaluateConfig
from swirl.executors import ExecutorConfig
from swirl.judging.config import JudgeConfig
from swirl.sections import Section
from swirl.stages.prepare import MODEL_FOLDERS, PrepareConfig, written_paths
from swirl.store import is_remote, path_exists
from swirl.subtrajectories import DecomposeConfig, FilterConfig
from swirl.tools.config import SearchConfig
from swirl.training.config import TrainConfig


class ConfigError(ValueError):
    """A configuration problem, with the file, the field and the remedy in the message."""


# --------------------------------------------------------------------------------------------- run
class RunSection(ExecutorConfig):
    """The run's name, store and tracking, and where sharded stages run (the executor fields, owned by
    `swirl.executors.ExecutorConfig`)."""

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
    experiment: str = Field(
        "swirl", description="MLflow experiment name (also the registered model of its adapters)."
    )
    mlflow_ui: str = Field(
        "http://127.0.0.1:5000",
        description="Where people open MLflow (`swirl ui mlflow`) when tracking_uri is not a server: the "
        "base of the run links in Prefect.",
    )
    seed: int = Field(0, description="Global seed; stage seeds derive from it unless set explicitly.")

    @property
    def store_root(self) -> str:
        return self.root or os.path.join("runs", self.name)

    @property
    def executor_config(self) -> ExecutorConfig:
        """The executor fields alone: what the sharded stage jobs carry (never part of their versions)."""
        return ExecutorConfig(**self.model_dump(include=set(ExecutorConfig.model_fields)))

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


# ------------------------------------------------------------------------------------------ warm-up
class WarmupSection(Section):
    """An SFT warm-up on the training datasets' gold demonstrations before the round trains (what
    bench/learning.py's `warmup` variant did): it teaches a small model the protocol, and the round then
    generates with the warm-up's adapter and trains it further."""

    enabled: bool = Field(
        False,
        description="Warm up before a round that trains (in `swirl iterate`: as round 0): generate the gold "
        "demonstrations (generate.source gold, one per question), judge, decompose, keep the correct ones "
        "(filter outcome), train SFT (kl_beta 0) and evaluate it against the configured policy; the round "
        "starts from its adapter (policy.adapter).",
    )
    steps: int = Field(30, ge=1, description="Optimizer steps of the warm-up's SFT (its train.max_steps).")
    learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate of the warm-up's SFT; empty: train.learning_rate."
    )
    datasets: tuple[str, ...] = Field(
        (),
        description="Ingested datasets whose gold demonstrations the warm-up trains on; empty: the round's "
        "training datasets (generate.datasets).",
    )


# -------------------------------------------------------------------------------------------- run
Stage = Literal[
    "prepare", "ingest", "corpus", "generate", "judge", "decompose", "filter", "train", "evaluate"
]
ALL_STAGES: tuple[str, ...] = typing.get_args(Stage)


class RunConfig(Section):
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
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig, description="Process (per step) and outcome judging."
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
    warmup: WarmupSection = Field(
        default_factory=WarmupSection,
        description="An SFT warm-up on gold demonstrations before the round (off by default).",
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
        """The cross-field checks, in this order (the first problem found is the one reported)."""
        self._check_dataset_names("generate", self.generate.datasets)
        self._check_dataset_names("warmup", self.warmup.datasets)
        self._check_generate_and_judge()
        self._check_train_policy()
        self._check_offline_baseline()
        self._check_oreo_filter()
        self._check_trained_value_model()
        self._check_dataset_names("evaluate", self.evaluate.datasets)
        self._check_evaluate_policy()
        return self

    def _check_dataset_names(self, section: str, datasets: tuple[str, ...]) -> None:
        """`<section>.datasets` names only datasets that ingest defines."""
        names = {d.name for d in self.ingest.datasets}
        unknown = [d for d in datasets if d not in names]
        if unknown:
            raise ValueError(
                f"{section}.datasets names {unknown}, which ingest.datasets does not define ({sorted(names)})"
            )

    def _check_generate_and_judge(self) -> None:
        """Generating needs a policy; judging needs a judge engine or the policy."""
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

    def _check_train_policy(self) -> None:
        """Training needs a policy; swirl (online) needs one that serves the adapter it trains."""
        if "train" not in self.stages or not self.generate_datasets():
            return
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

    def _check_offline_baseline(self) -> None:
        """swirl_offline with a baseline: the filter must leave actions of more than one reward."""
        off = self.train.offline
        if self.train.objective != "swirl_offline" or off.baseline == "none":
            return
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

    def _check_oreo_filter(self) -> None:
        """OREO's value model needs incorrect trajectories too."""
        if self.train.objective == "oreo" and self.filter.strategy in ("outcome", "process_outcome"):
            raise ValueError(
                f"filter.strategy {self.filter.strategy} with train.objective oreo keeps only correct "
                "trajectories, so every outcome is 1 and the value model learns nothing; use "
                "filter.strategy none (or process)"
            )

    def _check_trained_value_model(self) -> None:
        """Beam search with this round's trained value model needs an oreo train stage in the round."""
        ev = self.evaluate
        if ev.decoding == "beam" and ev.value_model == "trained":
            if self.train.objective != "oreo" or "train" not in self.stages:
                raise ValueError(
                    "evaluate.value_model: trained names the value model this round trains, which needs "
                    "train.objective oreo and the train stage; set it to the value folder of an oreo train "
                    "output instead"
                )

    def _check_evaluate_policy(self) -> None:
        """Evaluating needs a policy, and one that serves LoRA adapters when adapters are evaluated."""
        if "evaluate" not in self.stages or not self.evaluate_datasets():
            return
        if self.policy is None:
            raise ValueError(
                "the evaluate stage needs a policy: add a `policy:` section (the model evaluated)"
            )
        adapters = self.evaluate.policies or (self.evaluate.trained and "train" in self.stages)
        if adapters and self.policy.kind == "vllm" and not self.policy.enable_lora:
            raise ValueError("evaluate runs LoRA adapters on the policy engine: set policy.enable_lora: true")

    def evaluate_datasets(self) -> list[DatasetSpec]:
        """The datasets the evaluate stage runs on (explicit list, else every split that is not train)."""
        if self.evaluate.datasets:
            return [d for d in self.ingest.datasets if d.name in self.evaluate.datasets]
        return [d for d in self.ingest.datasets if d.split != "train"]

    def judge_config(self) -> JudgeConfig:
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
        """The paths the prepare stage writes (`written_paths`: each data file, each model folder),
        normalized, so a reference to exactly one of them is not a missing file."""
        return {os.path.normpath(p) for p in written_paths(self.prepare).values()}


def with_stages(
    cfg: RunConfig, stages: list[str] | tuple[str, ...] | None, source: str = "<config>"
) -> RunConfig:
    """The same config restricted to `stages` (validated), or unchanged when stages is None. An empty list is
    an error: it would silently run everything or nothing."""
    if stages is None:
        return cfg
    names = [s.strip() for s in stages if s.strip()]
    if not names:
        raise ConfigError(
            f"{source}: stages: the list is empty; name at least one of {', '.join(ALL_STAGES)} (or leave it "
            "out to run the config's stages)"
        )
    data = cfg.model_dump(mode="json")
    data["stages"] = names
    return config_from_dict(data, source=source)


def warmup_config(cfg: RunConfig) -> RunConfig:
    """The warm-up's round: the run config with the gold demonstrations of warmup.datasets (generate.source
    gold, one per question), the correct ones kept (filter outcome), trained by SFT (kl_beta 0) for
    warmup.steps at warmup.learning_rate; it evaluates the configured policy (base) and its adapter
    (trained), and has no warm-up of its own. Its store versions are those of bench/learning.py's `warmup`
    variant with the same settings."""
    w, data = cfg.warmup, cfg.model_dump(mode="json")
    data["generate"].update(source="gold", samples_per_question=1)
    if w.datasets:
        data["generate"]["datasets"] = list(w.datasets)
    data["filter"]["strategy"] = "outcome"
    data["train"].update(objective="sft", kl_beta=0.0, max_steps=w.steps)
    if w.learning_rate is not None:
        data["train"]["learning_rate"] = w.learning_rate
    data["evaluate"].update(base=True, trained=True, policies=[])
    if data["evaluate"]["value_model"] == "trained":  # the round's oreo value model: not the warm-up's
        data["evaluate"].update(decoding="greedy", value_model=None)
    data["warmup"]["enabled"] = False
    return config_from_dict(data, source=f"the warm-up of {cfg.run.name!r}")


def starting_from(cfg: RunConfig, adapter: str | None) -> RunConfig:
    """The config of a round that starts from `adapter` (the warm-up's, or the previous round's; None: the
    configured policy): the policy with that adapter (train.lora.init_adapter follows it) and no warm-up of
    its own."""
    if adapter is None and not cfg.warmup.enabled:
        return cfg
    update: dict[str, Any] = {"warmup": cfg.warmup.model_copy(update={"enabled": False})}
    if adapter is not None:
        update["policy"] = cfg.policy.model_copy(update={"adapter": adapter})
    return cfg.model_copy(update=update)


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
    """Every local file the config names must exist, unless the prepare stage runs and writes exactly that
    path (`written_paths`); a path nothing writes is named with the closest one prepare writes."""
    produced = cfg.produced_paths() if "prepare" in cfg.stages else set()

    def made_by_prepare(p: str) -> bool:
        return os.path.normpath(p) in produced

    for i, d in enumerate(cfg.ingest.datasets):
        if d.path and not made_by_prepare(d.path) and "://" not in d.path and not os.path.exists(d.path):
            raise ConfigError(_missing_data_file(cfg, source, f"ingest.datasets[{i}].path", d.path))
    if (
        cfg.policy
        and cfg.policy.adapter
        and not made_by_prepare(cfg.policy.adapter)
        and not _folder_exists(cfg.policy.adapter)
    ):
        raise ConfigError(f"{source}: policy.adapter: adapter folder not found: {cfg.policy.adapter!r}.")
    for i, p in enumerate(cfg.evaluate.policies):
        if not made_by_prepare(p.adapter) and not _folder_exists(p.adapter):
            raise ConfigError(
                f"{source}: evaluate.policies[{i}].adapter: adapter folder not found: {p.adapter!r}. "
                "Give the folder of a peft adapter (e.g. <root>/train/<version>/files/adapter)."
            )


def _folder_exists(path: str) -> bool:
    """A local folder, or a remote URL (s3://...) that exists (asked through fsspec)."""
    return path_exists(path) if is_remote(path) else os.path.isdir(path)


def _missing_data_file(cfg: RunConfig, source: str, field: str, path: str) -> str:
    """One line for a data file that is neither on disk nor written by a prepare stage that runs: the field,
    the path and the fix (the closest path prepare writes, or adding prepare when it would write it)."""
    written = sorted(p for k, p in written_paths(cfg.prepare).items() if k not in MODEL_FOLDERS)
    if os.path.normpath(path) in {os.path.normpath(p) for p in written}:  # prepare writes it but does not run
        return (
            f"{source}: {field}: file not found: {path!r}; the prepare stage writes it: add prepare to the "
            "stages (or run it once)."
        )
    where = f"relative paths are resolved from {os.getcwd()}"
    if not written:
        return (
            f"{source}: {field}: file not found: {path!r} ({where}). Fix the path, run from the project "
            "folder, or use `hub:` instead."
        )
    close = difflib.get_close_matches(os.path.normpath(path), [os.path.normpath(p) for p in written], n=1)
    fix = f"did you mean {close[0]!r} (prepare writes it)? " if close else ""
    return (
        f"{source}: {field}: file not found, and the prepare stage does not write it: {path!r} ({where}); "
        f"{fix}Fix the path or use `hub:` instead."
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
    if len(lines) == 2:  # one problem: one line, `<file>: <field> (line n): <problem and fix>`
        return f"{source}: {lines[1].removeprefix('  - ')}"
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
