"""The training objectives, one module each behind one small interface (base.py), chosen once per run by
`objective_for`.

An objective decides what one training item is (`load`: the kept steps become weighted logged actions, whole
trajectories, or states to sample from), how an optimizer step's sequences are made from its items
(`sequences`), and the loss of a micro-batch. The loop (loop.py) does the rest. A new objective is one module
here, its entry in `OBJECTIVES` and its name in `TrainConfig.objective`.

- `sft` (sft.py): the kept actions, weight 1.
- `swirl_offline` (swirl_offline.py): the kept actions, weighted by reward minus baseline (`train.offline`).
- `swirl` (swirl.py): actions sampled from the current policy at the kept states, scored by the reward model,
  weighted by reward minus the state's mean (it needs a sampler engine and a reward model).
- `oreo` (oreo.py): whole trajectories with their 0/1 outcomes; a value model (its own adapter and head on the
  same base) and the policy trained together through the soft Bellman equation.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence

from swirl.store import Store
from swirl.training.config import Objective as ObjectiveName
from swirl.training.config import TrainConfig
from swirl.training.data import TrainData, TrainInput
from swirl.training.objectives.base import Objective, Step
from swirl.training.objectives.oreo import VALUE_DIR, Oreo
from swirl.training.objectives.sft import SFT
from swirl.training.objectives.swirl import Swirl
from swirl.training.objectives.swirl_offline import SwirlOffline

__all__ = ["OBJECTIVES", "VALUE_DIR", "Objective", "Step", "load_train_data", "objective_for"]

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (SFT, SwirlOffline, Swirl, Oreo)}
assert set(OBJECTIVES) == set(typing.get_args(ObjectiveName)), "every configurable objective has a module"


def objective_for(cfg: TrainConfig) -> Objective:
    return OBJECTIVES[cfg.objective]()


def load_train_data(store: Store, inputs: Sequence[TrainInput], cfg: TrainConfig) -> TrainData:
    """The training items of `cfg.objective` from the filter stage's kept steps."""
    return objective_for(cfg).load(store, inputs, cfg)
