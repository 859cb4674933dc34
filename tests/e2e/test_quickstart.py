"""The README's main command, end to end: `swirl run configs/quickstart.yaml` in a fresh folder, twice.

It starts its own vLLM engine in a subprocess, so it must not overlap the session's shared engine: pytest runs
tests/e2e before tests/unit (two vLLM CPU engines on the same cores slow each other to a crawl)."""

import os
import shutil
from collections import Counter
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _swirl(cwd, *args):
    env = {**os.environ, "PYTHONPATH": ROOT, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_quickstart_end_to_end(tmp_path):
    shutil.copytree(os.path.join(ROOT, "configs"), tmp_path / "configs")
    first = _swirl(tmp_path, "run", "configs/quickstart.yaml")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "ingest/gsm8k " in first.stdout and "computed" in first.stdout
    assert (tmp_path / "runs/quickstart/models/tiny-qwen2/model.safetensors").exists()
    assert (tmp_path / "runs/quickstart/data/hotpotqa/train.json").exists()
    assert (tmp_path / "runs/quickstart/mlflow.db").exists()

    again = _swirl(tmp_path, "run", "configs/quickstart.yaml")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "computed" not in again.stdout and again.stdout.count("cached") >= 2

    ls = _swirl(tmp_path, "store", "ls", "--config", "configs/quickstart.yaml")
    assert ls.returncode == 0
    stages = Counter(line.split("│")[1].strip() for line in ls.stdout.splitlines() if line.startswith("│"))
    assert stages == {"ingest": 4, "corpus": 1, "generate": 2, "judge": 2, "decompose": 2, "filter": 2, "train": 1}
    adapters = list((tmp_path / "runs/quickstart/train").glob("*/files/adapter/adapter_model.safetensors"))
    assert len(adapters) == 1 and "train " in first.stdout

    from mlflow import MlflowClient  # the train stage's nested run has per-step curves and the adapter

    client = MlflowClient("sqlite:///" + str(tmp_path / "runs/quickstart/mlflow.db"))
    exp = client.get_experiment_by_name("swirl-quickstart")
    run = next(r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "train")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"adapter", "files"}

    show = _swirl(tmp_path, "show", "trajectories", "--config", "configs/quickstart.yaml", "--dataset", "hotpotqa", "-n", "2")
    assert show.returncode == 0 and "2 of 44 trajectories" in show.stdout and "action 1:" in show.stdout

    bad = _swirl(tmp_path, "run", "configs/quickstart.yaml", "--stages", "ingest,nope")
    assert bad.returncode == 2 and "stages" in bad.stdout
