"""Training metrics have one owner: each objective declares what it shows (swirl/training/metrics.py), and
the `train_log` table, the MLflow history, the curves PNG and the summary read that declaration."""

from __future__ import annotations

import json
import os

import pytest

from swirl.training.metrics import Metrics, log_rows, per_step


def test_the_log_is_stored_as_long_rows_and_read_back_per_step():
    shows = Metrics(("loss", "value_loss"), ("tokens",))
    log = [{"step": 1, "loss": 0.5, "value_loss": 0.25, "tokens": 7}, {"step": 2, "loss": 0.125, "tokens": 8}]
    rows = log_rows(log, shows)
    assert rows == [
        {"step": 1, "name": "loss", "value": 0.5},
        {"step": 1, "name": "value_loss", "value": 0.25},
        {"step": 1, "name": "tokens", "value": 7.0},
        {"step": 2, "name": "loss", "value": 0.125},  # a metric a step did not report has no row
        {"step": 2, "name": "tokens", "value": 8.0},
    ]
    assert per_step(reversed(rows)) == log
    with pytest.raises(ValueError, match=r"\['grad_norm'\] that no declaration names"):
        log_rows([{"step": 1, "loss": 1.0, "grad_norm": 2.0}], shows)


def test_an_oreo_runs_value_loss_reaches_the_mlflow_history(tiny_model_dir, tmp_path):
    from mlflow import MlflowClient

    from swirl.engines.config import EngineConfig
    from swirl.stages.base import run_stage
    from swirl.stages.train import Train, read_train_log
    from swirl.training.config import LoraSection, TrainConfig
    from swirl.training.loop import shown_metrics
    from swirl.training.objectives import objective_for
    from tasks.tracking import finish_tracked_run, log_stage, start_tracked_run
    from tests.support.training import build_train_store

    store, inp = build_train_store(str(tmp_path / "store"), tiny_model_dir, n_questions=6, wrong_every=3)
    cfg = TrainConfig(objective="oreo", batch_size=4, max_steps=3, lora=LoraSection(rank=4, alpha=8))
    done = run_stage(store, Train(cfg, EngineConfig(kind="hf", model=tiny_model_dir), (inp,)))
    log = read_train_log(store, done.ref)
    with open(os.path.join(done.ref.path, "files", "train_log.json")) as f:
        raw = json.load(f)  # the trainer's own log, as it reported it
    assert [r["value_loss"] for r in log] == [r["value_loss"] for r in raw] and len(log) == 3
    shown = shown_metrics(objective_for(cfg))
    assert all(set(r) - {"step"} == set(shown.names) for r in log)  # every declared metric, every step
    assert {f"final_{k}" for k in shown.headline} <= set(done.ref.summary)

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    tr = start_tracked_run(uri, "exp", "oreo", {}, {}, None)
    rid = log_stage(tr, done.ref, {}, done.seconds, False, name="train", history=log)
    finish_tracked_run(tr, "FINISHED")
    client = MlflowClient(uri)
    history = client.get_metric_history(rid, "train/value_loss")
    assert sorted((m.step, m.value) for m in history) == [(r["step"], r["value_loss"]) for r in log]
    logged = set(client.get_run(rid).data.metrics)
    assert {"train/value_mean", "train/value_grad_norm", "train/logratio_mean"} <= logged
