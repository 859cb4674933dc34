"""Sub-trajectories: the step-wise decomposition (docs/method.md §1.2) and the four filtering strategies
(§1.3), on Arrow batches.

A trajectory with K actions becomes K sub-trajectories, the rows of the `steps` table. Row i refers to its
state by `state_offset` = action_spans[i].start (the state is token_ids[:state_offset] of the trajectory): a
reference, never a copy, so the table grows as O(K), not O(K^2). Both stages stream their input by Parquet
row group (`swirl.table_io`) and write one shard per batch; only a few small columns per step (ids, labels)
are held whole, never texts or token ids (bench/steps.py: 1M rows).

Filtering is per trajectory: `process` keeps a trajectory whose every step is GOOD (UNKNOWN and BAD are not
GOOD); `outcome` keeps one whose final answer is correct (a missing outcome is not correct); `process_outcome`
both; `none` all. The paper compares strategies at a fixed number of trajectories: `fixed_count` samples the
same number per dataset for every strategy, by a seeded hash rank (a trajectory has the same rank under every
strategy, so the samples overlap as much as their pools allow).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from swirl.protocol import parse_action
from swirl.sections import Section
from swirl.tables import schema

STRATEGIES = ("none", "process", "outcome", "process_outcome")


# ---------------------------------------------------------------------------------------- configs
class DecomposeConfig(Section):
    outcome_source: Literal["rule", "llm"] = Field(
        "rule",
        description="Which judged outcome becomes steps.outcome_correct (what outcome filtering uses): rule "
        "(numeric equality / EM) or llm (the judge's YES/NO grading; needs judge.outcome.llm).",
    )
    batch_rows: int = Field(
        2048, ge=1, description="Trajectories decomposed per batch (one output shard each)."
    )


Strategy = Literal["none", "process", "outcome", "process_outcome"]


class FilterConfig(Section):
    strategy: Strategy = Field(
        "process",
        description="Which trajectories to keep: none (all), process (every step judged GOOD), outcome "
        "(final answer correct), process_outcome (both). The paper finds process best for SWiRL, "
        "process_outcome for SFT.",
    )
    fixed_count: int | Literal["min"] | None = Field(
        None,
        description="Keep this many trajectories per dataset, sampled by seed, the same number for every "
        "strategy (the paper's protocol). 'min' = the smallest pool over the four strategies. Empty: keep "
        "every eligible one.",
    )
    seed: int = Field(0, description="Seed of the fixed_count sample.")
    batch_rows: int = Field(65536, ge=1, description="Step rows rewritten per batch (one output shard each).")


# ------------------------------------------------------------------------------------------ actions
def action_kind(text: str | None) -> str:
    """search / math / answer / invalid, by the rollout's own parser (swirl.protocol.parse_action), so a step
    is invalid here exactly when the rollout answered it with a corrective observation: the first complete
    known tag wins; no tag, an unclosed, empty or unknown tag, or a second action tag opened before it closes
    is invalid."""
    return parse_action(text).kind if text else "invalid"


# ---------------------------------------------------------------------------------------- decompose
DECOMPOSE_COLUMNS = ("trajectory_id", "question_id", "messages", "action_spans", "num_actions")


@dataclass(frozen=True)
class JudgmentIndex:
    """Judgments sorted by (trajectory_id, step) with each trajectory's first row and row count, so a batch
    finds its judgments by position (one dict lookup per trajectory) instead of a join against the whole
    table."""

    table: pa.Table  # trajectory_id, step, process_label, outcome
    rows: dict[str, tuple[int, int]]

    def rows_of(self, tids: list[str], actions: np.ndarray, parent: np.ndarray, step: np.ndarray) -> pa.Array:
        """Row of each action's judgment (parent = its trajectory's position in `tids`, step = its index)."""
        found = [self.rows.get(t, (0, 0)) for t in tids]
        start = np.array([f[0] for f in found], dtype=np.int64)
        count = np.array([f[1] for f in found], dtype=np.int64)
        short = np.nonzero(count < actions)[0]
        if len(short):
            i = int(short[0])
            raise ValueError(
                f"no judgment for trajectory {tids[i]!r} step {count[i]} (it has {actions[i]} actions; "
                f"{len(short)} trajectories of this batch lack judgments); judge these trajectories first "
                "(the judgments must come from the same trajectories tables)"
            )
        idx = start[parent] + step
        judged_step = self.table.column("step").to_numpy()[idx] if len(idx) else idx
        if (judged_step != step).any():
            i = int(np.nonzero(judged_step != step)[0][0])
            raise ValueError(
                f"judgments of trajectory {tids[parent[i]]!r} are not steps 0..{actions[parent[i]] - 1} "
                "exactly once; the judgments table is inconsistent: delete it and re-run the judge"
            )
        return pa.array(idx, pa.int64())


def index_judgments(judgments: pa.Table) -> JudgmentIndex:
    """Index a judgments table (columns trajectory_id, step, process_label, outcome) for `decompose_batch`."""
    t = judgments.sort_by([("trajectory_id", "ascending"), ("step", "ascending")]).combine_chunks()
    n = t.num_rows
    if n == 0:
        return JudgmentIndex(t, {})
    tids = t.column("trajectory_id")
    new = np.ones(n, dtype=bool)
    new[1:] = pc.not_equal(tids.slice(1), tids.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    starts = np.nonzero(new)[0]
    counts = np.diff(np.append(starts, n))
    ids = pc.take(tids, pa.array(starts)).to_pylist()
    return JudgmentIndex(t, dict(zip(ids, zip(starts.tolist(), counts.tolist(), strict=True), strict=True)))


def _group_rank(parents: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal, non-decreasing parent indices (0, 1, 2, 0, 1,
    ...)."""
    starts = np.searchsorted(parents, parents, side="left")
    return np.arange(len(parents), dtype=np.int64) - starts


