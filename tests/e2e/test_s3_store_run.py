"""The smoke run on an S3 store (moto's server, reached through AWS_ENDPOINT_URL as a real run reaches MinIO
or AWS): `swirl run configs/smoke.yaml` with `run.root: s3://<fresh bucket>/store` and a local SQLite MLflow
database. Every output lands in the bucket; the adapter, the index and the reports reach vLLM, peft, MLflow
and BM25 as local copies (swirl.store.local_copy). Then two such runs at once on one fresh bucket compute
each output once (the lease per output version, swirl/lease.py). About 8 minutes on a busy 2-core CPU
machine."""

import os
import shutil
from collections import Counter

import pytest
import yaml

from swirl.store import LEASE_SUFFIX, SHARD_SUFFIX, Store
from tests.e2e.test_concurrent_runs import _outcomes, _start
from tests.e2e.test_smoke_run import ROOT, SMOKE_OUTPUTS
from tests.support.s3 import fresh_bucket_url, moto_s3


@pytest.fixture
def s3(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIRL_CACHE", str(tmp_path / "cache"))  # the runs' local copies of remote outputs
    with moto_s3() as endpoint:
        yield endpoint


def _configs(folder, root: str) -> None:
    """The project's configs in `folder`, with configs/smoke.yaml's store at `root` and its MLflow database
    a local SQLite file."""
    shutil.copytree(os.path.join(ROOT, "configs"), folder / "configs")
    path = folder / "configs" / "smoke.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["run"].update(root=root, tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def _run(folder, n: int) -> list[tuple[int, str]]:
    """`n` runs of `swirl run configs/smoke.yaml` in `folder` at once: (exit code, output) of each."""
    logs = [open(folder / f"run{i}.log", "w+") for i in range(n)]
    procs = [_start(folder, log, folder / "prefect") for log in logs]
    rcs = [p.wait(timeout=1800) for p in procs]
    out = []
    for rc, log in zip(rcs, logs, strict=True):
        log.seek(0)
        out.append((rc, log.read()))
        log.close()
    return out


def _check_store(root: str) -> None:
    """The bucket holds one complete copy of every output of a run and nothing half written."""
    store = Store(root)
    assert Counter(m["stage"] for m in store.versions()) == SMOKE_OUTPUTS
    half = (SHARD_SUFFIX, LEASE_SUFFIX)
    left = [
        p
        for p in store.fs.find(store.root)
        if any(part.endswith(half) or part.startswith(".tmp-") for part in p.split("/"))
    ]
    assert not left, f"left in the store: {left}"


@pytest.mark.slow
@pytest.mark.vllm  # the smoke run's policy engine is vLLM (started by `swirl run`, in its subprocess)
def test_a_run_on_an_s3_store_writes_every_output_there_and_a_rerun_is_all_hits(s3, tmp_path):
    root = fresh_bucket_url()
    _configs(tmp_path, root)
    [(rc, out)] = _run(tmp_path, 1)
    assert rc == 0, out[-4000:]
    assert "evaluation (rule-graded accuracy" in out and f"store: {root}" in out
    outcomes = _outcomes(out)
    assert len(outcomes) >= 10 and set(outcomes.values()) == {"computed"}
    _check_store(root)
    assert not os.path.exists(tmp_path / "runs" / "smoke" / "train")  # nothing of the store written locally
    store = Store(root)
    adapters = [p for p in store.fs.find(store.root) if p.endswith("/files/adapter/adapter_config.json")]
    assert len(adapters) == 1

    [(rc, out)] = _run(tmp_path, 1)
    assert rc == 0, out[-4000:]
    assert set(_outcomes(out).values()) == {"cached"}, out[-4000:]


@pytest.mark.slow
@pytest.mark.vllm
def test_two_runs_at_once_on_one_s3_store_compute_each_output_once(s3, tmp_path):
    root = fresh_bucket_url()
    _configs(tmp_path, root)
    (rc1, out1), (rc2, out2) = _run(tmp_path, 2)
    assert [rc1, rc2] == [0, 0], "\n\n".join(o[-3000:] for o in (out1, out2))
    first, second = _outcomes(out1), _outcomes(out2)
    assert first.keys() == second.keys() and len(first) >= 10
    both = sorted(k for k in first if first[k] == second[k] == "computed")
    assert not both, f"computed by both runs: {both}"
    assert all("computed" in (first[k], second[k]) for k in first), "every output computed by one run"
    _check_store(root)
