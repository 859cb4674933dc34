"""The `swirl_round` flow: one round of the pipeline, stage by stage, tracked in MLflow.

prepare (local fixtures) -> ingest (one `questions` table per dataset) -> corpus (all articles of a search
dataset's split + its index) -> generate (multi-step trajectories with tools, per training dataset) -> judge
(process labels per step, outcome per trajectory) -> decompose (the sub-trajectory `steps` table) -> filter ->
train (a LoRA adapter, registered in MLflow) -> evaluate (base and trained policy on every evaluation dataset)
-> the evaluation report (and the champion alias on the best adapter).

With `warmup.enabled`, a round that trains first runs the warm-up (`warmup_config`: SFT on gold
demonstrations) as a `swirl_round` subflow of kind "warm-up" with its own MLflow run (`<name> warm-up #k`;
`<name> warm-up` under an iteration), then starts from its adapter (`starting_from`) and evaluates the
configured policy (`base`), the warm-up (`warm-up`) and its own adapter (`trained`) in one report.

`run_round` reads as a recipe: setup (the tracked run), one phase per group of stages, cleanup. A stage runs
when it is listed in `stages` or a listed stage depends on it (`DEPENDS`); a finished output is a store hit.
Evaluating only (`stages: [evaluate]`, what `swirl eval` does) needs ingest and corpus, not training.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import State

from flows.parameters import Knobs, config_name, optional, resolve_config
from flows.results import EvalScore, RoundResult, StageOutput, policy_accuracy
from swirl.config import ConfigError, RunConfig, Stage, starting_from, warmup_config
from swirl.data.config import DatasetSpec
from swirl.episodes import tool_kind
from swirl.evaluation.config import EvaluateConfig
from swirl.stages.base import Job, cached_plan, upstream_refs
from swirl.stages.corpus import Corpus
from swirl.stages.decompose import Decompose
from swirl.stages.evaluate import EvalPolicy, Evaluate, Report, ReportEntry
from swirl.stages.filter import Filter
from swirl.stages.generate import Generate
from swirl.stages.ingest import Ingest
from swirl.stages.judge import Judge
from swirl.stages.train import Train, adapter_path, read_train_log, value_path
from swirl.stages.train import trained_on as train_datasets_of
from swirl.store import StageRef, Store
from swirl.training.data import TrainInput
from tasks.artifacts import (
    mlflow_ui_url,
    publish_config,
    publish_eval_table,
    publish_link,
    publish_markdown,
    publish_stage_table,
    publish_trajectory_sample,
    report_markdown,
)
from tasks.engines import close_engines
from tasks.registry import CHAMPION, promote_by_accuracy, register_adapter, registered_model_name
from tasks.stages import StageResult, prepare_task, run_job, submit_job
from tasks.tracking import (
    Tracking,
    default_artifact_root,
    finish_tracked_run,
    log_report,
    log_stage,
    mlflow_run_name,
    start_tracked_run,
)

# What each stage reads: a stage runs when it is listed or a listed stage depends on it.
DEPENDS: dict[str, tuple[str, ...]] = {
    "prepare": (),
    "ingest": (),
    "corpus": ("ingest",),
    "generate": ("ingest", "corpus"),
    "judge": ("generate",),
    "decompose": ("judge",),
    "filter": ("decompose",),
    "train": ("filter",),
    "evaluate": ("ingest", "corpus"),  # the trained policy is evaluated when train is also listed
}


def required_stages(listed: tuple[str, ...] | list[str]) -> set[str]:
    """The listed stages and everything they depend on."""
    out: set[str] = set()
    todo = list(listed)
    while todo:
        s = todo.pop()
        if s not in out:
            out.add(s)
            todo.extend(DEPENDS[s])
    return out


def _round_run_name() -> str:
    """The Prefect flow run's name until the MLflow run is known: `<run name> round [r]` or `<run name>
    warm-up` (then renamed to the MLflow run's name, e.g. `quickstart #3`)."""
    params = flow_run.get_parameters() or {}
    cfg = params.get("cfg")
    name = cfg.run.name if isinstance(cfg, RunConfig) else ((cfg or {}).get("run") or {}).get("name", "swirl")
    if params.get("config_path"):
        name = config_name(params["config_path"])
    return round_label(name, params.get("kind", "round"), params.get("round_number")) or f"{name} round"


