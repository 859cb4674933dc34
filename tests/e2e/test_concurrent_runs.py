"""Two `swirl run configs/smoke.yaml` started at once on one store: both finish, the store holds one copy
of every output, and no stage is computed by both (the lease per output version: the second run waits for the
first one's output and takes it as a store hit). About 6 minutes on a busy 2-core CPU machine (two vLLM
engines)."""

import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from tests.e2e.test_smoke_run import ROOT, SMOKE_OUTPUTS


def _start(cwd, log, prefect_home):
    """`swirl run` as a user starts it; both runs share one fresh Prefect home (its database is set up by the
    first temporary server while the second waits: flows/local_server.py:start_temporary_server)."""
    env = {**os.environ, "PYTHONPATH": ROOT, "COLUMNS": "200", "PREFECT_HOME": str(prefect_home)}
    cmd = [sys.executable, "-m", "flows.cli", "run", "configs/smoke.yaml"]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def _outcomes(stdout: str) -> dict[str, str]:
    """The run's summary table: stage label -> 'computed' or 'cached'."""
    out = {}
    for ln in stdout.splitlines():
        cells = [c.strip() for c in ln.split("│")]
        if ln.startswith("│") and len(cells) > 4 and cells[4] in ("computed", "cached"):
            out[cells[1]] = cells[4]
    return out


@pytest.mark.slow
@pytest.mark.vllm  # the smoke run's policy engine is vLLM (started by each `swirl run`, in its subprocess)
def test_two_runs_of_one_config_at_once_compute_each_output_once(tmp_path):
    shutil.copytree(os.path.join(ROOT, "configs"), tmp_path / "configs")
    # nothing set up before: the MLflow database (SQLite in the store folder) and the Prefect home are
    # created by the runs themselves, at once
    logs = [open(tmp_path / f"run{i}.log", "w+") for i in range(2)]
    procs = [_start(tmp_path, log, tmp_path / "prefect") for log in logs]
    rcs = [p.wait(timeout=1800) for p in procs]
    outs = []
    for log in logs:
        log.seek(0)
        outs.append(log.read())
        log.close()
    assert rcs == [0, 0], "\n\n".join(o[-3000:] for o in outs)

    first, second = (_outcomes(o) for o in outs)
    assert first.keys() == second.keys() and len(first) >= 10
    both = sorted(k for k in first if first[k] == second[k] == "computed")
    assert not both, f"computed by both runs: {both}"
    assert all("computed" in (first[k], second[k]) for k in first), "every output computed by one run"

    store = tmp_path / "runs" / "smoke"
    leftovers = sorted(
        f"{stage.name}/{p.name}"
        for stage in store.iterdir()
        if stage.is_dir()
        for p in stage.iterdir()
        if p.name.endswith((".partial", ".lease")) or p.name.startswith(".tmp-")
    )
    assert not leftovers, f"left in the store: {leftovers}"
    from swirl.store import Store

    # the outputs of one run, once (tests/e2e/test_smoke_run.py counts the same)
    assert Counter(m["stage"] for m in Store(str(store)).versions()) == SMOKE_OUTPUTS
