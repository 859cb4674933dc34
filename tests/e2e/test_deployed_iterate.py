"""The Prefect control panel end to end: a real Prefect server on 127.0.0.1, `swirl serve` as the worker, and
`swirl_iterate` triggered through the Prefect REST API with parameter overrides, as the UI's Run form does.

Checks: 2 rounds ran, round 2 generated with round 1's adapter (the adapter path on its trajectories), MLflow
holds the iteration run, both rounds, a registered model with 2 versions and the `champion` alias, and the
Prefect flow runs carry the artifacts (rounds table, MLflow link, resolved config; each round its stage table,
evaluation table and trajectory sample)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.flows.iterate_config import write_iterate_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], env: dict[str, str], log: str) -> subprocess.Popen:
    out = open(log, "w")
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def _wait(what: str, check, timeout: float, logs: list[str]) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got = check()
            if got:
                return got
        except httpx.HTTPError:
            pass
        time.sleep(2)
    tails = "\n".join(f"--- {p}\n{open(p).read()[-3000:]}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


@pytest.mark.slow
def test_iterate_deployment_through_the_prefect_api(tmp_path, tiny_model_dir):
    from mlflow import MlflowClient

    from swirl.config import load_config
    from swirl.store import Store

    config = write_iterate_config(tmp_path, tiny_model_dir, name="e2e")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "PYTHONPATH": ROOT,
    }
    env.pop("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", None)
    prefect = os.path.join(os.path.dirname(sys.executable), "prefect")
    logs = [str(tmp_path / "server.log"), str(tmp_path / "serve.log")]
    server = _start([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, logs[0])
    serve = None
    try:
        http = httpx.Client(base_url=api, timeout=30)
        _wait("the Prefect server", lambda: http.get("/health").status_code == 200, 180, logs)
        serve = _start([sys.executable, "-m", "flows.cli", "serve", "--config", config], env, logs[1])

        def deployment():
            r = http.get("/deployments/name/swirl_iterate/e2e")
            return r.json() if r.status_code == 200 else None

        dep = _wait("swirl serve to register its deployments", deployment, 180, logs)
        for flow_name in ("swirl_round", "swirl_evaluate"):  # registered one after another
            _wait(
                f"the {flow_name} deployment",
                lambda f=flow_name: http.get(f"/deployments/name/{f}/e2e").status_code == 200,
                60,
                logs,
            )
        params = {"rounds": 2, "knobs": {"eval_questions": 3, "learning_rate": 0.002}}
        run = http.post(f"/deployments/{dep['id']}/create_flow_run", json={"parameters": params}).json()

        def finished():
            fr = http.get(f"/flow_runs/{run['id']}").json()
            return fr if fr["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        fr = _wait("the iterate flow run", finished, 900, logs)
        assert fr["state"]["type"] == "COMPLETED", fr["state"]
        assert fr["name"] == "e2e iterate #1"  # renamed to the MLflow run's name

        def artifacts(flow_run_id: str) -> dict[str, dict]:
            body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
            return {a["key"]: a for a in http.post("/artifacts/filter", json=body).json() if a["key"]}

        top = artifacts(run["id"])
        assert {"rounds", "mlflow-run", "resolved-config"} <= set(top)
        assert "| 2 |" in top["rounds"]["data"] and "learning_rate: 0.002" in top["resolved-config"]["data"]
        subs = http.post(
            "/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}}}
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
    finally:
        if serve is not None:
            _stop(serve)
        _stop(server)
        shutil.rmtree(tmp_path / "prefect-home", ignore_errors=True)
