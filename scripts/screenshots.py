"""Screenshots of what a user sees in both UIs after an iteration, taken with headless Chromium.

    .venv/bin/python scripts/screenshots.py --config configs/quickstart.yaml --out docs/screenshots \
        --params '{"rounds": 1}'

(configs/quickstart.yaml warms up first: round 0 is the warm-up, round 1 the round; after `swirl run` on the
same config every stage is a store hit and this takes a few minutes.)

Starts a Prefect server (127.0.0.1, a fresh PREFECT_HOME under the output folder), `swirl serve` on the
config, triggers `swirl_iterate` for 2 rounds through the Prefect API (as the Run form does), starts `mlflow
ui` on the config's tracking store, and saves PNGs of: the iterate deployment's Run form, the iterate flow
run's artifacts, a round's flow run, the MLflow compare view of the two rounds, and the registered model.
Needs Debian's `chromium` (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import urllib.parse

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python scripts/screenshots.py`: the project's packages

from flows.local_server import local_prefect  # noqa: E402
from swirl.system import free_port  # noqa: E402


def shoot(url: str, path: str, width: int = 1600, height: int = 1100, budget_ms: int = 20000) -> None:
    """A PNG of `url` after its scripts ran for `budget_ms` of virtual time."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is not installed: apt-get install chromium")
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    print(f"saved {path}  <- {url}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--params", default='{"rounds": 2}', help="JSON parameters of the swirl_iterate run")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    work = os.path.join(out, ".work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with local_prefect(work, cwd=ROOT) as server:
        http, ui = server.http, server.ui
        dep = server.serve(args.config)["swirl_iterate"]  # waits for every deployment `swirl serve` registers
        fr = server.run(dep, json.loads(args.params), timeout=3600)
        print("iterate run:", fr["name"], fr["state"]["type"])
        # the Run form once the server is warm (a shot taken while the UI still loads comes out faded)
        form = f"{ui}/deployments/deployment/{dep['id']}/run"
        shoot(form, f"{out}/prefect-run-form.png", height=1600, budget_ms=60000)
        shoot(f"{ui}/runs/flow-run/{fr['id']}", f"{out}/prefect-iterate-run.png")

        def artifact(flow_run_id: str, key: str) -> str:
            body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}}}
            return http.post("/artifacts/filter", json=body).json()[0]["id"]

        shoot(f"{ui}/artifacts/artifact/{artifact(fr['id'], 'rounds')}", f"{out}/prefect-rounds-artifact.png")
        subs = http.post(
            "/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [fr["id"]]}}}
        ).json()
        if subs:
            last = max(subs, key=lambda s: s["start_time"] or "")  # the last round (not the warm-up)
            shoot(f"{ui}/runs/flow-run/{last['id']}", f"{out}/prefect-round-run.png")
            for key in ("round-stages", "evaluation", "trajectories"):
                shoot(
                    f"{ui}/artifacts/artifact/{artifact(last['id'], key)}", f"{out}/prefect-round-{key}.png"
                )
        from mlflow import MlflowClient

        from swirl.config import load_config

        cfg = load_config(args.config)
        client = MlflowClient(cfg.run.mlflow_uri)
        exp = client.get_experiment_by_name(cfg.run.experiment)
        it = client.search_runs(
            [exp.experiment_id], "tags.`swirl.kind` = 'iterate'", order_by=["attributes.start_time DESC"]
        )[0]
        rounds = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{it.info.run_id}'")
        mport = free_port()
        bin_dir = os.path.dirname(sys.executable)
        ui_cmd = [f"{bin_dir}/mlflow", "ui", "--backend-store-uri", cfg.run.mlflow_uri]
        server.start("mlflow", [*ui_cmd, "--host", "127.0.0.1", "--port", str(mport)])
        mlflow = f"http://127.0.0.1:{mport}"
        server.wait("the MLflow UI", lambda: httpx.get(f"{mlflow}/health", timeout=5).status_code == 200, 120)
        ids = urllib.parse.quote(json.dumps([r.info.run_id for r in rounds]))
        exps = urllib.parse.quote(json.dumps([exp.experiment_id]))
        shoot(
            f"{mlflow}/#/compare-runs?runs={ids}&experiments={exps}",
            f"{out}/mlflow-compare-rounds.png",
            height=1600,
        )
        shoot(
            f"{mlflow}/#/experiments/{exp.experiment_id}/runs/{it.info.run_id}",
            f"{out}/mlflow-iterate-run.png",
        )
        shoot(f"{mlflow}/#/experiments/{exp.experiment_id}", f"{out}/mlflow-experiment.png")
        shoot(
            f"{mlflow}/#/models/{urllib.parse.quote(cfg.run.experiment)}",
            f"{out}/mlflow-registered-model.png",
        )


if __name__ == "__main__":
    main()