def round_label(name: str, kind: str, round_number: int | None) -> str | None:
    """What a round is called in an iteration (its MLflow run under the iteration's, its Prefect flow run):
    `<name> warm-up` for the warm-up, `<name> round r` for round r; None outside an iteration (MLflow
    numbers the run: `<name> #k`, `<name> warm-up #k`)."""
    if kind == "warm-up":
        return f"{name} warm-up"
    return None if round_number is None else f"{name} round {round_number}"


def rename_flow_run(name: str) -> None:
    """Give the running flow run `name` (the MLflow run's), so both UIs list the run under one name."""
    from prefect import get_client

    run_id = flow_run.get_id()
    if run_id:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run_id, name=name)


@flow(name="swirl_round", flow_run_name=_round_run_name, log_prints=True)
def swirl_round(
    cfg: RunConfig,
    keep_engines: bool = False,
    parent_run_id: str | None = None,
    round_number: int | None = None,
    base_label: str = "base",
    kind: Literal["round", "warm-up"] = "round",
) -> RoundResult:
    """Run one round of the pipeline on a run config; returns its stage outputs (stage -> version, rows).
    `keep_engines`: leave the engines running for a next round in the same process (close with
    close_engines). `parent_run_id`, `round_number`, `base_label`: set by `swirl_iterate` (the MLflow run of
    the iteration; the round's number; the name of the policy the round started from). `kind` "warm-up":
    the warm-up's round (its config is `warmup_config`'s), named so in both UIs."""
    return run_round(cfg, keep_engines, parent_run_id, round_number, base_label, kind=kind)


def run_round(
    cfg: RunConfig,
    keep_engines: bool = False,
    parent_run_id: str | None = None,
    round_number: int | None = None,
    base_label: str = "base",
    source: str = "flows/round.py:swirl_round",
    kind: str = "round",
) -> RoundResult:
    """The round's work, in the calling flow (its tasks are that flow run's task runs). `kind`: "round",
    "warm-up", or "evaluate" for an evaluation-only run (its MLflow run is named `<run name> evaluate #k`).
    With `warmup.enabled`, the warm-up runs first (`warmup_phase`) and the round starts from its adapter."""
    try:
        cfg, base_label, before = warmup_phase(cfg, parent_run_id, base_label)
    except BaseException:
        if not keep_engines:
            close_engines()
        raise
    rnd = open_round(cfg, parent_run_id, round_number, source, kind, before)
    try:
        t0 = time.perf_counter()
        if "prepare" in cfg.stages:
            prepare_task(cfg.prepare)
        questions = ingest_phase(rnd)
        corpora = corpus_phase(rnd, questions)
        trajectories = generate_phase(rnd, questions, corpora)
        train_inputs = steps_phase(rnd, questions, trajectories)
        train = train_phase(rnd, train_inputs)
        results = evaluate_phase(rnd, questions, corpora, train_inputs, train, base_label)
        promote_phase(rnd, train, results)
        publish_stage_table(rnd.stage_dicts(), f"{rnd.run_name}: stage outputs", "round-stages")
        result = rnd.result(time.perf_counter() - t0)
        finish_tracked_run(rnd.tracking, "FINISHED", result.as_dict())
        return result
    except BaseException:
        finish_tracked_run(rnd.tracking, "FAILED", {"stages": rnd.stage_dicts()})
        raise
    finally:
        if not keep_engines:
            close_engines()


