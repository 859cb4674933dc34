"""Evaluation statistics and reports, checked against values worked out independently of the code.

References: the closed-form Wilson score interval (Wilson 1927) written out below; McNemar's exact test as a
two-sided binomial test on the disagreements (scipy.stats.binomtest); a plain numpy paired bootstrap.
"""

from __future__ import annotations

import math
import re
from statistics import NormalDist

import numpy as np
import pytest

from swirl.evaluation.metrics import (
    PairedComparison,
    Proportion,
    episode_stats,
    paired_comparison,
    proportion,
)
from swirl.evaluation.report import Cell, cross_task_matrix, heatmap_png, markdown_report

Z95 = NormalDist().inv_cdf(0.975)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Closed-form Wilson score interval."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def pairs(both: int, only_a: int, only_b: int, neither: int) -> tuple[list[bool], list[bool]]:
    """Aligned verdicts with the given contingency counts."""
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return a, b


# --- proportion ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (3, 10), (1, 1), (130, 200), (81, 263)])
def test_wilson_matches_closed_form(k, n):
    p = proportion([True] * k + [False] * (n - k))
    low, high = wilson(k, n)
    assert (p.successes, p.n) == (k, n)
    assert p.rate == pytest.approx(k / n)
    assert p.low == pytest.approx(low, abs=1e-9)
    assert p.high == pytest.approx(high, abs=1e-9)


def test_wilson_textbook_value():
    p = proportion([True] * 81 + [False] * 182)
    assert p.low == pytest.approx(0.2553, abs=5e-5)
    assert p.high == pytest.approx(0.3662, abs=5e-5)


def test_wilson_other_confidence():
    p = proportion([True] * 3 + [False] * 7, confidence=0.9)
    low, high = wilson(3, 10, z=NormalDist().inv_cdf(0.95))
    assert (p.low, p.high) == pytest.approx((low, high), abs=1e-9)


def test_proportion_empty_is_nan():
    p = proportion([])
    assert (p.successes, p.n) == (0, 0)
    assert math.isnan(p.rate) and math.isnan(p.low) and math.isnan(p.high)
    assert set(p.as_dict()) == {"successes", "n", "rate", "low", "high"}


# --- paired comparison --------------------------------------------------------------------------------------


def test_paired_counts_diff_and_relative_gain():
    a, b = pairs(both=8, only_a=2, only_b=6, neither=24)  # a: 10/40, b: 14/40
    c = paired_comparison(a, b)
    assert (c.n, c.only_a, c.only_b) == (40, 2, 6)
    assert (c.rate_a, c.rate_b) == pytest.approx((0.25, 0.35))
    assert c.diff == pytest.approx(0.1)
    assert c.relative_gain == pytest.approx(0.4)
    # Two-sided exact binomial: 2 * (C(8,0) + C(8,1) + C(8,2)) / 2^8 = 74 / 256
    assert c.mcnemar_p == pytest.approx(74 / 256)
    assert c.as_dict()["only_b"] == 6


def test_relative_gain_none_when_baseline_never_right():
    c = paired_comparison([False] * 5, [True, False, False, False, False])
    assert c.relative_gain is None and c.diff == pytest.approx(0.2)


@pytest.mark.parametrize("only_a,only_b", [(0, 5), (3, 3), (1, 6), (6, 1), (10, 25), (40, 7)])
def test_mcnemar_matches_binomtest(only_a, only_b):
    """Reference: scipy.stats.binomtest(min(b, c), b + c, 0.5).pvalue (McNemar's exact test)."""
    from scipy.stats import binomtest

    a, b = pairs(both=5, only_a=only_a, only_b=only_b, neither=5)
    expected = binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue
    assert paired_comparison(a, b, resamples=200).mcnemar_p == pytest.approx(expected, rel=1e-9)


def test_mcnemar_hand_computed():
    a, b = pairs(both=3, only_a=1, only_b=6, neither=2)
    # 2 * (C(7,0) + C(7,1)) / 2^7
    assert paired_comparison(a, b, resamples=200).mcnemar_p == pytest.approx(2 * (1 + 7) / 128)


