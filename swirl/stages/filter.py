"""Filter: steps -> steps with `keep` set by a strategy (none / process / outcome / process_outcome).

Two passes over the steps table: the first reads four columns and decides per trajectory (every step GOOD?
outcome correct?), with the optional fixed-count sample per dataset; the second streams the rows by row group
and writes them with `keep`. The summary holds kept (and eligible) trajectory and step counts for all four
strategies, total and per dataset, so one run shows what every strategy would keep.
"""

from __future__ import annotations

import time

import pyarrow.compute as pc

from swirl.steps import FilterConfig, iter_batches, read_columns, select, set_keep, trajectory_flags
from swirl.store import StageRef, Store, stage_version
from swirl.tables import schema

STAGE = "filter"
TABLE = "steps"


def _plan(steps: StageRef, cfg: FilterConfig) -> tuple[dict, dict]:
    if steps.table != TABLE:
        raise ValueError(f"run_filter reads a steps table (the decompose output); got {steps.short()}")
    return cfg.model_dump(mode="json"), {"steps": steps.short()}


def filter_version(steps: StageRef, cfg: FilterConfig) -> str:
    config, inputs = _plan(steps, cfg)
    return stage_version(STAGE, config, inputs, TABLE)


def run_filter(store: Store, steps: StageRef, cfg: FilterConfig) -> StageRef:
    config, inputs = _plan(steps, cfg)
    version = stage_version(STAGE, config, inputs, TABLE)
    if store.is_complete(STAGE, version):
        return store.ref(STAGE, version)
    t0 = time.perf_counter()
    columns = ["trajectory_id", "dataset", "process_label", "outcome_correct"]
    table = read_columns(store, [steps], columns)
    flags = trajectory_flags(table)
    kept, summary = select(flags, cfg)
    kept_ids = pc.filter(flags.column("trajectory_id"), kept[cfg.strategy])
    tids = table.column("trajectory_id")
    keep = pc.is_in(tids, value_set=kept_ids.combine_chunks())  # one hash build for the whole table
    writer = store.sharded(STAGE, version, TABLE, config, inputs)
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
    return writer.finalize(summary)
