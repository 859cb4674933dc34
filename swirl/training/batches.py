"""Training sequences, loss coefficients and micro-batches (docs/design.md §2, prefix-shared training).

A trajectory's K sub-trajectories share one token sequence, so one sequence per trajectory with per-token
weights on its kept actions gives exactly the loss and gradient of K separate (state, action) sequences
(causal attention). `prefix_shared` builds those; `naive_expand` builds the K separate ones and exists only as
the test oracle.

Loss masks are built here and nowhere else: a loss position is a token of a kept action (the stored
`action_spans`); prompt, template and observation tokens are never loss positions. Every loss position carries
the ids of its action and of its aggregation group, so the loss of a set of sequences does not depend on how
they are laid out (shared prefix or not, which micro-batch, which padding): `assign_coefficients` turns
weights into per-token coefficients normalised over the whole optimizer step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class Example:
    """One stored trajectory as training input: its token ids, action spans, and the actions training
    keeps."""

    key: str  # trajectory_id
    token_ids: np.ndarray  # int32 [L]
    spans: list[tuple[int, int]]  # [start, end) of every action
    kept: list[int]  # indices of the kept actions
    weights: list[float]  # one per kept action (1 for sft; the advantage for swirl_offline)
    group: int = 0  # aggregation group id ("sequence" aggregation): the trajectory's index

    def __post_init__(self) -> None:
        if len(self.kept) != len(self.weights):
            raise ValueError(
                f"trajectory {self.key!r}: {len(self.kept)} kept actions but {len(self.weights)} weights"
            )
        n = len(self.token_ids)
        prev = 0
        for i, (a, b) in enumerate(self.spans):
            if not (1 <= a <= b <= n) or a < prev:
                raise ValueError(
                    f"trajectory {self.key!r}: action span {i} = [{a}, {b}) is not inside its {n} token ids "
                    "in order; the trajectories table is inconsistent (regenerate it)"
                )
            prev = b
        if len(set(self.kept)) != len(self.kept):
            raise ValueError(
                f"trajectory {self.key!r}: kept actions {self.kept} repeat an action (it would count twice)"
            )
        for k in self.kept:
            if not 0 <= k < len(self.spans):
                raise ValueError(
                    f"trajectory {self.key!r}: kept action {k} but only {len(self.spans)} actions"
                )


@dataclass
class Seq:
    """One row of a micro-batch: token ids and its loss positions (index p: predict ids[p] from ids[:p])."""

    ids: np.ndarray  # int64 [T]
    pos: np.ndarray  # int64 [N] positions of loss tokens, each >= 1
    action: np.ndarray  # int64 [N] global action id of each loss token
    group: np.ndarray  # int64 [N] aggregation group id of each loss token
    weight: np.ndarray  # float64 [N] the token's action weight (1, a reward, an advantage)
    sample_logprobs: np.ndarray | None = (
        None  # float32 [N] the sampler's log-probs (swirl), for the drift check
    )
    coef: np.ndarray | None = (
        None  # float64 [N] loss coefficient (weight x normaliser), set by assign_coefficients
    )
    kl_coef: np.ndarray | None = None  # float64 [N] KL coefficient (normaliser only)

    def __len__(self) -> int:
        return len(self.ids)


def _action_id(example_idx: int, action_idx: int) -> int:
    # unique per (example, action) within a step's list of examples
    return example_idx * 1_000_003 + action_idx


def prefix_shared(examples: Sequence[Example]) -> list[Seq]:
    """One sequence per trajectory, cut after its last kept action (later tokens cannot affect the loss)."""
    out = []
    for e_idx, e in enumerate(examples):
        kept = sorted(zip(e.kept, e.weights, strict=True))
        if not kept:
            continue
        pos, act, w = [], [], []
        for k, wk in kept:
            a, b = e.spans[k]
            pos.append(np.arange(a, b))
            act.append(np.full(b - a, _action_id(e_idx, k)))
            w.append(np.full(b - a, wk, dtype=np.float64))
        end = e.spans[kept[-1][0]][1]
        p = np.concatenate(pos).astype(np.int64)
        out.append(
            Seq(
                np.asarray(e.token_ids[:end], dtype=np.int64),
                p,
                np.concatenate(act).astype(np.int64),
                np.full(len(p), e.group, dtype=np.int64),
                np.concatenate(w),
            )
        )
    return out


def naive_expand(examples: Sequence[Example]) -> list[Seq]:
    """The test oracle: one (state, action) sequence per kept action, state = every token before the
    action."""
    out = []
    for e_idx, e in enumerate(examples):
        for k, wk in sorted(zip(e.kept, e.weights, strict=True)):
            a, b = e.spans[k]
            out.append(
                Seq(
                    np.asarray(e.token_ids[:b], dtype=np.int64),
                    np.arange(a, b, dtype=np.int64),
                    np.full(b - a, _action_id(e_idx, k), dtype=np.int64),
                    np.full(b - a, e.group, dtype=np.int64),
                    np.full(b - a, wk, dtype=np.float64),
                )
            )
    return out


def assign_coefficients(seqs: Sequence[Seq], aggregation: str) -> None:
    """Set each loss token's coefficients so that, over all `seqs` (one optimizer step):

    loss = -sum(coef * log p) + beta * sum(kl_coef * kl)

    token:    coef = w / (number of loss tokens)
    action:   coef = w / (tokens of its action x number of actions)
    sequence: coef = w / (tokens of its group x number of groups)
    kl_coef is the same with w = 1. An action (or group) split over several rows is still one action (or
    group).
    """
    if aggregation not in ("token", "action", "sequence"):
        raise ValueError(f"unknown aggregation {aggregation!r}; choose token, action or sequence")
    if not seqs:
        return
    ids = np.concatenate([s.action if aggregation == "action" else s.group for s in seqs])
    if aggregation == "token":
        norm = np.full(len(ids), 1.0 / max(len(ids), 1))
    else:
        uniq, inv, counts = np.unique(ids, return_inverse=True, return_counts=True)
        norm = 1.0 / (counts[inv] * len(uniq))
    i = 0
    for s in seqs:
        n = len(s.pos)
        s.kl_coef = norm[i : i + n]
        s.coef = s.weight * s.kl_coef
        i += n


@dataclass
class MicroBatch:
    """Padded rows (right padding) and the flat loss positions into them."""

    input_ids: torch.Tensor  # long [B, T]
    attention_mask: torch.Tensor  # long [B, T]
    row: torch.Tensor  # long [N] row of each loss token
    pos: torch.Tensor  # long [N] position of each loss token (predicted from position pos - 1)
    coef: torch.Tensor  # float32 [N]
    kl_coef: torch.Tensor  # float32 [N]
    weight: torch.Tensor  # float32 [N]
    sample_logprobs: torch.Tensor | None = None  # float32 [N]
    action: torch.Tensor | None = None  # long [N] action id of each loss token (its span, as in Seq.action)
    real_tokens: int = 0  # non-padding tokens
    padded_tokens: int = 0  # B x T
    meta: dict = field(default_factory=dict)


def plan_micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group sequence indices into micro-batches of at most `token_budget` padded tokens (rows x longest row):
    sorted by length so rows of similar length share a batch (little padding); a sequence longer than the
    budget gets a micro-batch of its own. Deterministic: ties keep their input order."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) + 1) * longest > token_budget:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def collate(seqs: Sequence[Seq], pad_id: int, device: torch.device | str = "cpu") -> MicroBatch:
    """Right-pad `seqs` into one micro-batch (their coefficients must be set)."""
    import torch

    if any(s.coef is None for s in seqs):
        raise ValueError("collate: call assign_coefficients on the step's sequences first")
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.from_numpy(s.ids)
        mask[r, : len(s)] = 1

    def cat(xs: list[np.ndarray], dt: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(xs)).to(dt)

    row = cat([np.full(len(s.pos), r) for r, s in enumerate(seqs)], torch.long)
    have_lp = all(s.sample_logprobs is not None for s in seqs)
    return MicroBatch(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        row=row.to(device),
        pos=cat([s.pos for s in seqs], torch.long).to(device),
        coef=cat([s.coef for s in seqs], torch.float32).to(device),
        kl_coef=cat([s.kl_coef for s in seqs], torch.float32).to(device),
        weight=cat([s.weight for s in seqs], torch.float32).to(device),
        sample_logprobs=cat([s.sample_logprobs for s in seqs], torch.float32).to(device) if have_lp else None,
        action=cat([s.action for s in seqs], torch.long).to(device),
        real_tokens=int(sum(len(s) for s in seqs)),
        padded_tokens=len(seqs) * t,
    )


def micro_batches(
    seqs: Sequence[Seq], token_budget: int, pad_id: int, device: torch.device | str = "cpu"
) -> list[MicroBatch]:
    return [
        collate([seqs[i] for i in b], pad_id, device)
        for b in plan_micro_batches([len(s) for s in seqs], token_budget)
    ]
