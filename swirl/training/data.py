"""Training inputs from the store: filtered steps + their trajectories' stored token ids.

Training never re-renders text: a state is `token_ids[:state_offset]` of its trajectory and an action is
`token_ids[start:end]` of its span, exactly what the model saw and produced during generation.

`read_kept_steps` reads what the filter kept; the objective (swirl/training/objectives/) turns it into
- `Example`s (sft, swirl_offline): one per trajectory with at least one kept step, each kept action weighted;
- `State`s (swirl): one per kept step (its token prefix, plus the question and conversation the reward model
  judges);
- whole-trajectory `Example`s (oreo, `trajectory_examples`): every action of each trajectory with a kept step,
  weighted by the trajectory's outcome (steps.outcome_correct, from the judge stage's judgments).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swirl.store import StageRef, Store
from swirl.training.batches import Example
from swirl.training.config import TrainConfig

STEP_COLUMNS = [
    "trajectory_id",
    "step",
    "question_id",
    "dataset",
    "state_offset",
    "process_label",
    "outcome_correct",
    "keep",
]
TRAJECTORY_COLUMNS = ["trajectory_id", "question_id", "token_ids", "action_spans", "messages"]


@dataclass
class State:
    """A state to sample actions from (the `swirl` objective)."""

    key: str  # "<trajectory_id>/<step>"
    ids: np.ndarray  # int32: the token prefix before the action
    question: str
    dataset: str
    # the conversation before the action (what the reward model judges it against)
    messages: list[dict[str, str]]


@dataclass
class TrainData:
    examples: list[Example] = field(default_factory=list)  # sft / swirl_offline / oreo
    states: list[State] = field(default_factory=list)  # swirl
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        """The training items: the states to sample from (swirl), else the examples."""
        return len(self.states) if self.states else len(self.examples)


@dataclass(frozen=True)
class TrainInput:
    """One dataset's tables for training: its trajectories, their filtered steps and its questions."""

    trajectories: StageRef
    steps: StageRef
    questions: StageRef


@dataclass
class KeptSteps:
    """The kept steps of every input (sorted by trajectory and step), their trajectories and questions."""

    rows: list[dict[str, Any]]
    trajectories: dict[str, dict[str, Any]]
    questions: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"kept_steps": len(self.rows), "kept_trajectories": len(self.trajectories)}


def read_kept_steps(store: Store, inputs: Sequence[TrainInput]) -> KeptSteps:
    """Read the kept steps of the filter outputs, the trajectories they belong to and their questions."""
    from swirl.judging.process import load_questions
    from swirl.table_io import read_columns

    if not inputs:
        raise ValueError("train: no training inputs (run generate, judge, decompose and filter first)")
    rows: list[dict[str, Any]] = []
    trajs: dict[str, dict[str, Any]] = {}
    questions: dict[str, Any] = {}
    for inp in inputs:
        if inp.steps.table != "steps" or inp.trajectories.table != "trajectories":
            raise ValueError(
                f"train: expected steps and trajectories tables, got {inp.steps.short()} and "
                f"{inp.trajectories.short()}"
            )
        steps = read_columns(store, [inp.steps], STEP_COLUMNS).to_pylist()
        kept = [r for r in steps if r["keep"]]
        rows += kept
        need = {r["trajectory_id"] for r in kept}
        for t in read_columns(store, [inp.trajectories], TRAJECTORY_COLUMNS).to_pylist():
            if t["trajectory_id"] in need:
                trajs[t["trajectory_id"]] = t
        questions.update(load_questions(store, [inp.questions]))
    missing = sorted({r["trajectory_id"] for r in rows} - set(trajs))
    if missing:
        raise ValueError(
            f"train: kept steps refer to trajectories {missing[:3]} ({len(missing)} in all) that are not in "
            "the trajectories tables given; pass the trajectories the steps were decomposed from"
        )
    rows.sort(key=lambda r: (r["trajectory_id"], r["step"]))
    return KeptSteps(rows, trajs, questions)


def states_of(kept: KeptSteps, cfg: TrainConfig) -> tuple[list[State], int]:
    """One State per kept step (its token prefix, question and conversation); (states, dropped too long)."""
    from swirl.judging.process import action_indices

    states, too_long = [], 0
    for r in kept.rows:
        t = kept.trajectories[r["trajectory_id"]]
        span = t["action_spans"][r["step"]]
        if span["start"] != r["state_offset"]:
            raise ValueError(
                f"steps row {r['trajectory_id']}/{r['step']}: state_offset {r['state_offset']} is not "
                f"the start of its action span {span}; re-run decompose on these trajectories"
            )
        if cfg.max_length and span["start"] + cfg.swirl.max_tokens > cfg.max_length:
            too_long += 1
            continue
        q = kept.questions[r["question_id"]]
        msg_idx = action_indices({**t, "num_actions": None})[r["step"]]
        states.append(
            State(
                f"{r['trajectory_id']}/{r['step']}",
                np.asarray(t["token_ids"][: span["start"]], dtype=np.int32),
                q.text,
                q.dataset,
                list(t["messages"][:msg_idx]),
            )
        )
    return states, too_long


def examples_of(kept: KeptSteps, weights: np.ndarray, cfg: TrainConfig) -> tuple[list[Example], int]:
    """One Example per trajectory with kept steps, each kept action weighted by `weights` (aligned with
    `kept.rows`); (examples, dropped too long)."""
    by_traj: dict[str, list[tuple[int, float]]] = {}
    for r, w in zip(kept.rows, weights, strict=True):
        by_traj.setdefault(r["trajectory_id"], []).append((r["step"], float(w)))
    return _examples(kept, by_traj, cfg)


def trajectory_examples(kept: KeptSteps, cfg: TrainConfig) -> tuple[list[Example], int]:
    """One Example per trajectory with a kept step: its whole token sequence, every action (observation and
    prompt tokens are in no span), each weighted by the trajectory's outcome R (1 when its final answer was
    judged correct, else 0: the judge stage's outcome, carried by the steps table); (examples, dropped too
    long)."""
    outcome: dict[str, float] = {}
    for r in kept.rows:
        outcome[r["trajectory_id"]] = 1.0 if r["outcome_correct"] else 0.0
    by_traj = {
        tid: [(k, o) for k in range(len(kept.trajectories[tid]["action_spans"]))]
        for tid, o in outcome.items()
    }
    return _examples(kept, by_traj, cfg)


def _examples(
    kept: KeptSteps, by_traj: dict[str, list[tuple[int, float]]], cfg: TrainConfig
) -> tuple[list[Example], int]:
    """One Example per trajectory of `by_traj` (trajectory id -> its (action index, weight) pairs), in the
    order of their ids, each its own group (its rank among all the ids); a trajectory with no action is
    skipped, one whose last trained action ends past `cfg.max_length` dropped; (examples, dropped too
    long)."""
    examples, too_long = [], 0
    for g, (tid, steps) in enumerate(sorted(by_traj.items())):
        if not steps:
            continue
        t = kept.trajectories[tid]
        spans = [(s["start"], s["end"]) for s in t["action_spans"]]
        if cfg.max_length and spans[max(k for k, _ in steps)][1] > cfg.max_length:
            too_long += 1
            continue
        examples.append(
            Example(
                tid,
                np.asarray(t["token_ids"], dtype=np.int32),
                spans,
                [k for k, _ in steps],
                [w for _, w in steps],
                group=g,
            )
        )
    return examples, too_long
