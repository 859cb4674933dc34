"""Where a sharded stage's shards run: in this process (`local`), or on a Ray cluster's engine actors (`ray`).

A sharded stage (generate, evaluate) plans its shards and writes them; the executor only runs them:

    for shard, out in zip(shards, run_shards(cfg, job, store, shards, ctx.engine, ctx.tools)):
        writer.write_shard(out.table, keys_of(shard))

`job.shard_runner(store, engine, tools)` loads what a shard needs once (engines by role, tools) and returns
the function that computes one shard's table. `local` calls it here, shard after shard (the stage's loop as it
always was). `ray` builds `ray_actors` actors, each calling `shard_runner` once (its engines come from
`make_engine` and the job's engine configs, never from the driver), and hands each free actor the next shard
(`ray.wait`). A shard is the same list of questions on either executor, and the outputs come back in shard
order, so the stored table is the same: seeds derive from (question, sample, step), and an engine that batches
(hf) sees the same batches. The driver stays the only writer: actors return Arrow tables, and a trajectory
never leaves its actor otherwise.

An actor that dies (a crash, an OOM kill, a lost node) is restarted by Ray (`max_restarts`); its shard fails
(Ray's own task retries are off) and the driver submits it again, to whichever actor is free. A shard that
failed `SHARD_ATTEMPTS` times, or the loss of every actor, stops the stage with the reason.

The executor is how work runs, not what it computes: it is never part of a stage's version.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import pyarrow as pa
from pydantic import Field, model_validator

from swirl.engines import Engine, EnginePool, EngineSpec
from swirl.engines.config import EngineConfig
from swirl.rollout import Tool
from swirl.sections import Section
from swirl.store import Store

log = logging.getLogger("swirl.executors")

SHARD_ATTEMPTS = 3  # tries of one shard before the stage fails (a shard that kills every actor it meets)
ACTOR_RESTARTS = 3  # Ray restarts of one actor; an actor lost more often is not used again
WINDOW_PER_ACTOR = 4  # shards done ahead of the next one to write, per actor (bounds the driver's memory)


class ExecutorConfig(Section):
    """How a sharded stage's shards run (`run:` fields; never part of a stage's version)."""

    executor: Literal["local", "ray"] = Field(
        "local",
        description="Where generate and evaluate run their shards: local (this process, one engine) or ray "
        "(`ray_actors` engine actors on a Ray cluster, each loading the model once; the same table).",
    )
    ray_address: str = Field(
        "",
        description="Ray cluster to join (e.g. ray://head:10001 or 127.0.0.1:6379); the store root and the "
        "model folders must then be reachable from its nodes (s3://, a shared file system). Empty: start a "
        "local cluster on 127.0.0.1 (no dashboard) the first time a stage needs it.",
    )
    ray_actors: int = Field(
        2, ge=1, description="Engine actors per sharded stage on Ray; each holds its own engines."
    )
    ray_cpus_per_actor: float = Field(
        1.0,
        gt=0,
        description="CPUs Ray reserves per actor (its torch threads on CPU machines). Each actor also takes "
        "the policy engine's tensor_parallel_size GPUs when the cluster has GPUs.",
    )

    @model_validator(mode="after")
    def _ray_importable(self) -> ExecutorConfig:
        if self.executor == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError(
                "executor ray: the ray package is not installed; install the distributed extra "
                "(pip install -e '.[distributed]') or set run.executor: local"
            )
        return self


@dataclass(frozen=True)
class ShardOutput:
    """One shard's rows, and the tokens generated for them (throughput). The executor adds its times:
    `seconds` computing the shard where it ran, `round_trip_s` from handing it out to having its rows in the
    driver (the same as `seconds` locally; on Ray, plus the call, the queue and the table's transfer)."""

    table: pa.Table
    tokens: int = 0
    seconds: float = 0.0
    round_trip_s: float = 0.0


EngineFor = Callable[[str, EngineSpec | None], Engine]  # (role, config) -> engine; `Context.engine`
Runner = Callable[[list[dict[str, Any]]], ShardOutput]  # one shard's work items -> its rows


def timed(run: Runner, shard: list[dict[str, Any]]) -> ShardOutput:
    """`run(shard)` with the time it took as its `seconds` (and round trip, until a driver sets its own)."""
    t0 = time.perf_counter()
    out = run(shard)
    dt = time.perf_counter() - t0
    return replace(out, seconds=dt, round_trip_s=dt)


class ShardJob(Protocol):
    """A stage whose work is shards of items (questions): picklable (its fields are configs and refs)."""

    stage: ClassVar[str]

    def shard_runner(
        self, store: Store, engine: EngineFor, tools: Mapping[str, Tool] | None
    ) -> Runner: ...  # loads engines and tools once; the runner computes one shard

    def engine_specs(self) -> list[EngineSpec]: ...  # the engines a runner builds (GPUs per actor)


T = TypeVar("T")


def in_shards(items: Sequence[T], size: int) -> list[list[T]]:
    """`items` cut into consecutive shards of `size` (the last one shorter): the same on every executor."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def run_shards(
    cfg: ExecutorConfig,
    job: ShardJob,
    store: Store,
    shards: Sequence[list[dict[str, Any]]],
    engine: EngineFor,
    tools: Mapping[str, Tool] | None,
) -> Iterator[ShardOutput]:
    """The shards' outputs, in shard order, computed where `cfg.executor` says. `engine` serves the local
    executor only (Ray actors build their own engines); `tools` replaces the configured tools on both (it is
    pickled to the actors)."""
    if not shards:
        return iter(())
    if cfg.executor == "ray":
        return ray_shards(cfg, job, store, shards, tools)
    return _local_shards(job, store, shards, engine, tools)


def _local_shards(
    job: ShardJob,
    store: Store,
    shards: Sequence[list[dict[str, Any]]],
    engine: EngineFor,
    tools: Mapping[str, Tool] | None,
) -> Iterator[ShardOutput]:
    run = job.shard_runner(store, engine, tools)
    for shard in shards:
        yield timed(run, shard)


# ------------------------------------------------------------------------------------------ scheduling
H = TypeVar("H")  # a handle on one submitted shard (a Ray ObjectRef)


class WorkerLost(RuntimeError):
    """The worker running a shard died before returning it (the shard can run again elsewhere)."""


class Workers(Protocol, Generic[H]):
    """The driver's view of its actors: numbered 0..size-1, one call at a time each."""

    size: int

    def submit(self, worker: int, index: int) -> H: ...  # start shard `index` on `worker`

    def ready(self, worker: int) -> H: ...  # finishes once a lost worker is back (restarted)

    def wait(self, running: list[H]) -> H: ...  # one finished handle among `running`

    def result(self, handle: H) -> ShardOutput | None: ...  # a shard's output (None: `ready`'s); raises

    # WorkerLost when the worker died


READY = -1  # the shard index of a `ready` call in the running table


@dataclass
class _Schedule:
    """The driver's bookkeeping: shards to run, calls running, outputs not yet handed on."""

    todo: deque[int]
    free: deque[int]
    running: dict[Any, tuple[int, int]] = field(default_factory=dict)  # handle -> (worker, shard or READY)
    done: dict[int, ShardOutput] = field(default_factory=dict)
    tries: Counter[int] = field(default_factory=Counter)  # by shard
    losses: Counter[int] = field(default_factory=Counter)  # by worker
    next_out: int = 0


def dispatch(
    n: int,
    workers: Workers[H],
    window: int,
    attempts: int = SHARD_ATTEMPTS,
    restarts: int = ACTOR_RESTARTS,
) -> Iterator[ShardOutput]:
    """The outputs of shards 0..n-1 in order, each run on the next free worker. A shard whose worker died
    runs again (at most `attempts` tries); the worker takes work again once it is back, unless it was lost
    more than `restarts` times. At most `window` shards past the next one to hand on are started (bounds
    the outputs held)."""
    s = _Schedule(deque(range(n)), deque(range(workers.size)))
    while s.next_out < n:
        _fill(s, workers, window)
        if not s.running:
            raise RuntimeError(
                f"every Ray actor was lost (restarted {restarts} times, or dead); {n - s.next_out} shards "
                "not done. The actors' logs (ray logs, or /tmp/ray/session_latest/logs) say why."
            )
        handle = workers.wait(list(s.running))
        worker, index = s.running.pop(handle)
        try:
            out = workers.result(handle)
        except WorkerLost as e:
            _lost(s, workers, worker, index, attempts, restarts, e)
        else:
            s.free.append(worker)
            if out is not None:
                s.done[index] = out
        _fill(s, workers, window)  # busy again before the outputs are handed on (written)
        while s.next_out in s.done:
            yield s.done.pop(s.next_out)
            s.next_out += 1


def _fill(s: _Schedule, workers: Workers[H], window: int) -> None:
    """Start the next shards on the free workers, within the window."""
    while s.free and s.todo and s.todo[0] < s.next_out + window:
        worker, index = s.free.popleft(), s.todo.popleft()
        s.tries[index] += 1
        s.running[workers.submit(worker, index)] = (worker, index)


def _lost(
    s: _Schedule, workers: Workers[H], worker: int, index: int, attempts: int, restarts: int, err: Exception
) -> None:
    """`worker` died: its shard `index` goes first in line again; the worker takes work again once it is
    back, unless it was lost too often (or died for good: its `ready` call failed)."""
    if index == READY:
        log.warning("ray: actor %d did not come back (%s); going on without it", worker, err)
        return
    if s.tries[index] >= attempts:
        raise RuntimeError(
            f"shard {index} failed {attempts} times, each time its actor died ({err}); the actors' logs "
            "(ray logs, or /tmp/ray/session_latest/logs) say why (out of memory?)"
        ) from err
    s.losses[worker] += 1
    if s.losses[worker] <= restarts:
        s.running[workers.ready(worker)] = (worker, READY)  # Ray restarts it
    s.todo.appendleft(index)
    log.warning(
        "ray: actor %d lost while running shard %d (%s); shard %d submitted again (try %d of %d)",
        worker,
        index,
        err,
        index,
        s.tries[index] + 1,
        attempts,
    )


# ------------------------------------------------------------------------------------------------ ray
class ShardActor:
    """A Ray actor: the job's runner, built once (engines and tools), computing shard after shard."""

    def __init__(self, job: ShardJob, store_url: str, tools: Mapping[str, Tool] | None) -> None:
        self.pool = EnginePool()
        self.runner = job.shard_runner(Store(store_url), self._engine, tools)

    def _engine(self, role: str, cfg: EngineSpec | None) -> Engine:
        if cfg is None:
            raise ValueError(f"no engine config for the {role!r} role; set it in the config")
        return self.pool.get(cfg)

    def run(self, shard: list[dict[str, Any]]) -> ShardOutput:
        return timed(self.runner, shard)


def actor_class(cfg: ExecutorConfig, gpus: float) -> Any:
    """`ShardActor` as a Ray actor class: restarted when it dies; `run` is never retried by Ray (the driver
    submits a lost shard again, to any actor), `ready` is retried until the actor is back."""
    import ray

    class Actor(ShardActor):
        @ray.method(max_task_retries=-1)
        def ready(self) -> int:
            return os.getpid()

    return ray.remote(
        num_cpus=cfg.ray_cpus_per_actor, num_gpus=gpus, max_restarts=ACTOR_RESTARTS, max_task_retries=0
    )(Actor)


class RayWorkers:
    """`Workers` on Ray actors: shard `index` of `shards` goes to actor `worker` as a call of `run`."""

    def __init__(self, actors: list[Any], shards: Sequence[list[dict[str, Any]]]) -> None:
        self.actors, self.shards, self.size = actors, shards, len(actors)
        self.started: dict[Any, float] = {}  # handle -> when it was submitted

    def submit(self, worker: int, index: int) -> Any:
        handle = self.actors[worker].run.remote(self.shards[index])
        self.started[handle] = time.perf_counter()
        return handle

    def ready(self, worker: int) -> Any:
        return self.actors[worker].ready.remote()

    def wait(self, running: list[Any]) -> Any:
        import ray

        ready, _ = ray.wait(running, num_returns=1)
        return ready[0]

    def result(self, handle: Any) -> ShardOutput | None:
        import ray

        t0 = self.started.pop(handle, None)  # None: a `ready` call
        try:
            out = ray.get(handle)
        except ray.exceptions.RayActorError as e:
            if getattr(e, "actor_init_failed", False):  # its engines or tools failed to load: no retry helps
                raise RuntimeError(f"a Ray actor could not start: {e}") from e
            raise WorkerLost(type(e).__name__) from e
        return None if t0 is None else replace(out, round_trip_s=time.perf_counter() - t0)


def ensure_ray(cfg: ExecutorConfig, actors_cpus: float) -> None:
    """Join the cluster at `ray_address`, or start a local one on 127.0.0.1 (no dashboard) with enough CPUs
    for the actors; nothing when Ray is already initialized in this process."""
    import ray

    if ray.is_initialized():
        return
    if cfg.ray_address:
        ray.init(address=cfg.ray_address, logging_level=logging.WARNING)
        return
    ray.init(
        address="local",
        num_cpus=max(os.cpu_count() or 1, int(actors_cpus + 0.999)),
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level=logging.WARNING,
    )


def gpus_per_actor(specs: Sequence[EngineSpec], cluster: Mapping[str, float]) -> float:
    """GPUs an actor reserves: its local engines' tensor parallel degrees, on a cluster that has GPUs."""
    if not cluster.get("GPU"):
        return 0.0
    return float(sum(s.tensor_parallel_size for s in specs if isinstance(s, EngineConfig)))


def actors_that_fit(wanted: int, cpus: float, gpus: float, cluster: Mapping[str, float]) -> int:
    """How many of `wanted` actors the cluster holds at once (an actor Ray cannot place would keep its shard
    waiting forever); an error when not one fits."""
    fit = int(cluster.get("CPU", 0) // cpus)
    if gpus:
        fit = min(fit, int(cluster.get("GPU", 0) // gpus))
    if fit < 1:
        raise ValueError(
            f"run.ray_cpus_per_actor: an actor needs {cpus:g} CPUs and {gpus:g} GPUs (the policy's "
            f"tensor_parallel_size), the Ray cluster has {cluster.get('CPU', 0):g} CPUs and "
            f"{cluster.get('GPU', 0):g} GPUs; lower ray_cpus_per_actor or tensor_parallel_size"
        )
    if fit < wanted:
        log.warning(
            "ray: the cluster holds %d of the %d actors asked for (run.ray_actors); using %d",
            fit,
            wanted,
            fit,
        )
    return min(wanted, fit)


def ray_shards(
    cfg: ExecutorConfig,
    job: ShardJob,
    store: Store,
    shards: Sequence[list[dict[str, Any]]],
    tools: Mapping[str, Tool] | None,
) -> Iterator[ShardOutput]:
    """The shards' outputs in order, computed by up to `cfg.ray_actors` actors (named
    `swirl-<stage>-<id>-<i>`)."""
    import ray

    ensure_ray(cfg, cfg.ray_actors * cfg.ray_cpus_per_actor)
    cluster = ray.cluster_resources()
    gpus = gpus_per_actor(job.engine_specs(), cluster)
    n = actors_that_fit(min(cfg.ray_actors, len(shards)), cfg.ray_cpus_per_actor, gpus, cluster)
    actor_cls = actor_class(cfg, gpus)
    run_id = uuid.uuid4().hex[:8]
    actors = [
        actor_cls.options(name=f"swirl-{job.stage}-{run_id}-{i}").remote(job, store.url, tools)
        for i in range(n)
    ]
    try:
        yield from dispatch(len(shards), RayWorkers(actors, shards), WINDOW_PER_ACTOR * n)
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
