"""The store on object storage: the same contract as on a local disk (tests/unit/test_store.py), against
moto's S3 server through s3fs, with crashes in child processes and two runs writing one bucket."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest
import s3fs

from swirl.store import MANIFEST, IncompleteOutput, Store, local_copy, path_exists
from swirl.tables import to_table
from tests.support.s3 import child_env, fresh_bucket_url, moto_s3
from tests.unit.test_store import N_SHARDS, PER_SHARD, _rows, _sorted, write_all


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def url(s3) -> str:
    return fresh_bucket_url()


def _other_fs() -> s3fs.S3FileSystem:
    """A second client of the same bucket, as another process would have (its own listing cache)."""
    return s3fs.S3FileSystem(skip_instance_cache=True)


def _keys(store: Store, stage: str, version: str) -> list[str]:
    base = store.path(stage, version).removeprefix("s3://")  # listings name keys without the protocol
    return sorted(p[len(base) + 1 :] for p in _other_fs().find(base))


def _expected_rows(keys) -> list[dict]:
    return sorted((r for k in keys for r in _rows(k)), key=lambda r: (r["trajectory_id"], r["step"]))


def test_write_table_round_trip_with_files(url):
    store = Store(url)
    assert not store.local and store.root == url  # paths on a remote store are URLs
    t = to_table("judgments", _rows("a"))

    def files(folder):
        os.makedirs(os.path.join(folder, "index"))
        with open(os.path.join(folder, "index", "vectors.bin"), "wb") as f:
            f.write(b"\x00\x01\x02")

    ref = store.write_table("judge", "v", t, "judgments", {"x": 1}, {"up": "u1"}, {"n": 3}, files=files)
    assert ref.rows == PER_SHARD and ref.path == f"{url}/judge/v"
    assert store.is_complete("judge", "v", verify=True)
    assert store.read("judge", "v").equals(t)
    assert _keys(store, "judge", "v") == [MANIFEST, "files/index/vectors.bin", "part-00000.parquet"]
    assert store.fs.cat_file(store.files_path("judge", "v") + "/index/vectors.bin") == b"\x00\x01\x02"
    m = store.manifest("judge", "v")
    assert (m["config"], m["inputs"], m["summary"]) == ({"x": 1}, {"up": "u1"}, {"n": 3})
    assert [v["version"] for v in Store(url).versions()] == ["v"]


def test_write_files(url):
    store = Store(url)

    def producer(folder):
        os.makedirs(os.path.join(folder, "adapter"))
        for name, data in (("adapter/weights.bin", b"w" * 100), ("report.md", b"# report\n")):
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)

    ref = store.write_files("train", "t1", producer, {"lr": 0.1})
    assert ref.table is None and store.is_complete("train", "t1", verify=True)
    base = store.files_path("train", "t1")
    assert store.fs.cat_file(f"{base}/adapter/weights.bin") == b"w" * 100
    assert store.fs.cat_file(f"{base}/report.md") == b"# report\n"
    names = {f["name"]: f["bytes"] for f in store.manifest("train", "t1")["files"]}
    assert names == {"files/adapter/weights.bin": 100, "files/report.md": 9}


def test_an_outputs_folder_handed_to_a_library_is_a_local_copy(url, tmp_path, monkeypatch):
    monkeypatch.setenv("SWIRL_CACHE", str(tmp_path / "cache"))
    store = Store(url)

    def producer(folder):
        os.makedirs(os.path.join(folder, "adapter"))
        with open(os.path.join(folder, "adapter", "weights.bin"), "wb") as f:
            f.write(b"w" * 100)

    ref = store.write_files("train", "t2", producer, {"lr": 0.2})
    adapter = f"{ref.path}/files/adapter"
    assert adapter.startswith("s3://") and path_exists(adapter) and not path_exists(f"{ref.path}/files/x")
    local = local_copy(adapter)
    assert local.startswith(str(tmp_path / "cache")) and os.listdir(local) == ["weights.bin"]
    with open(os.path.join(local, "weights.bin"), "rb") as f:
        assert f.read() == b"w" * 100


def test_sharded_write_resumes_after_an_abandoned_writer(url):
    store = Store(url)
    w = store.sharded("judge", "v1", "judgments", {"k": 1})
    for k in ("q0", "q1"):
        w.write_shard(to_table("judgments", _rows(k)), [k])
    # the abandoned writer was writing shard 2: its parquet is there, its commit record is not
    _other_fs().pipe_file(f"{w.dir}/shard-00002.parquet", b"half a parquet")
    del w

    w2 = Store(url).sharded("judge", "v1", "judgments", {"k": 1})  # what a new process does
    assert w2.done_keys() == {"q0", "q1"}
    assert not store.fs.exists(f"{w2.dir}/shard-00002.parquet"), "the torn shard is dropped"
    write_all(url)  # writes q2..q5 only, then finalizes
    table = store.read("judge", "v1")
    assert _sorted(table) == _expected_rows(f"q{i}" for i in range(N_SHARDS))
    m = store.manifest("judge", "v1")
    assert [s["keys"] for s in m["shards"]] == [[f"q{i}"] for i in range(N_SHARDS)]
    assert not store.fs.exists(w2.dir), "the partial folder is removed after the commit"
    assert _keys(store, "judge", "v1") == [MANIFEST] + [f"shard-{i:05d}.parquet" for i in range(N_SHARDS)]
    assert store.sharded("judge", "v1", "judgments", {"k": 1}).done_keys() == {f"q{i}" for i in range(6)}


def test_an_output_without_its_manifest_is_never_complete(url):
    store = Store(url)
    ref = store.write_table("judge", "v", to_table("judgments", _rows("a")), "judgments", {})
    other = _other_fs()
    other.rm_file(f"{ref.path}/{MANIFEST}")  # another client removes it: this store must see it
    assert not store.is_complete("judge", "v")
    with pytest.raises(IncompleteOutput, match="did not finish"):
        store.read("judge", "v")
    # a version half uploaded: its parts but no manifest, then a manifest naming a part not uploaded
    other.pipe_file(f"{store.root}/judge/w/part-00000.parquet", b"x" * 10)
    assert not store.is_complete("judge", "w")
    manifest = {"table": "judgments", "files": [{"name": "part-00001.parquet", "bytes": 5, "sha256": "0"}]}
    other.pipe_file(f"{store.root}/judge/w/{MANIFEST}", json.dumps(manifest).encode())
    assert not store.is_complete("judge", "w")
    with pytest.raises(IncompleteOutput, match="missing"):
        store.ref("judge", "w")


def test_another_clients_commit_is_seen_at_once(url):
    """No stale listings: a store that listed a stage sees a version another process commits after."""
    store = Store(url)
    store.write_table("judge", "a", to_table("judgments", _rows("a")), "judgments", {})
    assert [m["version"] for m in store.versions("judge")] == ["a"]
    assert not store.is_complete("judge", "b")
    src = f"{store.root}/judge/a"
    other = _other_fs()
    for name in ("part-00000.parquet", MANIFEST):  # a twin commit of the same files under another version
        other.copy(f"{src}/{name}", f"{store.root}/judge/b/{name}")
    assert len(store.versions("judge")) == 2  # b's manifest is a's copy: it names version a
    assert store.is_complete("judge", "b") and store.read("judge", "b").equals(store.read("judge", "a"))


# The child commits a table with three extra files (four data files and the manifest) and SIGKILLs itself
# right after upload number `kill_after` of s3fs's put_file, the way a killed worker stops mid-upload.
COMMIT_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import s3fs
    from tests.unit.test_store_s3 import commit_with_files

    url, kill_after = sys.argv[1], int(sys.argv[2])
    real_put = s3fs.S3FileSystem.put_file
    calls = [0]

    def put_file(self, *args, **kwargs):
        real_put(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    s3fs.S3FileSystem.put_file = put_file
    commit_with_files(url)
    """
)
N_EXTRA = 3


