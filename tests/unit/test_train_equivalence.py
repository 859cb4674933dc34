"""Acceptance test of prefix-shared training (docs/design.md §2): on random trajectories with K = 1..10
actions, filtered-out steps and observation tokens, the prefix-shared loss and LoRA gradients equal the naive
expansion's within 1e-5 (relative, fp32), for every aggregation and with a KL penalty. Negative controls show
the comparison can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

# Imported after the importorskip calls: without torch (swirl.training.losses imports it) or peft the
# module is skipped instead of failing at collection.
from swirl.training.batches import (  # noqa: E402
    Example,
    assign_coefficients,
    collate,
    micro_batches,
    naive_expand,
    plan_micro_batches,
    prefix_shared,
)
from swirl.training.losses import micro_batch_loss, token_logprobs  # noqa: E402

TOL = 1e-5
PREFIX_BUDGET = 1024  # tokens per micro-batch: several trajectories per row group
NAIVE_BUDGET = 400  # smaller: the naive side is split over many micro-batches, with padding


def random_trajectories(vocab: int, seed: int) -> list[Example]:
    """One trajectory for each K = 1..10: prompt, then K x (action, observation/template tokens); a random
    non-empty subset of actions kept, with random weights (some negative). At most ~200 tokens each."""
    rng = np.random.default_rng(seed)
    out = []
    for i, k in enumerate(range(1, 11)):
        pos, spans = int(rng.integers(3, 30)), []
        for _ in range(k):
            a = int(rng.integers(1, 10))
            spans.append((pos, pos + a))
            pos += a + int(rng.integers(0, 9))  # observation / template tokens (possibly none)
        kept = sorted(rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False).tolist())
        weights = rng.uniform(-1.0, 2.0, size=len(kept)).tolist()
        ids = rng.integers(0, vocab, size=pos).astype(np.int32)
        out.append(Example(f"traj-{seed}-{k}", ids, spans, kept, weights, group=i))
    assert any(len(e.kept) < len(e.spans) for e in out), "no filtered-out step"
    return out


@pytest.fixture(scope="module")
def lora_model(tiny_model_dir):
    from swirl.models.random_lora import random_lora

    # lora_B non-zero (and large enough) so A gets a gradient and the KL term is not ~0
    model = random_lora(tiny_model_dir, std=0.1, seed=0).eval()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    return model


def run(model, seqs, budget, aggregation, beta=0.0, per_batch_norm=False, mutate=None):
    """Loss (float64 sum over micro-batches) and LoRA gradients of one optimizer step over `seqs`."""
    pad = model.config.pad_token_id
    model.zero_grad(set_to_none=True)
    plan = plan_micro_batches([len(s) for s in seqs], budget)
    if per_batch_norm:  # negative control: coefficients normalised per micro-batch instead of per step
        for b in plan:
            assign_coefficients([seqs[i] for i in b], aggregation)
    else:
        assign_coefficients(seqs, aggregation)
    mbs = [collate([seqs[i] for i in b], pad) for b in plan]
    if mutate:
        mutate(mbs)
    total = 0.0
    for mb in mbs:
        parts = micro_batch_loss(model, mb, beta=beta, kl_kind="k3")
        parts.loss.backward()
        total += float(parts.loss.detach().double())
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return total, grads, mbs


def rel_diffs(a, b):
    """Relative difference of the losses and the worst relative difference over LoRA gradient tensors."""
    (la, ga), (lb, gb) = a, b
    loss_rel = abs(la - lb) / abs(lb)
    grad_rel = {n: float((ga[n] - gb[n]).norm() / gb[n].norm()) for n in gb}
    return loss_rel, grad_rel


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("aggregation", ["token", "action", "sequence"])
def test_prefix_shared_equals_naive_expansion(lora_model, aggregation, seed):
    ex = random_trajectories(lora_model.config.vocab_size, seed)
    lp, gp, mbp = run(lora_model, prefix_shared(ex), PREFIX_BUDGET, aggregation)
    ln, gn, mbn = run(lora_model, naive_expand(ex), NAIVE_BUDGET, aggregation)
    # The layouts differ as intended: the naive side has a row per kept action, over several padded
    # micro-batches.
    assert sum(len(mb.input_ids) for mb in mbp) == len(ex)
    assert sum(len(mb.input_ids) for mb in mbn) == sum(len(e.kept) for e in ex)
    assert len(mbn) > len(mbp) >= 1 and any(mb.padded_tokens > mb.real_tokens for mb in mbn)
    assert sum(mb.real_tokens for mb in mbn) > 2 * sum(mb.real_tokens for mb in mbp)
    loss_rel, grad_rel = rel_diffs((lp, gp), (ln, gn))
    assert len(grad_rel) == 2 * 2 * 7  # 2 layers x 7 modules x (A, B)
    assert all(float(g.norm()) > 0 for g in gn.values()), (
        "a LoRA gradient is zero: the comparison would be vacuous"
    )
    assert loss_rel <= TOL, (lp, ln)
    worst = max(grad_rel, key=grad_rel.get)
    assert grad_rel[worst] <= TOL, (worst, grad_rel[worst])


def test_prefix_shared_equals_naive_expansion_with_kl(lora_model):
    ex = random_trajectories(lora_model.config.vocab_size, 2)
    lp, gp, _ = run(lora_model, prefix_shared(ex), PREFIX_BUDGET, "action", beta=0.1)
    ln, gn, _ = run(lora_model, naive_expand(ex), NAIVE_BUDGET, "action", beta=0.1)
    loss_rel, grad_rel = rel_diffs((lp, gp), (ln, gn))
    assert loss_rel <= TOL and max(grad_rel.values()) <= TOL, (loss_rel, max(grad_rel.values()))
    # The KL term is really there: with beta it changes the loss and the gradients.
    l0, g0, _ = run(lora_model, prefix_shared(ex), PREFIX_BUDGET, "action", beta=0.0)
    kl_rel, kl_grad_rel = rel_diffs((lp, gp), (l0, g0))
    assert kl_rel > 1e-3 and max(kl_grad_rel.values()) > 1e-3, (kl_rel, max(kl_grad_rel.values()))


def test_token_logprobs_match_full_forward(lora_model):
    """The oracle and the prefix path share token_logprobs: check it against the plain full-logits
    computation."""
    ex = random_trajectories(lora_model.config.vocab_size, 3)
    seqs = naive_expand(ex)
    assign_coefficients(seqs, "token")
    for mb in micro_batches(seqs, NAIVE_BUDGET, lora_model.config.pad_token_id):
        with torch.no_grad():
            got = token_logprobs(lora_model, mb)
            want = []
            for r, p in zip(mb.row.tolist(), mb.pos.tolist(), strict=False):
                n = int(mb.attention_mask[r].sum())
                logits = lora_model(input_ids=mb.input_ids[r : r + 1, :n]).logits[0]  # unpadded, one row
                want.append(torch.log_softmax(logits[p - 1], -1)[mb.input_ids[r, p]])
        torch.testing.assert_close(got, torch.stack(want), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------------------
# Negative controls: a wrong loss position, a wrong normaliser or a wrong context is caught by the same
# comparison.


def _shift_one_position(mbs):
    mbs[0].pos[0] += 1  # predict the next token instead of the action's first one


def _change_context(mbs):
    mb = mbs[-1]  # a token before the first loss position of the last micro-batch's first row (a state token)
    r = mb.row[0]
    p = int(mb.pos[mb.row == r].min())
    mb.input_ids[r, p - 2] = (mb.input_ids[r, p - 2] + 1) % 100


@pytest.mark.parametrize("control", ["shift_position", "per_micro_batch_norm", "change_context"])
def test_negative_controls_fail_the_comparison(lora_model, control):
    ex = random_trajectories(lora_model.config.vocab_size, 0)
    ref = run(lora_model, naive_expand(ex), NAIVE_BUDGET, "token")[:2]
    kw = {
        "shift_position": {"mutate": _shift_one_position},
        "per_micro_batch_norm": {"per_batch_norm": True},
        "change_context": {"mutate": _change_context},
    }[control]
    bad = run(lora_model, prefix_shared(ex), PREFIX_BUDGET // 4, "token", **kw)[:2]
    loss_rel, grad_rel = rel_diffs(bad, ref)
    assert max(grad_rel.values()) > 100 * TOL, (control, loss_rel, max(grad_rel.values()))
    if control != "change_context":  # one changed state token moves the gradient more reliably than the loss
        assert loss_rel > 10 * TOL, (control, loss_rel)
