"""`swirl_offline`: the kept (logged) actions, each weighted by its reward minus a baseline (`train.offline`).

The reward of an action is its process label's (`label_rewards`), its trajectory's outcome, or their
product; the baseline is none (the default), the mean reward, or the mean reward of the action's question.

A baseline gives the logged actions below it negative weights. These actions were not sampled from the policy
being trained and no importance ratio or clip bounds their term: minimising -(r - b) log pi with r - b < 0
drives log pi to -inf. So the default is no baseline (weights r >= 0), and when one is chosen a negatively
weighted token stops getting gradient once its log-prob reaches `train.offline.negative_floor`
(losses.floored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from swirl.store import Store
from swirl.training.config import OfflineSection, TrainConfig
from swirl.training.data import TrainData, TrainInput
from swirl.training.objectives.base import WeightedLikelihood, logged_actions


class SwirlOffline(WeightedLikelihood):
    name = "swirl_offline"

    def load(self, store: Store, inputs: Sequence[TrainInput], cfg: TrainConfig) -> TrainData:
        return logged_actions(store, inputs, cfg, lambda rows, summary: offline_weights(rows, cfg, summary))

    def negative_floor(self, cfg: TrainConfig) -> float | None:
        return cfg.offline.negative_floor


def offline_weights(rows: list[dict[str, Any]], cfg: TrainConfig, summary: dict[str, Any]) -> np.ndarray:
    """Each kept action's advantage (aligned with `rows`); adds the mean reward and the advantages' spread to
    `summary`. All advantages 0 is refused: nothing would be learned."""
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
    return adv


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