# ---------------------------------------------------------------------------------------------- setup
@dataclass
class RoundRun:
    """A round in progress: its config, store and MLflow run, and the stage outputs recorded so far."""

    cfg: RunConfig
    store: Store
    tracking: Tracking
    run_name: str  # the MLflow run's name, also the Prefect flow run's
    mlflow_url: str
    flow_run_id: str
    round_number: int | None
    kind: str = "round"  # "round", "warm-up" or "evaluate"
    before: tuple[EvalPolicy, ...] = ()  # evaluated first: the policy a warm-up started from
    outputs: dict[str, StageOutput] = field(default_factory=dict)

    def needs(self, stage: str) -> bool:
        """Whether `stage` runs: listed in the config's stages, or a listed stage depends on it."""
        return stage in required_stages(self.cfg.stages)

    def run(self, name: str, job: Job) -> StageRef:
        """Run `job` as its task and record its output as `name`."""
        return self.record(name, job, run_job(self.store.url, job)).ref

    def record(
        self, name: str, job: Job, state: State[StageResult], history: list[dict[str, Any]] | None = None
    ) -> StageResult:
        """Log a finished stage to MLflow (its params: the config its version hashes; its inputs: the
        upstream outputs it read; `history`: its per-step rows) and keep its output as `name`."""
        res: StageResult = state.result()
        plan = cached_plan(job)  # the plan the task's cache key already made
        cached = state.name == "Cached" or not res.computed
        tracked = getattr(job, "tracked", None)
        rid = log_stage(
            self.tracking,
            res.ref,
            {**plan.config, "inputs": plan.inputs},  # what the version hashes: two runs differ in these
            res.seconds,
            cached,
            {"prefect.flow_run_id": self.flow_run_id},
            name=name,
            history=history,
            inputs=upstream_refs(job),
            summary=tracked(res.ref) if tracked else None,
        )
        seconds = round(res.seconds, 3)
        self.outputs[name] = StageOutput(res.ref.version, res.ref.rows, cached, res.ref.path, seconds, rid)
        return res

    def extend(self, name: str, **extras: object) -> StageOutput:
        """Add what only stage `name` has (a filter's kept steps, the adapter, the report) to its output."""
        self.outputs[name] = replace(self.outputs[name], **extras)
        return self.outputs[name]

    def stage_dicts(self) -> dict[str, dict[str, Any]]:
        """The stage outputs in their JSON shape (the stage table artifact, `round_summary.json`)."""
        return {k: o.as_dict() for k, o in self.outputs.items()}

    def result(self, seconds: float) -> RoundResult:
        """The finished round, `seconds` after its first stage started."""
        tr = self.tracking
        return RoundResult(
            run=self.cfg.run.name,
            round=self.round_number,
            mlflow_run_name=self.run_name,
            store=self.store.url,
            mlflow_run_id=tr.parent_run_id,
            mlflow_experiment_id=tr.experiment_id,
            mlflow_uri=self.cfg.run.mlflow_uri,
            mlflow_url=self.mlflow_url,
            seconds=round(seconds, 2),
            stages=dict(self.outputs),
        )


def open_round(
    cfg: RunConfig,
    parent_run_id: str | None,
    round_number: int | None,
    source: str,
    kind: str,
    before: tuple[EvalPolicy, ...] = (),
) -> RoundRun:
    """Setup: the round's MLflow run (under `parent_run_id` in an iteration), the Prefect flow run renamed to
    its name, the link to it as an artifact. `before`: policies evaluated before the round's own."""
    store = Store(cfg.run.store_root)
    flow_run_id = str(flow_run.get_id() or "")
    policy = "-" if cfg.policy is None else cfg.policy.model
    if cfg.policy is not None and cfg.policy.adapter:
        policy += f" + adapter {cfg.policy.adapter}"
    what = kind if round_number is None else f"round {round_number} of an iteration"
    if kind == "warm-up" and round_number is not None:
        what = f"warm-up, {what}"
    tr = start_tracked_run(
        cfg.run.mlflow_uri,
        cfg.run.experiment,
        run_name=cfg.run.name,
        description=f"swirl {what} of `{cfg.run.name}` (stages: {', '.join(cfg.stages)}; store {store.url}; "
        f"policy {policy})",
        params=cfg.model_dump(mode="json"),
        tags={
            "prefect.flow_run_id": flow_run_id,
            "swirl.store": store.url,
            "swirl.stages": ",".join(cfg.stages),
            **({"swirl.round": str(round_number)} if round_number is not None else {}),
        },
        artifact_root=default_artifact_root(cfg.run.store_root),
        parent_run_id=parent_run_id,
        label=round_label(cfg.run.name, kind, round_number),
        source=source,
        kind=kind,
    )
    run_name = mlflow_run_name(tr)
    rename_flow_run(run_name)
    url = mlflow_ui_url(cfg.run.mlflow_uri, tr.experiment_id, tr.parent_run_id, cfg.run.mlflow_ui)
    get_run_logger().info(
        "MLflow run %r: %s (experiment %s, %s)", run_name, url, cfg.run.experiment, cfg.run.mlflow_uri
    )
    publish_link(url, f"MLflow run {run_name}", "mlflow-run")
    return RoundRun(cfg, store, tr, run_name, url, flow_run_id, round_number, kind, before)