def commit_with_files(url: str):
    def files(folder):
        for i in range(N_EXTRA):
            with open(os.path.join(folder, f"f{i}.txt"), "w") as f:
                f.write(f"file {i}\n" * (i + 1))

    t = to_table("judgments", _rows("a") + _rows("b"))
    return Store(url).write_table("judge", "v", t, "judgments", {"x": 1}, files=files)


def _run(code: str, *args: str) -> int:
    return subprocess.run([sys.executable, "-c", code, *args], env=child_env(), timeout=120).returncode


@pytest.mark.parametrize(
    "kill_after", [1, N_EXTRA + 1]
)  # after the first file; after every file but the manifest
def test_sigkill_during_commit_then_a_fresh_commit(url, kill_after):
    assert _run(COMMIT_CHILD, url, str(kill_after)) == -signal.SIGKILL
    store = Store(url)
    assert len(_keys(store, "judge", "v")) == kill_after, "the child died mid-upload"
    assert not store.is_complete("judge", "v")
    with pytest.raises(IncompleteOutput):
        store.read("judge", "v")
    ref = commit_with_files(url)
    assert store.is_complete("judge", "v", verify=True)
    assert _sorted(store.read_ref(ref)) == _expected_rows(["a", "b"])
    for i in range(N_EXTRA):
        assert store.fs.cat_file(f"{ref.path}/files/f{i}.txt") == f"file {i}\n".encode() * (i + 1)


