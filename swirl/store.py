"""The versioned store: where every stage's output lives (docs/design.md §3).

Layout under `root` (a local folder or any fsspec URL):

    <stage>/<version>/_manifest.json        the commit marker: written last, lists every file with its
                                            checksum
    <stage>/<version>/part-00000.parquet    table parts (one per shard for sharded writes)
    <stage>/<version>/files/...             other outputs of the stage (indexes, adapters, reports)
    <stage>/<version>.partial/              a sharded write in progress (resumable)
    <stage>/<version>.lease                 which run is writing that version now (swirl/lease.py)
    <stage>/.tmp-<version>-<nonce>/         a whole write in progress (renamed into place when complete)

`version` = short hash of (stage, canonical config JSON, input versions, table name + schema version). The
same inputs and config give the same version, so a finished stage is skipped; changing one knob re-runs that
stage and what follows. Only a version whose manifest exists and whose files match it is complete; anything
else is never read as a result.

On object storage (`s3://bucket/prefix`) the store uses s3fs with the standard AWS settings: credentials and
region from the environment or ~/.aws, and a non-AWS endpoint (MinIO, Ceph, moto) from `AWS_ENDPOINT_URL`
(or `AWS_ENDPOINT_URL_S3`), which botocore reads itself; so every process of a run (Prefect workers, Ray
actors, the training subprocess) that builds a `Store(root)` reaches the same bucket with no storage options
passed around. Directory listings are never cached (`use_listings_cache=False`): other processes write the
same store, and a cached listing would hide their commits.

Paths on a remote store are full URLs (`StageRef.path` is `s3://bucket/store/train/<version>`), so a path
written in a config (`policy.adapter`) says where it lives. Libraries that need a local folder (vLLM, peft,
MLflow, the BM25 index) get one from `local_copy(path)`, called where the path is handed to the library: a
local path unchanged, a remote one copied once into the local cache (`$SWIRL_CACHE`, else
~/.cache/swirl/remote) and reused; store outputs never change once committed, so a copy keyed by its URL
stays right.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from swirl import __version__
from swirl.tables import SCHEMA_VERSIONS, check_table, schema

MANIFEST = "_manifest.json"
SHARD_SUFFIX = ".partial"
LEASE_SUFFIX = ".lease"
VERSION_LEN = 12


class StoreError(RuntimeError):
    pass


# ------------------------------------------------------------------------------- remote paths
def is_remote(path: str) -> bool:
    """True for a URL of a non-local filesystem (s3://, gs://, memory://); False for a local path or
    file://."""
    return "://" in str(path) and not str(path).startswith("file://")


def path_exists(path: str) -> bool:
    """Whether a local path or a remote URL exists (a file or a folder)."""
    if not is_remote(path):
        return os.path.exists(path.removeprefix("file://"))
    fs, p = fsspec.core.url_to_fs(path, use_listings_cache=False)
    return bool(fs.exists(p))


def cache_dir() -> str:
    """Where remote copies live: `$SWIRL_CACHE`, else ~/.cache/swirl/remote."""
    return os.environ.get("SWIRL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "swirl", "remote")


def local_copy(path: str) -> str:
    """A local path for `path` (a file or a folder): a local path unchanged (file:// dropped); for a remote
    URL, a verified copy in `cache_dir()` keyed by the URL, made once and reused. The copy is downloaded into
    a temporary folder beside it and renamed into place when every file has its remote size, so a crash
    never leaves a half copy where it is looked for."""
    if not is_remote(path):
        return path.removeprefix("file://")
    url = path.rstrip("/")
    name = url.rsplit("/", 1)[-1]
    slot = os.path.join(cache_dir(), hashlib.sha256(url.encode()).hexdigest()[:16])
    if os.path.exists(slot):
        return os.path.join(slot, name)
    os.makedirs(cache_dir(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(slot)}-", dir=cache_dir())
    try:
        _download(url, os.path.join(tmp, name))
        os.rename(tmp, slot)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.exists(slot):  # not a twin process that put its copy there first
            raise
    return os.path.join(slot, name)


def _download(url: str, dest: str) -> None:
    """Copy the file or folder at `url` to the local path `dest`, checking every file's size."""
    fs, root = fsspec.core.url_to_fs(url, use_listings_cache=False)
    if fs.isdir(root):
        files = {p: info["size"] for p, info in fs.find(root, detail=True).items()}
        targets = {p: os.path.join(dest, os.path.relpath(p, root)) for p in files}
    elif fs.isfile(root):
        files, targets = {root: fs.size(root)}, {root: dest}
    else:
        raise FileNotFoundError(f"{url}: no such file or folder")
    for src, target in targets.items():
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fs.get_file(src, target)
        if os.path.getsize(target) != files[src]:
            raise StoreError(
                f"{url}: copy of {src} has {os.path.getsize(target)} bytes, expected {files[src]}"
            )


class IncompleteOutput(StoreError):
    """A stage output exists on disk but its manifest is missing or does not match its files."""


@dataclass(frozen=True)
class StageRef:
    """A small, picklable reference to one complete stage output (what tasks pass between each other)."""

    stage: str
    version: str
    path: str
    table: str | None
    rows: int
    summary: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0  # when the output was committed (time.time() of the writer)

    def short(self) -> str:
        return f"{self.stage}/{self.version}"


def as_refs(refs: StageRef | Iterable[StageRef], table: str, where: str) -> list[StageRef]:
    """One or several stage outputs of table `table`, sorted; `where` (e.g. "judge") names
    the argument in the error."""
    out = [refs] if isinstance(refs, StageRef) else list(refs)
    if not out:
        raise ValueError(f"{where} is empty; pass at least one {table} table")
    bad = [r.short() for r in out if r.table != table]
    if bad:
        raise ValueError(f"{where} must be {table} tables; got {bad}")
    return sorted(out, key=lambda r: r.short())


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def stage_version(
    stage: str, config: Mapping[str, Any], inputs: Mapping[str, str] | None = None, table: str | None = None
) -> str:
    """Short hash of everything that determines a stage's output."""
    payload = {
        "stage": stage,
        "config": config,
        "inputs": dict(sorted((inputs or {}).items())),
        "table": table,
        "schema_version": SCHEMA_VERSIONS.get(table) if table else None,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:VERSION_LEN]


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


class Store:
    """The store at `root`. `lease_ttl`: seconds without a heartbeat after which a run's lease on an output
    it is writing counts as abandoned (swirl/lease.py)."""

    def __init__(self, root: str, lease_ttl: float = 60.0):
        self.url = str(root)
        self.lease_ttl = float(lease_ttl)
        # no listing cache: another process's commit must be seen at the next look (see the module docstring)
        self.fs, self.root = fsspec.core.url_to_fs(self.url, use_listings_cache=False)
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        if self.local:
            self.root = os.path.abspath(self.root)
        else:  # paths carry the protocol: a path handed on (an adapter) says which filesystem it is on
            self.root = self.fs.unstrip_protocol(self.root)
        self.fs.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # ---------------------------------------------------------------------------------------- paths
    def path(self, stage: str, version: str) -> str:
        """The folder of an output: a local path, or a URL on a remote store."""
        return f"{self.root}/{stage}/{version}"

    def _join(self, *parts: str) -> str:
        return "/".join(p.rstrip("/") for p in parts)

    # ------------------------------------------------------------------------------------- reading
    def manifest(self, stage: str, version: str) -> dict[str, Any] | None:
        mpath = self._join(self.path(stage, version), MANIFEST)
        if not self.fs.exists(mpath):
            return None
        with self.fs.open(mpath, "rb") as f:
            try:
                return json.loads(f.read())
            except json.JSONDecodeError as e:
                raise IncompleteOutput(
                    f"{mpath}: corrupt manifest ({e}); delete {self.path(stage, version)} to redo the stage"
                ) from None

    def is_complete(self, stage: str, version: str, verify: bool = False) -> bool:
        """True when the manifest exists and its files are all there with the recorded sizes (and
        checksums)."""
        try:
            self._verified_manifest(stage, version, verify=verify)
            return True
        except IncompleteOutput:
            return False

    def _verified_manifest(self, stage: str, version: str, verify: bool) -> dict[str, Any]:
        base = self.path(stage, version)
        m = self.manifest(stage, version)
        if m is None:
            raise IncompleteOutput(f"{base}: no {MANIFEST}; the stage did not finish. Re-run it.")
        for entry in m["files"]:
            p = self._join(base, entry["name"])
            if not self.fs.exists(p):
                raise IncompleteOutput(
                    f"{p}: listed in the manifest but missing; delete {base} and re-run the stage."
                )
            size = self.fs.size(p)
            if size != entry["bytes"]:
                raise IncompleteOutput(
                    f"{p}: {size} bytes, manifest says {entry['bytes']}; the output is corrupt. Delete "
                    f"{base} and re-run."
                )
            if verify and self._sha256(p) != entry["sha256"]:
                raise IncompleteOutput(
                    f"{p}: checksum differs from the manifest; corrupt. Delete {base} and re-run."
                )
        return m

    def ref(self, stage: str, version: str) -> StageRef:
        m = self._verified_manifest(stage, version, verify=False)
        return StageRef(
            stage,
            version,
            self.path(stage, version),
            m.get("table"),
            m.get("rows", 0),
            m.get("summary", {}),
            m.get("created_at", 0.0),
        )

    def read(self, stage: str, version: str, verify: bool = True) -> pa.Table:
        """Read a complete stage table; parts are checksummed against the manifest while they are read."""
        m = self._verified_manifest(stage, version, verify=False)
        if not m.get("table"):
            raise StoreError(f"{self.path(stage, version)} holds files, not a table")
        base = self.path(stage, version)
        tables = []
        for entry in m["parts"]:
            p = self._join(base, entry["name"])
            with self.fs.open(p, "rb") as f:
                data = f.read()
            if verify and hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise IncompleteOutput(
                    f"{p}: checksum differs from the manifest; corrupt. Delete {base} and re-run."
                )
            tables.append(pq.read_table(io.BytesIO(data)))
        sch = schema(m["table"])
        table = pa.concat_tables(tables) if tables else sch.empty_table()
        return check_table(m["table"], table.replace_schema_metadata(None), source=base)

    def read_ref(self, ref: StageRef, verify: bool = True) -> pa.Table:
        return self.read(ref.stage, ref.version, verify=verify)

    def files_path(self, stage: str, version: str) -> str:
        """Folder of a complete stage output's extra files (a local path, or a URL on a remote store)."""
        self._verified_manifest(stage, version, verify=False)
        return self._join(self.path(stage, version), "files")

    def versions(self, stage: str | None = None) -> list[dict[str, Any]]:
        """Manifests of every complete output, newest first."""
        stages = (
            [stage]
            if stage
            else sorted(
                os.path.basename(p.rstrip("/"))
                for p in self.fs.ls(self.root, detail=False)
                if self.fs.isdir(p)
            )
        )
        out = []
        for s in stages:
            d = self._join(self.root, s)
            if not self.fs.exists(d):
                continue
            for p in self.fs.ls(d, detail=False):
                v = os.path.basename(p.rstrip("/"))
                if v.startswith(".") or v.endswith((SHARD_SUFFIX, LEASE_SUFFIX)):
                    continue
                m = self.manifest(s, v)
                if m is not None:
                    out.append(m)
        return sorted(out, key=lambda m: m.get("created_at", 0), reverse=True)

    # ------------------------------------------------------------------------------------- writing
    def write_table(
        self,
        stage: str,
        version: str,
        table: pa.Table,
        table_name: str,
        config: Mapping[str, Any],
        inputs: Mapping[str, str] | None = None,
        summary: Mapping[str, Any] | None = None,
        files: Callable[[str], None] | None = None,
    ) -> StageRef:
        """Write a whole table (and optional extra files, produced into a local folder) atomically."""
        check_table(table_name, table)

        def produce(tmp: str) -> list[dict[str, Any]]:
            part = os.path.join(tmp, "part-00000.parquet")
            pq.write_table(table, part)
            if files:
                os.makedirs(os.path.join(tmp, "files"), exist_ok=True)
                files(os.path.join(tmp, "files"))
            return [{"name": "part-00000.parquet", "rows": table.num_rows}]

        return self._commit(stage, version, produce, table_name, config, inputs, summary)

    def write_files(
        self,
        stage: str,
        version: str,
        producer: Callable[[str], None],
        config: Mapping[str, Any],
        inputs: Mapping[str, str] | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> StageRef:
        """Write a stage output made of files: `producer(folder)` fills a local folder that becomes
        `files/`."""

        def produce(tmp: str) -> list[dict[str, Any]]:
            os.makedirs(os.path.join(tmp, "files"), exist_ok=True)
            producer(os.path.join(tmp, "files"))
            return []

        return self._commit(stage, version, produce, None, config, inputs, summary)

    def _commit(self, stage, version, produce, table_name, config, inputs, summary) -> StageRef:
        final = self.path(stage, version)
        with tempfile.TemporaryDirectory(prefix=f"swirl-{stage}-") as local_tmp:
            parts = produce(local_tmp)
            manifest = self._build_manifest(
                local_tmp, stage, version, parts, table_name, config, inputs, summary
            )
            with open(os.path.join(local_tmp, MANIFEST), "w") as f:
                json.dump(manifest, f, indent=2, sort_keys=True, default=str)
            self.fs.makedirs(self._join(self.root, stage), exist_ok=True)
            if self.local:
                staging = self._join(self.root, stage, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
                shutil.copytree(local_tmp, staging)
                if os.path.exists(final):  # an incomplete leftover (no valid manifest) or a finished twin
                    if self.is_complete(stage, version):
                        shutil.rmtree(staging)
                        return self.ref(stage, version)
                    shutil.rmtree(final)
                os.replace(staging, final)
            elif self.is_complete(stage, version):  # a twin committed it: never overwrite a complete output
                return self.ref(stage, version)
            else:  # object stores have no atomic folder rename: upload data first, the manifest (commit) last
                for dirpath, _, names in os.walk(local_tmp):
                    for n in names:
                        if n == MANIFEST:
                            continue
                        src = os.path.join(dirpath, n)
                        self.fs.put_file(src, self._join(final, os.path.relpath(src, local_tmp)))
                self.fs.put_file(os.path.join(local_tmp, MANIFEST), self._join(final, MANIFEST))
        return self.ref(stage, version)

    def _build_manifest(
        self, folder, stage, version, parts, table_name, config, inputs, summary
    ) -> dict[str, Any]:
        files = []
        for dirpath, _, names in os.walk(folder):
            for n in sorted(names):
                if n == MANIFEST:
                    continue
                p = os.path.join(dirpath, n)
                files.append(
                    {
                        "name": os.path.relpath(p, folder),
                        "bytes": os.path.getsize(p),
                        "sha256": file_sha256(p),
                    }
                )
        by_name = {f["name"]: f for f in files}
        parts = [{**by_name[p["name"]], "rows": p["rows"]} for p in parts]
        return {
            "stage": stage,
            "version": version,
            "table": table_name,
            "schema_version": SCHEMA_VERSIONS.get(table_name) if table_name else None,
            "config": config,
            "inputs": dict(inputs or {}),
            "rows": sum(p["rows"] for p in parts),
            "parts": parts,
            "files": sorted(files, key=lambda f: f["name"]),
            "summary": dict(summary or {}),
            "swirl_version": __version__,
            "created_at": time.time(),
        }

    def sharded(
        self,
        stage: str,
        version: str,
        table_name: str,
        config: Mapping[str, Any],
        inputs: Mapping[str, str] | None = None,
    ) -> ShardedWriter:
        """A resumable writer: each shard is committed on its own; a crash loses at most the shard in
        flight."""
        return ShardedWriter(self, stage, version, table_name, dict(config), dict(inputs or {}))

    def _sha256(self, path: str) -> str:
        if self.local:
            return file_sha256(path)
        h = hashlib.sha256()
        with self.fs.open(path, "rb") as f:
            while b := f.read(1 << 20):
                h.update(b)
        return h.hexdigest()


class ShardedWriter:
    """Writes a table shard by shard into `<stage>/<version>.partial/`, then commits it as
    `<stage>/<version>/`.

    Each shard is `shard-NNNNN.parquet` plus `shard-NNNNN.json` (rows, keys, checksum); the JSON is written
    last, so a shard without it, or whose parquet does not match it, is incomplete and dropped on resume.
    `done_keys()` tells the caller which work items (e.g. question ids) are already stored, so a re-run does
    only the rest.
    """

    def __init__(self, store: Store, stage: str, version: str, table_name: str, config: dict, inputs: dict):
        self.store, self.stage, self.version, self.table_name = store, stage, version, table_name
        self.config, self.inputs = config, inputs
        self.fs = store.fs
        self.dir = store.path(stage, version) + SHARD_SUFFIX
        self._shards: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        if not store.is_complete(stage, version):
            self.fs.makedirs(self.dir, exist_ok=True)
            self._recover()

    @property
    def complete(self) -> bool:
        return self.store.is_complete(self.stage, self.version)

    def done_keys(self) -> set[str]:
        if self.complete:
            m = self.store.manifest(self.stage, self.version)
            return {k for p in m.get("shards", []) for k in p["keys"]}
        return set(self._keys)

    def _recover(self) -> None:
        """Keep the complete shards, delete everything else (a shard that was being written when we died)."""
        try:
            names = sorted(os.path.basename(p.rstrip("/")) for p in self.fs.ls(self.dir, detail=False))
        except FileNotFoundError:  # object stores have no empty folders: nothing written yet
            names = []
        good: list[dict[str, Any]] = []
        for n in names:
            if not (n.startswith("shard-") and n.endswith(".json")):
                continue
            meta_p = f"{self.dir}/{n}"
            try:
                with self.fs.open(meta_p, "rb") as f:
                    meta = json.loads(f.read())
                data_p = f"{self.dir}/{meta['name']}"
                ok = (
                    self.fs.exists(data_p)
                    and self.fs.size(data_p) == meta["bytes"]
                    and self.store._sha256(data_p) == meta["sha256"]
                )
            except (json.JSONDecodeError, KeyError, OSError):
                ok = False
            if ok:
                good.append(meta)
        keep = {m["name"] for m in good} | {m["name"].replace(".parquet", ".json") for m in good}
        for n in names:
            if n not in keep:
                self.fs.rm(f"{self.dir}/{n}", recursive=True)
        self._shards = sorted(good, key=lambda m: m["index"])
        self._keys = {k for m in self._shards for k in m["keys"]}

    def write_shard(self, table: pa.Table, keys: Iterable[str]) -> None:
        """Commit one shard holding the rows of work items `keys` (never ones already done)."""
        if self.complete:
            raise StoreError(f"{self.store.path(self.stage, self.version)} is already complete")
        keys = [str(k) for k in keys]
        again = self._keys.intersection(keys)
        if again:
            raise StoreError(
                f"shard repeats work items already stored: {sorted(again)[:5]}; skip done_keys()"
            )
        check_table(self.table_name, table)
        index = self._shards[-1]["index"] + 1 if self._shards else 0
        name = f"shard-{index:05d}.parquet"
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
        meta = {
            "index": index,
            "name": name,
            "rows": table.num_rows,
            "keys": keys,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._atomic_put(f"{self.dir}/{name}", data)
        self._atomic_put(f"{self.dir}/{name[:-8]}.json", json.dumps(meta).encode())  # the shard's commit
        self._shards.append(meta)
        self._keys.update(keys)

    def read_shards(self, columns: list[str] | None = None) -> pa.Table:
        """The rows committed so far (this run's shards and those a crashed run left), in shard order."""
        tables = []
        for s in self._shards:
            with self.fs.open(f"{self.dir}/{s['name']}", "rb") as f:
                tables.append(pq.read_table(io.BytesIO(f.read()), columns=columns))
        if not tables:
            sch = schema(self.table_name)
            return (sch if columns is None else pa.schema([sch.field(c) for c in columns])).empty_table()
        return pa.concat_tables(tables)

    def _atomic_put(self, path: str, data: bytes) -> None:
        if self.store.local:
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            with self.fs.open(path, "wb") as f:
                f.write(data)

    def finalize(
        self, summary: Mapping[str, Any] | None = None, files: Callable[[str], None] | None = None
    ) -> StageRef:
        """Commit all shards (and the extra files `files(folder)` writes into a local folder) as the stage's
        output. Idempotent: a complete output is returned as it is."""
        if self.complete:
            return self.store.ref(self.stage, self.version)
        final = self.store.path(self.stage, self.version)
        parts = [
            {"name": s["name"], "rows": s["rows"], "bytes": s["bytes"], "sha256": s["sha256"]}
            for s in self._shards
        ]
        extra: list[dict[str, Any]] = []
        if files:
            with tempfile.TemporaryDirectory(prefix=f"swirl-{self.stage}-files-") as tmp:
                files(tmp)
                for dirpath, _, names in os.walk(tmp):
                    for n in sorted(names):
                        src = os.path.join(dirpath, n)
                        name = "files/" + os.path.relpath(src, tmp)
                        extra.append(
                            {"name": name, "bytes": os.path.getsize(src), "sha256": file_sha256(src)}
                        )
                        self.fs.makedirs(os.path.dirname(f"{self.dir}/{name}"), exist_ok=True)
                        self.fs.put_file(src, f"{self.dir}/{name}")
        manifest = {
            "stage": self.stage,
            "version": self.version,
            "table": self.table_name,
            "schema_version": SCHEMA_VERSIONS.get(self.table_name),
            "config": self.config,
            "inputs": self.inputs,
            "rows": sum(p["rows"] for p in parts),
            "parts": parts,
            "files": [{k: p[k] for k in ("name", "bytes", "sha256")} for p in parts] + extra,
            "shards": [{"name": s["name"], "keys": s["keys"]} for s in self._shards],
            "summary": dict(summary or {}),
            "swirl_version": __version__,
            "created_at": time.time(),
        }
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        if self.store.local:
            self._atomic_put(os.path.join(self.dir, MANIFEST), body)
            if os.path.exists(final):
                shutil.rmtree(final)  # an incomplete leftover: complete outputs returned above
            os.replace(self.dir, final)
            for s in self._shards:  # per-shard commit records are not part of the output (harmless if left)
                os.remove(os.path.join(final, s["name"][:-8] + ".json"))
        else:  # no folder rename: copy every file (server side), commit with the manifest, then clean up;
            # a crash before the manifest leaves the shards in place for the next run to resume from
            for name in [s["name"] for s in self._shards] + [e["name"] for e in extra]:
                self.fs.copy(f"{self.dir}/{name}", f"{final}/{name}")
            self._atomic_put(f"{final}/{MANIFEST}", body)
            self.fs.rm(self.dir, recursive=True)
        return self.store.ref(self.stage, self.version)
