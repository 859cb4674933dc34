"""The objectives (docs/method.md §1.4), as one formula over per-token coefficients.

All three objectives minimise, over an optimizer step's loss tokens t (see `batches.assign_coefficients`):

    loss = - sum_t coef_t * log pi(a_t | s_t)  +  beta * sum_t kl_coef_t * KL_t

- sft:            coef = normaliser                      (weight 1 on every kept action token)
- swirl_offline:  coef = (reward - baseline) * normaliser   on the logged actions; a token with coef < 0 (a
                  logged action worse than the baseline) stops getting gradient once its log pi is at or
                  below `train.offline.negative_floor` (`floored`): no importance ratio bounds the push
                  otherwise, and -coef * log pi falls without bound as log pi -> -inf
- swirl:          coef = (reward - mean reward of the state's m samples) * normaliser   on sampled actions
                  (REINFORCE with a per-state baseline; its gradient is -advantage * grad log pi)

KL_t is estimated on the trained tokens from d = log pi - log pi_ref, pi_ref = the policy training started
from: the frozen copy of `train.lora.init_adapter` (a warm-up's or an earlier round's adapter; the train stage
fills it from the policy's adapter) when there is one, else the base model with the adapter disabled
(`swirl.models.value.reference_policy`, OREO's reference too). The tokens are sampled from pi and the loss
treats that sampling as fixed, so what matters is each estimator's expected *gradient* (Σ_x pi(x) grad
est(x)), not its expected value:

- k2 = d^2 / 2 (the default): expected gradient = grad KL(pi || pi_ref), the penalty the method asks for;
- k1 = d: a value estimate of KL(pi || pi_ref) only; its expected gradient is zero (E_pi[grad log pi] = 0),
  so as a loss it penalises nothing in expectation (only adds noise);
- k3 = exp(-d) + d - 1: a non-negative value estimate of KL(pi || pi_ref), but its expected gradient is
  grad KL(pi_ref || pi), the reverse (mass-covering) direction.

tests/unit/test_method_fixes.py checks all three against autograd on exact KLs of a small categorical
distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from swirl.models.value import reference_policy
from swirl.training.batches import MicroBatch

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel


def token_logprobs(model: PeftModel | PreTrainedModel, mb: MicroBatch) -> torch.Tensor:
    """log pi(ids[pos] | ids[:pos]) at the micro-batch's loss positions: [N], float32.

    The LM head runs only on the hidden states that predict a loss token (most tokens are prompt and
    observation), so memory is O(N x vocab), not O(B x T x vocab)."""
    import torch

    from swirl.training.lm_forward import position_logits

    logits = position_logits(model)(mb.input_ids, mb.attention_mask, mb.row, mb.pos)  # [N, V]
    target = mb.input_ids[mb.row, mb.pos]  # [N]
    return torch.log_softmax(logits, dim=-1).gather(-1, target[:, None]).squeeze(-1)  # [N]


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token KL penalty on tokens sampled from (or logged under) pi, d = logp - ref_logp (see the module
    doc): k2 = d^2 / 2, whose expected gradient is grad KL(pi || pi_ref); k1 = d (value estimate only, zero
    expected gradient); k3 = exp(-d) + d - 1 (expected gradient = grad KL(pi_ref || pi))."""
    import torch

    d = logp - ref_logp
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d * d
    if kind == "k3":
        return torch.exp(-d) + d - 1.0
    raise ValueError(f"unknown KL estimator {kind!r}; choose k1, k2 or k3")


@dataclass
class LossParts:
    """A micro-batch's share of the step loss (objectives/base.py: `Parts`)."""

    loss: torch.Tensor  # scalar with grad: this micro-batch's share of the step loss
    policy: float  # -sum(coef * logp)
    kl: float  # sum(kl_coef * KL) (the step's mean KL once summed over micro-batches)
    logp_sum: float  # sum(kl_coef * logp): mean log-prob of the trained tokens over the step
    drift_sum: float  # sum |logp - sampler logp| (0 without sampler log-probs)
    drift_max: float
    tokens: int


def floored(logp: torch.Tensor, coef: torch.Tensor, floor: float | None) -> torch.Tensor:
    """`logp` [N], except that a token with a negative coefficient whose log-prob is at or below `floor` keeps
    its value but gets no gradient: a logged action worse than the baseline is pushed down until its tokens'
    probabilities reach exp(floor), then left alone. None: no floor (the push is unbounded)."""
    import torch

    if floor is None:
        return logp
    return torch.where((coef < 0) & (logp.detach() <= floor), logp.detach(), logp)


def micro_batch_loss(
    model: PeftModel,
    mb: MicroBatch,
    beta: float = 0.0,
    kl_kind: str = "k2",
    negative_floor: float | None = None,
) -> LossParts:
    """This micro-batch's part of the step loss (coefficients are normalised over the whole step, so the
    step's gradient is the sum of its micro-batches' gradients: gradient accumulation is exact). The KL's
    reference is the policy training started from (the module doc); `negative_floor`: see `floored`."""
    import torch

    logp = token_logprobs(model, mb)  # [N]
    policy = -(mb.coef * floored(logp, mb.coef, negative_floor)).sum()
    kl = torch.zeros((), device=logp.device)
    if beta > 0 or mb.meta.get("measure_kl"):
        with torch.no_grad(), reference_policy(model):  # the starting adapter, or the base
            ref = token_logprobs(model, mb)  # [N]
        kl = (mb.kl_coef * kl_estimate(logp, ref, kl_kind)).sum()
    loss = policy + beta * kl if beta > 0 else policy
    drift = (logp.detach() - mb.sample_logprobs).abs() if mb.sample_logprobs is not None else None
    return LossParts(
        loss=loss,
        policy=float(policy.detach()),
        kl=float(kl.detach()),
        logp_sum=float((mb.kl_coef * logp.detach()).sum()),
        drift_sum=float(drift.sum()) if drift is not None else 0.0,
        drift_max=float(drift.max()) if drift is not None and drift.numel() else 0.0,
        tokens=int(logp.numel()),
    )
