"""`sft`: supervised fine-tuning on the kept actions, each weighted 1."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from swirl.store import Store
from swirl.training.config import TrainConfig
from swirl.training.data import TrainData, TrainInput
from swirl.training.objectives.base import WeightedLikelihood, logged_actions


class SFT(WeightedLikelihood):
    name = "sft"

    def load(self, store: Store, inputs: Sequence[TrainInput], cfg: TrainConfig) -> TrainData:
        return logged_actions(store, inputs, cfg, lambda rows, summary: np.ones(len(rows)))