def test_no_disagreement_gives_p_one_and_point_interval():
    a, b = pairs(both=12, only_a=0, only_b=0, neither=8)
    c = paired_comparison(a, b)
    assert c.mcnemar_p == 1.0
    assert (c.diff, c.diff_low, c.diff_high) == (0.0, 0.0, 0.0)


def test_constant_difference_gives_point_interval():
    c = paired_comparison([False] * 7, [True] * 7)
    assert (c.diff_low, c.diff_high) == (1.0, 1.0)


def test_bootstrap_interval_contains_diff_and_is_seeded():
    a, b = pairs(both=20, only_a=7, only_b=15, neither=58)
    c1, c2 = paired_comparison(a, b, seed=3), paired_comparison(a, b, seed=3)
    assert c1.diff_low <= c1.diff <= c1.diff_high
    assert (c1.diff_low, c1.diff_high) == (c2.diff_low, c2.diff_high)


def test_bootstrap_close_to_plain_numpy_bootstrap():
    rng = np.random.default_rng(42)
    a = rng.random(100) < 0.4
    b = np.where(rng.random(100) < 0.3, ~a, a)  # flip 30% of the verdicts
    idx = np.random.default_rng(7).integers(0, 100, size=(20_000, 100))
    diffs = b[idx].mean(axis=1) - a[idx].mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    c = paired_comparison(list(a), list(b))
    assert c.diff_low == pytest.approx(low, abs=0.02)
    assert c.diff_high == pytest.approx(high, abs=0.02)


def test_clear_improvement_excludes_zero():
    a, b = pairs(both=40, only_a=0, only_b=30, neither=30)
    c = paired_comparison(a, b)
    assert c.diff == pytest.approx(0.3)
    assert 0 < c.diff_low <= c.diff <= c.diff_high


def test_paired_rejects_bad_input():
    with pytest.raises(ValueError, match="len"):
        paired_comparison([True, False], [True])
    with pytest.raises(ValueError, match="n == 0"):
        paired_comparison([], [])


# --- episode stats ------------------------------------------------------------------------------------------


def test_episode_stats_hand_rows():
    rows = [
        {"num_actions": 4, "tool_calls": 2, "invalid_actions": 1, "stop_reason": "answer"},
        {"num_actions": 3, "tool_calls": 1, "invalid_actions": 0, "stop_reason": "max_steps"},
        {"num_actions": 5, "tool_calls": 3, "invalid_actions": 2, "stop_reason": "answer"},
    ]
    s = episode_stats(rows)
    assert s["episodes"] == 3
    assert s["actions_per_episode"] == pytest.approx(4.0)
    assert s["tool_calls_per_episode"] == pytest.approx(2.0)
    assert s["invalid_action_rate"] == pytest.approx(3 / 12)
    assert s["no_answer_rate"] == pytest.approx(1 / 3)


def test_episode_stats_edge_cases():
    s = episode_stats([{"num_actions": 0, "tool_calls": 0, "invalid_actions": 0, "stop_reason": "length"}])
    assert s["invalid_action_rate"] == 0.0 and s["no_answer_rate"] == 1.0
    empty = episode_stats([])
    assert empty["episodes"] == 0
    assert all(math.isnan(empty[k]) for k in empty if k != "episodes")


# --- report -------------------------------------------------------------------------------------------------

EPISODE = {"episodes": 40, "actions_per_episode": 3.25, "tool_calls_per_episode": 1.5,
           "invalid_action_rate": 0.05, "no_answer_rate": 0.025}  # fmt: skip