def warmup_phase(
    cfg: RunConfig, parent_run_id: str | None, base_label: str
) -> tuple[RunConfig, str, tuple[EvalPolicy, ...]]:
    """With `warmup.enabled` and the train stage listed: the warm-up's round (a `swirl_round` subflow of
    kind "warm-up"), then this round's config starting from its adapter, that policy's label ("warm-up")
    and the configured policy, evaluated beside it as `base_label`. Otherwise the config as it is."""
    if not (cfg.warmup.enabled and "train" in cfg.stages):
        return cfg, base_label, ()
    warm = swirl_round(warmup_config(cfg), keep_engines=True, parent_run_id=parent_run_id, kind="warm-up")
    train = warm.stages.get("train")
    if train is None or not train.adapter:
        raise ConfigError(
            f"warmup: the warm-up of {cfg.run.name!r} trained no adapter (no gold demonstration was kept); "
            "check warmup.datasets (datasets with gold solutions) or set warmup.enabled: false"
        )
    base = (EvalPolicy(base_label, cfg.policy),) if cfg.evaluate.base else ()
    return starting_from(cfg, train.adapter), "warm-up", base


# --------------------------------------------------------------------------------------------- phases
def ingest_phase(rnd: RoundRun) -> dict[str, StageRef]:
    """The `questions` table of every configured dataset (ingested concurrently), by dataset name."""
    if not rnd.needs("ingest"):
        return {}
    if not rnd.cfg.ingest.datasets:
        get_run_logger().warning("ingest: no datasets in the config (ingest.datasets is empty)")
    jobs = {spec.name: Ingest(spec) for spec in rnd.cfg.ingest.datasets}
    futures = {name: submit_job(rnd.store.url, job) for name, job in jobs.items()}
    questions = {}
    for name, job in jobs.items():
        futures[name].wait()
        questions[name] = rnd.record(f"ingest/{name}", job, futures[name].state).ref
    return questions


def corpus_phase(rnd: RoundRun, questions: dict[str, StageRef]) -> dict[str, StageRef]:
    """A search corpus and its index for every search dataset that is generated from or evaluated on: all
    articles of the dataset's split, as in the paper (not only the sampled questions')."""
    if not rnd.needs("corpus"):
        return {}
    cfg = rnd.cfg
    read = cfg.generate_datasets() * rnd.needs("generate") + cfg.evaluate_datasets() * rnd.needs("evaluate")
    corpora = {}
    for spec in _unique(read):
        if tool_kind(spec) == "search":
            job = Corpus(split_questions(rnd, spec, questions), cfg.search, spec.name)
            corpora[spec.name] = rnd.run(f"corpus/{spec.name}", job)
    return corpora


def split_questions(rnd: RoundRun, spec: DatasetSpec, questions: dict[str, StageRef]) -> StageRef:
    """The whole split of a dataset (no limit, no dropped levels): what its search corpus is built from."""
    full = spec.whole_split()
    if full == spec:
        return questions[spec.name]
    return rnd.run(f"ingest/{spec.name}/split", Ingest(full))


def generate_phase(
    rnd: RoundRun, questions: dict[str, StageRef], corpora: dict[str, StageRef]
) -> dict[str, StageRef]:
    """Trajectories of the policy on every training dataset, by dataset name; a sample as an artifact."""
    if not rnd.needs("generate"):
        return {}
    cfg, trajectories = rnd.cfg, {}
    for spec in cfg.generate_datasets():
        job = Generate(
            cfg.generate,
            cfg.policy,
            spec,
            questions[spec.name],
            corpora.get(spec.name),
            cfg.search,
            executor=cfg.run.executor_config,
        )
        trajectories[spec.name] = rnd.run(f"generate/{spec.name}", job)
    title = f"{rnd.run_name}: sample trajectories"
    publish_trajectory_sample(rnd.store, list(trajectories.values()), title, "trajectories")
    return trajectories


