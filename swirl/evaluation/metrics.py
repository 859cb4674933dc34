"""Evaluation statistics: accuracy with an interval, paired policy comparisons, episode summaries.

- `proportion`: accuracy over questions with a Wilson score interval (statsmodels).
- `paired_comparison`: a candidate policy `b` against a baseline `a` on the same questions: the absolute and
  relative gain, a paired bootstrap interval of the gain (scipy) and McNemar's exact test on the disagreements
  (statsmodels).
- `episode_stats`: how episodes went (actions, tool calls, invalid actions, episodes that never answered).

scipy and statsmodels are imported inside the functions so importing this module stays light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

NAN = float("nan")


@dataclass(frozen=True)
class Proportion:
    """`successes` of `n`, the rate and its Wilson score interval [low, high] (nan when n == 0)."""

    successes: int
    n: int
    rate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def proportion(values: Iterable[bool], confidence: float = 0.95) -> Proportion:
    """Share of true values with a Wilson score interval at `confidence`."""
    flags = [bool(v) for v in values]
    n, k = len(flags), sum(flags)
    if n == 0:
        return Proportion(successes=0, n=0, rate=NAN, low=NAN, high=NAN)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(k, n, alpha=1.0 - confidence, method="wilson")
    return Proportion(successes=k, n=n, rate=k / n, low=float(low), high=float(high))


@dataclass(frozen=True)
class PairedComparison:
    """Policy b (candidate) compared with policy a (baseline) on the same questions."""

    n: int
    rate_a: float
    rate_b: float
    diff: float  # rate_b - rate_a
    relative_gain: float | None  # diff / rate_a; None when rate_a == 0
    only_a: int  # a right, b wrong
    only_b: int  # b right, a wrong
    mcnemar_p: float  # exact two-sided McNemar test; 1.0 when there are no disagreements
    diff_low: float  # paired bootstrap percentile interval of diff
    diff_high: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_comparison(
    a: Sequence[bool],
    b: Sequence[bool],
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Compare per-question verdicts `b` with `a` (aligned by position)."""
    if len(a) != len(b):
        raise ValueError(
            f"paired_comparison needs verdicts on the same questions: len(a)={len(a)} != len(b)={len(b)}"
        )
    if len(a) == 0:
        raise ValueError("paired_comparison needs at least one question (got n == 0)")
    xa = np.asarray([bool(v) for v in a], dtype=float)
    xb = np.asarray([bool(v) for v in b], dtype=float)
    rate_a, rate_b = float(xa.mean()), float(xb.mean())
    diff = rate_b - rate_a
    only_a = int(np.sum((xa == 1) & (xb == 0)))
    only_b = int(np.sum((xa == 0) & (xb == 1)))
    low, high = paired_bootstrap_interval(xa, xb, diff, confidence, resamples, seed)
    return PairedComparison(
        n=len(xa),
        rate_a=rate_a,
        rate_b=rate_b,
        diff=diff,
        relative_gain=diff / rate_a if rate_a > 0 else None,
        only_a=only_a,
        only_b=only_b,
        mcnemar_p=mcnemar_exact_p(only_a, only_b),
        diff_low=low,
        diff_high=high,
    )


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value from the two disagreement counts (1.0 when there are none)."""
    if only_a + only_b == 0:
        return 1.0
    from statsmodels.stats.contingency_tables import mcnemar

    # Only the off-diagonal cells matter to the exact test; the diagonal is set to 0.
    result = mcnemar([[0, only_a], [only_b, 0]], exact=True)
    return float(min(1.0, result.pvalue))


def paired_bootstrap_interval(
    xa: np.ndarray, xb: np.ndarray, diff: float, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile interval of mean(b) - mean(a) (`diff`), resampling questions (pairs) with replacement."""
    per_question = xb - xa
    if np.all(per_question == per_question[0]):
        # Every resample gives the same difference: the interval is a point (scipy would warn or return nan).
        return diff, diff
    from scipy.stats import bootstrap

    def statistic(sa: np.ndarray, sb: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(sb, axis=axis) - np.mean(sa, axis=axis)

    result = bootstrap(
        (xa, xb),
        statistic,
        n_resamples=resamples,
        paired=True,
        vectorized=True,
        method="percentile",
        confidence_level=confidence,
        **_rng_kwarg(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):
        return diff, diff
    return low, high


def sign_flip_p(diffs: np.ndarray, resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p of the paired sign-flip (permutation) test of the sum of per-question differences (scipy's
    permutation_test, exact up to `resamples` sign patterns): McNemar's exact test when every difference is
    -1, 0 or 1."""
    from scipy.stats import permutation_test

    nonzero = np.asarray(diffs, dtype=float)
    nonzero = nonzero[nonzero != 0]
    if nonzero.size == 0:
        return 1.0
    if np.all(np.abs(nonzero) == 1):
        return mcnemar_exact_p(int((nonzero < 0).sum()), int((nonzero > 0).sum()))

    def total(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.sum(x, axis=axis)

    result = permutation_test(
        (nonzero,),
        total,
        permutation_type="samples",
        n_resamples=resamples,
        alternative="two-sided",
        vectorized=True,
        **_rng_kwarg(seed),
    )
    return float(min(1.0, result.pvalue))


def _rng_kwarg(seed: int) -> dict[str, Any]:
    """scipy >= 1.15 names the generator `rng`; older versions `random_state`."""
    import inspect

    from scipy.stats import bootstrap

    name = "rng" if "rng" in inspect.signature(bootstrap).parameters else "random_state"
    return {name: np.random.default_rng(seed)}


def episode_stats(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Per-episode means of actions and tool calls, the invalid-action rate and the share never answering."""
    rows = list(rows)
    if not rows:
        return {
            "episodes": 0,
            "actions_per_episode": NAN,
            "tool_calls_per_episode": NAN,
            "invalid_action_rate": NAN,
            "no_answer_rate": NAN,
        }
    actions = sum(int(r["num_actions"]) for r in rows)
    invalid = sum(int(r["invalid_actions"]) for r in rows)
    return {
        "episodes": len(rows),
        "actions_per_episode": actions / len(rows),
        "tool_calls_per_episode": sum(int(r["tool_calls"]) for r in rows) / len(rows),
        "invalid_action_rate": invalid / actions if actions else 0.0,
        "no_answer_rate": sum(r["stop_reason"] != "answer" for r in rows) / len(rows),
    }


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error over every comparison given), in input order."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(x) for x in multipletests(list(p_values), method="holm")[1]]