def decompose_batch(
    batch: pa.RecordBatch | pa.Table,
    judgments: JudgmentIndex,
    question_ids: pa.Array,
    datasets: pa.Array,
) -> pa.Table:
    """Steps rows (keep = True) of a batch of trajectories.

    Every action must have a judgment (`index_judgments`). `question_ids`/`datasets` map each question to its
    dataset.
    """
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks()
        batch = (
            batch.to_batches()[0] if batch.num_rows else pa.RecordBatch.from_pylist([], schema=batch.schema)
        )
    tids = batch.column("trajectory_id")
    msgs = batch.column("messages")
    spans = batch.column("action_spans")
    flat = pc.list_flatten(msgs)
    parent = pc.list_parent_indices(msgs)
    is_action = pc.equal(flat.field("role"), "assistant")
    a_parent = pc.filter(parent, is_action).to_numpy()
    a_text = pc.filter(flat.field("content"), is_action)
    per_traj = (
        np.bincount(a_parent, minlength=len(batch)) if len(a_parent) else np.zeros(len(batch), np.int64)
    )
    n_spans = pc.fill_null(pc.list_value_length(spans), 0).to_numpy()
    n_actions = pc.fill_null(batch.column("num_actions"), -1).to_numpy()
    bad = np.nonzero((per_traj != n_spans) | ((n_actions >= 0) & (n_actions != per_traj)))[0]
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"trajectory {tids[i].as_py()!r}: {per_traj[i]} assistant messages but "
            f"num_actions={n_actions[i]} and {n_spans[i]} action_spans; the trajectories table is "
            f"inconsistent (regenerate it). {len(bad)} trajectories of this batch are affected."
        )
    steps = pa.array(_group_rank(a_parent), pa.int32())
    take = pa.array(a_parent, pa.int64())
    qids = pc.take(batch.column("question_id"), take)
    qidx = pc.index_in(qids, value_set=question_ids)
    if qidx.null_count:
        missing = sorted(set(pc.filter(qids, pc.is_null(qidx)).to_pylist()))
        raise ValueError(
            f"questions {missing[:5]} ({len(missing)} in all) are not in the questions tables given to "
            "decompose; pass the questions tables the trajectories were generated from"
        )
    base = pa.table({"trajectory_id": pc.take(tids, take), "step": steps})
    idx = judgments.rows_of(tids.to_pylist(), per_traj, a_parent, base.column("step").to_numpy())
    texts = a_text.to_pylist()
    return pa.table(
        {
            "trajectory_id": base.column("trajectory_id"),
            "step": base.column("step"),
            "question_id": qids,
            "dataset": pc.take(datasets, qidx),
            "state_offset": pc.list_flatten(spans).field("start"),
            "action_text": a_text,
            "action_kind": pa.array([action_kind(t) for t in texts], pa.string()),
            "process_label": pc.take(judgments.table.column("process_label"), idx),
            "outcome_correct": pc.take(judgments.table.column("outcome"), idx),
            "keep": pa.array(np.ones(len(a_parent), dtype=bool)),
        },
        schema=schema("steps"),
    )


