"""The `swirl_round` flow: one round of the pipeline, stage by stage, tracked in MLflow.

prepare (local fixtures) -> ingest (one `questions` table per dataset) -> corpus (all articles of a search
dataset's split + its index) -> generate (multi-step trajectories with tools, per training dataset) -> judge
(process labels per step, outcome per trajectory) -> decompose (the sub-trajectory `steps` table) -> filter ->
train (a LoRA adapter) -> evaluate (base and trained policy on every evaluation dataset) -> the evaluation
report.

A stage runs when it is listed in `stages` or a listed stage depends on it (`DEPENDS`); a finished output is a
store hit. Evaluating only (`stages: [evaluate]`, what `swirl eval` does) needs ingest and corpus, not
training.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.parameters import Knobs, config_name, optional, resolve_config
from swirl.config import ConfigError, RunConfig, Stage
from swirl.data.config import DatasetSpec
from swirl.generation import task_of
from swirl.stages.base import cached_plan, upstream_refs
from swirl.stages.corpus import Corpus
from swirl.stages.decompose import Decompose
from swirl.stages.evaluate import EvalPolicy, Evaluate, Report, ReportEntry
from swirl.stages.filter import Filter
from swirl.stages.generate import Generate
from swirl.stages.ingest import Ingest
from swirl.stages.judge import Judge
from swirl.stages.train import Train, adapter_path, read_train_log, value_path
from swirl.stages.train import trained_on as train_datasets_of
from swirl.store import Store
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
from tasks.stages import StageResult, prepare_task, run_job
from tasks.tracking import (
    CHAMPION,
    default_artifact_root,
    finish_round,
    log_report,
    log_stage,
    mlflow_run_name,
    promote_if_better,
    register_adapter,
    start_round,
    tag_model_version,
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
    """The Prefect flow run's name until the MLflow run is known: `<run name> round [r]` (then renamed to the
    MLflow run's name, e.g. `quickstart #3`)."""
    params = flow_run.get_parameters() or {}
    cfg = params.get("cfg")
    name = cfg.run.name if isinstance(cfg, RunConfig) else ((cfg or {}).get("run") or {}).get("name", "swirl")
    if params.get("config_path"):
        name = config_name(params["config_path"])
    r = params.get("round_number")
    return f"{name} round {r}" if r else f"{name} round"


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
) -> dict[str, Any]:
    """Run one round of the pipeline on a run config; returns the stage outputs (stage -> version, rows).
    `keep_engines`: leave the engines running for a next round in the same process (close with
    close_engines). `parent_run_id`, `round_number`, `base_label`: set by `swirl_iterate` (the MLflow run of
    the iteration; the round's number; the name of the policy the round started from)."""
    return run_round(cfg, keep_engines, parent_run_id, round_number, base_label)


