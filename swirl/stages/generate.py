"""Generate: questions -> multi-step trajectories with tools (SWiRL stage 1), sharded and resumable.

Questions are processed in shards of `shard_questions`; each shard's trajectories (all samples of its
questions) are committed on their own, keyed by question id, so a crash loses at most the shard in flight and
a re-run repeats no finished question.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from swirl.config import DatasetSpec, EngineConfig, GenerateConfig
from swirl.engines.base import Engine
from swirl.protocol import render_prompt
from swirl.rollout import ChatSegments, RolloutSettings, Tool, Trajectory, rollout, start_trajectories
from swirl.store import StageRef, Store, stage_version
from swirl.tables import to_table
from swirl.tools.config import SearchConfig

STAGE = "generate"
TABLE = "trajectories"
MATH_FORMATS = {"gsm8k"}
SUMMARY_COLUMNS = [
    "trajectory_id",
    "question_id",
    "messages",
    "token_ids",
    "final_answer",
    "stop_reason",
    "num_actions",
]


def task_of(spec: DatasetSpec) -> str:
    """GSM8K-style datasets are calculator tasks; the multi-hop QA datasets are search tasks."""
    return "math" if spec.format in MATH_FORMATS else "search"


def tools_for(
    spec: DatasetSpec, store: Store, corpus: StageRef | None, search: SearchConfig
) -> dict[str, Tool]:
    """The tool a dataset's task offers: the calculator for math, search over its corpus index otherwise."""
    if task_of(spec) == "math":
        from swirl.tools.calculator import calculate

        return {"math": calculate}
    if corpus is None:
        raise ValueError(
            f"dataset {spec.name!r} is a search task: it needs the corpus stage's index (add 'corpus' "
            "to stages)"
        )
    from swirl.stages.corpus import open_retriever
    from swirl.tools.search import search_observation

    retriever = open_retriever(store, corpus, search)
    return {"search": lambda query: search_observation(retriever, query, search)}


def model_fingerprint(model: str, adapter: str | None) -> str:
    """Identity of the policy: the name, and for local folders the sizes and times of their files."""

    def folder(path: str) -> str:
        if not os.path.isdir(path):
            return path
        parts = []
        for n in sorted(os.listdir(path)):
            p = os.path.join(path, n)
            if os.path.isfile(p):
                st = os.stat(p)
                parts.append(f"{n}:{st.st_size}:{st.st_mtime_ns}")
        return f"{os.path.abspath(path)}[{','.join(parts)}]"

    return folder(model) + ("|" + folder(adapter) if adapter else "")


def serving_identity(policy: EngineConfig) -> str:
    """How the policy is served, where it changes the numbers: the engine kind, and a merged adapter (merged
    weights round differently from a LoRA applied at run time)."""
    return policy.kind + ("+merged" if policy.merge_adapter and policy.adapter else "")


def generate_version(
    cfg: GenerateConfig,
    policy: EngineConfig,
    spec: DatasetSpec,
    questions: StageRef,
    corpus: StageRef | None,
    search: SearchConfig | None = None,
) -> str:
    inputs = {"questions": questions.version, "policy": model_fingerprint(policy.model, policy.adapter)}
    config = {
        "generate": _stage_config(cfg),
        "task": task_of(spec),
        "max_context": policy.max_model_len,
        "engine": serving_identity(policy),
    }
    if task_of(spec) == "search":  # the index and how results are shown both shape the observations
        if corpus is None:
            raise ValueError(
                f"dataset {spec.name!r} is a search task: generate needs its corpus stage output"
            )
        inputs["corpus"] = corpus.version
        config["search"] = (search or SearchConfig()).model_dump(mode="json")
    return stage_version(STAGE, config, inputs, TABLE)


def _stage_config(cfg: GenerateConfig) -> dict[str, Any]:
    # Which datasets to run on and how large the sample artifact is do not change a dataset's trajectories.
    return cfg.model_dump(mode="json", exclude={"datasets", "sample_markdown", "tool_workers"})


