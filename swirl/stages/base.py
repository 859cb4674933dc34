"""The stage contract: every versioned stage is a small frozen job with a `plan` and a `compute`.

    plan()                     -> Plan: the stage name, its output table, and the config slice and input
                                  versions that decide the output; `version` is their hash.
    compute(store, plan, ctx)  -> StageRef: does the work and commits the output under `plan.version`, with
                                  `plan.writer(store)` (sharded, resumable) or `plan.write(store, ...)`.

`run_stage(store, job, ctx)` is the one runner: it plans, returns the stored output when that version is
complete (nothing is computed and no engine starts), otherwise computes while holding the version's lease
(swirl/lease.py): a second run of the same job on the same store waits for the first one's output instead of
computing it again, and takes the work over (resuming its shards) if the first run dies. The manifest records
exactly the config and inputs that were hashed. `tasks/stages.py` wraps `run_stage` in one Prefect task for
every stage, whose cache key is the same plan's version: the Prefect UI shows "Cached" exactly when the store
would skip.

A job receives everything else it needs through the `Context`: engines by role (`policy`, `judge`,
`sampler`, `reward`), tools, a progress callback. Adding a stage means one job class: its fields (the stage's
parameters), `plan` and `compute`.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Protocol

import pyarrow as pa

from swirl.engines import Engine, EnginePool, EngineSpec
from swirl.lease import claim
from swirl.store import ShardedWriter, StageRef, Store, stage_version

log = logging.getLogger("swirl.stages")

# The engine roles a stage may ask for: the policy generating or being evaluated, the model judging steps or
# answers, the policy's sampler during online training, and the reward model scoring its samples.
ROLES = ("policy", "judge", "sampler", "reward")


@dataclass(frozen=True)
class Plan:
    """What decides a stage output: hashed into its version and recorded, unchanged, in its manifest."""

    stage: str
    table: str | None  # the output table's name (its schema version is hashed too); None: files only
    config: Mapping[str, Any]
    inputs: Mapping[str, str]

    @cached_property
    def version(self) -> str:
        return stage_version(self.stage, dict(self.config), dict(self.inputs), self.table)

    def short(self) -> str:
        return f"{self.stage}/{self.version}"

    def writer(self, store: Store) -> ShardedWriter:
        """A resumable writer for this output: each shard commits on its own (see `Store.sharded`)."""
        return store.sharded(self.stage, self.version, self.table, dict(self.config), dict(self.inputs))

    def write(
        self,
        store: Store,
        table: pa.Table | None,
        summary: Mapping[str, Any],
        files: Callable[[str], None] | None = None,
    ) -> StageRef:
        """Commit the whole output at once: a table (or none) and files produced into a local folder."""
        if table is None:
            assert files is not None, "an output without a table must have files"
            return store.write_files(
                self.stage, self.version, files, dict(self.config), dict(self.inputs), summary
            )
        return store.write_table(
            self.stage, self.version, table, self.table, dict(self.config), dict(self.inputs), summary, files
        )


@dataclass
class Context:
    """What a running stage may use besides the store.

    `engines`: how a role gets its engine. A mapping role -> engine object (tests, notebooks); a function
    EngineSpec -> engine (the flow's shared, cached engines: `tasks.engines.get_engine`); or None: the stage
    builds them with `make_engine` and closes them when it ends.
    `tools`: replaces the tools the config names (custom tools, tests); None builds them from the config.
    `progress`: receives a dict after each committed shard (done, total, seconds, ...).
    """

    engines: Mapping[str, Engine] | Callable[[EngineSpec], Engine] | None = None
    tools: Mapping[str, Callable[[str], str]] | None = None
    progress: Callable[[dict[str, Any]], None] | None = None
    _owned: EnginePool = field(default_factory=EnginePool, repr=False)

    def engine(self, role: str, cfg: EngineSpec | None) -> Engine:
        """The engine for `role` (one of ROLES), serving `cfg`."""
        if role not in ROLES:
            raise ValueError(f"unknown engine role {role!r}; one of {ROLES}")
        if isinstance(self.engines, Mapping):
            if role not in self.engines:
                raise ValueError(
                    f"this stage needs a {role!r} engine; the context has {sorted(self.engines)}"
                )
            return self.engines[role]
        if cfg is None:
            raise ValueError(f"no engine config for the {role!r} role; set it in the config")
        if self.engines is not None:
            return self.engines(cfg)
        return self._owned.get(cfg)

    def report(self, **stats: Any) -> None:
        if self.progress is not None:
            self.progress(dict(stats))

    def close(self) -> None:
        """Close the engines this context built (never the ones it was given)."""
        self._owned.close()


class Job(Protocol):
    """A stage's parameters, its plan and its work (see the module docstring)."""

    stage: ClassVar[str]

    @property
    def label(self) -> str: ...  # names the run in logs and the Prefect UI, e.g. "generate-gsm8k"

    def plan(self) -> Plan: ...

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef: ...

    def describe(self, ref: StageRef) -> str: ...  # one log line about the output

    # Optional: `tracked(ref) -> dict`, the part of the summary worth tracking (default: all of it);
    # `transient_errors = True` when an I/O failure may pass on a retry.


@dataclass(frozen=True)
class StageResult:
    ref: StageRef
    computed: bool  # False when the store already had this version
    seconds: float


def run_stage(store: Store, job: Job, ctx: Context | None = None, plan: Plan | None = None) -> StageResult:
    """The output of `job`: the stored one when its version is complete, else computed and committed now
    under the version's lease (or the output of the run that held it, when that run commits it first).
    `plan`: the job's plan when the caller already made it (the Prefect task's cache key did)."""
    t0 = time.perf_counter()
    plan = plan or job.plan()
    if store.is_complete(plan.stage, plan.version):
        return StageResult(store.ref(plan.stage, plan.version), False, time.perf_counter() - t0)
    with claim(store, plan.stage, plan.version) as lease:
        if lease is None:  # another run committed it while this one waited
            return StageResult(store.ref(plan.stage, plan.version), False, time.perf_counter() - t0)
        ctx = ctx or Context()
        try:
            ref = job.compute(store, plan, ctx)
        finally:
            ctx.close()  # only the engines the context built itself (never those it was given)
    if (ref.stage, ref.version) != (plan.stage, plan.version):
        raise RuntimeError(f"{job.label}: compute committed {ref.short()}, not its plan's {plan.short()}")
    return StageResult(ref, True, time.perf_counter() - t0)


_PLANS: dict[int, Plan] = {}  # id(job) -> its plan, while the job lives (jobs are frozen: no field for it)


def cached_plan(job: Job) -> Plan:
    """`job.plan()`, computed once per job object: the Prefect task's cache key and its body share it (one
    version hash per task run). Only for one task run's job; a job reused after its inputs change needs
    `job.plan()` again."""
    key = id(job)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = job.plan()
        weakref.finalize(job, _PLANS.pop, key, None)  # an id is reused once its object is gone
    return plan


def upstream_refs(job: Job) -> list[StageRef]:
    """The store outputs a job reads: every StageRef among its fields, also inside tuples and nested
    dataclasses (a Train job's TrainInputs, a Report's entries), in field order (MLflow lineage)."""
    import dataclasses

    out: list[StageRef] = []

    def walk(value: Any) -> None:
        if isinstance(value, StageRef):
            out.append(value)
        elif isinstance(value, tuple | list):
            for v in value:
                walk(v)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name))

    for f in dataclasses.fields(job):  # type: ignore[arg-type]
        walk(getattr(job, f.name))
    return out
