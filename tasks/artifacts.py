"""Prefect artifacts of a round (shown on the flow run's Artifacts tab, also when every stage was cached): the
stage table, the evaluation table, a Markdown sample of trajectories, the link to the MLflow run, the resolved
config. Called from a flow (artifacts attach to the current flow run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from swirl.store import StageRef, Store


def _key(text: str) -> str:
    """An artifact key: lowercase letters, digits and dashes."""
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(p for p in out.split("-") if p)[:100]


def mlflow_ui_url(tracking_uri: str, experiment_id: str, run_id: str, ui: str) -> str:
    """The run's page: on the tracking server when it is one, else on the local UI (`swirl ui mlflow`)."""
    base = tracking_uri if tracking_uri.startswith(("http://", "https://")) else ui
    # workflowType: open in the model-training view (the UI's default for a new browser is GenAI)
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def publish_link(url: str, what: str, key: str) -> None:
    from prefect.artifacts import create_link_artifact

    create_link_artifact(url, link_text=what, key=_key(key), description=what)


def publish_stage_table(outputs: Mapping[str, Mapping[str, Any]], title: str, key: str) -> None:
    """One row per stage output: version, rows, computed or cached, seconds, the store path."""
    from prefect.artifacts import create_table_artifact

    rows = [
        {
            "stage": name,
            "version": o["version"],
            "rows": o["rows"],
            "status": "cached" if o["cached"] else "computed",
            "seconds": o["seconds"],
            "path": o["path"],
        }
        for name, o in outputs.items()
    ]
    create_table_artifact(rows, key=_key(key), description=title)


def publish_eval_table(results: Mapping[str, Mapping[str, Any]], title: str, key: str) -> None:
    """One row per (dataset, policy): questions, rule-graded accuracy with its 95% interval, the judge's."""
    from prefect.artifacts import create_table_artifact

    rows = []
    for label, r in sorted(results.items(), key=lambda kv: kv[0].split("@")[::-1]):
        policy, dataset = label.split("@", 1)
        rows.append(
            {
                "dataset": dataset,
                "policy": policy,
                "questions": r.get("questions"),
                "accuracy": f"{r['accuracy_rule']:.3f}",  # as text: the UI would show 0 beside 0.2667
                "95% interval": f"[{r['accuracy_rule_low']:.3f}, {r['accuracy_rule_high']:.3f}]",
                "judge accuracy": None if r.get("accuracy_judge") is None else f"{r['accuracy_judge']:.3f}",
            }
        )
    if all(r["judge accuracy"] is None for r in rows):  # no LLM judge: no empty column
        for r in rows:
            del r["judge accuracy"]
    create_table_artifact(rows, key=_key(key), description=title)


def publish_trajectory_sample(store: Store, refs: Sequence[StageRef], title: str, key: str) -> None:
    """The generate outputs' `samples.md` (a few episodes with their steps and tool calls), as one Markdown
    artifact."""
    from prefect.artifacts import create_markdown_artifact

    parts = []
    for ref in refs:
        path = f"{store.files_path(ref.stage, ref.version)}/samples.md"
        if store.fs.exists(path):
            with store.fs.open(path, "r", encoding="utf-8") as f:
                parts.append(f.read())
    if parts:
        create_markdown_artifact("\n\n---\n\n".join(parts), key=_key(key), description=title)


def publish_config(cfg: Any, title: str, key: str) -> None:
    """The resolved run config (the base file with the form's overrides) as a YAML block."""
    from prefect.artifacts import create_markdown_artifact

    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    create_markdown_artifact(f"# {title}\n\n```yaml\n{text}```\n", key=_key(key), description=title)


def publish_markdown(text: str, title: str, key: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(text, key=_key(key), description=title)


def report_markdown(store: Store, report: StageRef) -> str:
    path = f"{store.files_path(report.stage, report.version)}/report.md"
    with store.fs.open(path, "r", encoding="utf-8") as f:
        return f.read()
