"""What every training objective provides (`Objective`), and what the three likelihood objectives share.

The loop (loop.py) owns everything that does not depend on the objective: the policy model, the optimiser
and schedule, micro-batches and gradient accumulation, clipping, checkpoints and resume, publishing the
adapter a sampler serves. An objective supplies only what differs: its training items, each step's
sequences with their loss coefficients, the micro-batch loss and the metrics it makes of it, extra trainable
modules (oreo's value model) and what it saves beside the adapter.

`WeightedLikelihood` is the shared loss of sft, swirl_offline and swirl: the weighted log-likelihood of the
step's actions plus a KL penalty to the policy training started from (`lora.init_adapter`, else the base
model; swirl/training/losses.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from swirl.engines.base import Engine
from swirl.models.value import add_reference
from swirl.store import Store
from swirl.training.batches import MicroBatch, Seq, assign_coefficients, prefix_shared
from swirl.training.config import TrainConfig
from swirl.training.data import TrainData, TrainInput, examples_of, read_kept_steps
from swirl.training.dist import Dist
from swirl.training.losses import LossParts, micro_batch_loss
from swirl.training.metrics import Metrics
from swirl.training.rewards import RewardModel

if TYPE_CHECKING:
    import torch
    from peft import PeftModel

ParamGroup = tuple[str, list["torch.nn.Parameter"], float]  # (name, parameters, peak learning rate)


@dataclass
class Step:
    """What an objective may use to make one optimizer step's sequences."""

    cfg: TrainConfig
    data: TrainData
    items: list[int]  # indices of this step's training items (examples or states)
    step: int  # the optimizer step, from 0
    dist: Dist
    sampler: Engine | None = None  # the policy's engine (objectives that sample)
    reward: RewardModel | None = None  # scores the sampled actions (objectives that sample)
    adapter: str | None = None  # the policy adapter as it is now, published by the loop for the sampler


class Parts(Protocol):
    """A micro-batch's loss (a dataclass): the tensor `loss` is backpropagated; every other field is a number,
    summed over the step's micro-batches and ranks, except the `*_max` fields (maxima over this rank's
    micro-batches)."""

    loss: torch.Tensor


class Objective(Protocol):
    """A training objective (one module each beside this one); `objective_for` picks it by name."""

    name: ClassVar[str]
    samples: ClassVar[bool]  # samples from the current policy: needs a sampler engine and a reward model
    shows: ClassVar[Metrics]  # every metric `sequences` and `loss_metrics` report (metrics.py)
    parts: ClassVar[type[Parts]]  # what `loss` returns

    def load(self, store: Store, inputs: Sequence[TrainInput], cfg: TrainConfig) -> TrainData:
        """The training items of this objective, from the filter stage's kept steps."""
        ...

    def per_step(self, cfg: TrainConfig) -> int:
        """Training items per optimizer step."""
        ...

    def sequences(self, s: Step) -> tuple[list[Seq], dict[str, float]]:
        """The step's sequences (tokens, loss positions, weights, loss coefficients normalised over the whole
        step) and metrics about them."""
        ...

    def build(self, model: PeftModel, cfg: TrainConfig) -> list[ParamGroup]:
        """Add this objective's own trainable modules to the policy model; return the optimiser's parameter
        groups, the policy's first. Each group is clipped on its own."""
        ...

    def loss(self, model: PeftModel, mb: MicroBatch, cfg: TrainConfig) -> Parts:
        """One micro-batch's share of the step loss."""
        ...

    def loss_metrics(
        self, sums: dict[str, float], seqs: list[Seq], step: int, cfg: TrainConfig
    ) -> dict[str, float]:
        """The step's loss metrics from the summed `parts` (see loop.backward); may stop a run gone wrong."""
        ...

    def save(self, model: PeftModel, out_dir: str) -> None:
        """Write this objective's own trained modules beside the final adapter (`out_dir/adapter`)."""
        ...


