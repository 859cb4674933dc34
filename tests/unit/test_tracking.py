"""MLflow tracking of rounds: meaningful unique round names, the experiment's kind, long params as artifacts,
nested runs that span the stage's work (not the logging), cached stages marked."""

from __future__ import annotations

import time

from swirl.store import StageRef
from tasks.tracking import LONG_PARAM, finish_tracked_run, log_stage, start_tracked_run


def test_rounds_are_numbered_per_config_and_long_params_become_artifacts(tmp_path):
    from mlflow import MlflowClient

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    prompt = "Solve {question} step by step. " * 20
    assert len(prompt) > LONG_PARAM
    trs = [
        start_tracked_run(
            uri, "exp", "quickstart", {"generate": {"math_prompt": prompt, "seed": 3}}, {}, None
        )
        for _ in range(2)
    ]
    other = start_tracked_run(uri, "exp", "learn-cpu", {}, {}, None)
    client = MlflowClient(uri)
    runs = [client.get_run(t.parent_run_id) for t in [*trs, other]]
    assert [r.info.run_name for r in runs] == ["quickstart #1", "quickstart #2", "learn-cpu #1"]
    assert [r.data.tags["swirl.run"] for r in runs] == ["quickstart", "quickstart", "learn-cpu"]
    exp = client.get_experiment(trs[0].experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    params = runs[0].data.params
    assert params["generate.seed"] == "3"
    assert (
        params["generate.math_prompt"]
        == f"<{len(prompt)} characters: artifact params/generate.math_prompt.txt>"
    )
    path = client.download_artifacts(trs[0].parent_run_id, "params/generate.math_prompt.txt", str(tmp_path))
    with open(path, encoding="utf-8") as f:
        assert f.read() == prompt
    assert len(runs[0].data.tags.get("mlflow.source.git.commit", "")) == 40  # the project is a git checkout


def test_a_stage_run_spans_its_work_and_a_cached_one_is_marked(tmp_path):
    from mlflow import MlflowClient

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    tr = start_tracked_run(uri, "exp", "r", {}, {}, None)
    committed = time.time() - 500.0  # the output was committed 500 s ago, after 103 s of work
    ref = StageRef("generate", "v1", "/nowhere", None, 4, {"trajectories": 4}, committed)
    rid = log_stage(tr, ref, {"inputs": {"questions": "ingest/abc"}}, 103.0, False, name="generate/gsm8k")
    cached_rid = log_stage(tr, ref, {}, 0.01, True, name="generate/gsm8k")
    finish_tracked_run(tr, "FINISHED")
    client = MlflowClient(uri)
    run, cached = client.get_run(rid), client.get_run(cached_rid)
    assert run.info.end_time == int(committed * 1000)
    assert run.info.end_time - run.info.start_time == 103_000
    assert run.data.params["inputs.questions"] == "ingest/abc"
    assert cached.data.tags["swirl.cached"] == "true" and cached.info.end_time == cached.info.start_time


def test_metric_names_are_sanitized():
    from tasks.tracking import numeric_metrics

    m = numeric_metrics(
        {"dropped": {"level=easy": 3}, "ok": 1.5, "flag": True, "text": "x", "nan": float("nan")}, "ingest/h"
    )
    assert m == {"ingest/h/dropped/level_easy": 3.0, "ingest/h/ok": 1.5, "ingest/h/flag": 1.0}


def test_a_remote_outputs_reports_are_logged_from_their_local_copies(tmp_path, monkeypatch):
    import fsspec
    from mlflow import MlflowClient

    monkeypatch.setenv("SWIRL_CACHE", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    path = "memory://swirl-tracking/store/train/v1"  # as s3://bucket/store/train/v1 is
    files = {"report.md": b"# r\n", "plots/curves.png": b"png", "adapter/adapter_config.json": b"{}"}
    for name, data in files.items():
        fs.pipe_file(f"{path}/files/{name}", data)
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    tr = start_tracked_run(uri, "exp", "r", {}, {}, None)
    try:
        rid = log_stage(tr, StageRef("train", "v1", path, None, 3, {}, time.time()), {}, 1.0, False)
    finally:
        fs.rm("/swirl-tracking", recursive=True)
    client = MlflowClient(uri)
    assert {a.path for a in client.list_artifacts(rid, "files")} == {"files/report.md", "files/curves.png"}
    assert client.get_run(rid).data.tags["swirl.adapter"] == f"{path}/files/adapter"


def test_a_dataset_another_run_registered_at_the_same_moment_is_logged_on_a_second_try():
    """Two runs of one config log the same store output as an MLflow dataset input at once: MLflow's insert
    of the slower one fails on the datasets table's unique key; the link is written on the second try. Any
    other error is not retried."""
    import pytest
    from mlflow.exceptions import MlflowException

    from tasks.tracking import log_inputs

    class Client:
        def __init__(self, errors):
            self.errors, self.calls = list(errors), 0

        def log_inputs(self, run_id, inputs):
            self.calls += 1
            if self.errors:
                raise MlflowException(self.errors.pop(0))

    raced = Client(["(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.x"])
    log_inputs(raced, "r", ["d"])
    assert raced.calls == 2
    broken = Client(["no such run"])
    with pytest.raises(MlflowException, match="no such run"):
        log_inputs(broken, "r", ["d"])
    assert broken.calls == 1