def run_round(
    cfg: RunConfig,
    keep_engines: bool = False,
    parent_run_id: str | None = None,
    round_number: int | None = None,
    base_label: str = "base",
    source: str = "flows/round.py:swirl_round",
    kind: str = "round",
) -> dict[str, Any]:
    """The round's work, in the calling flow (its tasks are that flow run's task runs). `kind`: "round", or
    "evaluate" for an evaluation-only run (its MLflow run is named `<run name> evaluate #k`)."""
    log = get_run_logger()
    store = Store(cfg.run.store_root)
    flow_run_id = str(flow_run.get_id() or "")
    what = f"round {round_number} of an iteration" if round_number else kind
    tr = start_round(
        cfg.run.mlflow_uri,
        cfg.run.experiment,
        run_name=cfg.run.name,
        description=f"swirl {what} of `{cfg.run.name}` (stages: {', '.join(cfg.stages)}; store {store.url}; "
        f"policy {cfg.policy.model if cfg.policy else '-'}"
        f"{' + adapter ' + cfg.policy.adapter if cfg.policy and cfg.policy.adapter else ''})",
        params=cfg.model_dump(mode="json"),
        tags={
            "prefect.flow_run_id": flow_run_id,
            "swirl.store": store.url,
            "swirl.stages": ",".join(cfg.stages),
            **({"swirl.round": str(round_number)} if round_number else {}),
        },
        artifact_root=default_artifact_root(cfg.run.store_root),
        parent_run_id=parent_run_id,
        label=f"{cfg.run.name} round {round_number}" if round_number else None,
        source=source,
        kind=kind,
    )
    run_name = mlflow_run_name(tr)
    rename_flow_run(run_name)
    mlflow_url = mlflow_ui_url(cfg.run.mlflow_uri, tr.experiment_id, tr.parent_run_id, cfg.run.mlflow_ui)
    log.info(
        "MLflow run %r: %s (experiment %s, %s)", run_name, mlflow_url, cfg.run.experiment, cfg.run.mlflow_uri
    )
    publish_link(mlflow_url, f"MLflow run {run_name}", "mlflow-run")
    outputs: dict[str, Any] = {}

    required = required_stages(cfg.stages)
    needed = required.__contains__

    def record(name: str, job: Any, state: Any, history: list[dict[str, Any]] | None = None) -> StageResult:
        """Log a finished stage to MLflow (its params: the config its version hashes; its inputs: the
        upstream outputs it read) and to the summary."""
        res: StageResult = state.result()
        plan = cached_plan(job)  # the plan the task's cache key already made
        params = {**plan.config, "inputs": plan.inputs}  # what the version hashes: two runs differ in these
        cached = state.name == "Cached" or not res.computed
        tracked = getattr(job, "tracked", None)
        rid = log_stage(
            tr,
            res.ref,
            params,
            res.seconds,
            cached,
            {"prefect.flow_run_id": flow_run_id},
            name=name,
            history=history,
            inputs=upstream_refs(job),
            summary=tracked(res.ref) if tracked else None,
        )
        outputs[name] = {
            "version": res.ref.version,
            "rows": res.ref.rows,
            "cached": cached,
            "path": res.ref.path,
            "seconds": round(res.seconds, 3),
            "mlflow_run_id": rid,
        }
        return res

    def split_questions(spec: DatasetSpec) -> Any:
        """The whole split of a dataset (no limit, no dropped levels): what its search corpus is built
        from."""
        full = spec.whole_split()
        if full == spec:
            return questions[spec.name]
        job = Ingest(full)
        return record(f"ingest/{spec.name}/split", job, run_job(store.url, job)).ref

    try:
        t0 = time.perf_counter()
        if "prepare" in cfg.stages:
            prepare_task(cfg.prepare)
        questions = {}
        if needed("ingest"):
            if not cfg.ingest.datasets:
                log.warning("ingest: no datasets in the config (ingest.datasets is empty)")
            jobs = {spec.name: Ingest(spec) for spec in cfg.ingest.datasets}
            futures = {name: run_job(store.url, job, submit=True) for name, job in jobs.items()}
            for name, job in jobs.items():
                futures[name].wait()
                questions[name] = record(f"ingest/{name}", job, futures[name].state).ref
        corpora, trajectories = {}, {}
        search_sets = [
            s
            for s in _unique(
                cfg.generate_datasets() * needed("generate") + cfg.evaluate_datasets() * needed("evaluate")
            )
            if task_of(s) == "search"
        ]
        if needed("corpus"):
            for spec in search_sets:  # the paper searches all articles of the split, not only the sample's
                job = Corpus(split_questions(spec), cfg.search, spec.name)
                corpora[spec.name] = record(f"corpus/{spec.name}", job, run_job(store.url, job)).ref
        if needed("generate"):
            for spec in cfg.generate_datasets():
                job = Generate(
                    cfg.generate, cfg.policy, spec, questions[spec.name], corpora.get(spec.name), cfg.search
                )
                trajectories[spec.name] = record(f"generate/{spec.name}", job, run_job(store.url, job)).ref
            publish_trajectory_sample(
                store, list(trajectories.values()), f"{run_name}: sample trajectories", "trajectories"
            )
        train_inputs: list[TrainInput] = []
        for name, trajs in trajectories.items() if needed("judge") else ():
            job = Judge(trajs, questions[name], cfg.judge_config(), name)
            judgments = record(f"judge/{name}", job, run_job(store.url, job)).ref
            if not needed("decompose"):
                continue
            job = Decompose(trajs, judgments, questions[name], cfg.decompose, name)
            steps = record(f"decompose/{name}", job, run_job(store.url, job)).ref
            if needed("filter"):
                job = Filter(steps, cfg.filter, name)
                kept = record(f"filter/{name}", job, run_job(store.url, job)).ref
                outputs[f"filter/{name}"]["kept_steps"] = kept.summary.get("kept_steps")
                train_inputs.append(TrainInput(trajs, kept, questions[name]))
        model_version = None
        if needed("train") and train_inputs:
            job = Train(cfg.train, cfg.policy, tuple(train_inputs), cfg.judge_config())
            state = run_job(store.url, job)
            ref = state.result().ref
            record("train", job, state, history=read_train_log(store, ref))
            outputs["train"]["adapter"] = adapter_path(ref)
            if store.fs.exists(value_path(ref)):  # objective oreo: the value model of beam decoding
                outputs["train"]["value"] = value_path(ref)
            outputs["train"]["reward_mean"] = ref.summary.get("final_reward_mean")
            model_version = register_adapter(
                tr,
                outputs["train"]["mlflow_run_id"],
                adapter_path(ref),
                cfg.policy.model,
                registered_model_name(cfg),
                {
                    "swirl.run": cfg.run.name,
                    "swirl.round": str(round_number or run_name),
                    "swirl.train_version": ref.version,
                    "swirl.data_versions": ",".join(i.steps.short() for i in train_inputs),
                    "swirl.base_adapter": cfg.policy.adapter or "",
                },
            )
            outputs["train"]["model_version"] = model_version
            log.info("adapter registered: model %r version %s", registered_model_name(cfg), model_version)
        if needed("evaluate"):
            trained_on = "+".join(i.questions.summary.get("dataset", "?") for i in train_inputs)
            adapter = outputs.get("train", {}).get("adapter")
            entries = []
            eval_cfg = cfg.evaluate
            if eval_cfg.decoding == "beam" and eval_cfg.value_model == "trained":
                trained_value = outputs.get("train", {}).get("value")
                if trained_value is None:
                    raise ConfigError(
                        "evaluate.value_model: trained, but this round's train output has no value model "
                        "(train.objective oreo writes one); set a value folder instead"
                    )
                eval_cfg = eval_cfg.model_copy(update={"value_model": trained_value})
            for spec in cfg.evaluate_datasets():
                for pol in eval_policies(cfg, adapter, trained_on, base_label):
                    job = Evaluate(
                        eval_cfg,
                        cfg.generate,
                        pol,
                        spec,
                        questions[spec.name],
                        corpora.get(spec.name),
                        cfg.search,
                        cfg.judge_config(),
                    )
                    ref = record(f"eval/{spec.name}/{pol.label}", job, run_job(store.url, job)).ref
                    entries.append(ReportEntry(pol.label, pol.trained_on, ref))
            if entries:
                job = Report(tuple(entries), eval_cfg, f"{cfg.run.name}: evaluation")
                ref = record("eval", job, run_job(store.url, job)).ref
                publish_markdown(report_markdown(store, ref), job.title, "evaluation-report")
                log_report(tr, ref)
                outputs["eval"]["report"] = f"{ref.path}/files/report.md"
                outputs["eval"]["results"] = results = {
                    e.policy + "@" + str(e.ref.summary.get("dataset")): {
                        k: e.ref.summary.get(k)
                        for k in (
                            "accuracy_rule",
                            "accuracy_rule_low",
                            "accuracy_rule_high",
                            "accuracy_judge",
                            "questions",
                        )
                    }
                    for e in entries
                }
                publish_eval_table(results, f"{run_name}: evaluation (rule-graded accuracy)", "evaluation")
                trained = {
                    k.split("@", 1)[1]: r["accuracy_rule"]
                    for k, r in results.items()
                    if k.startswith("trained@")
                }
                if model_version is not None and trained:
                    accuracy = sum(trained.values()) / len(trained)
                    tag_model_version(
                        cfg.run.mlflow_uri,
                        registered_model_name(cfg),
                        model_version,
                        {
                            "swirl.accuracy": f"{accuracy:.6f}",
                            **{f"swirl.accuracy.{d}": f"{a:.6f}" for d, a in trained.items()},
                        },
                    )
                    if promote_if_better(
                        cfg.run.mlflow_uri, registered_model_name(cfg), model_version, accuracy
                    ):
                        log.info("alias %r -> version %s (accuracy %.4f)", CHAMPION, model_version, accuracy)
        publish_stage_table(outputs, f"{run_name}: stage outputs", "round-stages")
        summary = {
            "run": cfg.run.name,
            "round": round_number,
            "mlflow_run_name": run_name,
            "store": store.url,
            "mlflow_run_id": tr.parent_run_id,
            "mlflow_experiment_id": tr.experiment_id,
            "mlflow_uri": cfg.run.mlflow_uri,
            "mlflow_url": mlflow_url,
            "seconds": round(time.perf_counter() - t0, 2),
            "stages": outputs,
        }
        finish_round(tr, "FINISHED", summary)
        return summary
    except BaseException:
        finish_round(tr, "FAILED", {"stages": outputs})
        raise
    finally:
        if not keep_engines:
            close_engines()


def registered_model_name(cfg: RunConfig) -> str:
    """One registered model per MLflow experiment: its adapters, a version per round that trains."""
    return cfg.run.experiment


def _unique(specs: list[DatasetSpec]) -> list[DatasetSpec]:
    return list({s.name: s for s in specs}.values())


def eval_policies(
    cfg: RunConfig, adapter: str | None, trained_on: str, base_label: str = "base"
) -> list[EvalPolicy]:
    """The policies a round evaluates: the configured policy (`base_label`: "base", or the round it came from
    in an iteration), this round's adapter ("trained"), the listed extras."""
    out = [EvalPolicy(base_label, cfg.policy)] if cfg.evaluate.base else []
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
) -> dict[str, Any]:
    """One round on a base config file (paths resolve from the worker's working directory, the project root)
    with the Run form's overrides; the resolved config is the run's `resolved-config` artifact. The round's
    tasks run in this flow run."""
    cfg = resolve_config(config_path, knobs, stages)
    publish_config(cfg, f"resolved config: {config_path}", "resolved-config")
    return run_round(cfg, source="flows/round.py:swirl_round_from_file")
