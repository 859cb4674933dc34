"""Prefect tasks for the round's stages.

Cache keys come from the store: a task's key is `<stage>-<version>` when the store already holds that version
complete, and there is no key otherwise. So the Prefect UI shows a stage as Cached exactly when the store would
skip it, and deleting an output from the store makes the stage run again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task

from swirl.config import DatasetSpec, EngineConfig, GenerateConfig, PrepareConfig
from swirl.store import StageRef, Store


@dataclass(frozen=True)
class StageResult:
    ref: StageRef
    computed: bool  # False when the store already had this version
    seconds: float


def _store_cache_key(stage: str, version_of) -> Any:
    def key(ctx: Any, inputs: dict[str, Any]) -> str | None:
        store = Store(inputs["store_url"])
        version = version_of(inputs)
        return f"swirl-{stage}-{version}" if store.is_complete(stage, version) else None

    return key


def _is_transient(state: Any) -> bool:
    """Retry I/O failures (a hub download, a flaky object store), never bad input (ValueError: DataError, ...)."""
    return not isinstance(state.result(raise_on_failure=False), ValueError)


@task(name="prepare", task_run_name="prepare")
def prepare_task(prepare: PrepareConfig) -> dict[str, str]:
    """Build the local fixtures a config asks for (tiny model, synthetic data) if they are missing."""
    from swirl.stages.prepare import run_prepare

    log = get_run_logger()
    made = run_prepare(prepare)
    for what, path in made.items():
        log.info("prepare: %s ready at %s", what, path)
    return made


def _ingest_version(inputs: dict[str, Any]) -> str:
    from swirl.stages.ingest import ingest_version

    return ingest_version(inputs["spec"])


@task(
    name="ingest",
    task_run_name="ingest-{spec.name}",
    cache_key_fn=_store_cache_key("ingest", _ingest_version),
    persist_result=True,
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=lambda task, task_run, state: _is_transient(state),
)
def ingest_task(store_url: str, spec: DatasetSpec) -> StageResult:
    """Read one dataset into a `questions` table (retried only for I/O errors, e.g. a hub download)."""
    from swirl.stages.ingest import ingest_version, run_ingest

    log = get_run_logger()
    store = Store(store_url)
    t0 = time.perf_counter()
    existed = store.is_complete("ingest", ingest_version(spec))
    ref = run_ingest(store, spec)
    dt = time.perf_counter() - t0
    s = ref.summary
    log.info(
        "ingest %s -> %s: %d questions (%s read, %s skipped) %s",
        spec.name, ref.short(), ref.rows, s.get("records"), s.get("skipped"), "[store hit]" if existed else f"in {dt:.1f}s",
    )
    return StageResult(ref, not existed, dt)


def _generate_version(inputs: dict[str, Any]) -> str:
    from swirl.stages.generate import generate_version

    return generate_version(inputs["cfg"], inputs["policy"], inputs["spec"], inputs["questions"], inputs.get("corpus"))


def _tools_for(spec: DatasetSpec, store: Store, corpus: StageRef | None) -> dict[str, Any]:
    from swirl.stages.generate import task_of

    if task_of(spec) == "math":
        from swirl.tools.calculator import calculate

        return {"math": calculate}
    if corpus is None:
        raise ValueError(f"dataset {spec.name!r} is a search task: it needs the corpus stage's index (add 'corpus' to stages)")
    from swirl.stages.corpus import load_search_tool

    return {"search": load_search_tool(store, corpus)}


@task(
    name="generate",
    task_run_name="generate-{spec.name}",
    cache_key_fn=_store_cache_key("generate", _generate_version),
    persist_result=True,
)
def generate_task(
    store_url: str, cfg: GenerateConfig, policy: EngineConfig, spec: DatasetSpec, questions: StageRef,
    corpus: StageRef | None = None,
) -> StageResult:
    """Multi-step trajectories with tools for every question of one dataset (resumes after a crash)."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from swirl.stages.generate import generate_version, run_generate
    from tasks.engines import get_engine

    log = get_run_logger()
    store = Store(store_url)
    t0 = time.perf_counter()
    version = generate_version(cfg, policy, spec, questions, corpus)
    existed = store.is_complete("generate", version)
    artifact = None if existed else create_progress_artifact(0.0, description=f"generate {spec.name}: trajectories")
    bar = Progress(TextColumn(f"generate {spec.name}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    bar_task = bar.add_task("gen", total=questions.rows * cfg.samples_per_question, rate="")

    def progress(p: dict[str, Any]) -> None:
        secs = max(p["seconds"], 1e-9)
        rate = f"{p['new'] / secs:.1f} traj/s, {p['tokens'] / secs:.0f} tok/s"
        bar.update(bar_task, completed=p["done"], total=p["total"], rate=rate)
        update_progress_artifact(artifact, 100.0 * p["done"] / max(p["total"], 1))
        log.info("generate %s: %d/%d trajectories, %s", spec.name, p["done"], p["total"], rate)

    with bar:
        ref = run_generate(store, cfg, policy, spec, questions, lambda: get_engine(policy),
                           _tools_for(spec, store, corpus), corpus, progress)
    dt = time.perf_counter() - t0
    s = ref.summary
    log.info("generate %s -> %s: %d trajectories, %.2f actions each, invalid rate %.3f, stops %s",
             spec.name, ref.short(), ref.rows, s.get("actions_per_trajectory", 0), s.get("invalid_rate", 0),
             s.get("stop_reasons"))
    return StageResult(ref, not existed, dt)
