import json
import os
import signal
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

from swirl.store import IncompleteOutput, Store, StoreError, stage_version
from swirl.tables import SchemaError, to_table

N_SHARDS, PER_SHARD = 6, 3


def _rows(key: str) -> list[dict]:
    return [
        {
            "trajectory_id": f"{key}-{j}",
            "step": j,
            "process_label": "GOOD",
            "judge_text": "x" * j,
            "outcome_correct": j % 2 == 0,
            "judge_model": "m",
            "outcome_llm": None,
            "outcome_llm_text": "",
        }
        for j in range(PER_SHARD)
    ]


def write_all(root: str) -> None:
    """Write N_SHARDS shards (work items q0..q5), skipping items already stored, then finalize."""
    w = Store(root).sharded("judge", "v1", "judgments", {"k": 1})
    done = w.done_keys()
    for i in range(N_SHARDS):
        key = f"q{i}"
        if key not in done:
            w.write_shard(to_table("judgments", _rows(key)), [key])
    w.finalize({"shards": N_SHARDS})


# The child runs write_all and SIGKILLs itself at a chosen call of the writer's atomic put (2k: shard k's
# parquet, 2k+1: its commit record, 2N: the final manifest); mode "torn" first leaves half-written bytes
# behind (in the temporary file and at the final name), as a crash mid-write on a non-atomic filesystem would.
CHILD = textwrap.dedent(
    f"""
    import os, signal, sys
    sys.path.insert(0, {os.getcwd()!r})
    from swirl.store import ShardedWriter
    from tests.unit.test_store import write_all

    root, kill_call, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    real_put = ShardedWriter._atomic_put
    calls = [0]

    def put(self, path, data):
        n = calls[0]; calls[0] += 1
        if n == kill_call:
            if mode == "torn":
                for p in (path + ".tmp-torn", path):
                    with open(p, "wb") as f:
                        f.write(data[: len(data) // 2])
            if mode == "after":
                real_put(self, path, data)
            os.kill(os.getpid(), signal.SIGKILL)
        real_put(self, path, data)

    ShardedWriter._atomic_put = put
    write_all(root)
    """
)


def _run_child(root: str, kill_call: int, mode: str) -> int:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run(
        [sys.executable, "-c", CHILD, root, str(kill_call), mode], env=env, cwd=os.getcwd()
    ).returncode


def _sorted(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r["trajectory_id"], r["step"]))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict]:
    root = str(tmp_path_factory.mktemp("ref"))
    write_all(root)
    return _sorted(Store(root).read("judge", "v1"))


@pytest.mark.parametrize("mode", ["before", "torn", "after"])
@pytest.mark.parametrize("kill_call", list(range(0, 2 * N_SHARDS + 1)))
def test_sigkill_at_any_shard_then_rerun_gives_exact_rows(tmp_path, reference, kill_call, mode):
    rc = _run_child(str(tmp_path), kill_call, mode)
    assert rc == -signal.SIGKILL
    store = Store(str(tmp_path))
    if not (mode == "after" and kill_call == 2 * N_SHARDS):
        assert not store.is_complete("judge", "v1"), "a killed write must never look complete"
        with pytest.raises(IncompleteOutput):
            store.read("judge", "v1")
    write_all(str(tmp_path))  # the re-run
    table = store.read("judge", "v1")
    assert _sorted(table) == reference
    assert table.num_rows == N_SHARDS * PER_SHARD
    m = store.manifest("judge", "v1")
    assert sorted(k for s in m["shards"] for k in s["keys"]) == [f"q{i}" for i in range(N_SHARDS)]
    assert not os.path.exists(str(tmp_path / "judge" / "v1.partial"))


def test_resume_skips_done_work(tmp_path):
    store = Store(str(tmp_path))
    w = store.sharded("judge", "v", "judgments", {})
    w.write_shard(to_table("judgments", _rows("a")), ["a"])
    w2 = store.sharded("judge", "v", "judgments", {})  # a new process would see the same
    assert w2.done_keys() == {"a"}
    with pytest.raises(StoreError, match="already stored"):
        w2.write_shard(to_table("judgments", _rows("a")), ["a"])
    w2.write_shard(to_table("judgments", _rows("b")), ["b"])
    ref = w2.finalize()
    assert ref.rows == 2 * PER_SHARD
    assert store.sharded("judge", "v", "judgments", {}).done_keys() == {"a", "b"}


