"""`swirl compare`: the evaluation of several rounds side by side, read back from MLflow.

A round's parent run carries `eval/<dataset>/<policy>/accuracy_rule` (with `_low`/`_high`, the 95% Wilson
interval), `accuracy_judge` when an LLM judge graded, and the report's `gain_vs_base` and `mcnemar_p`. Its
params are the flattened run config, so the config differences between rounds are the params that differ.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from rich.table import Table

_EVAL = re.compile(
    r"^eval/([^/]+)/([^/]+)/(accuracy_rule|accuracy_rule_low|accuracy_rule_high|accuracy_judge|"
    r"accuracy_judge_low|accuracy_judge_high|gain_vs_base|mcnemar_p|questions)$"
)
MAX_VALUE = 48  # characters of a param value shown in the diff table


def find_run(client: MlflowClient, ref: str, experiment: str | None = None) -> Run:
    """A run by id, else the top-level run with that name (`quickstart #3`), else the newest round of the
    config with that run name (`quickstart`), in `experiment` or in any experiment."""
    from mlflow.exceptions import MlflowException

    if re.fullmatch(r"[0-9a-f]{32}", ref):
        try:
            return client.get_run(ref)
        except MlflowException:
            pass
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        exps = [exp.experiment_id] if exp else []
    else:
        exps = [e.experiment_id for e in client.search_experiments()]
    name = ref.replace("'", "\\'")
    runs = []
    for query in (f"attributes.run_name = '{name}'", f"tags.`swirl.run` = '{name}'"):  # a round, or a config
        runs = client.search_runs(exps, query, order_by=["attributes.start_time DESC"]) if exps else []
        if runs:
            break
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    if not runs:
        raise LookupError(
            f"no MLflow run with id or name {ref!r} in {client.tracking_uri}; list rounds with "
            "`swirl ui mlflow --config CONFIG`, or pass --config so the right backend is read"
        )
    return runs[0]


def eval_metrics(run: Run) -> dict[tuple[str, str], dict[str, float]]:
    """(dataset, policy) -> {accuracy_rule, accuracy_rule_low, ..., gain_vs_base, mcnemar_p}."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for name, value in run.data.metrics.items():
        m = _EVAL.match(name)
        if m:
            out.setdefault((m.group(1), m.group(2)), {})[m.group(3)] = value
    return out


def _cell(m: dict[str, float] | None) -> str:
    if not m or "accuracy_rule" not in m:
        return "—"
    kind = "judge" if "accuracy_judge" in m else "rule"
    text = (
        f"{m[f'accuracy_{kind}']:.3f} [{m.get(f'accuracy_{kind}_low', float('nan')):.3f}, "
        f"{m.get(f'accuracy_{kind}_high', float('nan')):.3f}]"
    )
    if kind == "judge":
        text += " (judge)"
    if "gain_vs_base" in m:
        text += f"\n{m['gain_vs_base']:+.3f} vs base, p={m.get('mcnemar_p', float('nan')):.3g}"
    return text


def config_diff(runs: Sequence[Run]) -> list[tuple[str, list[str]]]:
    """Params whose values differ between the runs (a param a run lacks shows as —)."""
    keys = sorted({k for r in runs for k in r.data.params})
    out = []
    for k in keys:
        values = [r.data.params.get(k, "—") for r in runs]
        if len(set(values)) > 1:
            out.append((k, [v if len(v) <= MAX_VALUE else v[: MAX_VALUE - 1] + "…" for v in values]))
    return out


def compare_runs(uri: str, refs: Sequence[str], experiment: str | None = None) -> list[Table]:
    """Two rich tables: accuracy per (dataset, policy) with one column per round, and the config
    differences."""
    from mlflow import MlflowClient
    from rich.table import Table

    client = MlflowClient(tracking_uri=uri)
    runs = [find_run(client, r, experiment) for r in refs]
    labels = [f"{r.info.run_name}\n{r.info.run_id[:8]}" for r in runs]
    metrics = [eval_metrics(r) for r in runs]
    rows = sorted({k for m in metrics for k in m}, key=lambda k: (k[0], k[1] != "base", k[1]))
    acc = Table(
        title="evaluation by round: accuracy [95% interval]; gain vs base on the same questions, McNemar p",
        show_lines=True,
    )
    acc.add_column("dataset")
    acc.add_column("policy")
    for label in labels:
        acc.add_column(label, justify="right")
    for dataset, policy in rows:
        acc.add_row(dataset, policy, *[_cell(m.get((dataset, policy))) for m in metrics])
    if not rows:
        acc.caption = "no eval/* metrics in these runs: run the evaluate stage (swirl run, or swirl eval)"
    diff = Table(title="config differences between the rounds")
    diff.add_column("param")
    for label in labels:
        diff.add_column(label)
    for key, values in config_diff(runs):
        diff.add_row(key, *values)
    if len(runs) > 1 and not diff.row_count:
        diff.caption = "the rounds have identical params"
    return [acc, diff]
