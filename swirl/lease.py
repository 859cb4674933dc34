"""A lease per output version: one run at a time writes a stage output (docs/design.md §3).

`<stage>/<version>.lease` next to the output is a small JSON file: the owner (host, pid and a random id), when
it took the lease, its last heartbeat and when the lease expires (heartbeat + its TTL). The holder renews it
from a heartbeat thread every TTL/3 while it works; a lease whose expiry has passed belongs to a run that died
(SIGKILL, a lost machine) and the next run takes it over, and the ShardedWriter's resume keeps the shards the
dead run finished. A holder on the same host whose process is gone is taken over at once (its pid is checked;
hosts are told apart by name, so containers that share a store need distinct host names). Expiry times are
the holder's wall clock: machines sharing a store need clocks that agree to well within the TTL.

Every change of the lease file is a compare-and-swap, so two runs never both believe they hold it:
- local disk: the change happens under an exclusive `flock` of the stage folder, the new contents land with
  an atomic rename;
- S3: conditional requests (`If-None-Match: *` to create, `If-Match: <etag>` to renew, take over or delete),
  which S3 has honoured since 2024 (and moto, MinIO);
- any other fsspec store: write, then read back and compare the owner. Two runs that write within the same
  moment can both read back their own write (the later one wins the file, the earlier one believes it holds
  it until its next heartbeat finds another owner): such stores are good for one run at a time.

`claim(store, stage, version)` is what `run_stage` uses: hold the lease while writing, or wait while another
live run holds it until its output is complete (then there is nothing to do) or its lease goes stale.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from swirl.store import LEASE_SUFFIX, StoreError

if TYPE_CHECKING:
    from swirl.store import Store

log = logging.getLogger("swirl.lease")


def owner_id() -> str:
    """Who holds a lease: this host, this process and a random part (two leases of one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _running(pid: int) -> bool:
    """Whether process `pid` runs on this host (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:  # no /proc (macOS): the signal said it exists
        return True


@dataclass(frozen=True)
class Holder:
    """The contents of a lease file."""

    owner: str
    acquired: float  # when the owner took the lease (its time.time())
    heartbeat: float  # its last renewal
    expires: float  # heartbeat + the owner's TTL

    def stale(self, now: float) -> bool:
        """No heartbeat for a TTL, or its process is gone (an owner on this host whose pid is not running:
        a killed run's lease is taken over at once, without waiting out the TTL)."""
        return now > self.expires or self.gone_here()

    def gone_here(self) -> bool:
        host, _, rest = self.owner.partition(":")
        pid = rest.partition(":")[0]
        return host == socket.gethostname() and pid.isdigit() and not _running(int(pid))

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes, path: str) -> Holder:
        try:
            d = json.loads(data)
            return cls(str(d["owner"]), float(d["acquired"]), float(d["heartbeat"]), float(d["expires"]))
        except (ValueError, KeyError, TypeError) as e:
            raise StoreError(
                f"{path}: unreadable lease ({e!r}); delete it if no run is writing that output"
            ) from None


# ----------------------------------------------------------------------------- compare-and-swap cells
class _LocalCell:
    """A file on a local disk; changes are serialised by a flock of its folder."""

    def __init__(self, path: str):
        self.path = path

    def read(self) -> tuple[bytes | None, object]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None, None
        return data, data

    def swap(self, token: object, data: bytes | None) -> bool:
        """Replace the contents read as `token` (None: no file) with `data` (None: delete the file)."""
        fd = os.open(os.path.dirname(self.path), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self.read()[1] != token:
                return False
            if data is None:
                os.remove(self.path)
            else:
                tmp = f"{self.path}.tmp-{uuid.uuid4().hex[:8]}"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            return True
        finally:
            os.close(fd)  # releases the flock


class _S3Cell:
    """An S3 object; changes are conditional requests on its ETag."""

    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path

    def read(self) -> tuple[bytes | None, object]:
        try:
            etag = self.fs.info(self.path)["ETag"]  # the tag first: contents read later are at least as new
            return self.fs.cat_file(self.path), etag
        except FileNotFoundError:
            return None, None

    def swap(self, token: object, data: bytes | None) -> bool:
        try:
            if data is None:
                bucket, key, _ = self.fs.split_path(self.path)
                self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=token)
            elif token is None:
                self.fs.pipe_file(self.path, data, mode="create")  # If-None-Match: *
            else:
                self.fs.pipe_file(self.path, data, IfMatch=token)
        except OSError:  # 412 Precondition Failed (FileExistsError for a create), or the object is gone
            return False
        return True


class _PlainCell:
    """Any other fsspec file: write, then read back (see the module docstring for the race)."""

    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path

    def read(self) -> tuple[bytes | None, object]:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None, None
        return data, data

    def swap(self, token: object, data: bytes | None) -> bool:
        if self.read()[1] != token:
            return False
        if data is None:
            self.fs.rm_file(self.path)
            return True
        self.fs.pipe_file(self.path, data)
        return self.read()[0] == data


def _cell(store: Store, path: str) -> _LocalCell | _S3Cell | _PlainCell:
    protocols = store.fs.protocol if isinstance(store.fs.protocol, tuple) else (store.fs.protocol,)
    if store.local:
        return _LocalCell(path)
    if {"s3", "s3a"} & set(protocols):
        return _S3Cell(store.fs, path)
    return _PlainCell(store.fs, path)


# ------------------------------------------------------------------------------------------ the lease
class Lease:
    """One run's lease on writing `<stage>/<version>` of `store`. `clock` (time.time) is for tests."""

    def __init__(
        self,
        store: Store,
        stage: str,
        version: str,
        ttl: float | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.path = store.path(stage, version) + LEASE_SUFFIX
        self.name = f"{stage}/{version}"
        self.ttl = float(ttl if ttl is not None else store.lease_ttl)
        if self.ttl <= 0:
            raise ValueError(f"lease TTL for {self.name} must be > 0 seconds; got {self.ttl}")
        store.fs.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.cell = _cell(store, self.path)
        self.owner, self.clock = owner_id(), clock
        self.acquired: float | None = None  # set while held
        self.lost = False  # a heartbeat found another owner: a run took the lease over as stale
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> Holder | None:
        data, _ = self.cell.read()
        return None if data is None else Holder.parse(data, self.path)

    def _body(self, now: float) -> bytes:
        return Holder(self.owner, self.acquired or now, now, now + self.ttl).to_bytes()

    def acquire(self) -> bool:
        """Take the lease if it is free or stale (one try); True when this run holds it now."""
        data, token = self.cell.read()
        now = self.clock()
        if data is not None:
            h = Holder.parse(data, self.path)
            if h.owner == self.owner:
                return True
            if not h.stale(now):
                return False
            why = "its process is gone" if h.gone_here() else f"it expired {now - h.expires:.0f} s ago"
            log.warning(
                "%s: taking over the lease of %s (no heartbeat for %.0f s; %s)",
                self.name,
                h.owner,
                now - h.heartbeat,
                why,
            )
        if not self.cell.swap(token, Holder(self.owner, now, now, now + self.ttl).to_bytes()):
            return False
        self.acquired, self.lost = now, False
        return True

    def renew(self) -> bool:
        """Push the expiry one TTL ahead; False (and `lost`) when another run holds the lease now."""
        data, token = self.cell.read()
        if data is None or Holder.parse(data, self.path).owner != self.owner:
            self.lost = True
            return False
        return self.cell.swap(token, self._body(self.clock()))

    def release(self) -> None:
        """Stop the heartbeat and delete the lease file if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        data, token = self.cell.read()
        if data is not None and Holder.parse(data, self.path).owner == self.owner:
            self.cell.swap(token, None)
        self.acquired = None

    def start_heartbeat(self) -> None:
        """Renew every TTL/3 from a daemon thread until `release`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                ok = self.renew()
            except Exception as e:  # a network error: try again at the next beat
                log.warning("%s: lease heartbeat failed: %r", self.name, e)
                continue
            if not ok and self.lost:
                log.warning("%s: lost the lease to another run (this run stalled past its TTL)", self.name)
                return


def _wait_line(name: str, h: Holder, now: float) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(h.acquired))
    return (
        f"{name}: run {h.owner} is writing it (since {since}, last heartbeat {now - h.heartbeat:.0f} s ago); "
        f"waiting for its output, or for its lease to expire ({h.expires - now:.0f} s)"
    )


def _acquire_or_wait(store: Store, lease: Lease, stage: str, version: str, poll: float) -> bool:
    """True when `lease` is held and the output is not complete; False when the output is complete."""
    seen = None
    while True:
        if store.is_complete(stage, version):
            return False
        if lease.acquire():
            if store.is_complete(stage, version):  # committed between the check and the acquire
                lease.release()
                return False
            return True
        h = lease.holder()
        if h is not None and h.owner != seen:
            log.info(_wait_line(lease.name, h, lease.clock()))
            seen = h.owner
        time.sleep(poll)


@contextmanager
def claim(store: Store, stage: str, version: str, poll: float | None = None) -> Iterator[Lease | None]:
    """Hold the lease on `<stage>/<version>` (renewed by a heartbeat) while the body writes the output, and
    release it after. Yields None, holding nothing, when the output is complete: stored before, or committed
    by the run this one waited for. `poll`: seconds between looks while waiting (default TTL/4, at most 2)."""
    lease = Lease(store, stage, version)
    poll = poll if poll is not None else min(2.0, lease.ttl / 4)
    if not _acquire_or_wait(store, lease, stage, version, poll):
        yield None
        return
    lease.start_heartbeat()
    try:
        yield lease
    finally:
        lease.release()
