"""Prefect tasks for the round's stages.

Cache keys come from the store: a task's key is `<stage>-<version>` when the store already holds that version
complete, and there is no key otherwise. So the Prefect UI shows a stage as Cached exactly when the store
would skip it, and deleting an output from the store makes the stage run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task

from swirl.config import DatasetSpec, EngineConfig, GenerateConfig, JudgeSection, PrepareConfig
from swirl.evaluation.config import EvaluateConfig
from swirl.judging.config import DecomposeConfig, FilterConfig
from swirl.stages.evaluate import EvalPolicy, ReportEntry
from swirl.store import StageRef, Store
from swirl.tools.config import SearchConfig
from swirl.training.config import TrainConfig
from swirl.training.data import TrainInput


@dataclass(frozen=True)
class StageResult:
    ref: StageRef
    computed: bool  # False when the store already had this version
    seconds: float


def _run_stage(run: Callable[[], StageRef]) -> StageResult:
    """Run a stage function; it computed its output iff the output was committed after the call started (no
    second version hash just to ask the store beforehand)."""
    started, t0 = time.time(), time.perf_counter()
    ref = run()
    return StageResult(ref, ref.created_at >= started, time.perf_counter() - t0)


def _store_cache_key(stage: str, version_of) -> Any:
    def key(ctx: Any, inputs: dict[str, Any]) -> str | None:
        store = Store(inputs["store_url"])
        version = version_of(inputs)
        return f"swirl-{stage}-{version}" if store.is_complete(stage, version) else None

    return key


def _is_transient(state: Any) -> bool:
    """Retry I/O failures (a hub download, a flaky object store), never bad input (ValueError: DataError,
    ...)."""
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
    from swirl.stages.ingest import run_ingest

    res = _run_stage(lambda: run_ingest(Store(store_url), spec))
    ref, s = res.ref, res.ref.summary
    get_run_logger().info(
        "ingest %s -> %s: %d questions (%s read, %s skipped) %s",
        spec.name,
        ref.short(),
        ref.rows,
        s.get("records"),
        s.get("skipped"),
        f"in {res.seconds:.1f}s" if res.computed else "[store hit]",
    )
    return res


def _generate_version(inputs: dict[str, Any]) -> str:
    from swirl.stages.generate import generate_version

    return generate_version(
        inputs["cfg"],
        inputs["policy"],
        inputs["spec"],
        inputs["questions"],
        inputs.get("corpus"),
        inputs.get("search"),
    )


def _corpus_version(inputs: dict[str, Any]) -> str:
    from swirl.stages.corpus import corpus_version

    return corpus_version(inputs["questions"], inputs["search"])


@task(
    name="corpus",
    task_run_name="corpus-{name}",
    cache_key_fn=_store_cache_key("corpus", _corpus_version),
    persist_result=True,
)
def corpus_task(store_url: str, name: str, questions: StageRef, search: SearchConfig) -> StageResult:
    """The articles of a dataset split, de-duplicated, with their search index (built once per corpus
    version)."""
    from swirl.stages.corpus import run_corpus

    res = _run_stage(lambda: run_corpus(Store(store_url), questions, search))
    get_run_logger().info(
        "corpus %s -> %s: %d articles, %s index %s",
        name,
        res.ref.short(),
        res.ref.rows,
        search.retriever,
        f"built in {res.seconds:.1f}s" if res.computed else "[store hit]",
    )
    return res


@task(
    name="generate",
    task_run_name="generate-{spec.name}",
    cache_key_fn=_store_cache_key("generate", _generate_version),
    persist_result=True,
)
def generate_task(
    store_url: str,
    cfg: GenerateConfig,
    policy: EngineConfig,
    spec: DatasetSpec,
    questions: StageRef,
    corpus: StageRef | None = None,
    search: SearchConfig | None = None,
) -> StageResult:
    """Multi-step trajectories with tools for every question of one dataset (resumes after a crash)."""
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from swirl.stages.generate import generate_version, run_generate, tools_for
    from tasks.engines import get_engine

    log = get_run_logger()
    store = Store(store_url)
    t0 = time.perf_counter()
    search = search or SearchConfig()
    version = generate_version(cfg, policy, spec, questions, corpus, search)
    existed = store.is_complete("generate", version)
    artifact = (
        None if existed else create_progress_artifact(0.0, description=f"generate {spec.name}: trajectories")
    )
    bar = Progress(
        TextColumn(f"generate {spec.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    bar_task = bar.add_task("gen", total=questions.rows * cfg.samples_per_question, rate="")

    def progress(p: dict[str, Any]) -> None:
        secs = max(p["seconds"], 1e-9)
        rate = f"{p['new'] / secs:.1f} traj/s, {p['tokens'] / secs:.0f} tok/s"
        bar.update(bar_task, completed=p["done"], total=p["total"], rate=rate)
        update_progress_artifact(artifact, 100.0 * p["done"] / max(p["total"], 1))
        log.info("generate %s: %d/%d trajectories, %s", spec.name, p["done"], p["total"], rate)

    with bar:
        ref = run_generate(
            store,
            cfg,
            policy,
            spec,
            questions,
            lambda: get_engine(policy),
            tools_for(spec, store, corpus, search),
            corpus,
            progress,
            search,
        )
    dt = time.perf_counter() - t0
    s = ref.summary
    log.info(
        "generate %s -> %s: %d trajectories, %.2f actions each, invalid rate %.3f, stops %s",
        spec.name,
        ref.short(),
        ref.rows,
        s.get("actions_per_trajectory", 0),
        s.get("invalid_rate", 0),
        s.get("stop_reasons"),
    )
    return StageResult(ref, not existed, dt)


def _judge_version(inputs: dict[str, Any]) -> str:
    from swirl.stages.judge import judge_version

    return judge_version(inputs["trajectories"], inputs["questions"], inputs["cfg"])


@task(
    name="judge",
    task_run_name="judge-{name}",
    cache_key_fn=_store_cache_key("judge", _judge_version),
    persist_result=True,
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=lambda task, task_run, state: _is_transient(state),
)
def judge_task(
    store_url: str, name: str, trajectories: StageRef, questions: StageRef, cfg: JudgeSection
) -> StageResult:
    """Process labels (GOOD/BAD/UNKNOWN per step) and outcome correctness; resumes from finished shards, so a
    retry after an endpoint failure judges only the rest."""
    from swirl.stages.judge import judge_version, run_judge
    from tasks.engines import get_engine

    log = get_run_logger()
    store = Store(store_url)
    t0 = time.perf_counter()
    existed = store.is_complete("judge", judge_version(trajectories, questions, cfg))
    local = isinstance(cfg.engine, EngineConfig) and cfg.needs_model
    engine = get_engine(cfg.engine) if local and not existed else None
    ref = run_judge(store, trajectories, questions, cfg, engine)
    dt = time.perf_counter() - t0
    log.info(
        "judge %s -> %s: %d step labels %s",
        name,
        ref.short(),
        ref.rows,
        {k: v for k, v in ref.summary.items() if k in ("good", "bad", "unknown", "GOOD", "BAD", "UNKNOWN")},
    )
    return StageResult(ref, not existed, dt)


def _decompose_version(inputs: dict[str, Any]) -> str:
    from swirl.stages.decompose import decompose_version

    return decompose_version(inputs["trajectories"], inputs["judgments"], inputs["questions"], inputs["cfg"])


@task(
    name="decompose",
    task_run_name="decompose-{name}",
    cache_key_fn=_store_cache_key("decompose", _decompose_version),
    persist_result=True,
)
def decompose_task(
    store_url: str,
    name: str,
    trajectories: StageRef,
    judgments: StageRef,
    questions: StageRef,
    cfg: DecomposeConfig,
) -> StageResult:
    """One `steps` row per (trajectory, action): a reference to its state, the action, its labels."""
    from swirl.stages.decompose import run_decompose

    res = _run_stage(lambda: run_decompose(Store(store_url), trajectories, judgments, questions, cfg))
    get_run_logger().info("decompose %s -> %s: %d steps", name, res.ref.short(), res.ref.rows)
    return res


def _filter_version(inputs: dict[str, Any]) -> str:
    from swirl.stages.filter import filter_version

    return filter_version(inputs["steps"], inputs["cfg"])


@task(
    name="filter",
    task_run_name="filter-{name}",
    cache_key_fn=_store_cache_key("filter", _filter_version),
    persist_result=True,
)
def filter_task(store_url: str, name: str, steps: StageRef, cfg: FilterConfig) -> StageResult:
    """Mark the steps training keeps (none / process / outcome / process_outcome), with counts per
    strategy."""
    from swirl.stages.filter import run_filter

    res = _run_stage(lambda: run_filter(Store(store_url), steps, cfg))
    s = res.ref.summary
    get_run_logger().info(
        "filter %s (%s) -> %s: kept %s trajectories, %s steps",
        name,
        cfg.strategy,
        res.ref.short(),
        s.get("kept_trajectories"),
        s.get("kept_steps"),
    )
    return res


def _train_version(inputs: dict[str, Any]) -> str:
    from swirl.stages.train import train_version

    return train_version(inputs["cfg"], inputs["policy"], inputs["inputs"], inputs.get("judge"))


@task(
    name="train",
    task_run_name="train",
    cache_key_fn=_store_cache_key("train", _train_version),
    persist_result=True,
)
def train_task(
    store_url: str,
    cfg: TrainConfig,
    policy: EngineConfig,
    inputs: list[TrainInput],
    judge: JudgeSection | None = None,
) -> StageResult:
    """LoRA training on the filtered steps (sft / swirl_offline / swirl); resumes from its latest checkpoint
    after a crash. Per-step metrics go to the task log and, with the output, to MLflow."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from swirl.judging import make_judge_engine
    from swirl.stages.train import run_train
    from tasks.engines import get_engine

    log = get_run_logger()
    store = Store(store_url)
    bar = Progress(
        TextColumn(f"train {cfg.objective}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )
    bar_task = bar.add_task("train", total=cfg.max_steps, info="")

    def on_step(m: dict[str, Any]) -> None:
        shown = {
            k: m[k]
            for k in ("loss", "reward_mean", "kl", "grad_norm", "lr", "tokens_per_s")
            if m.get(k) is not None
        }
        info = " ".join(f"{k}={v:.4g}" for k, v in shown.items())
        bar.update(bar_task, completed=m["step"], info=info)
        log.info("train step %d: %s", m["step"], info)

    def judge_engine() -> Any:
        return (
            get_engine(judge.engine)
            if isinstance(judge.engine, EngineConfig)
            else make_judge_engine(judge.engine)
        )

    with bar:
        res = _run_stage(
            lambda: run_train(
                store,
                cfg,
                policy,
                inputs,
                judge,
                sampler=lambda: get_engine(policy),
                judge_engine=judge_engine,
                on_step=on_step,
            )
        )
    log.info(
        "train -> %s: %s steps, adapter %s/files/adapter %s",
        res.ref.short(),
        res.ref.summary.get("steps"),
        res.ref.path,
        "" if res.computed else "[store hit]",
    )
    return res


def _evaluate_version(inputs: dict[str, Any]) -> str:
    from swirl.stages.evaluate import evaluate_version

    return evaluate_version(
        inputs["cfg"],
        inputs["gen"],
        inputs["policy"].engine,
        inputs["spec"],
        inputs["questions"],
        inputs.get("corpus"),
        inputs.get("search"),
        judge=inputs.get("judge"),
    )


@task(
    name="evaluate",
    task_run_name="evaluate-{spec.name}-{policy.label}",
    cache_key_fn=_store_cache_key("evaluate", _evaluate_version),
    persist_result=True,
)
def evaluate_task(
    store_url: str,
    cfg: EvaluateConfig,
    gen: GenerateConfig,
    policy: EvalPolicy,
    spec: DatasetSpec,
    questions: StageRef,
    corpus: StageRef | None = None,
    search: SearchConfig | None = None,
    judge: JudgeSection | None = None,
) -> StageResult:
    """One policy on the sampled questions of one dataset: episodes, rule (and judge) verdicts; resumes after
    a crash from its finished shards."""
    from swirl.judging import make_judge_engine
    from swirl.stages.evaluate import run_evaluate
    from swirl.stages.generate import tools_for
    from tasks.engines import get_engine

    log = get_run_logger()
    store = Store(store_url)
    search = search or SearchConfig()

    def progress(p: dict[str, Any]) -> None:
        log.info(
            "evaluate %s/%s: %d/%d questions (%.1f s)",
            spec.name,
            policy.label,
            p["done"],
            p["total"],
            p["seconds"],
        )

    def judge_engine() -> Any:
        eng = judge.engine
        return get_engine(eng) if isinstance(eng, EngineConfig) else make_judge_engine(eng)

    res = _run_stage(
        lambda: run_evaluate(
            store,
            cfg,
            gen,
            policy.engine,
            spec,
            questions,
            lambda: get_engine(policy.engine),
            tools_for(spec, store, corpus, search),
            corpus,
            search,
            judge=judge,
            judge_engine=judge_engine,
            progress=progress,
        )
    )
    s = res.ref.summary
    log.info(
        "evaluate %s/%s -> %s: accuracy %.3f [%.3f, %.3f] on %d questions %s",
        spec.name,
        policy.label,
        res.ref.short(),
        s["accuracy_rule"],
        s["accuracy_rule_low"],
        s["accuracy_rule_high"],
        s["questions"],
        "" if res.computed else "[store hit]",
    )
    return res


def _report_version(inputs: dict[str, Any]) -> str:
    from swirl.stages.evaluate import report_version

    return report_version(inputs["entries"], inputs["cfg"], inputs["title"])


@task(
    name="eval-report",
    task_run_name="eval-report",
    cache_key_fn=_store_cache_key("eval_report", _report_version),
    persist_result=True,
)
def eval_report_task(
    store_url: str, entries: list[ReportEntry], cfg: EvaluateConfig, title: str
) -> StageResult:
    """The round's evaluation report (accuracy ± interval, paired gains vs base, cross-task heatmap), also as
    a Prefect Markdown artifact."""
    from prefect.artifacts import create_markdown_artifact

    from swirl.stages.evaluate import run_report

    store = Store(store_url)
    res = _run_stage(lambda: run_report(store, entries, cfg, title))
    md_path = f"{store.files_path(res.ref.stage, res.ref.version)}/report.md"
    with store.fs.open(md_path, "r", encoding="utf-8") as f:
        create_markdown_artifact(f.read(), key="evaluation-report", description=title)
    get_run_logger().info("eval report -> %s (%s)", res.ref.short(), md_path)
    return res
