"""The swirl_round flow under one Prefect test harness: stages as tasks, the store, MLflow parent + nested
runs."""

import json
import os

import pytest

from swirl.config import config_from_dict


def _cfg(tmp_path, limit=None):
    data = str(tmp_path / "data")
    return config_from_dict(
        {
            "run": {"name": "t", "root": str(tmp_path / "store"), "experiment": "test"},
            "stages": ["prepare", "ingest"],
            "prepare": {
                "synthetic": {
                    "dir": data,
                    "gsm8k_train": 20,
                    "gsm8k_test": 10,
                    "hotpotqa_train": 2,
                    "hotpotqa_test": 2,
                }
            },
            "ingest": {
                "datasets": [
                    {
                        "name": "gsm8k",
                        "format": "gsm8k",
                        "split": "train",
                        "path": f"{data}/gsm8k/train.jsonl",
                        "limit": limit,
                    },
                    {
                        "name": "gsm8k_test",
                        "format": "gsm8k",
                        "split": "test",
                        "path": f"{data}/gsm8k/test.jsonl",
                    },
                ]
            },
        }
    )


def test_round_runs_caches_and_tracks(prefect_harness, tmp_path):
    from mlflow import MlflowClient

    from flows.round import swirl_round
    from swirl.store import Store

    first = swirl_round(_cfg(tmp_path))
    st = first.stages
    assert set(st) == {"ingest/gsm8k", "ingest/gsm8k_test"}
    assert st["ingest/gsm8k"].rows == 20 and st["ingest/gsm8k_test"].rows == 10
    assert not any(s.cached for s in st.values())
    store = Store(str(tmp_path / "store"))
    q = store.read("ingest", st["ingest/gsm8k"].version).to_pylist()
    assert q[0]["dataset"] == "gsm8k" and q[0]["answers"][0].lstrip("-").isdigit()

    # MLflow: a parent run with one nested run per stage output, tagged with the store versions
    client = MlflowClient(_cfg(tmp_path).run.mlflow_uri)
    parent = client.get_run(first.mlflow_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["swirl.version.ingest/gsm8k"] == st["ingest/gsm8k"].version
    assert parent.data.tags["prefect.flow_run_id"]
    assert parent.data.params["run.name"] == "t"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert {c.data.tags["swirl.stage"] for c in children} == {"ingest"}
    assert {c.info.run_name for c in children} == {"ingest/gsm8k", "ingest/gsm8k_test"}
    child = next(c for c in children if c.info.run_name == "ingest/gsm8k")
    assert child.data.metrics["ingest/gsm8k/questions"] == 20
    assert not child.inputs.dataset_inputs  # ingest reads a file, no store output: no upstream tables
    assert child.data.tags["swirl.version"] == st["ingest/gsm8k"].version
    summary = client.download_artifacts(parent.info.run_id, "round_summary.json", str(tmp_path))
    with open(summary, encoding="utf-8") as f:
        assert json.load(f)["stages"]["ingest/gsm8k"] == first.stages["ingest/gsm8k"].as_dict()

    # unchanged config: every stage is cached, same versions
    second = swirl_round(_cfg(tmp_path))
    assert all(s.cached for s in second.stages.values())
    assert {k: v.version for k, v in second.stages.items()} == {k: v.version for k, v in st.items()}

    # one knob of one dataset: only that output is recomputed
    third = swirl_round(_cfg(tmp_path, limit=5))
    assert not third.stages["ingest/gsm8k"].cached and third.stages["ingest/gsm8k"].rows == 5
    assert third.stages["ingest/gsm8k"].version != st["ingest/gsm8k"].version
    assert third.stages["ingest/gsm8k_test"].cached
    assert third.stages["ingest/gsm8k_test"].version == st["ingest/gsm8k_test"].version


def test_round_failure_marks_parent_failed(prefect_harness, tmp_path):
    from mlflow import MlflowClient

    from flows.round import swirl_round

    cfg = _cfg(tmp_path)
    os.makedirs(tmp_path / "data" / "gsm8k", exist_ok=True)
    cfg = cfg.model_copy(update={"stages": ("ingest",)})
    (tmp_path / "data" / "gsm8k" / "train.jsonl").write_text(
        '{"question": "q", "answer": "no number here"}\n'
    )
    (tmp_path / "data" / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "#### 3"}\n')
    with pytest.raises(Exception, match="train.jsonl:1"):
        swirl_round(cfg)
    client = MlflowClient(cfg.run.mlflow_uri)
    exp = client.get_experiment_by_name("test")
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FAILED'")
    assert runs, "the parent run is marked FAILED"


def test_a_stored_output_is_a_prefect_cache_hit(prefect_harness, tmp_path):
    """The stage task's cache key comes from the store: the first run computes, the second finds the output
    in the store (and Prefect records its result under the key), the third is Prefect's "Cached"."""
    from prefect import flow

    from swirl.data.config import DatasetSpec
    from swirl.stages.ingest import Ingest
    from tasks.stages import run_job

    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "1 + 2?", "answer": "#### 3"}\n')
    job = Ingest(DatasetSpec(name="g", format="gsm8k", split="train", path=str(path)))
    store = str(tmp_path / "store")

    @flow
    def ingest_once() -> tuple[str, bool]:
        state = run_job(store, job)
        return state.name, state.result().computed

    assert [ingest_once() for _ in range(3)] == [("Completed", True), ("Completed", False), ("Cached", False)]


def test_a_cached_stage_points_into_its_own_store(prefect_harness, tmp_path):
    """Prefect keeps cached results in one folder for the machine: a copy of a store (same versions) must get
    its own paths back, not the first store's."""
    import shutil

    from flows.round import swirl_round

    cfg = _cfg(tmp_path)
    swirl_round(cfg)
    first = swirl_round(cfg)  # a store hit: Prefect records the cached result under the task's key
    shutil.copytree(tmp_path / "store", tmp_path / "b" / "store")
    run_b = cfg.run.model_copy(update={"root": str(tmp_path / "b" / "store")})
    second = swirl_round(cfg.model_copy(update={"run": run_b, "stages": ("ingest",)}))
    for name, out in second.stages.items():
        assert out.cached and out.version == first.stages[name].version
        assert out.path.startswith(str(tmp_path / "b" / "store")), out.path