def steps_phase(
    rnd: RoundRun, questions: dict[str, StageRef], trajectories: dict[str, StageRef]
) -> list[TrainInput]:
    """judge -> decompose -> filter on each dataset's trajectories: the steps training keeps."""
    cfg, train_inputs = rnd.cfg, []
    for name, trajs in trajectories.items() if rnd.needs("judge") else ():
        judgments = rnd.run(f"judge/{name}", Judge(trajs, questions[name], cfg.judge_config(), name))
        if not rnd.needs("decompose"):
            continue
        job = Decompose(trajs, judgments, questions[name], cfg.decompose, name)
        steps = rnd.run(f"decompose/{name}", job)
        if rnd.needs("filter"):
            kept = rnd.run(f"filter/{name}", Filter(steps, cfg.filter, name))
            rnd.extend(f"filter/{name}", kept_steps=kept.summary.get("kept_steps"))
            train_inputs.append(TrainInput(trajs, kept, questions[name]))
    return train_inputs


def train_phase(rnd: RoundRun, train_inputs: list[TrainInput]) -> StageOutput | None:
    """Train the policy's adapter on the kept steps (its training curves on the train run) and register it
    as a version of the experiment's model."""
    if not (rnd.needs("train") and train_inputs):
        return None
    cfg, store = rnd.cfg, rnd.store
    job = Train(cfg.train, cfg.policy, tuple(train_inputs), cfg.judge_config())
    state = run_job(store.url, job)
    ref = state.result().ref
    rnd.record("train", job, state, history=read_train_log(store, ref))
    value = value_path(ref) if store.fs.exists(value_path(ref)) else None  # objective oreo's value model
    out = rnd.extend(
        "train", adapter=adapter_path(ref), value=value, reward_mean=ref.summary.get("final_reward_mean")
    )
    model_version = register_adapter(
        rnd.tracking,
        out.mlflow_run_id,
        adapter_path(ref),
        cfg.policy.model,
        registered_model_name(cfg),
        {
            "swirl.run": cfg.run.name,
            "swirl.round": str(rnd.run_name if rnd.round_number is None else rnd.round_number),
            "swirl.train_version": ref.version,
            "swirl.data_versions": ",".join(i.steps.short() for i in train_inputs),
            "swirl.base_adapter": cfg.policy.adapter or "",
        },
    )
    get_run_logger().info(
        "adapter registered: model %r version %s", registered_model_name(cfg), model_version
    )
    return rnd.extend("train", model_version=model_version)


def evaluate_phase(
    rnd: RoundRun,
    questions: dict[str, StageRef],
    corpora: dict[str, StageRef],
    train_inputs: list[TrainInput],
    train: StageOutput | None,
    base_label: str,
) -> dict[str, EvalScore]:
    """Every evaluation dataset with every policy (`eval_policies`), then the report; the scores by
    `<policy>@<dataset>`."""
    if not rnd.needs("evaluate"):
        return {}
    cfg = rnd.cfg
    eval_cfg = with_value_model(cfg.evaluate, train)
    trained_on = "+".join(i.questions.summary.get("dataset", "?") for i in train_inputs)
    policies = [*rnd.before, *eval_policies(cfg, train.adapter if train else None, trained_on, base_label)]
    entries = []
    for spec in cfg.evaluate_datasets():
        for pol in policies:
            job = Evaluate(
                eval_cfg,
                cfg.generate,
                pol,
                spec,
                questions[spec.name],
                corpora.get(spec.name),
                cfg.search,
                cfg.judge_config(),
                executor=cfg.run.executor_config,
            )
            ref = rnd.run(f"eval/{spec.name}/{pol.label}", job)
            entries.append(ReportEntry(pol.label, pol.trained_on, ref))
    return report_phase(rnd, entries, eval_cfg) if entries else {}


