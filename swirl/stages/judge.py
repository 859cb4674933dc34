"""Judge: trajectories (+ their questions) -> the `judgments` table, one row per trajectory step.

Sharded and resumable: trajectories are judged `shard_size` at a time (all steps of a shard in one engine
batch) and each shard is committed with its trajectory ids as keys, so after a crash a re-run judges only the
trajectories not yet stored. The version hashes the judge config (prompts, sampling, outcome rules), the judge
model's identity (not its URL or concurrency) and the input versions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from swirl.judging.config import JudgeConfig
from swirl.judging.process import REASK_SEPARATOR, TOO_LONG, UNKNOWN, judge_shard, load_questions
from swirl.stages.base import Context, Plan
from swirl.store import ShardedWriter, StageRef, Store, as_refs
from swirl.table_io import iter_batches, shard_columns
from swirl.tables import to_table

log = logging.getLogger(__name__)

TABLE = "judgments"
Refs = StageRef | Sequence[StageRef]
TRAJECTORY_COLUMNS = (
    "trajectory_id",
    "question_id",
    "messages",
    "action_spans",
    "num_actions",
    "final_answer",
)


def _pending(store: Store, refs: list[StageRef], done: set[str], size: int) -> Iterator[list[dict[str, Any]]]:
    """Trajectory rows not judged yet, `size` at a time, in table order; a repeated trajectory id is an
    error."""
    seen: set[str] = set()
    chunk: list[dict[str, Any]] = []
    for ref in refs:
        for batch in iter_batches(store, ref, TRAJECTORY_COLUMNS, max(size, 256)):
            for row in batch.to_pylist():
                tid = row["trajectory_id"]
                if tid in seen:
                    where = [r.short() for r in refs]
                    raise ValueError(
                        f"trajectory id {tid!r} appears twice in the trajectories tables {where}"
                    )
                seen.add(tid)
                if tid in done:
                    continue
                chunk.append(row)
                if len(chunk) == size:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


@dataclass(frozen=True)
class Judge:
    """Judge every step (GOOD/BAD/UNKNOWN) and every final answer of trajectories; resumes from the stored
    shards. The engine (role `judge`, serving `cfg.engine`) is asked for only when a model is asked and work
    is left."""

    trajectories: StageRef | tuple[StageRef, ...]
    questions: StageRef | tuple[StageRef, ...]
    cfg: JudgeConfig
    name: str = ""  # the dataset, for logs
    stage: ClassVar[str] = "judge"
    transient_errors: ClassVar[bool] = True  # a judge endpoint may be down for a while

    @property
    def label(self) -> str:
        return f"judge-{self.name}" if self.name else "judge"

    def plan(self) -> Plan:
        inputs = {
            "trajectories": ",".join(r.short() for r in as_refs(self.trajectories, "trajectories", "judge")),
            "questions": ",".join(r.short() for r in as_refs(self.questions, "questions", "judge")),
        }
        return Plan(self.stage, TABLE, self.cfg.version_config(), inputs)

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef:
        cfg = self.cfg
        writer = plan.writer(store)
        done = writer.done_keys()
        qs = load_questions(store, self.questions)
        eng = None
        t0 = time.perf_counter()
        judged = 0
        for chunk in _pending(
            store, as_refs(self.trajectories, "trajectories", "judge"), done, cfg.shard_size
        ):
            if eng is None and cfg.needs_model:
                eng = ctx.engine("judge", cfg.engine)
            rows = judge_shard(chunk, qs, eng, cfg)
            writer.write_shard(to_table(TABLE, rows), [r["trajectory_id"] for r in chunk])
            judged += len(chunk)
            log.info(
                "judge: shard of %d trajectories (%d steps) committed; %d this run",
                len(chunk),
                len(rows),
                judged,
            )
        summary = summarize(writer)
        if self.name:
            summary["dataset"] = self.name
        summary.update(
            resumed_trajectories=len(done),
            judged_this_run=judged,
            seconds_this_run=round(time.perf_counter() - t0, 3),
            outcome_llm_enabled=cfg.outcome.llm,
            judge_model=eng.model if eng is not None else plan.config["engine"].get("model", "rule"),
        )
        if not cfg.outcome.llm:
            for k in (
                "outcome_llm_reasks",
                "outcome_llm_correct",
                "outcome_llm_unknown",
                "rule_llm_agreement",
            ):
                summary.pop(k)
        for attr in ("requests", "retries"):
            if eng is not None and isinstance(getattr(eng, attr, None), int):
                summary[f"engine_{attr}_this_run"] = getattr(eng, attr)
        return writer.finalize(summary)

    def describe(self, ref: StageRef) -> str:
        counts = {k: ref.summary.get(k) for k in ("good", "bad", "unknown")}
        return f"{ref.rows} step labels {counts}"


def occurrences(texts: Any, pattern: str) -> int:
    """How many times `pattern` occurs in a text column, over all rows (nulls count 0)."""
    return int(pc.sum(pc.count_substring(texts, pattern)).as_py() or 0)


def reasks_sent(texts: Any) -> int:
    """Re-asks that reached the judge: reply separators, less those before a not-asked (too long) marker."""
    return occurrences(texts, REASK_SEPARATOR) - occurrences(texts, REASK_SEPARATOR + TOO_LONG)


def summarize(writer: ShardedWriter) -> dict[str, Any]:
    """Counts over every stored shard (this run's and earlier ones), read column-wise."""
    cols = [
        "trajectory_id",
        "step",
        "process_label",
        "judge_text",
        "outcome_correct",
        "outcome_llm",
        "outcome_llm_text",
    ]
    t = shard_columns(writer, cols)
    if t is None:
        t = to_table(TABLE, []).select(cols)
    labels = t.column("process_label")
    first = t.filter(pc.equal(t.column("step"), 0))  # one row per trajectory with at least one step
    rule, llm = first.column("outcome_correct"), first.column("outcome_llm")
    n = t.num_rows

    def count(arr, v):
        return int(pc.sum(pc.equal(arr, v)).as_py() or 0)

    good, bad, unknown = count(labels, "GOOD"), count(labels, "BAD"), count(labels, UNKNOWN)
    llm_known = pc.is_valid(llm)
    agree = pc.equal(pc.filter(rule, llm_known), pc.filter(llm, llm_known))
    return {
        "trajectories": len(writer.done_keys()),
        "trajectories_with_steps": first.num_rows,
        "steps": n,
        "good": good,
        "bad": bad,
        "unknown": unknown,
        "good_rate": round(good / n, 4) if n else None,
        "unknown_rate": round(unknown / n, 4) if n else None,
        "too_long": occurrences(t.column("judge_text"), TOO_LONG),
        "process_reasks": reasks_sent(t.column("judge_text")),
        "outcome_llm_reasks": reasks_sent(first.column("outcome_llm_text")),
        "outcome_rule_correct": count(rule, True),
        "outcome_llm_correct": count(llm, True),
        "outcome_llm_unknown": count(pc.is_null(llm), True),
        "rule_llm_agreement": round(pc.mean(agree.cast(pa.float64())).as_py(), 4) if len(agree) else None,
    }
