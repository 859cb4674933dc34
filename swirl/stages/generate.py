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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from swirl.data.config import DatasetSpec
from swirl.engines.base import Engine
from swirl.engines.config import EngineConfig, EngineSpec
from swirl.episodes import GenerateConfig, rollout_settings, run_episodes, tool_kind
from swirl.executors import EngineFor, ExecutorConfig, Runner, ShardOutput, in_shards, run_shards
from swirl.rollout import Tool
from swirl.stages.base import Context, Plan
from swirl.stages.common import policy_plan, tools_for
from swirl.store import StageRef, Store
from swirl.tables import to_table
from swirl.tools.config import SearchConfig

if TYPE_CHECKING:
    from swirl.data.demonstrations import GoldScript

TABLE = "trajectories"
SUMMARY_COLUMNS = [
    "trajectory_id",
    "question_id",
    "messages",
    "token_ids",
    "final_answer",
    "stop_reason",
    "num_actions",
]


@dataclass(frozen=True)
class Generate:
    """`samples_per_question` trajectories for every question of one dataset (sharded by question, resumable).

    The engine (role `policy`) is asked for only when there is work left."""

    cfg: GenerateConfig
    policy: EngineConfig
    spec: DatasetSpec
    questions: StageRef
    corpus: StageRef | None = None
    search: SearchConfig = SearchConfig()
    executor: ExecutorConfig = ExecutorConfig()  # where shards run; not part of the version
    stage: ClassVar[str] = "generate"

    @property
    def label(self) -> str:
        return f"generate-{self.spec.name}"

    def plan(self) -> Plan:
        # Which datasets run and how large the sample artifact is do not change a dataset's trajectories.
        generate = self.cfg.model_dump(mode="json", exclude={"datasets", "sample_markdown", "tool_workers"})
        config = {"generate": generate, "task": tool_kind(self.spec)}
        return policy_plan(
            self.stage, TABLE, config, self.policy, self.spec, self.questions, self.corpus, self.search
        )

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef:
        cfg, policy, spec = self.cfg, self.policy, self.spec
        writer = plan.writer(store)
        rows, extra = self.work_items(store)
        done = writer.done_keys()
        todo = [r for r in rows if r["question_id"] not in done]
        stats = {
            "done": len(done) * cfg.samples_per_question,
            "total": len(rows) * cfg.samples_per_question,
            "new": 0,
            "tokens": 0,
            "seconds": 0.0,
            "resumed_questions": len(done),
        }
        if done and todo:  # a crashed run's shards are kept: say so before the rest is generated
            ctx.report(**stats, resuming=True)
        shards = in_shards(todo, cfg.shard_questions)
        t0 = time.perf_counter()
        outputs = run_shards(self.executor, self, store, shards, ctx.engine, ctx.tools)
        for shard, out in zip(shards, outputs, strict=True):
            writer.write_shard(out.table, [q["question_id"] for q in shard])
            stats["done"] += out.table.num_rows
            stats["new"] += out.table.num_rows
            stats["tokens"] += out.tokens
            stats["seconds"] = time.perf_counter() - t0
            ctx.report(**stats)
        all_rows = writer.read_shards(SUMMARY_COLUMNS).to_pylist()  # this run's shards and a crashed run's
        summary = {
            **summarize(all_rows, stats),
            **extra,
            "dataset": spec.name,
            "policy": policy.model,
            "adapter": policy.adapter or "",
        }
        sample = all_rows[: cfg.sample_markdown]

        def files(folder: str) -> None:
            from swirl.viewer import to_markdown

            title = f"{spec.name}: {len(sample)} of {len(all_rows)} trajectories"
            with open(os.path.join(folder, "samples.md"), "w", encoding="utf-8") as f:
                f.write(to_markdown(sample, title=title))

        return writer.finalize(summary, files=files if sample else None)

    def work_items(self, store: Store) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The questions to generate for (with `source: gold`, those with a gold solution), and what the
        summary says about the others."""
        rows = store.read_ref(self.questions).select(["question_id", "question", "answers", "metadata"])
        rows = rows.to_pylist()
        if self.cfg.source != "gold":
            return rows, {}
        script = self.gold_script(rows)
        kept = [r for r in rows if r["question"] in script.actions]
        if not kept:
            raise ValueError(
                f"generate.source gold: no question of dataset {self.spec.name!r} has a gold solution "
                f"({self.spec.format} gives calculator notes or supporting facts only when the file has them)"
            )
        return kept, {"without_gold_solution": len(rows) - len(kept)}

    def gold_script(self, rows: list[dict[str, Any]]) -> GoldScript:
        from swirl.data.demonstrations import GoldScript

        return GoldScript(rows, tool_kind(self.spec))

    def engine_specs(self) -> list[EngineSpec]:
        return [] if self.cfg.source == "gold" else [self.policy]

    def shard_runner(self, store: Store, engine: EngineFor, tools: Mapping[str, Tool] | None) -> Runner:
        """Loads the engine (the policy, or the gold script) and the tools once; the runner generates one
        shard's trajectories as a table."""
        cfg, policy, kind = self.cfg, self.policy, tool_kind(self.spec)
        model, adapter = policy.model, policy.adapter
        if cfg.source == "gold":
            questions = store.read_ref(self.questions).select(["question", "answers", "metadata"])
            eng = gold_engine(policy, self.gold_script(questions.to_pylist()))
            model, adapter = f"gold ({policy.model} tokens)", None
        else:
            eng = engine("policy", policy)
        tools = tools or tools_for(self.spec, store, self.corpus, self.search)
        settings = rollout_settings(cfg, kind, policy.max_model_len)

        def run(shard: list[dict[str, Any]]) -> ShardOutput:
            trajs = run_episodes(eng, shard, cfg, kind, cfg.samples_per_question, tools, settings, adapter)
            table = to_table(TABLE, [t.row(model, adapter) for t in trajs])
            return ShardOutput(table, sum(t.generated_tokens for t in trajs))

        return run

    def describe(self, ref: StageRef) -> str:
        s = ref.summary
        return (
            f"{ref.rows} trajectories, {s.get('actions_per_trajectory', 0):.2f} actions each, invalid rate "
            f"{s.get('invalid_rate', 0):.3f}, stops {s.get('stop_reasons')}"
        )


def gold_engine(policy: EngineConfig, script: Callable[[str, int | None], str]) -> Engine:
    """The engine of `source: gold`: the gold script, speaking the policy's tokens (no model is loaded)."""
    from transformers import AutoTokenizer

    from swirl.engines.scripted import ScriptedEngine

    return ScriptedEngine(
        AutoTokenizer.from_pretrained(policy.model), script, model="gold", max_context=policy.max_model_len
    )


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
    }
