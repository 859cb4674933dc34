"""The per-step training metrics: what each objective shows, and the long form the `train_log` table keeps.

A metric name is declared once, as a `Metrics` beside the code that computes it (the shared likelihood loss
and each objective in objectives/, the loop's own in loop.py); an objective's `shows` adds up the ones it
produces. Every sink reads that declaration: the table and the MLflow history keep all of it, the terminal
line, the curves PNG and the train summary (`final_<name>`) its headline.

The table holds one row per (step, name, value), so an objective's own metrics (oreo's value loss) need no
column of their own; `log_rows` refuses a metric no declaration names, so a new metric cannot be silently
dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metrics:
    """Metric names: `headline` (the terminal line, the curves PNG, the summary) first, then `detail` (also
    kept by the table and the MLflow history)."""

    headline: tuple[str, ...] = ()
    detail: tuple[str, ...] = ()

    def __add__(self, other: Metrics) -> Metrics:
        return Metrics(self.headline + other.headline, self.detail + other.detail)

    @property
    def names(self) -> tuple[str, ...]:
        return self.headline + self.detail


def log_rows(log: Iterable[Mapping[str, Any]], metrics: Metrics) -> list[dict[str, Any]]:
    """The per-step log as `train_log` rows (step, name, value), in step order and then declaration order; a
    metric a step did not report (swirl's drift without sampler log-probs) has no row."""
    rows = []
    for m in log:
        undeclared = sorted(set(m) - {"step", *metrics.names})
        if undeclared:
            raise ValueError(
                f"train: step {m['step']} reports metrics {undeclared} that no declaration names; add them "
                "to the `shows` of the objective that computes them (swirl/training/objectives/)"
            )
        for name in metrics.names:
            if m.get(name) is not None:
                rows.append({"step": int(m["step"]), "name": name, "value": float(m[name])})
    return rows


def per_step(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`train_log` rows back to one dict per step ({"step": 1, "loss": ..., ...}), in step order."""
    steps: dict[int, dict[str, Any]] = {}
    for r in rows:
        steps.setdefault(r["step"], {"step": r["step"]})[r["name"]] = r["value"]
    return [steps[s] for s in sorted(steps)]


def last_values(log: Sequence[Mapping[str, Any]], names: Iterable[str]) -> dict[str, float]:
    """The last step's value of each of `names` it reported."""
    last = log[-1] if log else {}
    return {k: last[k] for k in names if last.get(k) is not None}
