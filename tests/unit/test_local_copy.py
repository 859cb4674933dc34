"""`swirl.store.local_copy`: a local path as it is; a remote URL (here fsspec's in-memory filesystem, which
behaves as an object store for it) copied once into the cache, whole or not at all."""

from __future__ import annotations

import os
import uuid

import fsspec
import pytest

from swirl import store as store_mod
from swirl.store import StoreError, cache_dir, is_remote, local_copy, path_exists

FILES = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": b"\x00" * 1000, "sub/tok.txt": b"x"}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIRL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def remote():
    """A folder of files at a fresh memory:// URL."""
    url = f"memory://swirl-{uuid.uuid4().hex[:8]}/store/train/v1/files/adapter"
    fs = fsspec.filesystem("memory")
    for name, data in FILES.items():
        fs.pipe_file(f"{url}/{name}", data)
    yield url
    if fs.exists(url.split("/store")[0]):
        fs.rm(url.split("/store")[0], recursive=True)


def _read_tree(folder: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = f.read()
    return out


def test_a_local_path_is_returned_as_it_is(tmp_path, cache):
    (tmp_path / "adapter").mkdir()
    assert local_copy(str(tmp_path / "adapter")) == str(tmp_path / "adapter")
    assert local_copy(f"file://{tmp_path}/adapter") == f"{tmp_path}/adapter"
    assert not is_remote(str(tmp_path)) and not is_remote("file:///x") and is_remote("s3://b/k")
    assert not cache.exists()  # nothing copied


def test_a_remote_folder_is_copied_with_every_file(remote, cache):
    local = local_copy(remote)
    assert local.startswith(str(cache)) and os.path.basename(local) == "adapter"
    assert _read_tree(local) == FILES
    assert local_copy(f"{remote}/sub/tok.txt").endswith("/tok.txt")  # a single file too
    with open(local_copy(f"{remote}/sub/tok.txt"), "rb") as f:
        assert f.read() == b"x"


def test_a_second_call_reuses_the_copy(remote):
    first = local_copy(remote)
    fsspec.filesystem("memory").rm(remote, recursive=True)  # the copy needs nothing remote any more
    assert local_copy(remote + "/") == first
    assert _read_tree(first) == FILES


def test_a_crash_mid_download_leaves_nothing_that_is_used(remote, cache, monkeypatch):
    real_get = fsspec.get_filesystem_class("memory").get_file
    calls = []

    def dies_after_one_file(self, rpath, lpath, **kw):
        calls.append(rpath)
        if len(calls) > 1:
            raise ConnectionError("connection reset")
        return real_get(self, rpath, lpath, **kw)

    with monkeypatch.context() as mp:
        mp.setattr(fsspec.get_filesystem_class("memory"), "get_file", dies_after_one_file)
        with pytest.raises(ConnectionError):
            local_copy(remote)
    assert [n for n in os.listdir(cache) if not n.startswith(".tmp-")] == []  # no copy in place
    assert _read_tree(local_copy(remote)) == FILES  # the next call downloads it whole


def test_a_leftover_temporary_folder_is_never_taken_for_the_copy(remote, cache):
    os.makedirs(cache)
    local = local_copy(remote)
    slot = os.path.dirname(local)
    os.rename(slot, os.path.join(cache, f".tmp-{os.path.basename(slot)}-crashed"))
    os.remove(os.path.join(cache, f".tmp-{os.path.basename(slot)}-crashed", "adapter", "sub", "tok.txt"))
    assert _read_tree(local_copy(remote)) == FILES


def test_a_short_download_is_an_error(remote, cache, monkeypatch):
    def short(self, rpath, lpath, **kw):
        with open(lpath, "wb") as f:
            f.write(b"")

    monkeypatch.setattr(fsspec.get_filesystem_class("memory"), "get_file", short)
    with pytest.raises(StoreError, match="has 0 bytes, expected 8"):
        local_copy(remote)
    assert [n for n in os.listdir(cache) if not n.startswith(".tmp-")] == []


def test_a_missing_url_is_one_clear_error(remote):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        local_copy(remote + "-missing")
    assert path_exists(remote) and not path_exists(remote + "-missing")


def test_a_copy_put_in_place_by_a_twin_process_is_used(remote, cache, monkeypatch):
    real = store_mod._download

    def twin_finishes_first(url, dest):
        real(url, dest)
        key = os.path.basename(os.path.dirname(dest)).removeprefix(".tmp-").rsplit("-", 1)[0]
        slot = os.path.join(cache, key)
        real(url, os.path.join(slot, os.path.basename(dest)))  # the twin's copy lands first

    monkeypatch.setattr(store_mod, "_download", twin_finishes_first)
    local = local_copy(remote)
    assert _read_tree(local) == FILES
    assert [n for n in os.listdir(cache) if n.startswith(".tmp-")] == []  # ours was removed
    assert cache_dir() == str(cache)


def test_training_starts_from_the_local_copy_of_a_remote_adapter(remote, cache):
    from swirl.training.config import TrainConfig
    from swirl.training.run import with_local_init_adapter

    cfg = TrainConfig.model_validate({"lora": {"init_adapter": remote}})
    local = with_local_init_adapter(cfg).lora.init_adapter
    assert local.startswith(str(cache)) and _read_tree(local) == FILES
    assert cfg.lora.init_adapter == remote  # the config (and so the train version) keeps the URL
    assert with_local_init_adapter(TrainConfig()).lora.init_adapter is None
