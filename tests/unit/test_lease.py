"""The lease per output version (swirl/lease.py) on a local disk and on S3 (moto's server), and run_stage
with two runs of one job on one store: one computes, the other waits and gets the store hit; a run killed
while holding the lease is taken over once its lease is stale, and its finished shards are kept."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from swirl.lease import Holder, Lease, _cell, claim
from swirl.stages.base import Plan, run_stage
from swirl.store import Store, StoreError
from swirl.tables import to_table
from tests.support.s3 import child_env, fresh_bucket_url, moto_s3
from tests.unit.test_store import _rows, _sorted

T0 = 1_000_000.0  # a fixed clock: staleness is decided by the times the test gives, never by waiting


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    request.getfixturevalue("s3")
    return fresh_bucket_url()


def _lease(store, clock, ttl=10.0) -> Lease:
    return Lease(store, "judge", "v", ttl=ttl, clock=clock)


def test_only_one_holder_at_a_time(root):
    store = Store(root)
    a, b = _lease(store, Clock()), _lease(store, Clock())
    assert a.owner != b.owner
    assert a.acquire() and a.acquire()  # again: still its own
    assert not b.acquire()
    h = b.holder()
    assert (h.owner, h.acquired, h.heartbeat, h.expires) == (a.owner, T0, T0, T0 + 10)
    assert store.fs.exists(store.path("judge", "v") + ".lease")


def test_renew_keeps_it_and_a_stale_lease_is_taken_over(root):
    store = Store(root)
    ca, cb = Clock(), Clock()
    a, b = _lease(store, ca), _lease(store, cb)
    assert a.acquire()
    ca.now = T0 + 8
    assert a.renew()
    assert a.holder().heartbeat == T0 + 8 and a.holder().acquired == T0
    cb.now = T0 + 17  # a's first expiry (T0 + 10) has passed, its renewed one (T0 + 18) has not
    assert not b.acquire()
    cb.now = T0 + 18.5
    assert b.acquire()
    assert b.holder().owner == b.owner
    assert not a.renew() and a.lost  # a learns at its next heartbeat that it lost the lease


def test_release_frees_it_and_only_the_holder_releases(root):
    store = Store(root)
    a, b = _lease(store, Clock()), _lease(store, Clock())
    assert a.acquire()
    b.release()  # not b's: nothing happens
    assert a.holder().owner == a.owner
    a.release()
    assert a.holder() is None
    assert b.acquire() and b.holder().owner == b.owner


def test_compare_and_swap_lets_one_of_two_racers_win(root):
    """Two runs that read the same stale lease both try to replace it: exactly one succeeds."""
    store = Store(root)
    a = _lease(store, Clock())
    assert a.acquire()
    cell = _cell(store, a.path)
    data, token = cell.read()
    assert Holder.parse(data, a.path).owner == a.owner
    assert cell.swap(token, b"first")
    assert not cell.swap(token, b"second")  # the token read before the first swap is out of date
    assert cell.read()[0] == b"first"
    assert not cell.swap(None, b"third")  # a create fails where the file exists
    assert cell.swap(cell.read()[1], None) and cell.read() == (None, None)
    assert cell.swap(None, b"fourth") and cell.read()[0] == b"fourth"


def test_heartbeat_thread_renews(root):
    store = Store(root)
    clock = Clock()
    lease = _lease(store, clock, ttl=0.3)
    assert lease.acquire()
    clock.now = T0 + 5
    lease.start_heartbeat()
    seen = threading.Event()
    for _ in range(200):  # waits for the first beat (at most ~20 s), asserts what it wrote
        if lease.holder().heartbeat == T0 + 5:
            seen.set()
            break
        threading.Event().wait(0.1)
    lease.release()
    assert seen.is_set() and lease.holder() is None


def test_an_unreadable_lease_names_its_path(tmp_path):
    store = Store(str(tmp_path))
    lease = _lease(store, Clock())
    store.fs.makedirs(os.path.dirname(lease.path), exist_ok=True)
    with open(lease.path, "w") as f:
        f.write("{not json")
    with pytest.raises(StoreError, match=r"judge/v\.lease: unreadable lease .* delete it"):
        lease.acquire()


HOLDER_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from swirl.lease import Lease
    from swirl.store import Store

    lease = Lease(Store(sys.argv[1]), "judge", "v", ttl=60)
    assert lease.acquire()
    lease.start_heartbeat()
    print(lease.owner, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_sigkilled_holders_lease_on_this_host_is_taken_over_at_once(root):
    child = subprocess.run(
        [sys.executable, "-c", HOLDER_CHILD, root],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL
    store = Store(root)
    now = Lease(store, "judge", "v").holder()
    assert now.owner == child.stdout.strip()  # the dead run's lease is still there
    taker = _lease(store, Clock(now.expires - 1))  # before it expires: its process is gone
    assert taker.acquire() and taker.holder().owner == taker.owner


def test_a_holder_on_another_host_is_live_until_its_lease_expires(root):
    """Whether a process runs on another machine cannot be checked: only the TTL tells."""
    store = Store(root)
    away = _lease(store, Clock(1000.0))
    away.owner = "another-host:999999:abcd1234"  # a pid that runs nowhere here
    assert away.acquire()
    expires = away.holder().expires
    assert not _lease(store, Clock(expires - 1)).acquire()
    assert _lease(store, Clock(expires + 1)).acquire()


# ------------------------------------------------------------------------------ run_stage, two runs
@dataclass(frozen=True)
class ShardJob:
    """A sharded stage: one shard per key; records the keys it computed in `computed`, can stop on a gate
    before the first shard and SIGKILL its process before shard `kill_at`."""

    stage: ClassVar[str] = "judge"
    keys: tuple[str, ...] = ("q0", "q1", "q2", "q3")
    kill_at: int = -1
    gate: threading.Event | None = field(default=None, compare=False)
    computed: list = field(default_factory=list, compare=False)

    @property
    def label(self) -> str:
        return "judge-test"

    def plan(self) -> Plan:
        return Plan("judge", "judgments", {"keys": list(self.keys)}, {})

    def compute(self, store, plan, ctx):
        if self.gate is not None:
            assert self.gate.wait(60), "the other run never reported that it waits"
        w = plan.writer(store)
        todo = [k for k in self.keys if k not in w.done_keys()]
        for i, k in enumerate(todo):
            if i == self.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            w.write_shard(to_table("judgments", _rows(k)), [k])
            self.computed.append(k)
        return w.finalize()

    def describe(self, ref) -> str:
        return ""


class _Waiting(logging.Handler):
    """Sets `event` when the lease logs that a run waits for another."""

    def __init__(self, event: threading.Event):
        super().__init__(logging.INFO)
        self.event, self.lines = event, []

    def emit(self, record):
        self.lines.append(record.getMessage())
        if "is writing it" in record.getMessage():
            self.event.set()


@pytest.fixture
def waiting():
    event = threading.Event()
    handler = _Waiting(event)
    logger = logging.getLogger("swirl.lease")
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def _expected(keys) -> list[dict]:
    return sorted((r for k in keys for r in _rows(k)), key=lambda r: (r["trajectory_id"], r["step"]))


def test_two_runs_of_one_job_compute_it_once(root, waiting):
    """Both start; the one that gets the lease holds its work until the other logs that it waits."""
    store = Store(root, lease_ttl=30)
    job = ShardJob(gate=waiting.event)
    results, errors = [], []

    def run():
        try:
            results.append(run_stage(store, job))
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 2
    assert sorted(r.computed for r in results) == [False, True]
    assert results[0].ref == results[1].ref
    assert job.computed == list(job.keys)  # every shard once, by one run
    assert any("is writing it" in line for line in waiting.lines)
    v = job.plan().version
    assert _sorted(store.read("judge", v)) == _expected(job.keys)
    left = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(f"{store.root}/judge"))
    assert left == [v], "one copy of the output; no partial folder or lease left behind"


def test_a_waiting_run_returns_the_holders_output(tmp_path, waiting):
    store = Store(str(tmp_path))
    job = ShardJob()
    plan = job.plan()
    holder = Lease(store, plan.stage, plan.version)
    assert holder.acquire()
    out = []
    t = threading.Thread(target=lambda: out.append(run_stage(store, job)))
    t.start()
    assert waiting.event.wait(60)
    assert holder.owner in waiting.lines[0]  # the log line names who holds it
    ref = store.write_table(plan.stage, plan.version, to_table("judgments", _rows("x")), "judgments", {})
    holder.release()
    t.join(60)
    assert out[0].computed is False and out[0].ref == ref and job.computed == []


def test_claim_yields_none_for_a_complete_output(tmp_path):
    store = Store(str(tmp_path))
    store.write_table("judge", "v", to_table("judgments", _rows("a")), "judgments", {})
    with claim(store, "judge", "v") as lease:
        assert lease is None
    assert not os.path.exists(tmp_path / "judge" / "v.lease")


RUN_CHILD = textwrap.dedent(
    """
    import sys
    from swirl.stages.base import run_stage
    from swirl.store import Store
    from tests.unit.test_lease import ShardJob

    run_stage(Store(sys.argv[1], lease_ttl=1.0), ShardJob(kill_at=2))
    """
)


def test_a_run_killed_mid_stage_is_taken_over_and_its_shards_kept(root):
    """The child computes two of four shards under a 1 s lease and is SIGKILLed; this run waits for the lease
    to go stale, takes it over and computes only the two shards left."""
    rc = subprocess.run([sys.executable, "-c", RUN_CHILD, root], env=child_env(), timeout=120).returncode
    assert rc == -signal.SIGKILL
    store = Store(root)
    job = ShardJob()
    assert Lease(store, "judge", job.plan().version).holder() is not None  # the dead run's lease
    res = run_stage(store, job)
    assert res.computed and job.computed == ["q2", "q3"]
    assert _sorted(store.read_ref(res.ref)) == _expected(job.keys)
    assert not store.fs.exists(store.path("judge", job.plan().version) + ".lease")