# ------------------------------------------------------------------------------------------- filter
def trajectory_flags(steps: pa.Table) -> pa.Table:
    """One row per trajectory: dataset, steps, all_good (every step GOOD), correct (outcome true,
    null = false)."""
    t = pa.table(
        {
            "trajectory_id": steps.column("trajectory_id"),
            "dataset": steps.column("dataset"),
            "good": pc.fill_null(pc.equal(steps.column("process_label"), "GOOD"), False),
            "correct": pc.fill_null(steps.column("outcome_correct"), False),
        }
    )
    g = t.group_by("trajectory_id", use_threads=False).aggregate(
        [("dataset", "min"), ("good", "all"), ("correct", "all"), ("good", "count")]
    )
    return g.rename_columns(["trajectory_id", "dataset", "all_good", "correct", "steps"]).sort_by(
        "trajectory_id"
    )


def eligible(flags: pa.Table, strategy: str) -> np.ndarray:
    """Boolean mask over trajectories that `strategy` keeps (before any fixed-count sampling)."""
    good = flags.column("all_good").to_numpy(zero_copy_only=False)
    correct = flags.column("correct").to_numpy(zero_copy_only=False)
    masks = {
        "none": np.ones(len(good), dtype=bool),
        "process": good,
        "outcome": correct,
        "process_outcome": good & correct,
    }
    if strategy not in masks:
        raise ValueError(f"filter.strategy: unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    return masks[strategy]


def hash_rank(ids: Sequence[str], seed: int) -> np.ndarray:
    """A seeded pseudo-random key per id, independent of the other ids (smaller = sampled first)."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "big") for i in ids],
        dtype=np.uint64,
    )


def select(flags: pa.Table, cfg: FilterConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Kept-trajectory masks for every strategy (with the fixed-count sample applied) and the filter
    summary."""
    datasets = flags.column("dataset").to_numpy(zero_copy_only=False).astype(object)
    steps = flags.column("steps").to_numpy()
    names = sorted(set(datasets.tolist()))
    in_dataset = {ds: datasets == ds for ds in names}
    pools = {s: eligible(flags, s) for s in STRATEGIES}
    kept = {s: m.copy() for s, m in pools.items()}
    fixed: dict[str, int] | None = None
    short: dict[str, dict[str, int]] = {}
    if cfg.fixed_count is not None:
        ranks = hash_rank(flags.column("trajectory_id").to_pylist(), cfg.seed)
        fixed = {}
        for ds in names:
            in_ds = in_dataset[ds]
            sizes = {s: int((pools[s] & in_ds).sum()) for s in STRATEGIES}
            n = min(sizes.values()) if cfg.fixed_count == "min" else int(cfg.fixed_count)
            if sizes[cfg.strategy] < n:
                raise ValueError(
                    f"filter.fixed_count={cfg.fixed_count}: strategy {cfg.strategy} keeps only "
                    f"{sizes[cfg.strategy]} trajectories of dataset {ds!r} (pools: {sizes}); lower "
                    "fixed_count or set it to 'min'"
                )
            fixed[ds] = n
            for s in STRATEGIES:
                if sizes[s] < n:
                    short.setdefault(s, {})[ds] = sizes[s]
                idx = np.nonzero(pools[s] & in_ds)[0]
                drop = idx[np.argsort(ranks[idx], kind="stable")[n:]]
                kept[s][drop] = False

    def counts(mask: np.ndarray) -> dict[str, Any]:
        per = {
            ds: {
                "trajectories": int((mask & in_dataset[ds]).sum()),
                "steps": int(steps[mask & in_dataset[ds]].sum()),
            }
            for ds in names
        }
        return {"trajectories": int(mask.sum()), "steps": int(steps[mask].sum()), "per_dataset": per}

    summary: dict[str, Any] = {
        "strategy": cfg.strategy,
        "fixed_count": fixed,
        "trajectories": len(flags),
        "steps": int(steps.sum()),
        "per_strategy": {s: {"kept": counts(kept[s]), "eligible": counts(pools[s])} for s in STRATEGIES},
        "kept_trajectories": int(kept[cfg.strategy].sum()),
        "kept_steps": int(steps[kept[cfg.strategy]].sum()),
    }
    if short:
        summary["fixed_count_short"] = short  # strategies whose pool is smaller than the fixed count
    summary["judge_agreement"] = judge_agreement(pools, in_dataset)
    summary["judge_precision"] = summary["judge_agreement"]["all"]["precision"]
    summary["judge_recall"] = summary["judge_agreement"]["all"]["recall"]
    for s in STRATEGIES:  # flat metrics (filter/kept_process, ...)
        summary[f"kept_{s}"] = summary["per_strategy"][s]["kept"]["trajectories"]
        summary[f"kept_steps_{s}"] = summary["per_strategy"][s]["kept"]["steps"]
    return kept, summary


def judge_agreement(
    pools: dict[str, np.ndarray], in_dataset: dict[str, np.ndarray]
) -> dict[str, dict[str, float | int | None]]:
    """How well the process judge agrees with the outcome, per dataset and over all ("all"): precision =
    the share of process-GOOD trajectories (every step GOOD) that are correct; recall = the share of correct
    trajectories that are process-GOOD. None where nothing is in the denominator."""

    def one(mask: np.ndarray) -> dict[str, float | int | None]:
        good, correct = int((pools["process"] & mask).sum()), int((pools["outcome"] & mask).sum())
        both = int((pools["process_outcome"] & mask).sum())
        return {
            "process_good": good,
            "correct": correct,
            "both": both,
            "precision": both / good if good else None,
            "recall": both / correct if correct else None,
        }

    return {"all": one(pools["none"]), **{ds: one(m) for ds, m in in_dataset.items()}}  # none: every one


def set_keep(batch: pa.RecordBatch | pa.Table, keep: pa.Array | pa.ChunkedArray) -> pa.Table:
    """The steps batch with its `keep` column replaced."""
    t = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    return t.set_column(t.schema.get_field_index("keep"), "keep", keep)


def question_datasets(questions: Sequence[Mapping[str, Any]] | pa.Table) -> tuple[pa.Array, pa.Array]:
    """(question_ids, datasets) arrays from questions rows or a table; a question in two datasets is an
    error."""
    t = questions if isinstance(questions, pa.Table) else pa.Table.from_pylist(list(questions))
    ids = pc.cast(t.column("question_id"), pa.string()).combine_chunks()
    ds = pc.cast(t.column("dataset"), pa.string()).combine_chunks()
    if len(pc.unique(ids)) != len(ids):
        uniq = pa.table({"q": ids, "d": ds}).group_by("q").aggregate([("d", "count_distinct")])
        clash = uniq.filter(pc.greater(uniq.column("d_count_distinct"), 1)).column("q").to_pylist()
        if clash:
            raise ValueError(
                f"question ids {clash[:5]} appear in more than one dataset; give each dataset its own ids"
            )
        keep = pa.table({"q": ids, "d": ds}).group_by("q").aggregate([("d", "min")])
        ids, ds = keep.column("q").combine_chunks(), keep.column("d_min").combine_chunks()
    return ids, ds
