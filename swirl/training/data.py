"""Training inputs from the store: filtered steps + their trajectories' stored token ids.

Training never re-renders text: a state is `token_ids[:state_offset]` of its trajectory and an action is
`token_ids[start:end]` of its span, exactly what the model saw and produced during generation.

- sft / swirl_offline: one `Example` per trajectory with at least one kept step; the kept steps' weights are 1
  (sft) or reward minus baseline (swirl_offline, `OfflineSection`).
- swirl: one `State` per kept step (its token prefix, plus the question and conversation the reward model
  judges).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swirl.store import StageRef, Store
from swirl.training.batches import Example
from swirl.training.config import OfflineSection, TrainConfig

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
    examples: list[Example] = field(default_factory=list)  # sft / swirl_offline
    states: list[State] = field(default_factory=list)  # swirl
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainInput:
    """One dataset's tables for training: its trajectories, their filtered steps and its questions."""

    trajectories: StageRef
    steps: StageRef
    questions: StageRef


def offline_rewards(
    labels: Sequence[str], outcomes: Sequence[bool | None], cfg: OfflineSection
) -> np.ndarray:
    """Reward of each logged action (before the baseline)."""

    def label(x: str) -> float:
        if x not in cfg.label_rewards:
            raise ValueError(
                f"process label {x!r} has no reward in train.offline.label_rewards {cfg.label_rewards}; "
                "add it"
            )
        return float(cfg.label_rewards[x])

    proc = np.array([label(x or "UNKNOWN") for x in labels], dtype=np.float64)
    outc = np.array([1.0 if o else 0.0 for o in outcomes], dtype=np.float64)
    return {"process": proc, "outcome": outc, "process_outcome": proc * outc}[cfg.reward]


def advantages(rewards: np.ndarray, groups: Sequence[str], cfg: OfflineSection) -> np.ndarray:
    """Reward minus the configured baseline, optionally divided by the advantages' standard deviation."""
    if cfg.baseline == "none" or len(rewards) == 0:
        adv = rewards.copy()
    elif cfg.baseline == "mean":
        adv = rewards - rewards.mean()
    else:  # question_mean
        _uniq, inv = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
        means = np.bincount(inv, weights=rewards) / np.bincount(inv)
        adv = rewards - means[inv]
    if cfg.normalize == "std" and len(adv) > 1:
        adv = adv / (adv.std() + 1e-8)
    return adv


def load_train_data(store: Store, inputs: Sequence[TrainInput], cfg: TrainConfig) -> TrainData:
    """Read the kept steps and their trajectories into Examples (sft/offline) or States (swirl)."""
    from swirl.judging.process import action_indices, load_questions
    from swirl.steps import read_columns

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
    summary: dict[str, Any] = {"kept_steps": len(rows), "kept_trajectories": len(trajs)}
    data = TrainData(summary=summary)
    too_long = 0
    if cfg.objective == "swirl":
        for r in rows:
            t = trajs[r["trajectory_id"]]
            span = t["action_spans"][r["step"]]
            if span["start"] != r["state_offset"]:
                raise ValueError(
                    f"steps row {r['trajectory_id']}/{r['step']}: state_offset {r['state_offset']} is not "
                    f"the start of its action span {span}; re-run decompose on these trajectories"
                )
            if cfg.max_length and span["start"] + cfg.swirl.max_tokens > cfg.max_length:
                too_long += 1
                continue
            q = questions[r["question_id"]]
            msg_idx = action_indices({**t, "num_actions": None})[r["step"]]
            data.states.append(
                State(
                    f"{r['trajectory_id']}/{r['step']}",
                    np.asarray(t["token_ids"][: span["start"]], dtype=np.int32),
                    q.text,
                    q.dataset,
                    list(t["messages"][:msg_idx]),
                )
            )
        summary["states"] = len(data.states)
    else:
        if cfg.objective == "swirl_offline":
            rew = offline_rewards(
                [r["process_label"] for r in rows], [r["outcome_correct"] for r in rows], cfg.offline
            )
            adv = advantages(rew, [r["question_id"] for r in rows], cfg.offline)
            summary.update(
                reward_mean=float(rew.mean()) if len(rew) else 0.0,
                advantage_std=float(adv.std()) if len(adv) else 0.0,
            )
            if len(adv) and np.abs(adv).max() < 1e-6:  # 0 up to rounding (a mean of equal rewards)
                off = cfg.offline
                raise ValueError(
                    f"train (swirl_offline): every one of the {len(adv)} kept actions has advantage 0 "
                    f"(reward {off.reward} from {rew.min():g} to {rew.max():g}, baseline {off.baseline}), so "
                    "nothing would be learned; with train.offline.baseline mean/question_mean the kept "
                    "actions need different rewards (filter.strategy none keeps BAD steps), or use "
                    "train.offline.baseline none"
                )
        else:
            adv = np.ones(len(rows))
        by_traj: dict[str, list[tuple[int, float]]] = {}
        for r, w in zip(rows, adv, strict=True):
            by_traj.setdefault(r["trajectory_id"], []).append((r["step"], float(w)))
        for g, (tid, kept) in enumerate(sorted(by_traj.items())):
            t = trajs[tid]
            spans = [(s["start"], s["end"]) for s in t["action_spans"]]
            end = spans[max(k for k, _ in kept)][1]
            if cfg.max_length and end > cfg.max_length:
                too_long += 1
                continue
            data.examples.append(
                Example(
                    tid,
                    np.asarray(t["token_ids"], dtype=np.int32),
                    spans,
                    [k for k, _ in kept],
                    [w for _, w in kept],
                    group=g,
                )
            )
        summary["examples"] = len(data.examples)
    summary["dropped_too_long"] = too_long
    return data