# ------------------------------------------------------------- the likelihood objectives' shared parts
# what `loss_metrics` reports: the step loss (policy loss + kl_beta * kl), the mean KL estimate to the
# starting policy (0 when kl_beta is 0), the mean log-prob of the trained tokens; the policy loss alone
LIKELIHOOD = Metrics(("loss", "kl", "logp_mean"), ("policy_loss",))
WEIGHTS = Metrics((), ("weight_mean",))  # what `sequences` reports for logged actions: their mean weight


class WeightedLikelihood:
    """loss = - sum_t coef_t log pi(a_t | s_t) + kl_beta * sum_t kl_coef_t KL_t over the step's action
    tokens (losses.py): sft and swirl_offline on the logged actions (weight 1, or the advantage), swirl on
    actions sampled from the current policy. Each of them adds `load` (and swirl its sampling)."""

    samples: ClassVar[bool] = False
    shows: ClassVar[Metrics] = LIKELIHOOD + WEIGHTS
    parts: ClassVar[type[Parts]] = LossParts

    def per_step(self, cfg: TrainConfig) -> int:
        return cfg.batch_size

    def sequences(self, s: Step) -> tuple[list[Seq], dict[str, float]]:
        seqs = prefix_shared([s.data.examples[i] for i in s.items])
        w = np.concatenate([q.weight for q in seqs]) if seqs else np.zeros(0)
        return likelihood_coefficients(seqs, s.cfg), {"weight_mean": float(w.mean()) if len(w) else 0.0}

    def build(self, model: PeftModel, cfg: TrainConfig) -> list[ParamGroup]:
        """The policy adapter; with an initial adapter, a frozen copy of it beside it: the KL's reference (the
        policy training started from, as OREO's), not the raw base that disabling the adapter gives."""
        if cfg.lora.init_adapter:
            add_reference(model, cfg.lora.init_adapter)
        return [("policy", [p for p in model.parameters() if p.requires_grad], cfg.learning_rate)]

    def negative_floor(self, cfg: TrainConfig) -> float | None:
        """The log-prob below which a negative-weight token gets no gradient (losses.floored); None: none."""
        return None

    def loss(self, model: PeftModel, mb: MicroBatch, cfg: TrainConfig) -> LossParts:
        return micro_batch_loss(model, mb, cfg.kl_beta, cfg.kl_estimator, self.negative_floor(cfg))

    def loss_metrics(
        self, sums: dict[str, float], seqs: list[Seq], step: int, cfg: TrainConfig
    ) -> dict[str, float]:
        return {
            "loss": sums["policy"] + cfg.kl_beta * sums["kl"],
            "policy_loss": sums["policy"],
            "kl": sums["kl"],
            "logp_mean": sums["logp_sum"],
        }

    def save(self, model: PeftModel, out_dir: str) -> None:
        """Nothing beside the adapter."""


def logged_actions(
    store: Store,
    inputs: Sequence[TrainInput],
    cfg: TrainConfig,
    weights: Callable[[list[dict[str, Any]], dict[str, Any]], np.ndarray],
) -> TrainData:
    """The kept steps as `Example`s (one per trajectory), each kept action weighted by `weights(rows,
    summary)` (aligned with the kept rows; it may add numbers to the data summary)."""
    kept = read_kept_steps(store, inputs)
    summary = kept.summary()
    examples, too_long = examples_of(kept, weights(kept.rows, summary), cfg)
    summary.update(examples=len(examples), dropped_too_long=too_long)
    return TrainData(examples=examples, summary=summary)


def likelihood_coefficients(seqs: list[Seq], cfg: TrainConfig) -> list[Seq]:
    """Set the step's loss coefficients (normalised over the whole step by `cfg.aggregation`); without a KL
    term, drop the sequences whose weights are all 0 (no gradient: skip the compute)."""
    assign_coefficients(seqs, cfg.aggregation)
    if cfg.kl_beta == 0:
        seqs = [s for s in seqs if np.any(s.coef != 0)]
    return seqs
