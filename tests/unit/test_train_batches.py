"""Loss masks, loss coefficients and micro-batch planning (swirl/training/batches.py) and the KL estimators.

The loss mask is tested on a hand-written trajectory; the coefficients against numbers computed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from swirl.training.batches import (
    Example,
    assign_coefficients,
    collate,
    micro_batches,
    naive_expand,
    plan_micro_batches,
    prefix_shared,
)

# A hand-written trajectory of 20 tokens:
#   0-4 prompt | 5-7 action 0 | 8-9 observation | 10-12 action 1 (filtered out) | 13-14 observation
#   | 15-17 action 2 | 18-19 template tokens after the last action
TOKENS = np.arange(100, 120, dtype=np.int32)
SPANS = [(5, 8), (10, 13), (15, 18)]


def _hand_example(**kw) -> Example:
    args = {
        "key": "traj-hand",
        "token_ids": TOKENS,
        "spans": SPANS,
        "kept": [2, 0],
        "weights": [-0.5, 1.0],
        "group": 0,
    }
    args.update(kw)
    return Example(**args)


# ------------------------------------------------------------------------------------------------------------
# Loss masks: prefix-shared and naive layouts of the hand-written trajectory


def test_prefix_shared_hand_written_trajectory():
    (s,) = prefix_shared([_hand_example()])
    np.testing.assert_array_equal(s.ids, np.arange(100, 118))  # cut after the last kept action (token 17)
    assert s.ids.dtype == np.int64
    np.testing.assert_array_equal(s.pos, [5, 6, 7, 15, 16, 17])  # exactly the kept actions' tokens
    np.testing.assert_array_equal(s.weight, [1.0, 1.0, 1.0, -0.5, -0.5, -0.5])  # weights follow their action
    assert len(set(s.action[:3])) == 1 and len(set(s.action[3:])) == 1 and s.action[0] != s.action[3]
    np.testing.assert_array_equal(s.group, [0] * 6)
    # Prompt, observation, filtered-action and trailing template tokens are never loss positions.
    never = set(range(5)) | {8, 9} | {10, 11, 12} | {13, 14} | {18, 19}
    assert not never & set(s.pos.tolist())


def test_prefix_shared_cut_after_last_kept_action_even_when_it_is_not_last():
    (s,) = prefix_shared([_hand_example(kept=[0], weights=[1.0])])
    np.testing.assert_array_equal(s.ids, np.arange(100, 108))
    np.testing.assert_array_equal(s.pos, [5, 6, 7])


def test_naive_expand_hand_written_trajectory():
    seqs = naive_expand([_hand_example()])
    assert len(seqs) == 2  # one per kept action, in action order
    np.testing.assert_array_equal(seqs[0].ids, TOKENS[:8])
    np.testing.assert_array_equal(seqs[0].pos, [5, 6, 7])
    np.testing.assert_array_equal(seqs[0].weight, [1.0] * 3)
    np.testing.assert_array_equal(seqs[1].ids, TOKENS[:18])
    np.testing.assert_array_equal(seqs[1].pos, [15, 16, 17])
    np.testing.assert_array_equal(seqs[1].weight, [-0.5] * 3)
    (p,) = prefix_shared([_hand_example()])
    # same action ids in both layouts
    assert seqs[0].action[0] == p.action[0] and seqs[1].action[0] == p.action[3]


def test_no_kept_action_gives_no_sequence():
    e = _hand_example(kept=[], weights=[])
    assert prefix_shared([e]) == [] and naive_expand([e]) == []


def test_action_ids_differ_across_trajectories():
    a, b = _hand_example(key="a", group=0), _hand_example(key="b", group=1)
    s = prefix_shared([a, b])
    assert not set(s[0].action) & set(s[1].action)
    np.testing.assert_array_equal(s[1].group, [1] * 6)


# ------------------------------------------------------------------------------------------------------------
# Coefficients, against hand-computed numbers
#   trajectory A (group 0): action 0 = 2 tokens, weight 1.0; action 1 = 3 tokens, weight -0.5
#   trajectory B (group 1): action 0 = 3 tokens, weight 2.0
#   8 loss tokens, 3 actions, 2 groups (A has 5 tokens, B 3)


def _coef_examples() -> list[Example]:
    a = Example("A", np.arange(1, 13, dtype=np.int32), [(3, 5), (7, 10)], [0, 1], [1.0, -0.5], group=0)
    b = Example("B", np.arange(1, 9, dtype=np.int32), [(2, 5), (6, 8)], [0], [2.0], group=1)
    return [a, b]


# (coef, kl_coef) for the 8 loss tokens in order A0 A0 A1 A1 A1 B0 B0 B0
EXPECTED = {
    # w / 8 tokens
    "token": ([0.125, 0.125, -0.0625, -0.0625, -0.0625, 0.25, 0.25, 0.25], [0.125] * 8),
    # w / (tokens of the action x 3 actions)
    "action": (
        [1 / 6, 1 / 6, -1 / 18, -1 / 18, -1 / 18, 2 / 9, 2 / 9, 2 / 9],
        [1 / 6, 1 / 6, 1 / 9, 1 / 9, 1 / 9, 1 / 9, 1 / 9, 1 / 9],
    ),
    # w / (tokens of the group x 2 groups)
    "sequence": (
        [0.1, 0.1, -0.05, -0.05, -0.05, 1 / 3, 1 / 3, 1 / 3],
        [0.1, 0.1, 0.1, 0.1, 0.1, 1 / 6, 1 / 6, 1 / 6],
    ),
}


@pytest.mark.parametrize("aggregation", ["token", "action", "sequence"])
def test_assign_coefficients_hand_computed(aggregation):
    coef, kl_coef = EXPECTED[aggregation]
    for layout in (prefix_shared, naive_expand):
        seqs = layout(_coef_examples())
        assign_coefficients(seqs, aggregation)
        np.testing.assert_allclose(np.concatenate([s.coef for s in seqs]), coef, rtol=1e-12, atol=0)
        np.testing.assert_allclose(np.concatenate([s.kl_coef for s in seqs]), kl_coef, rtol=1e-12, atol=0)
        assert abs(np.concatenate([s.kl_coef for s in seqs]).sum() - 1.0) < 1e-12  # a mean over the step


def _per_token(seqs) -> np.ndarray:
    rows = [
        (a, p, c, k) for s in seqs for a, p, c, k in zip(s.action, s.pos, s.coef, s.kl_coef, strict=False)
    ]
    return np.array(sorted(rows))


def _random_examples(rng: np.random.Generator, n: int) -> list[Example]:
    out = []
    for i in range(n):
        k = int(rng.integers(1, 8))
        pos, spans = int(rng.integers(1, 20)), []
        for _ in range(k):
            a = int(rng.integers(1, 10))
            spans.append((pos, pos + a))
            pos += a + int(rng.integers(0, 6))
        kept = sorted(rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False).tolist())
        w = rng.normal(size=len(kept)).tolist()
        out.append(Example(f"t{i}", rng.integers(0, 500, pos + 3).astype(np.int32), spans, kept, w, group=i))
    return out


@pytest.mark.parametrize("aggregation", ["token", "action", "sequence"])
def test_layouts_get_identical_per_token_coefficients(aggregation):
    ex = _random_examples(np.random.default_rng(7), 12)
    p, n = prefix_shared(ex), naive_expand(ex)
    assert len(n) > len(p)
    assign_coefficients(p, aggregation)
    assign_coefficients(n, aggregation)
    np.testing.assert_allclose(_per_token(p), _per_token(n), rtol=1e-12, atol=0)


def test_unknown_aggregation_raises():
    with pytest.raises(ValueError, match="unknown aggregation 'mean'"):
        assign_coefficients(prefix_shared(_coef_examples()), "mean")


def test_collate_requires_coefficients():
    with pytest.raises(ValueError, match="assign_coefficients"):
        collate(prefix_shared(_coef_examples()), pad_id=0)


def test_collate_right_pads_and_flattens_loss_positions():
    seqs = naive_expand([_hand_example()])  # rows of 8 and 18 tokens
    assign_coefficients(seqs, "token")
    mb = collate(seqs, pad_id=7)
    assert tuple(mb.input_ids.shape) == (2, 18)
    assert mb.input_ids[0, 8:].tolist() == [7] * 10 and mb.attention_mask[0].tolist() == [1] * 8 + [0] * 10
    assert mb.attention_mask[1].tolist() == [1] * 18
    assert mb.row.tolist() == [0, 0, 0, 1, 1, 1] and mb.pos.tolist() == [5, 6, 7, 15, 16, 17]
    assert mb.real_tokens == 26 and mb.padded_tokens == 36
    assert mb.sample_logprobs is None


# ------------------------------------------------------------------------------------------------------------
# Micro-batch planning


def _check_plan(lengths, budget, plan):
    assert sorted(i for b in plan for i in b) == list(range(len(lengths)))  # every index exactly once
    for b in plan:
        assert b, "empty micro-batch"
        assert len(b) * max(lengths[i] for i in b) <= budget or len(b) == 1


@pytest.mark.parametrize("seed", range(5))
def test_plan_micro_batches_respects_budget_and_covers_everything(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 300, size=int(rng.integers(1, 80))).tolist()
    budget = int(rng.integers(200, 2000))
    plan = plan_micro_batches(lengths, budget)
    _check_plan(lengths, budget, plan)
    assert plan == plan_micro_batches(list(lengths), budget)  # deterministic


def test_plan_micro_batches_over_long_sequence_alone():
    lengths = [50, 500, 40, 60, 30]
    plan = plan_micro_batches(lengths, 120)
    _check_plan(lengths, 120, plan)
    assert [1] in plan  # the 500-token sequence, alone
    assert all(len(b) * max(lengths[i] for i in b) <= 120 for b in plan if b != [1])


def test_plan_micro_batches_ties_keep_input_order_and_edge_cases():
    assert plan_micro_batches([10, 10, 10, 10], 20) == [[0, 1], [2, 3]]
    assert plan_micro_batches([], 100) == []
    assert plan_micro_batches([5], 1) == [[0]]


def test_micro_batches_keep_every_loss_token():
    ex = _random_examples(np.random.default_rng(3), 10)
    seqs = naive_expand(ex)
    assign_coefficients(seqs, "action")
    mbs = micro_batches(seqs, token_budget=64, pad_id=0)
    assert len(mbs) > 1
    assert sum(len(mb.pos) for mb in mbs) == sum(len(s.pos) for s in seqs)
    assert abs(sum(float(mb.kl_coef.double().sum()) for mb in mbs) - 1.0) < 1e-6
    for mb in mbs:
        b, t = mb.input_ids.shape
        assert b * t <= 64 or b == 1
        assert mb.real_tokens == int(mb.attention_mask.sum())


# ------------------------------------------------------------------------------------------------------------
# Example validation names the trajectory


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"spans": [(5, 8), (10, 21)]}, r"action span 1 = \[10, 21\)"),  # past the end
        ({"spans": [(0, 3), (10, 13)]}, r"action span 0 = \[0, 3\)"),  # no token before the action
        ({"spans": [(5, 8), (7, 12)]}, r"action span 1 = \[7, 12\)"),  # overlaps the previous one
        ({"spans": [(10, 13), (5, 8)]}, r"action span 1 = \[5, 8\)"),  # out of order
        ({"spans": [(5, 3)]}, r"action span 0 = \[5, 3\)"),  # end before start
        ({"spans": [(5, 8)], "kept": [0, 1], "weights": [1.0, 1.0]}, "kept action 1 but only 1 actions"),
        ({"kept": [0, -1], "weights": [1.0, 1.0]}, "kept action -1"),
        ({"kept": [0, 2], "weights": [1.0]}, "2 kept actions but 1 weights"),
    ],
)
def test_example_validation_names_the_trajectory(kw, match):
    kw = {"spans": SPANS, "kept": [0], "weights": [1.0], **kw}
    with pytest.raises(ValueError, match=match) as err:
        Example(key="traj-bad-42", token_ids=TOKENS, group=0, **kw)
    assert "traj-bad-42" in str(err.value)


# ------------------------------------------------------------------------------------------------------------
# KL estimators


def test_kl_estimates_literal_numbers():
    import torch

    from swirl.training.losses import kl_estimate

    logp = torch.tensor([-1.0, -2.0, -0.5, -3.0])
    ref = torch.tensor([-1.5, -2.0, 0.0, -1.0])  # d = logp - ref = [0.5, 0, -0.5, -2]
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([0.5, 0.0, -0.5, -2.0]))
    torch.testing.assert_close(kl_estimate(logp, ref, "k2"), torch.tensor([0.125, 0.0, 0.125, 2.0]))
    # exp(-d) + d - 1
    torch.testing.assert_close(
        kl_estimate(logp, ref, "k3"),
        torch.tensor([0.10653066, 0.0, 0.14872127, 4.38905610]),
        rtol=1e-6,
        atol=1e-7,
    )
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl_estimate(logp, ref, "k4")


def test_k3_is_non_negative_and_unbiased_kl():
    import torch

    from swirl.training.losses import kl_estimate

    g = torch.Generator().manual_seed(0)
    logp, ref = -5 * torch.rand(10_000, generator=g), -5 * torch.rand(10_000, generator=g)
    assert (kl_estimate(logp, ref, "k3") >= 0).all()
    assert (kl_estimate(logp, ref, "k2") >= 0).all()
    # On samples from pi, E[k1] = E[k3] = KL(pi || ref): two categorical distributions.
    p = torch.tensor([0.5, 0.3, 0.2]).double()
    q = torch.tensor([0.2, 0.2, 0.6]).double()
    a = torch.multinomial(p, 200_000, replacement=True, generator=g)
    kl = float((p * (p / q).log()).sum())
    for kind in ("k1", "k3"):
        est = float(kl_estimate(p.log()[a], q.log()[a], kind).mean())
        assert abs(est - kl) < 0.01, (kind, est, kl)
