"""MLflow tracking: one parent run per round, iteration or evaluation, one nested run per stage output
(docs/design.md §6). The model registry is `tasks/registry.py`.

Uses `MlflowClient` with explicit run ids rather than MLflow's fluent "active run" state, so that stages
running in Prefect's worker threads log to the right run. Metric names are namespaced (`ingest/questions`),
configs are flattened into params, stage outputs are logged as MLflow dataset inputs (lineage) with their
store version as digest, and tags carry the Prefect flow-run id and the store versions so a run can be found
from either UI.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from swirl.store import StageRef, local_copy, path_exists

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

MAX_PARAM_LEN = 6000  # MLflow's limit on a param value is 6000 characters
_METRIC_BAD = re.compile(r"[^\w\-. :/]")  # MLflow metric names allow alphanumerics and _ - . space : /


@dataclass(frozen=True)
class Tracking:
    """Where a tracked run logs: enough to reach its parent run from any thread or process (picklable)."""

    uri: str
    experiment_id: str
    parent_run_id: str


_READY: set[str] = set()  # SQLite tracking URIs whose tables this process has seen created


def mlflow_client(uri: str) -> MlflowClient:
    """A client of `uri`. A SQLite database is first opened under a lock beside it: two runs creating its
    tables at once (two `swirl run` on one store) would fail with `table ... already exists`."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if uri.startswith("sqlite:///") and uri not in _READY:
        import fcntl

        db = uri[len("sqlite:///") :]
        os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
        with open(db + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            client.search_experiments(max_results=1)  # creates or migrates the tables
        _READY.add(uri)
    return client


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"a.b.c": "value"}; lists are JSON; long values are cut to MLflow's limit."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            s = v if isinstance(v, str) else json.dumps(v, default=str)
            out[key] = s[:MAX_PARAM_LEN]
    return out


def numeric_metrics(summary: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The numeric leaves of a stage summary as namespaced metrics (`prefix/name`, nested names joined by
    /)."""
    out: dict[str, float] = {}
    for k, v in summary.items():
        name = f"{prefix}/{_METRIC_BAD.sub('_', str(k))}"
        if isinstance(v, Mapping):
            out.update(numeric_metrics(v, name))
        elif isinstance(v, bool) or isinstance(v, int | float) and math.isfinite(v):
            out[name] = float(v)
    return out


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI opens on runs, not GenAI
LONG_PARAM = 250  # longer values (prompt templates) go to an artifact, and the param points at it


def start_tracked_run(
    uri: str,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    artifact_root: str | None,
    description: str = "",
    kind: str = "round",
    parent_run_id: str | None = None,
    label: str | None = None,
    source: str = "flows/round.py:swirl_round",
) -> Tracking:
    """A parent run of the experiment: a round (`kind` "round"), an iteration of rounds ("iterate") or an
    evaluation ("evaluate"). A top-level run is named `<run name> #<k>` (`<run name> iterate #<k>`, ...), the
    k-th of that config and kind in the experiment; a run under `parent_run_id` (a round of an iteration) is
    named `label`. Tagged `swirl.run` with the config's run name, `swirl.kind`, the git commit and the
    source."""
    client = mlflow_client(uri)
    exp_id = experiment_id(client, experiment, artifact_root)
    run_tags = {**dict(tags), **source_tags(source), "swirl.run": run_name, "swirl.kind": kind}
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
        name = label or run_name
    else:
        quoted = run_name.replace("'", "\\'")
        earlier = client.search_runs([exp_id], f"tags.`swirl.run` = '{quoted}'", max_results=50000)
        number = 1 + sum(
            "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("swirl.kind", "round") == kind
            for r in earlier
        )
        run_tags["swirl.number"] = str(number)
        name = f"{run_name} #{number}" if kind == "round" else f"{run_name} {kind} #{number}"
    if description:
        run_tags["mlflow.note.content"] = description
    run = client.create_run(exp_id, run_name=name, tags=run_tags)
    _log_params(client, run.info.run_id, flatten(params))
    return Tracking(uri, exp_id, run.info.run_id)


def mlflow_run_name(tr: Tracking) -> str:
    return mlflow_client(tr.uri).get_run(tr.parent_run_id).info.run_name


def experiment_id(client: MlflowClient, experiment: str, artifact_root: str | None) -> str:
    """The experiment's id, created if missing; its kind set so the UI opens on runs (not GenAI)."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        try:
            return client.create_experiment(experiment, artifact_location=artifact_root, tags=EXPERIMENT_KIND)
        except MlflowException:  # another run created it a moment ago (two runs of one config): use it
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                raise
    if exp.tags.get("mlflow.experimentKind") is None:
        client.set_experiment_tag(
            exp.experiment_id, "mlflow.experimentKind", EXPERIMENT_KIND["mlflow.experimentKind"]
        )
    return exp.experiment_id


def source_tags(source: str) -> dict[str, str]:
    """MLflow's source tags: the project's git commit (when it is a git checkout) and the flow that ran."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tags = {"mlflow.source.name": source, "mlflow.source.type": "JOB"}
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        tags["mlflow.source.git.commit"] = commit
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Params in batches; a value longer than LONG_PARAM (a prompt template) is logged as the text artifact
    `params/<key>.txt` and the param says so."""
    from mlflow.entities import Param

    items = []
    for k, v in params.items():
        if len(v) > LONG_PARAM:
            client.log_text(run_id, v, f"params/{k}.txt")
            v = f"<{len(v)} characters: artifact params/{k}.txt>"
        items.append(Param(k, v))
    for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run_id, params=items[i : i + 100])


