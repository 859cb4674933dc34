"""The Prefect control panel end to end: a real Prefect server on 127.0.0.1, `swirl serve` as the worker, and
`swirl_iterate` triggered through the Prefect REST API with parameter overrides, as the UI's Run form does.

Checks: 2 rounds ran, round 2 generated with round 1's adapter (the adapter path on its trajectories), MLflow
holds the iteration run, both rounds, a registered model with 2 versions and the `champion` alias, and the
Prefect flow runs carry the artifacts (rounds table, MLflow link, resolved config; each round its stage table,
evaluation table and trajectory sample)."""

from __future__ import annotations

import os

import pytest

from flows.local_server import local_prefect
from tests.support.iterate_config import write_iterate_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_iterate_deployment_through_the_prefect_api(tmp_path, tiny_model_dir):
    from mlflow import MlflowClient

    from swirl.config import load_config
    from swirl.store import Store

    config = write_iterate_config(tmp_path, tiny_model_dir, name="e2e")
    with local_prefect(str(tmp_path / "prefect"), cwd=ROOT) as server:
        http = server.http
        dep = server.serve(config)["swirl_iterate"]  # and the swirl_round, swirl_evaluate deployments
        params = {"rounds": 2, "knobs": {"eval_questions": 3, "learning_rate": 0.002}}
        fr = server.run(dep, params, timeout=900)
        assert fr["state"]["type"] == "COMPLETED", fr["state"]
        assert fr["name"] == "e2e iterate #1"  # renamed to the MLflow run's name

        def artifacts(flow_run_id: str) -> dict[str, dict]:
            body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
            return {a["key"]: a for a in http.post("/artifacts/filter", json=body).json() if a["key"]}

        top = artifacts(fr["id"])
        assert {"rounds", "mlflow-run", "resolved-config"} <= set(top)
        assert "| 2 |" in top["rounds"]["data"] and "learning_rate: 0.002" in top["resolved-config"]["data"]
        subs = http.post(
            "/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [fr["id"]]}}}
        ).json()
        assert sorted(s["name"] for s in subs) == ["e2e round 1", "e2e round 2"]
        for s in subs:
            keys = set(artifacts(s["id"]))
            assert {"round-stages", "evaluation", "trajectories", "mlflow-run"} <= keys, keys

        # round 2 generated with round 1's adapter
        cfg = load_config(config)
        store = Store(cfg.run.store_root)
        rounds = [store.ref("iteration", m["version"]).summary for m in store.versions("iteration")]
        r1 = next(r for r in rounds if r["round"] == 1)
        used = {
            a
            for m in store.versions("generate")
            for a in store.read("generate", m["version"])["adapter"].to_pylist()
        }
        assert used == {"", r1["adapter"]}

        # MLflow: the iteration run, its two rounds, the registered model with two versions and the alias
        client = MlflowClient(cfg.run.mlflow_uri)
        exp = client.get_experiment_by_name("e2e-exp")
        it = client.search_runs([exp.experiment_id], "tags.`swirl.kind` = 'iterate'")
        assert [r.info.run_name for r in it] == ["e2e iterate #1"]
        children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{it[0].info.run_id}'")
        assert sorted(r.info.run_name for r in children) == ["e2e round 1", "e2e round 2"]
        assert all(r.data.params["train.learning_rate"] == "0.002" for r in children)
        versions = client.search_model_versions("name = 'e2e-exp'")
        assert len(versions) == 2
        assert client.get_model_version_by_alias("e2e-exp", "champion").version in {
            v.version for v in versions
        }
