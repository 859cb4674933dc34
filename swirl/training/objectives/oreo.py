"""`oreo` (docs/method.md §2): whole trajectories (every action, observations masked out), each with its
outcome R in {0, 1}; a value model (adapter `value` + a zero-initialised head on the same base) and the policy
trained together through the soft Bellman equation in telescoped form,

    V(s_t) = R - beta * sum_{i >= t} logratio_i,      logratio_i = log pi(a_i | s_i) - log pi_ref(a_i | s_i)

- value loss:  L_V  = mean_t ( V(s_t) - R + beta * sg[sum_{i >= t} logratio_i] )^2
- policy loss: L_pi = mean_t ( sg[V(s_t)] - R + beta * logratio_t + beta * sg[sum_{i > t} logratio_i] )^2
                      + alpha * mean_t KL(pi(.|s_t) || pi_ref(.|s_t))      (the whole vocabulary)

States and actions are the agent's tokens only: the loss positions of a sequence are the tokens of its
actions (batches.py builds them from the stored action spans), so prompt, template and observation tokens are
in neither sum. `level` token: every action token is an action; step: an action span is one action (its
log-ratio is the sum of its tokens', its state the prefix before the span). Every mean over t is a
trajectory's mean over its own states, then the mean over the optimizer step's trajectories: `coef` carries
1 / (trajectories in the step) on each token, and the functions here divide by the row's number of states.

The loss functions take tensors and floats only; `oreo_micro_batch` runs the three models (policy, value,
reference) on a micro-batch and feeds them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from swirl.models.value import VALUE_ADAPTER, prefix_values, reference_policy, using_adapter
from swirl.store import Store
from swirl.training.batches import MicroBatch, Seq, prefix_shared
from swirl.training.config import TrainConfig
from swirl.training.data import TrainData, TrainInput, read_kept_steps, trajectory_examples
from swirl.training.metrics import Metrics
from swirl.training.objectives.base import ParamGroup, Step

if TYPE_CHECKING:
    import torch
    from peft import PeftModel

VALUE_DIR = "value"  # the value model beside the policy adapter in a train output


@dataclass
class OreoParts:
    """A micro-batch's share of the losses (objectives/base.py: `Parts`)."""

    loss: torch.Tensor  # policy loss + alpha * KL (the value loss's backward has run: `oreo_micro_batch`)
    value_loss: float
    policy_loss: float  # without the KL term
    kl: float  # the step's mean KL(pi || pi_ref) once summed over micro-batches
    value_mean: float  # mean V over the states (same weighting as the losses)
    logratio_mean: float  # mean log pi / pi_ref over the action tokens
    tokens: int


class Oreo:
    """A value model and the policy trained together on whole judged trajectories (the module doc)."""

    name = "oreo"
    samples = False
    parts = OreoParts
    shows = Metrics(  # what `sequences`, `loss_metrics` and the value group's clipping report
        ("loss", "value_loss", "reward_mean", "kl"),
        ("policy_loss", "value_mean", "logratio_mean", "value_grad_norm"),
    )

    def load(self, store: Store, inputs: Sequence[TrainInput], cfg: TrainConfig) -> TrainData:
        kept = read_kept_steps(store, inputs)
        examples, too_long = trajectory_examples(kept, cfg)
        rewards = np.array([e.weights[0] for e in examples])
        summary = {
            **kept.summary(),
            "examples": len(examples),
            "dropped_too_long": too_long,
            "reward_mean": float(rewards.mean()) if len(rewards) else 0.0,
        }
        if len(rewards) and rewards.min() == rewards.max():
            # Not an error: a round whose trajectories all failed (or all succeeded) is a legitimate result
            # of generation, and the KL-regularised losses still train; the value model cannot rank states.
            summary["warning"] = (
                f"all {len(rewards)} trajectories have outcome {rewards[0]:g}: the value model cannot tell "
                "good states from bad ones (train on correct and incorrect trajectories: filter.strategy "
                "none or process)"
            )
            logging.getLogger("swirl.training").warning("train (oreo): %s", summary["warning"])
        return TrainData(examples=examples, summary=summary)

    def per_step(self, cfg: TrainConfig) -> int:
        return cfg.batch_size

    def sequences(self, s: Step) -> tuple[list[Seq], dict[str, float]]:
        seqs = prefix_shared([s.data.examples[i] for i in s.items])  # one row per trajectory, weight = R
        rewards = [float(q.weight[0]) for q in seqs]
        return oreo_coefficients(seqs), {"reward_mean": float(np.mean(rewards)) if rewards else 0.0}

    def build(self, model: PeftModel, cfg: TrainConfig) -> list[ParamGroup]:
        """The value adapter and head beside the policy's; with an initial adapter, a frozen copy of it as the
        reference (the paper's reference is the SFT model training starts from)."""
        from swirl.models.value import add_reference, add_value_model, value_parameters

        policy = [p for p in model.parameters() if p.requires_grad]
        add_value_model(model, cfg.lora.peft_config())
        if cfg.lora.init_adapter:
            add_reference(model, cfg.lora.init_adapter)
        value = [p for _, p in value_parameters(model)]
        return [
            ("policy", policy, cfg.learning_rate),
            ("value", value, cfg.oreo.value_learning_rate or cfg.learning_rate),
        ]

    def loss(self, model: PeftModel, mb: MicroBatch, cfg: TrainConfig) -> OreoParts:
        o = cfg.oreo
        return oreo_micro_batch(model, mb, o.beta, o.kl_alpha, o.level)

    def loss_metrics(
        self, sums: dict[str, float], seqs: list[Seq], step: int, cfg: TrainConfig
    ) -> dict[str, float]:
        return {
            "loss": sums["policy_loss"] + cfg.oreo.kl_alpha * sums["kl"],  # the policy's loss
            "policy_loss": sums["policy_loss"],
            "value_loss": sums["value_loss"],
            "kl": sums["kl"],
            "value_mean": sums["value_mean"],
            "logratio_mean": sums["logratio_mean"],
        }

    def save(self, model: PeftModel, out_dir: str) -> None:
        from swirl.models.value import save_value_model

        save_value_model(model, os.path.join(out_dir, VALUE_DIR))


