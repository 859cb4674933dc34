"""Decompose: trajectories + judgments (+ questions, for the dataset) -> the `steps` table, one row per
action.

Streams the trajectories by row group (only the columns it needs: never token_ids) and writes one shard per
batch; the state of step i is referenced by its token offset (`state_offset`), never copied. `outcome_source`
picks which judged outcome (rule or LLM) becomes steps.outcome_correct, so switching it re-runs decompose and
filter, not the judge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from swirl.stages.base import Context, Plan
from swirl.store import StageRef, Store, as_refs
from swirl.subtrajectories import (
    DECOMPOSE_COLUMNS,
    DecomposeConfig,
    decompose_batch,
    index_judgments,
    question_datasets,
)
from swirl.table_io import iter_batches, read_columns, shard_columns, value_counts

TABLE = "steps"


@dataclass(frozen=True)
class Decompose:
    """One `steps` row per (trajectory, action): a reference to its state, the action, its labels."""

    trajectories: StageRef | tuple[StageRef, ...]
    judgments: StageRef
    questions: StageRef | tuple[StageRef, ...]
    cfg: DecomposeConfig
    name: str = ""  # the dataset, for logs
    stage: ClassVar[str] = "decompose"

    @property
    def label(self) -> str:
        return f"decompose-{self.name}" if self.name else "decompose"

    def plan(self) -> Plan:
        inputs = {
            "trajectories": ",".join(
                r.short() for r in as_refs(self.trajectories, "trajectories", "decompose")
            ),
            "judgments": as_refs(self.judgments, "judgments", "decompose")[0].short(),
            "questions": ",".join(r.short() for r in as_refs(self.questions, "questions", "decompose")),
        }
        return Plan(self.stage, TABLE, self.cfg.model_dump(mode="json"), inputs)

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef:
        cfg, judgments = self.cfg, self.judgments
        if cfg.outcome_source == "llm" and not judgments.summary.get("outcome_llm_enabled"):
            raise ValueError(
                f"decompose.outcome_source is llm but the judgments {judgments.short()} have no LLM grading; "
                "set judge.outcome.llm: true (re-runs the judge) or decompose.outcome_source: rule"
            )
        t0 = time.perf_counter()
        outcome_col = "outcome_correct" if cfg.outcome_source == "rule" else "outcome_llm"
        judged = read_columns(store, [judgments], ["trajectory_id", "step", "process_label", outcome_col])
        judged = index_judgments(judged.rename_columns(["trajectory_id", "step", "process_label", "outcome"]))
        questions = as_refs(self.questions, "questions", "decompose")
        qids, datasets = question_datasets(read_columns(store, questions, ["question_id", "dataset"]))
        writer = plan.writer(store)
        done = writer.done_keys()
        for ref in as_refs(self.trajectories, "trajectories", "decompose"):
            for k, batch in enumerate(iter_batches(store, ref, DECOMPOSE_COLUMNS, cfg.batch_rows)):
                key = f"{ref.short()}#{k}"  # batches are deterministic for a given input and batch_rows
                if key not in done:
                    writer.write_shard(decompose_batch(batch, judged, qids, datasets), [key])
        summary = summarize_steps(writer)
        if self.name:
            summary["dataset"] = self.name
        summary.update(outcome_source=cfg.outcome_source, seconds=round(time.perf_counter() - t0, 3))
        return writer.finalize(summary)

    def describe(self, ref: StageRef) -> str:
        return f"{ref.rows} steps"


def summarize_steps(writer: Any) -> dict[str, Any]:
    t = shard_columns(writer, ["trajectory_id", "dataset", "action_kind", "process_label", "outcome_correct"])
    if t is None:
        return {"steps": 0, "trajectories": 0}
    return {
        "steps": t.num_rows,
        "trajectories": len(pc.unique(t.column("trajectory_id"))),
        "action_kinds": value_counts(t.column("action_kind")),
        "process_labels": value_counts(t.column("process_label")),
        "steps_per_dataset": value_counts(t.column("dataset")),
        "outcome_correct_steps": int(
            pc.sum(pc.fill_null(t.column("outcome_correct"), False).cast(pa.int64())).as_py() or 0
        ),
    }