def report_phase(rnd: RoundRun, entries: list[ReportEntry], eval_cfg: EvaluateConfig) -> dict[str, EvalScore]:
    """The evaluation report (a stage output, a Prefect artifact, MLflow artifacts and table) and the
    evaluation table; the scores by `<policy>@<dataset>`."""
    what = " warm-up" if rnd.kind == "warm-up" else ""
    job = Report(tuple(entries), eval_cfg, f"{rnd.cfg.run.name}{what}: evaluation")
    ref = rnd.run("eval", job)
    publish_markdown(report_markdown(rnd.store, ref), job.title, "evaluation-report")
    log_report(rnd.tracking, ref)
    results = {f"{e.policy}@{e.ref.summary.get('dataset')}": EvalScore.of(e.ref.summary) for e in entries}
    rnd.extend("eval", report=f"{ref.path}/files/report.md", results=results)
    table = {k: asdict(r) for k, r in results.items()}
    publish_eval_table(table, f"{rnd.run_name}: evaluation (rule-graded accuracy)", "evaluation")
    return results


def promote_phase(rnd: RoundRun, train: StageOutput | None, results: dict[str, EvalScore]) -> None:
    """Tag this round's registered adapter with its accuracy; make it the champion when it is the best."""
    trained = policy_accuracy(results, "trained")
    if train is None or train.model_version is None or not trained:
        return
    name, version = registered_model_name(rnd.cfg), train.model_version
    if promote_by_accuracy(rnd.cfg.run.mlflow_uri, name, version, trained):
        accuracy = sum(trained.values()) / len(trained)
        get_run_logger().info("alias %r -> version %s (accuracy %.4f)", CHAMPION, version, accuracy)


# -------------------------------------------------------------------------------------------- helpers
def with_value_model(cfg: EvaluateConfig, train: StageOutput | None) -> EvaluateConfig:
    """The evaluation config, with `value_model: trained` (beam decoding) resolved to the value model this
    round's train stage wrote."""
    if not (cfg.decoding == "beam" and cfg.value_model == "trained"):
        return cfg
    if train is None or train.value is None:
        raise ConfigError(
            "evaluate.value_model: trained, but this round's train output has no value model "
            "(train.objective oreo writes one); set a value folder instead"
        )
    return cfg.model_copy(update={"value_model": train.value})


def _unique(specs: list[DatasetSpec]) -> list[DatasetSpec]:
    return list({s.name: s for s in specs}.values())


def eval_policies(
    cfg: RunConfig, adapter: str | None, trained_on: str, base_label: str = "base"
) -> list[EvalPolicy]:
    """The policies a round evaluates: the configured policy (`base_label`: "base", or the warm-up or round it
    came from, with what its adapter was trained on), this round's adapter ("trained"), the listed extras."""
    start = train_datasets_of(cfg.policy.adapter) if cfg.policy.adapter else ""
    out = [EvalPolicy(base_label, cfg.policy, start)] if cfg.evaluate.base else []
    if cfg.evaluate.trained and adapter:
        out.append(EvalPolicy("trained", cfg.policy.model_copy(update={"adapter": adapter}), trained_on))
    for p in cfg.evaluate.policies:  # an adapter from a swirl store knows what it was trained on
        engine = cfg.policy.model_copy(update={"adapter": p.adapter})
        out.append(EvalPolicy(p.name, engine, p.trained_on or train_datasets_of(p.adapter)))
    return out


@flow(name="swirl_round", flow_run_name=_round_run_name, log_prints=True)
def swirl_round_from_file(
    config_path: str = "configs/quickstart.yaml",
    knobs: Knobs = Knobs(),  # noqa: B008  (a frozen default: Prefect shows it in the Run form)
    stages: optional(list[Stage]) = None,
) -> RoundResult:
    """One round on a base config file (paths resolve from the worker's working directory, the project root)
    with the Run form's overrides; the resolved config is the run's `resolved-config` artifact. The round's
    tasks run in this flow run."""
    cfg = resolve_config(config_path, knobs, stages)
    publish_config(cfg, f"resolved config: {config_path}", "resolved-config")
    return run_round(cfg, source="flows/round.py:swirl_round_from_file")
