"""Filter: steps -> steps with `keep` set by a strategy (none / process / outcome / process_outcome).

Two passes over the steps table: the first reads four columns and decides per trajectory (every step GOOD?
outcome correct?), with the optional fixed-count sample per dataset; the second streams the rows by row group
and writes them with `keep`. The summary holds kept (and eligible) trajectory and step counts for all four
strategies, total and per dataset, so one run shows what every strategy would keep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow.compute as pc

from swirl.stages.base import Context, Plan
from swirl.store import StageRef, Store
from swirl.subtrajectories import FilterConfig, select, set_keep, trajectory_flags
from swirl.table_io import iter_batches, read_columns
from swirl.tables import schema

TABLE = "steps"


@dataclass(frozen=True)
class Filter:
    """Mark the steps training keeps (none / process / outcome / process_outcome), with counts for every
    strategy."""

    steps: StageRef
    cfg: FilterConfig
    name: str = ""  # the dataset, for logs
    stage: ClassVar[str] = "filter"

    @property
    def label(self) -> str:
        return f"filter-{self.name}" if self.name else "filter"

    def plan(self) -> Plan:
        if self.steps.table != TABLE:
            raise ValueError(f"filter: reads a steps table (the decompose output); got {self.steps.short()}")
        return Plan(self.stage, TABLE, self.cfg.model_dump(mode="json"), {"steps": self.steps.short()})

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef:
        cfg, steps = self.cfg, self.steps
        t0 = time.perf_counter()
        table = read_columns(store, [steps], ["trajectory_id", "dataset", "process_label", "outcome_correct"])
        flags = trajectory_flags(table)
        kept, summary = select(flags, cfg)
        kept_ids = pc.filter(flags.column("trajectory_id"), kept[cfg.strategy])
        tids = table.column("trajectory_id")
        keep = pc.is_in(tids, value_set=kept_ids.combine_chunks())  # one hash build for the whole table
        writer = plan.writer(store)
        done = writer.done_keys()
        offset = 0
        for k, batch in enumerate(iter_batches(store, steps, schema(TABLE).names, cfg.batch_rows)):
            n = batch.num_rows
            if str(k) not in done:
                if n and not pc.all(pc.equal(batch.column("trajectory_id"), tids.slice(offset, n))).as_py():
                    raise RuntimeError(
                        f"{steps.short()}: rows changed between the two passes of the filter; re-run it"
                    )
                writer.write_shard(set_keep(batch, keep.slice(offset, n)), [str(k)])
            offset += n
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        if self.name:
            summary["dataset"] = self.name
        return writer.finalize(summary)

    def tracked(self, ref: StageRef) -> dict[str, Any]:
        """The summary worth tracking: the configured strategy's counts only (the stored summary also holds
        what every other strategy would keep, for `swirl show`)."""
        s = ref.summary
        others = [x for x in s.get("per_strategy", {}) if x != self.cfg.strategy]
        drop = {f"kept_{x}" for x in others} | {f"kept_steps_{x}" for x in others} | {"per_strategy"}
        out = {k: v for k, v in s.items() if k not in drop}
        if self.cfg.strategy in s.get("per_strategy", {}):
            out[self.cfg.strategy] = s["per_strategy"][self.cfg.strategy]
        return out

    def describe(self, ref: StageRef) -> str:
        s = ref.summary
        kept = f"kept {s.get('kept_trajectories')} trajectories, {s.get('kept_steps')} steps"
        return f"({self.cfg.strategy}) {kept}"