@pytest.fixture(scope="module")
def cells() -> list[Cell]:
    a, b = pairs(both=8, only_a=2, only_b=6, neither=24)  # base 10/40, trained 14/40 on gsm8k
    judged = Proportion(successes=11, n=20, rate=0.55, low=0.342, high=0.742)
    no_rel = PairedComparison(n=20, rate_a=0.0, rate_b=0.1, diff=0.1, relative_gain=None, only_a=0,
                              only_b=2, mcnemar_p=0.5, diff_low=0.0, diff_high=0.25)  # fmt: skip
    return [
        Cell("trained", "gsm8k+hotpotqa", "gsm8k", proportion(b), None, paired_comparison(a, b), EPISODE),
        Cell("base", "", "gsm8k", proportion(a), None, None, EPISODE),
        Cell("base", "", "hotpotqa", proportion([False] * 20), judged, None, EPISODE),
        Cell("other", "musique", "hotpotqa", proportion([True] * 2 + [False] * 18), judged, no_rel, EPISODE),
    ]


def test_markdown_report_strings(cells):
    md = markdown_report(cells, "eval round 1")
    assert md.startswith("# eval round 1\n")
    assert "## Accuracy per policy and dataset" in md and "## Cross-task table" in md
    assert "How to read this" in md and "Wilson" in md and "McNemar" in md and "bootstrap" in md
    lo, hi = wilson(14, 40)
    lines = md.splitlines()
    trained_row = next(line for line in lines if line.startswith("| trained | gsm8k+hotpotqa | gsm8k"))
    assert f"| 40 | 0.350 [{lo:.3f}, {hi:.3f}] (rule) |" in trained_row
    assert "| +0.100 (+40.0%) |" in trained_row
    assert "| 0.289 | 0.578 |" in trained_row  # 74/256 to 3 significant digits; Holm over 2: 2 x 74/256
    assert re.search(r"\| \[[+-]\d\.\d\d, [+-]\d\.\d\d\] \|", trained_row)
    assert "| 3.25 | 0.050 | 0.025 |" in trained_row
    other_row = next(line for line in md.splitlines() if line.startswith("| other |"))
    # no relative part when the base rate is 0; Holm: the larger p, 0.5, is raised to the smaller's 0.578
    assert "| +0.100 | [+0.00, +0.25] | 0.5 | 0.578 |" in other_row
    assert "0.550 [0.342, 0.742] (judge)" in other_row
    rows = [line for line in md.splitlines() if line.startswith(("| base |", "| trained |", "| other |"))]
    assert [r.split(" | ")[0] + "/" + r.split(" | ")[2] for r in rows[:4]] == [
        "| base/gsm8k", "| trained/gsm8k", "| base/hotpotqa", "| other/hotpotqa"]  # fmt: skip
    assert "| trained (trained on gsm8k+hotpotqa) | 0.350 (+40.0%) | — |" in md
    assert "| base | 0.250 | 0.550 |" in md


def test_holm_adjusted_by_hand():
    from swirl.evaluation.metrics import holm_adjusted

    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjusted([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjusted([]) == []


def test_cross_task_matrix(cells):
    rows, cols, values, gains = cross_task_matrix(cells)
    assert rows == ["base", "trained (trained on gsm8k+hotpotqa)", "other (trained on musique)"]
    assert cols == ["gsm8k", "hotpotqa"]
    assert values == [[0.25, 0.55], [0.35, None], [None, 0.55]]
    assert gains[0] == [None, None] and gains[2] == [None, None]
    assert gains[1][0] == pytest.approx(0.4) and gains[1][1] is None


def test_heatmap_png(cells, tmp_path):
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    path = tmp_path / "heatmap.png"
    heatmap_png(cells, str(path), "accuracy per policy and dataset")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert len(plt.get_fignums()) == before


def test_sign_flip_test_is_mcnemars_on_0_1_differences():
    from swirl.evaluation.metrics import sign_flip_p

    assert sign_flip_p([1, 1, 1, 1, 1, 0, 0]) == pytest.approx(2 / 2**5)  # McNemar 0 vs 5
    assert sign_flip_p([0, 0]) == 1.0
    # fractional differences (seed means): sign flips of (1, 0.5) give |sum| >= 1.5 in 2 of 4 patterns
    assert sign_flip_p([1.0, 0.5, 0.0]) == pytest.approx(0.5)