# The child writes every shard, then SIGKILLs itself in the finalize after `kill_after` server-side copies.
FINALIZE_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import s3fs
    from tests.unit.test_store import write_all

    url, kill_after = sys.argv[1], int(sys.argv[2])
    real_copy = s3fs.S3FileSystem.copy
    calls = [0]

    def copy(self, *args, **kwargs):
        real_copy(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    s3fs.S3FileSystem.copy = copy
    write_all(url)
    """
)


@pytest.mark.parametrize("kill_after", [1, N_SHARDS])
def test_sigkill_during_finalize_loses_no_shard(url, kill_after):
    assert _run(FINALIZE_CHILD, url, str(kill_after)) == -signal.SIGKILL
    store = Store(url)
    assert not store.is_complete("judge", "v1")
    assert store.sharded("judge", "v1", "judgments", {"k": 1}).done_keys() == {f"q{i}" for i in range(6)}
    write_all(url)  # nothing left to write: commits the shards the killed run finished
    assert _sorted(store.read("judge", "v1")) == _expected_rows(f"q{i}" for i in range(N_SHARDS))


STAGE_CHILD = textwrap.dedent(
    """
    import sys
    from swirl.store import Store
    from swirl.tables import to_table
    from tests.unit.test_store import _rows

    url, stage = sys.argv[1], sys.argv[2]
    w = Store(url).sharded(stage, "v", "judgments", {"stage": stage})
    for i in range(8):
        w.write_shard(to_table("judgments", _rows(f"{stage}{i}")), [f"{stage}{i}"])
    w.finalize()
    """
)


def test_two_runs_of_different_stages_into_one_bucket(url):
    env = child_env()
    procs = [
        subprocess.Popen([sys.executable, "-c", STAGE_CHILD, url, stage], env=env)
        for stage in ("judge", "filter")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = Store(url)
    for stage in ("judge", "filter"):
        assert store.is_complete(stage, "v", verify=True)
        assert _sorted(store.read(stage, "v")) == _expected_rows(f"{stage}{i}" for i in range(8))
    assert sorted(m["stage"] for m in store.versions()) == ["filter", "judge"]
    assert sorted(p.rsplit("/", 1)[-1] for p in _other_fs().ls(store.root)) == ["filter", "judge"]


def test_an_empty_table_round_trips(url):
    store = Store(url)
    empty = to_table("judgments", [])
    store.write_table("judge", "e", empty, "judgments", {})
    got = store.read("judge", "e")
    assert got.num_rows == 0 and got.schema.equals(empty.schema) and isinstance(got, pa.Table)


def test_the_datasets_of_an_adapter_in_an_s3_store(url):
    from swirl.stages.train import trained_on

    store = Store(url)
    ingest = store.write_files("ingest", "q1", lambda d: None, {}, summary={"dataset": "gsm8k"})

    def adapter(folder):
        os.makedirs(os.path.join(folder, "adapter"))
        with open(os.path.join(folder, "adapter", "adapter_config.json"), "w") as f:
            f.write("{}")

    ref = store.write_files("train", "t3", adapter, {}, inputs={"questions": ingest.short()})
    assert trained_on(f"{ref.path}/files/adapter") == "gsm8k"
    assert trained_on(f"{url}/elsewhere/files/adapter") == ""