def log_stage(
    tr: Tracking,
    ref: StageRef,
    params: Mapping[str, Any],
    seconds: float,
    cached: bool,
    tags: Mapping[str, str] | None = None,
    name: str | None = None,
    history: list[Mapping[str, Any]] | None = None,
    inputs: Sequence[StageRef] = (),
    summary: Mapping[str, Any] | None = None,
) -> str:
    """A nested run for one stage output: its config, summary metrics, version tags and dataset lineage.
    `inputs`: the upstream outputs the stage read, logged as its MLflow dataset inputs (so two runs' inputs
    compare); `summary`: the metrics worth logging (default: the output's whole summary). `history`: per-step
    metric rows (each with a `step`), logged as metric series `<name>/<metric>` (training curves; the
    per-step time as `<name>/step_seconds`)."""
    from mlflow.entities import Metric

    client = mlflow_client(tr.uri)
    run_tags = {
        "mlflow.parentRunId": tr.parent_run_id,
        "swirl.stage": ref.stage,
        "swirl.version": ref.version,
        "swirl.path": ref.path,
        "swirl.cached": str(cached).lower(),
        **(tags or {}),
    }
    # The nested run spans the stage's work: it ended when its output was committed. A cached stage did no
    # work here: it starts and ends now, and is tagged swirl.cached (its files are not logged again).
    now = int(time.time() * 1000)
    end = now if cached else int(ref.created_at * 1000)
    start = end if cached else end - int(seconds * 1000)
    run = client.create_run(tr.experiment_id, run_name=name or ref.stage, tags=run_tags, start_time=start)
    rid = run.info.run_id
    _log_params(client, rid, flatten(params))
    prefix = name or ref.stage  # e.g. ingest/gsm8k: one namespace per dataset when a stage runs per dataset
    metrics = {
        **numeric_metrics(ref.summary if summary is None else summary, prefix),
        f"{prefix}/rows": float(ref.rows),
        f"{prefix}/seconds": seconds,
    }
    client.log_batch(rid, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
    series = _history_metrics(prefix, history or (), now)
    for i in range(0, len(series), 1000):  # MLflow accepts at most 1000 metrics per batch
        client.log_batch(rid, metrics=series[i : i + 1000])
    _log_dataset_inputs(client, rid, inputs)
    client.log_dict(
        rid,
        {
            "stage": ref.stage,
            "version": ref.version,
            "path": ref.path,
            "rows": ref.rows,
            "inputs": [r.short() for r in inputs],
            "summary": ref.summary,
        },
        "stage_output.json",
    )
    _log_stage_files(client, rid, ref, cached)
    client.set_terminated(rid, "FINISHED", end_time=end)
    # The parent run carries every stage's version so one run lists the whole lineage of the round.
    client.set_tag(tr.parent_run_id, f"swirl.version.{name or ref.stage}", ref.version)
    client.log_batch(tr.parent_run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
    return rid


def _history_metrics(prefix: str, history: Sequence[Mapping[str, Any]], now: int) -> list[Metric]:
    """Per-step rows (each with a `step`) as metric series `<prefix>/<metric>`; a step's time is
    `<prefix>/step_seconds` (the stage's total is `<prefix>/seconds`)."""
    from mlflow.entities import Metric

    renamed = {"seconds": "step_seconds"}
    return [
        Metric(f"{prefix}/{_METRIC_BAD.sub('_', renamed.get(k, str(k)))}", float(v), now, int(row["step"]))
        for row in history
        for k, v in row.items()
        if k != "step" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]


def _log_stage_files(client: MlflowClient, run_id: str, ref: StageRef, cached: bool) -> None:
    """A computed output's reports (Markdown, HTML, plots, JSON; not indexes or weights) as the run's
    artifacts under `files/`; an adapter folder as the tag `swirl.adapter`."""
    if not cached:
        for path in _report_files(f"{ref.path}/files"):
            client.log_artifact(run_id, local_copy(path), "files")  # MLflow logs local files
    if path_exists(f"{ref.path}/files/adapter"):
        client.set_tag(run_id, "swirl.adapter", f"{ref.path}/files/adapter")


def _report_files(folder: str) -> list[str]:
    """The reports in an output's `files/` folder (a local path or a URL): Markdown, HTML, plots, JSON, not
    indexes or weights nor anything in `adapter/`; as paths or URLs like `folder`."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(folder, use_listings_cache=False)
    if not fs.isdir(root):
        return []
    return [
        f"{folder}/{os.path.relpath(p, root)}"
        for p in fs.find(root)
        if p.endswith((".md", ".html", ".png", ".svg", ".json"))
        and os.path.relpath(p, root).split("/")[0] != "adapter"
    ]


def _log_dataset_inputs(client: MlflowClient, run_id: str, refs: Sequence[StageRef]) -> None:
    """Upstream store outputs as the run's MLflow dataset inputs: name `<table>:<stage>/<version>`, digest the
    version, source the output's folder."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    out, seen = [], set()
    for ref in refs:
        if ref.short() in seen:
            continue
        seen.add(ref.short())
        with warnings.catch_warnings():  # a local path matches two equivalent local source kinds
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(ref.path)
        ds = MetaDataset(source, name=f"{ref.table or ref.stage}:{ref.short()}", digest=ref.version)
        out.append(DatasetInput(ds._to_mlflow_entity(), [InputTag("mlflow.data.context", ref.stage)]))
    if out:
        log_inputs(client, run_id, out)


def log_inputs(client: MlflowClient, run_id: str, inputs: list) -> None:
    """`client.log_inputs`, once more when another run registered one of the same datasets at the same
    moment: MLflow's SQL store looks a dataset up, then inserts it, and the slower of two runs that log the
    same output (two runs of one config on one store) fails the insert (`UNIQUE constraint failed:
    datasets...`). On the second try the dataset exists and only this run's link to it is written."""
    from mlflow.exceptions import MlflowException

    try:
        client.log_inputs(run_id, inputs)
    except MlflowException as e:
        if "UNIQUE constraint failed: datasets" not in str(e):
            raise
        client.log_inputs(run_id, inputs)


def finish_tracked_run(tr: Tracking, status: str, summary: Mapping[str, Any] | None = None) -> None:
    """End the parent run with `status` ("FINISHED", "FAILED"); `summary` logged as `round_summary.json`."""
    client = mlflow_client(tr.uri)
    if summary is not None:
        client.log_dict(tr.parent_run_id, dict(summary), "round_summary.json")
    client.set_terminated(tr.parent_run_id, status)


def default_artifact_root(store_root: str) -> str | None:
    """Artifacts beside the store for local roots (else MLflow's default); never in the working directory."""
    if "://" in store_root:
        return None
    return "file://" + os.path.abspath(os.path.join(store_root, "mlartifacts"))


def log_report(tr: Tracking, ref: StageRef) -> None:
    """The evaluation report on the round's parent run: report.md and heatmap.png as artifacts, the cells as
    an MLflow table (`eval/report_table.json`, shown in the run's Evaluation/Artifacts views)."""
    client = mlflow_client(tr.uri)
    files = local_copy(f"{ref.path}/files")  # MLflow logs local files: a remote store's output is copied
    for name in ("report.md", "heatmap.png"):
        client.log_artifact(tr.parent_run_id, os.path.join(files, name), "eval")
    with open(os.path.join(files, "report.json"), encoding="utf-8") as f:
        cells = json.load(f)
    rows = []
    for c in cells:
        vs = c.get("vs_base") or {}
        primary = c["judge"] if c.get("judge") else c["rule"]
        rows.append(
            {
                "dataset": c["dataset"],
                "policy": c["policy"],
                "trained_on": c["trained_on"],
                "metric": c["metric"],
                "n": primary["n"],
                "accuracy": primary["rate"],
                "low": primary["low"],
                "high": primary["high"],
                "accuracy_rule": c["rule"]["rate"],
                "gain_vs_base": vs.get("diff"),
                "relative_gain": vs.get("relative_gain"),
                "gain_low": vs.get("diff_low"),
                "gain_high": vs.get("diff_high"),
                "mcnemar_p": vs.get("mcnemar_p"),
            }
        )
    client.log_table(
        tr.parent_run_id,
        data={k: [r[k] for r in rows] for k in rows[0]} if rows else {},
        artifact_file="eval/report_table.json",
    )
    client.set_tag(tr.parent_run_id, "swirl.eval_report", os.path.join(files, "report.md"))


# ------------------------------------------------------------------------------------------ iterations
def log_round_metrics(tr: Tracking, record: Mapping[str, Any], start: bool = True) -> None:
    """One finished round on the iteration's run, as metric series with step = round number (the MLflow chart
    of accuracy per round): `round/accuracy/<dataset>`, `round/mean_accuracy`, `round/gain`,
    `round/kept_steps`, `round/reward_mean`. Step 0 is the warm-up (round 0) when the chain has one, else the
    policy the chain started from, logged with round 1 when it is the chain's first round (`start`); a
    warm-up's starting policy is in the rounds table only."""
    from mlflow.entities import Metric

    now, step = int(time.time() * 1000), int(record["round"])
    values: dict[str, Any] = {
        **{f"round/accuracy/{d}": a for d, a in record["accuracy"].items()},
        "round/mean_accuracy": record["mean_accuracy"],
        "round/gain": record["gain"],
        "round/kept_steps": record["kept_steps"],
        "round/reward_mean": record["reward_mean"],
    }
    metrics = [
        Metric(_METRIC_BAD.sub("_", k), float(v), now, step)
        for k, v in values.items()
        if isinstance(v, int | float) and math.isfinite(v)
    ]
    if step == 1 and start:  # the starting policy, measured in round 1 against the same questions
        before = {f"round/accuracy/{d}": a for d, a in record["accuracy_before"].items()}
        before["round/mean_accuracy"] = record["mean_accuracy_before"]
        metrics += [
            Metric(_METRIC_BAD.sub("_", k), float(v), now, 0) for k, v in before.items() if v is not None
        ]
    client = mlflow_client(tr.uri)
    client.log_batch(tr.parent_run_id, metrics=metrics)


def log_rounds_table(tr: Tracking, records: Sequence[Mapping[str, Any]], markdown: str) -> None:
    """The across-rounds summary on the iteration's run: `rounds.md` and an MLflow table `rounds.json`."""
    client = mlflow_client(tr.uri)
    client.log_text(tr.parent_run_id, markdown, "rounds.md")
    rows = [
        {
            "round": r["round"],
            "mean_accuracy": r["mean_accuracy"],
            "gain": r["gain"],
            "kept_steps": r["kept_steps"],
            "reward_mean": r["reward_mean"],
            "model_version": r["model_version"],
            "adapter": r["adapter"],
            "adapter_in": r["adapter_in"],
            **{f"accuracy/{d}": a for d, a in r["accuracy"].items()},
        }
        for r in records
    ]
    if rows:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (k.startswith("accuracy/"), k))
        client.log_table(tr.parent_run_id, {k: [r.get(k) for r in rows] for k in keys}, "rounds.json")
