"""Prefect tasks for the round's stages: one task for every stage, around `swirl.stages.base.run_stage`.

`stage_task(job)` is that task named after the job's stage and run (`generate`, `generate-gsm8k`), with
retries only for stages whose errors can be transient (reading a hub dataset, calling a judge endpoint) and
never for bad input (a ValueError). Its cache key comes from the store: `swirl-<stage>-<version>` when the
store already holds that version complete, no key otherwise, so the Prefect UI shows a stage as Cached exactly
when the store would skip it; the key and the task body share one plan (one version hash per task run).

Engines come from the flow's shared pool (`tasks.engines.get_engine`); progress goes to a terminal bar, the
task log and, for long stages, a Prefect progress artifact.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import Task, get_run_logger, task
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture
from prefect.states import State

from swirl.stages.base import Context, Job, StageResult, cached_plan, run_stage
from swirl.stages.prepare import PrepareConfig
from swirl.store import Store
from tasks.engines import get_engine

__all__ = ["StageResult", "prepare_task", "run_job", "stage_task", "submit_job"]


def _store_cache_key(ctx: TaskRunContext, inputs: dict[str, Any]) -> str | None:
    """`swirl-<stage>-<version>-<store>` when this store holds the version complete. The store is part of the
    key: Prefect keeps cached results in one folder for every project on the machine
    (PREFECT_LOCAL_STORAGE_PATH), and another store's result points at that store's files."""
    import hashlib

    plan = cached_plan(inputs["job"])
    store = Store(inputs["store_url"])
    if not store.is_complete(plan.stage, plan.version):
        return None
    where = hashlib.sha256(f"{store.fs.protocol}:{store.root}".encode()).hexdigest()[:10]
    return f"swirl-{plan.stage}-{plan.version}-{where}"


PERMANENT = (ValueError, FileNotFoundError, IsADirectoryError, PermissionError)  # retrying cannot help


def _is_transient(state: State) -> bool:
    """Retry I/O failures (a hub download, a flaky endpoint), never bad input (a ValueError: DataError) or a
    missing file."""
    return not isinstance(state.result(raise_on_failure=False), PERMANENT)


class _Progress:
    """Shard and step reports of a running stage -> a terminal bar, log lines, a Prefect progress artifact."""

    def __init__(self, label: str, log: logging.Logger | logging.LoggerAdapter):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.label, self.log, self.artifact = label, log, None
        columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"))
        self.bar = Progress(*columns, TimeRemainingColumn())
        self.bar_task = self.bar.add_task(label, total=None, info="")
        self.started = False  # the bar shows once a report comes: a store hit or a quick stage draws none

    def close(self) -> None:
        if self.started:
            self.bar.stop()

    def __call__(self, p: dict[str, Any]) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        secs = max(p.get("seconds") or 0.0, 1e-9)
        info = [f"{k}={p[k]:.4g}" for k in p.get("show", ()) if p.get(k) is not None]  # the stage's choice
        if "new" in p:  # generation: trajectories and tokens per second
            info = [f"{p['new'] / secs:.1f} traj/s", f"{p.get('tokens', 0) / secs:.0f} tok/s"]
        text = " ".join(info)
        if not self.started:
            self.bar.start()
            self.started = True
        done, total = p.get("done", 0), p.get("total")  # total None: not known in advance
        if p.get("resuming"):
            self.log.info("%s: resuming: %d of %d done (stored by an earlier run)", self.label, done, total)
        self.bar.update(self.bar_task, completed=done, total=total, info=text)
        if total:
            if self.artifact is None:
                self.artifact = create_progress_artifact(0.0, description=f"{self.label}: progress")
            update_progress_artifact(self.artifact, 100.0 * done / total)
        self.log.info("%s: %d/%s %s", self.label, done, total or "?", text)


@task(name="stage", cache_key_fn=_store_cache_key, persist_result=True)
def _stage(store_url: str, job: Job) -> StageResult:
    log = get_run_logger()
    progress = _Progress(job.label, log)
    try:
        res = run_stage(
            Store(store_url), job, Context(engines=get_engine, progress=progress), cached_plan(job)
        )
    finally:
        progress.close()
    how = f"in {res.seconds:.1f}s" if res.computed else "[store hit]"
    log.info("%s -> %s: %s %s", job.label, res.ref.short(), job.describe(res.ref), how)
    return res


def stage_task(job: Job) -> Task:
    """The stage task, named for this job; call it as `stage_task(job)(store_url, job)` or use `run_job`."""
    options: dict[str, Any] = {"name": job.stage, "task_run_name": job.label}
    if getattr(job, "transient_errors", False):
        options.update(
            retries=2,
            retry_delay_seconds=[10, 60],
            retry_condition_fn=lambda task, task_run, state: _is_transient(state),
        )
    return _stage.with_options(**options)


def run_job(store_url: str, job: Job) -> State[StageResult]:
    """Run a stage job as its task, now: its final state ("Cached" when Prefect had its result)."""
    return stage_task(job)(store_url, job, return_state=True)


def submit_job(store_url: str, job: Job) -> PrefectFuture[StageResult]:
    """Start a stage job as its task on the flow's task runner: its future (wait, then read `.state`)."""
    return stage_task(job).submit(store_url, job)


@task(name="prepare", task_run_name="prepare")
def prepare_task(prepare: PrepareConfig) -> dict[str, str]:
    """Build the local fixtures a config asks for (tiny model, synthetic data, toy worlds) if missing."""
    from swirl.stages.prepare import run_prepare

    log = get_run_logger()
    made = run_prepare(prepare)
    for what, path in made.items():
        log.info("prepare: %s ready at %s", what, path)
    return made