def test_rewrite_of_complete_version_is_a_noop(tmp_path):
    store = Store(str(tmp_path))
    t = to_table("judgments", _rows("a"))
    ref = store.write_table("judge", "v", t, "judgments", {"x": 1})
    part = os.path.join(ref.path, "part-00000.parquet")
    before = os.stat(part).st_mtime_ns
    ref2 = store.write_table("judge", "v", t, "judgments", {"x": 1})
    assert ref2 == ref and os.stat(part).st_mtime_ns == before


def test_corruption_is_detected(tmp_path):
    store = Store(str(tmp_path))
    ref = store.write_table("judge", "v", to_table("judgments", _rows("a")), "judgments", {})
    part = os.path.join(ref.path, "part-00000.parquet")
    data = bytearray(open(part, "rb").read())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    open(part, "wb").write(bytes(data))
    assert store.is_complete("judge", "v")  # sizes match...
    assert not store.is_complete("judge", "v", verify=True)  # ...checksums do not
    with pytest.raises(IncompleteOutput, match="checksum"):
        store.read("judge", "v")
    open(part, "wb").write(bytes(data[:-10]))
    assert not store.is_complete("judge", "v")
    os.remove(os.path.join(ref.path, "_manifest.json"))
    with pytest.raises(IncompleteOutput, match="did not finish"):
        store.read("judge", "v")


def test_manifest_contents(tmp_path):
    store = Store(str(tmp_path))
    ref = store.write_table(
        "judge",
        "v",
        to_table("judgments", _rows("a")),
        "judgments",
        {"x": 1},
        {"up": "abc"},
        {"n": 3},
        files=lambda d: open(os.path.join(d, "index.bin"), "wb").write(b"123"),
    )
    m = json.load(open(os.path.join(ref.path, "_manifest.json")))
    assert m["stage"] == "judge" and m["version"] == "v" and m["rows"] == PER_SHARD
    assert m["config"] == {"x": 1} and m["inputs"] == {"up": "abc"} and m["summary"] == {"n": 3}
    assert {f["name"] for f in m["files"]} == {"part-00000.parquet", "files/index.bin"}
    assert all(len(f["sha256"]) == 64 for f in m["files"]) and m["swirl_version"]
    assert open(os.path.join(store.files_path("judge", "v"), "index.bin"), "rb").read() == b"123"


def test_version_changes_only_downstream():
    def chain(cfg_a, cfg_b, cfg_c):
        a = stage_version("a", cfg_a, {}, "questions")
        b = stage_version("b", cfg_b, {"a": a}, "trajectories")
        c = stage_version("c", cfg_c, {"b": b}, "judgments")
        return a, b, c

    base = chain({"x": 1}, {"y": 1}, {"z": 1})
    assert chain({"x": 1}, {"y": 1}, {"z": 1}) == base  # deterministic
    a, b, c = chain({"x": 1}, {"y": 2}, {"z": 1})
    assert a == base[0] and b != base[1] and c != base[2]
    a, b, c = chain({"x": 1}, {"y": 1}, {"z": 2})
    assert (a, b) == base[:2] and c != base[2]
    assert stage_version("a", {"p": 1, "q": 2}) == stage_version("a", {"q": 2, "p": 1})  # canonical JSON


def test_fsspec_memory_store_round_trip():
    store = Store("memory://swirl-test-store")
    assert not store.local
    t = to_table("judgments", _rows("m"))
    store.write_table("judge", "v", t, "judgments", {})
    assert store.is_complete("judge", "v", verify=True)
    assert store.read("judge", "v").equals(t)
    w = store.sharded("judge", "s", "judgments", {})
    w.write_shard(t, ["m"])
    w.finalize()
    assert store.read("judge", "s").num_rows == PER_SHARD
    assert [m["version"] for m in store.versions("judge")]


def test_schema_errors_name_the_column():
    with pytest.raises(SchemaError, match="unknown columns \\['oops'\\]"):
        to_table("judgments", [{**_rows("a")[0], "oops": 1}])
    with pytest.raises(SchemaError, match="missing columns \\['step'\\]"):
        to_table("judgments", [{k: v for k, v in _rows("a")[0].items() if k != "step"}])
