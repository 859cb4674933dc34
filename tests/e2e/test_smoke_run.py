"""The smoke run end to end (the whole pipeline on the tiny model): `swirl run configs/smoke.yaml` in a fresh
folder, twice.

It starts its own vLLM engine in a subprocess, so it must not overlap the session's shared engine: pytest runs
tests/e2e before tests/unit (two vLLM CPU engines on the same cores slow each other to a crawl)."""

import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The outputs of one smoke run, per stage: 4 datasets + the whole hotpotqa train split (its search corpus; the
# training sample drops easy questions); a corpus per search split; base and trained policy on both test
# splits; one report.
SMOKE_OUTPUTS = {
    "ingest": 5,
    "corpus": 2,
    "generate": 2,
    "judge": 2,
    "decompose": 2,
    "filter": 2,
    "train": 1,
    "evaluate": 4,
    "eval_report": 1,
}


def _swirl(cwd, *args):
    env = {**os.environ, "PYTHONPATH": ROOT, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.vllm  # the smoke run's policy engine is vLLM (started by `swirl run`, in its subprocess)
def test_smoke_run_end_to_end(tmp_path):
    shutil.copytree(os.path.join(ROOT, "configs"), tmp_path / "configs")
    first = _swirl(tmp_path, "run", "configs/smoke.yaml")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "ingest/gsm8k " in first.stdout and "computed" in first.stdout
    assert (tmp_path / "runs/smoke/models/tiny-qwen2/model.safetensors").exists()
    assert (tmp_path / "runs/smoke/data/hotpotqa/train.json").exists()
    assert (tmp_path / "runs/smoke/mlflow.db").exists()

    again = _swirl(tmp_path, "run", "configs/smoke.yaml")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "computed" not in again.stdout and again.stdout.count("cached") >= 2

    ls = _swirl(tmp_path, "store", "ls", "--config", "configs/smoke.yaml")
    assert ls.returncode == 0
    stages = Counter(line.split("│")[1].strip() for line in ls.stdout.splitlines() if line.startswith("│"))
    assert stages == SMOKE_OUTPUTS
    adapters = list((tmp_path / "runs/smoke/train").glob("*/files/adapter/adapter_model.safetensors"))
    assert len(adapters) == 1 and "train " in first.stdout

    from mlflow import MlflowClient  # the train stage's nested run has per-step curves and the adapter

    client = MlflowClient("sqlite:///" + str(tmp_path / "runs/smoke/mlflow.db"))
    exp = client.get_experiment_by_name("swirl-smoke")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "train"]
    run = next(r for r in runs if r.data.tags["swirl.cached"] == "false")  # the second run's is a store hit
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]
    # the adapter as an MLflow model (base + adapter), the curves and reports as files
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"model", "files"}
    cached = next(r for r in runs if r.data.tags["swirl.cached"] == "true")
    assert "model" not in {a.path for a in client.list_artifacts(cached.info.run_id)}  # not logged again
    versions = client.search_model_versions("name = 'swirl-smoke'")
    assert len(versions) == 1 and versions[0].run_id == run.info.run_id

    parent = next(
        r
        for r in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'")
        if "mlflow.parentRunId" not in r.data.tags
    )
    for ds, n in (("gsm8k_test", 32), ("hotpotqa_dev", 16)):  # the round's run carries every accuracy
        for policy in ("base", "trained"):
            assert f"eval/{ds}/{policy}/accuracy_rule" in parent.data.metrics
            assert parent.data.metrics[f"eval/{ds}/{policy}/questions"] == n
        assert f"eval/{ds}/trained/mcnemar_p" in parent.data.metrics
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "eval")} >= {
        "eval/report.md",
        "eval/heatmap.png",
        "eval/report_table.json",
    }
    report = next((tmp_path / "runs/smoke/eval_report").glob("*/files/report.md")).read_text()
    assert "| trained | gsm8k+hotpotqa | gsm8k_test | 32 |" in report and "## Cross-task table" in report
    assert "evaluation (rule-graded accuracy" in first.stdout

    # evaluation only, with the trained adapter under another name: its episodes are store hits (same policy
    # files, same questions), only the report is new; no generate or train stage runs
    ev = _swirl(
        tmp_path, "eval", "--config", "configs/smoke.yaml", "--adapter", f"round1={adapters[0].parent}"
    )
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-3000:]
    lines = {
        ln.split("│")[1].strip(): ln for ln in ev.stdout.splitlines() if ln.startswith("│") and "│" in ln[1:]
    }
    assert "cached" in lines["eval/gsm8k_test/round1"] and "cached" in lines["eval/hotpotqa_dev/base"]
    assert "computed" in lines["eval"] and not any(k.startswith(("generate", "train")) for k in lines)
    report = max((tmp_path / "runs/smoke/eval_report").glob("*/files/report.md"), key=os.path.getmtime)
    # read from the adapter's output
    assert "| round1 | gsm8k+hotpotqa | gsm8k_test | 32 |" in report.read_text()

    show = _swirl(
        tmp_path,
        "show",
        "trajectories",
        "--config",
        "configs/smoke.yaml",
        "--dataset",
        "hotpotqa",
        "-n",
        "2",
    )
    assert show.returncode == 0 and "2 of 44 trajectories" in show.stdout and "action 1:" in show.stdout

    bad = _swirl(tmp_path, "run", "configs/smoke.yaml", "--stages", "ingest,nope")
    err = bad.stderr.strip()
    assert bad.returncode == 2 and "stages" in err and "'nope'" in err and "\n" not in err