def oreo_coefficients(seqs: list[Seq]) -> list[Seq]:
    """Each trajectory weighs 1 / (trajectories in the step) (the losses average its states); R = 0
    trajectories teach the value model too: none is dropped."""
    for q in seqs:
        q.coef = np.full(len(q.pos), 1.0 / len(seqs))
        q.kl_coef = q.coef
    return seqs


# ---------------------------------------------------------------------------------------------- losses
def suffix_sums(x: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
    """sum_{i >= t} x_i within each sequence: x [S], seq [S] (a sequence's states contiguous, in order)
    -> [S]."""
    import torch

    out = torch.empty_like(x)
    for s in torch.unique(seq):
        m = seq == s
        out[m] = x[m].flip(0).cumsum(0).flip(0)
    return out


def state_coefficients(seq: torch.Tensor, seq_weight: torch.Tensor) -> torch.Tensor:
    """Per-state weights that make sum_t coef_t * x_t the step's mean over trajectories of each trajectory's
    mean over its states: seq_weight_t / (states of t's sequence). [S] -> [S]."""
    import torch

    _, inv, counts = torch.unique(seq, return_inverse=True, return_counts=True)
    return seq_weight / counts[inv]


def value_loss(
    values: torch.Tensor,
    logratio: torch.Tensor,
    reward: torch.Tensor,
    seq: torch.Tensor,
    seq_weight: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L_V over states: values [S] (with grad: the value model), logratio [S] (no grad taken), reward [S]
    (R of the state's trajectory), seq [S] (its sequence), seq_weight [S] (1 / trajectories in the step)."""
    future = suffix_sums(logratio.detach(), seq)  # [S] sum_{i >= t} logratio_i
    err = values - reward + beta * future
    return (state_coefficients(seq, seq_weight) * err * err).sum()


def policy_loss(
    values: torch.Tensor,
    logratio: torch.Tensor,
    reward: torch.Tensor,
    seq: torch.Tensor,
    seq_weight: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """L_pi without its KL term; only logratio_t carries gradient (the values and the later log-ratios are
    constants). Shapes as in `value_loss`."""
    later = suffix_sums(logratio.detach(), seq) - logratio.detach()  # [S] sum_{i > t} logratio_i
    err = values.detach() - reward + beta * logratio + beta * later
    return (state_coefficients(seq, seq_weight) * err * err).sum()


def full_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) over the vocabulary at each position: log-probs [N, V] -> [N]."""
    return (logp.exp() * (logp - ref_logp)).sum(-1)


def to_steps(
    action: torch.Tensor,
    values: torch.Tensor,
    logratio: torch.Tensor,
    reward: torch.Tensor,
    seq: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token states -> step states (an action span is one action): the value at the span's first token (the
    prefix before the span), the sum of the span's log-ratios, its reward and sequence. action [N] (the
    tokens of a span contiguous) -> [K] each."""
    import torch

    _, inv, counts = torch.unique_consecutive(action, return_inverse=True, return_counts=True)
    first = torch.cumsum(counts, 0) - counts  # [K] index of each span's first token
    step_logratio = torch.zeros(len(counts), dtype=logratio.dtype, device=logratio.device).index_add(
        0, inv, logratio
    )  # [K]
    return values[first], step_logratio, reward[first], seq[first]


def oreo_micro_batch(model: PeftModel, mb: MicroBatch, beta: float, alpha: float, level: str) -> OreoParts:
    """This micro-batch's share of both losses. `mb`: one row per trajectory, loss positions on its action
    tokens; `mb.weight` = R of the row's trajectory, `mb.coef` = 1 / (trajectories in the step).

    The value and policy losses touch disjoint weights (the value adapter and head; the policy adapter), and
    the policy loss uses the values of this same forward pass, so one optimizer step over both parameter
    groups is the paper's order: the critic's step, then the actor's with the critic's values from before
    that step.

    With gradients on, the value loss's backward runs here, while the value adapter is active, and the
    returned `loss` is the policy's only (its backward, the trainer's, runs under the policy adapter). Peft's
    active adapter is the model's state at call time, not part of the graph: with gradient checkpointing the
    value model's forward is recomputed during backward, and a backward after `using_adapter` has ended would
    recompute it under the policy adapter and give the value weights wrong gradients
    (tests/unit/test_oreo_checkpointing.py)."""
    import torch

    from swirl.training.lm_forward import lm_parts

    decoder, lm_head = lm_parts(model)
    # The shift, in one place: the action token at position p (mb.pos) is a_t, and its state s_t is the
    # prefix ids[:p], whose last token sits at p - 1. So both pi(.|s_t) and V(s_t) are read from the hidden
    # state at p - 1 (`prefix_values(..., end=p)`); reading V at p would let the value see the action it
    # judges. The next state's value (at p) is never needed: the telescoped sum replaces it.
    with torch.no_grad(), reference_policy(model):  # the starting adapter, or the base with adapters disabled
        ref_hidden = decoder(input_ids=mb.input_ids, attention_mask=mb.attention_mask).last_hidden_state
        ref_logp = torch.log_softmax(lm_head(ref_hidden[mb.row, mb.pos - 1]).float(), -1)  # [N, V]
    hidden = decoder(input_ids=mb.input_ids, attention_mask=mb.attention_mask).last_hidden_state  # [B, T, H]
    logp = torch.log_softmax(lm_head(hidden[mb.row, mb.pos - 1]).float(), -1)  # [N, V]
    with using_adapter(model, VALUE_ADAPTER):
        values = prefix_values(
            model, model.value_head, mb.input_ids, mb.attention_mask, mb.row, mb.pos
        )  # [N] V(s_t)
        parts, v_loss = oreo_losses(mb, logp, ref_logp, values, beta, alpha, level)
        if v_loss.requires_grad:
            v_loss.backward()  # its graph is the value model's alone: the policy loss takes sg[V]
    return parts


def oreo_losses(
    mb: MicroBatch,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    values: torch.Tensor,
    beta: float,
    alpha: float,
    level: str,
) -> tuple[OreoParts, torch.Tensor]:
    """Both losses and the KL term from the models' outputs at the action tokens' states: `logp` and
    `ref_logp` [N, V] (pi(.|s_t) and pi_ref(.|s_t)), `values` [N] (V(s_t)). Returns the parts (`loss`: the
    policy's, with its KL term) and the value loss as a tensor, for its own backward."""
    target = mb.input_ids[mb.row, mb.pos]  # [N] the action tokens a_t
    logratio = (logp - ref_logp).gather(-1, target[:, None]).squeeze(-1)  # [N]
    kl = full_kl(logp, ref_logp)  # [N]
    token_coef = state_coefficients(mb.row, mb.coef)  # [N] a row's mean over its tokens, then the batch's
    # the states of the Bellman sums: every action token (token level) or every action span (step level)
    s_values, s_logratio, s_reward, s_seq = values, logratio, mb.weight, mb.row  # [S] each
    if level == "step":
        s_values, s_logratio, s_reward, s_seq = to_steps(mb.action, values, logratio, mb.weight, mb.row)
    elif level != "token":
        raise ValueError(f"unknown oreo level {level!r}; choose token or step")
    seq_weight = _row_weight(mb, s_seq)  # [S] 1 / (trajectories in the step)
    v_loss = value_loss(s_values, s_logratio, s_reward, s_seq, seq_weight, beta)
    p_loss = policy_loss(s_values, s_logratio, s_reward, s_seq, seq_weight, beta)
    kl_term = (token_coef * kl).sum()
    parts = OreoParts(
        loss=p_loss + alpha * kl_term,
        value_loss=float(v_loss.detach()),
        policy_loss=float(p_loss.detach()),
        kl=float(kl_term.detach()),
        value_mean=float((state_coefficients(s_seq, seq_weight) * s_values.detach()).sum()),
        logratio_mean=float((token_coef * logratio.detach()).sum()),
        tokens=int(target.numel()),
    )
    return parts, v_loss


def _row_weight(mb: MicroBatch, rows: torch.Tensor) -> torch.Tensor:
    """1 / (trajectories in the step) for each state of `rows` (every token of a row carries it)."""
    import torch

    per_row = torch.zeros(int(mb.row.max()) + 1, dtype=mb.coef.dtype, device=mb.coef.device)
    per_row[mb.row] = mb.coef
    return per_row[rows]