def run_generate(
    store: Store,
    cfg: GenerateConfig,
    policy: EngineConfig,
    spec: DatasetSpec,
    questions: StageRef,
    engine: Engine | Callable[[], Engine],
    tools: Mapping[str, Tool],
    corpus: StageRef | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    search: SearchConfig | None = None,
) -> StageRef:
    """Generate `samples_per_question` trajectories for every question of `questions`.

    `engine` may be a factory, called only when there is work left (a complete output never starts an engine).
    `progress` receives a dict after each shard: done/total trajectories, generated tokens, elapsed seconds.
    """
    version = generate_version(cfg, policy, spec, questions, corpus, search)
    if store.is_complete(STAGE, version):
        return store.ref(STAGE, version)
    inputs = {"questions": questions.version, **({"corpus": corpus.version} if corpus else {})}
    writer = store.sharded(
        STAGE,
        version,
        TABLE,
        {
            "generate": _stage_config(cfg),
            "dataset": spec.name,
            "policy": policy.model,
            "adapter": policy.adapter,
        },
        inputs,
    )
    task = task_of(spec)
    rows = store.read_ref(questions).select(["question_id", "question", "answers", "metadata"]).to_pylist()
    model, adapter = policy.model, policy.adapter
    if cfg.source == "gold":
        from swirl.data.demonstrations import GoldScript

        script = GoldScript(rows, task)
        without = sum(r["question"] not in script.actions for r in rows)
        rows = [r for r in rows if r["question"] in script.actions]
        if not rows:
            raise ValueError(
                f"generate.source gold: no question of dataset {spec.name!r} has a gold solution "
                f"({spec.format} gives calculator notes or supporting facts only when the file has them)"
            )
        engine = lambda: gold_engine(policy, script)  # noqa: E731
        model, adapter = f"gold ({policy.model} tokens)", None
    done = writer.done_keys()
    todo = [r for r in rows if r["question_id"] not in done]
    settings = rollout_settings(cfg, task, policy.max_model_len)
    total = len(rows) * cfg.samples_per_question
    stats = {
        "done": len(done) * cfg.samples_per_question,
        "total": total,
        "new": 0,
        "tokens": 0,
        "seconds": 0.0,
        "resumed_questions": len(done),
    }
    if cfg.source == "gold":
        stats["without_gold_solution"] = without
    if todo:
        eng = engine() if callable(engine) and not hasattr(engine, "generate") else engine
        t0 = time.perf_counter()
        for start in range(0, len(todo), cfg.shard_questions):
            shard = todo[start : start + cfg.shard_questions]
            trajs = roll_out(
                eng,
                shard,
                task,
                cfg.samples_per_question,
                protocol_template(cfg, task),
                tools,
                settings,
                adapter,
                protocol_examples(cfg, task),
            )
            table = to_table(TABLE, [t.row(model, adapter) for t in trajs])
            writer.write_shard(table, [q["question_id"] for q in shard])
            stats["done"] += len(trajs)
            stats["new"] += len(trajs)
            stats["tokens"] += sum(t.generated_tokens for t in trajs)
            stats["seconds"] = time.perf_counter() - t0
            if progress:
                progress(dict(stats))
    all_rows = writer.read_shards(SUMMARY_COLUMNS).to_pylist()  # this run's shards and a crashed run's
    summary = summarize(all_rows, stats)
    sample = all_rows[: cfg.sample_markdown]

    def files(folder: str) -> None:
        from swirl.viewer import to_markdown

        with open(os.path.join(folder, "samples.md"), "w", encoding="utf-8") as f:
            f.write(to_markdown(sample, title=f"{spec.name}: {len(sample)} of {len(all_rows)} trajectories"))

    return writer.finalize(summary, files=files if sample else None)


def gold_engine(policy: EngineConfig, script: Callable[[str, int | None], str]) -> Engine:
    """The engine of `source: gold`: the gold script, speaking the policy's tokens (no model is loaded)."""
    from transformers import AutoTokenizer

    from swirl.engines.scripted import ScriptedEngine

    return ScriptedEngine(
        AutoTokenizer.from_pretrained(policy.model), script, model="gold", max_context=policy.max_model_len
    )


def protocol_template(cfg: GenerateConfig, task: str) -> str:
    return cfg.math_prompt if task == "math" else cfg.search_prompt


def protocol_examples(cfg: GenerateConfig, task: str) -> list[dict[str, str]]:
    """The worked example shown as chat turns before every prompt of the task ([] when none is configured)."""
    return [m.model_dump() for m in (cfg.math_example if task == "math" else cfg.search_example)]


def rollout_settings(cfg: GenerateConfig, task: str, max_context: int, **overrides: Any) -> RolloutSettings:
    """The rollout settings of a task under the generate protocol (step limit by task); evaluation overrides
    the decoding fields."""
    base = {
        "max_steps": cfg.max_steps_math if task == "math" else cfg.max_steps_search,
        "max_tokens_per_step": cfg.max_tokens_per_step,
        "max_context": max_context,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "seed": cfg.seed,
        "tool_workers": cfg.tool_workers,
    }
    return RolloutSettings(**{**base, **overrides})


def roll_out(
    engine: Engine,
    questions: list[dict[str, Any]],
    task: str,
    samples: int,
    template: str,
    tools: Mapping[str, Tool],
    settings: RolloutSettings,
    adapter: str | None,
    examples: list[dict[str, str]] | None = None,
) -> list[Trajectory]:
    """`samples` trajectories per question (dicts with question_id and question), run to their ends;
    `examples`: chat turns of a worked example shown before each prompt."""
    trajs = start_trajectories(
        [dict(q, task=task) for q in questions],
        samples,
        lambda q: [{"role": "user", "content": render_prompt(template, q["question"], settings.max_steps)}],
        ChatSegments(engine.tokenizer),
        context=examples or (),
    )
    return rollout(engine, trajs, tools, settings, adapter=adapter)


def summarize(rows: list[dict[str, Any]], stats: Mapping[str, Any]) -> dict[str, Any]:
    """Numbers for MLflow: actions per trajectory, stop reasons, invalid rate, tool calls per kind,
    throughput."""
    from swirl.protocol import parse_action

    kinds: Counter[str] = Counter()
    for r in rows:
        for m in r["messages"][1::2]:
            if m["role"] == "assistant":
                kinds[parse_action(m["content"]).kind] += 1
    actions = sum(kinds.values())
    stops = Counter(r["stop_reason"] for r in rows)
    n = max(len(rows), 1)
    secs = stats.get("seconds") or 0.0
    return {
        "trajectories": len(rows),
        "questions": len({r["question_id"] for r in rows}),
        "actions_per_trajectory": actions / n,
        "answer_rate": stops.get("answer", 0) / n,
        "invalid_rate": kinds.get("invalid", 0) / max(actions, 1),
        "tool_calls": {k: kinds.get(k, 0) for k in ("search", "math", "answer", "invalid")},
        "stop_reasons": dict(stops),
        "tokens_per_trajectory": sum(len(r["token_ids"]) for r in rows) / n,
        "generated_tokens": stats.get("tokens", 0),
        "tokens_per_s": stats.get("tokens", 0) / secs if secs else 0.0,
        "trajectories_per_s": stats.get("new", 0) / secs if secs else 0.0,
        "resumed_questions": stats.get("resumed_questions", 0),
        **(
            {"without_gold_solution": stats["without_gold_solution"]}
            if "without_gold_solution" in stats
            else {}
        ),
    }
