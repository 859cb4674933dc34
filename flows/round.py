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

from swirl.config import RunConfig, load_config, with_stages
from swirl.data.config import DatasetSpec
from swirl.generation import task_of
from swirl.stages.base import cached_plan
from swirl.stages.corpus import Corpus
from swirl.stages.decompose import Decompose
from swirl.stages.evaluate import EvalPolicy, Evaluate, Report, ReportEntry
from swirl.stages.filter import Filter
from swirl.stages.generate import Generate
from swirl.stages.ingest import Ingest
from swirl.stages.judge import Judge
from swirl.stages.train import Train, adapter_path, read_train_log
from swirl.stages.train import trained_on as train_datasets_of
from swirl.store import Store
from swirl.training.data import TrainInput
from tasks.engines import close_engines
from tasks.stages import StageResult, prepare_task, report_artifact_task, run_job
from tasks.tracking import default_artifact_root, finish_round, log_report, log_stage, start_round

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


@flow(name="swirl_round", flow_run_name="round-{cfg.run.name}", log_prints=True)
def swirl_round(cfg: RunConfig, keep_engines: bool = False) -> dict[str, Any]:
    """Run one round of the pipeline on a run config; returns the stage outputs (stage -> version, rows).
    `keep_engines`: leave the engines running for a next round in the same process (close with
    close_engines)."""
    log = get_run_logger()
    store = Store(cfg.run.store_root)
    flow_run_id = str(flow_run.get_id() or "")
    tr = start_round(
        cfg.run.mlflow_uri,
        cfg.run.experiment,
        run_name=cfg.run.name,
        description=f"swirl round of `{cfg.run.name}` (stages: {', '.join(cfg.stages)}; store {store.url})",
        params=cfg.model_dump(mode="json"),
        tags={
            "prefect.flow_run_id": flow_run_id,
            "swirl.store": store.url,
            "swirl.stages": ",".join(cfg.stages),
        },
        artifact_root=default_artifact_root(cfg.run.store_root),
    )
    log.info(
        "MLflow parent run %s (experiment %s, %s)", tr.parent_run_id, cfg.run.experiment, cfg.run.mlflow_uri
    )
    outputs: dict[str, Any] = {}

    required = required_stages(cfg.stages)
    needed = required.__contains__

    def record(name: str, job: Any, state: Any, history: list[dict[str, Any]] | None = None) -> StageResult:
        """Log a finished stage to MLflow (its params: the config its version hashes) and to the summary."""
        res: StageResult = state.result()
        plan = cached_plan(job)  # the plan the task's cache key already made
        params = {**plan.config, "inputs": plan.inputs}  # what the version hashes: two runs differ in these
        cached = state.name == "Cached" or not res.computed
        log_stage(
            tr,
            res.ref,
            params,
            res.seconds,
            cached,
            {"prefect.flow_run_id": flow_run_id},
            name=name,
            history=history,
        )
        outputs[name] = {
            "version": res.ref.version,
            "rows": res.ref.rows,
            "cached": cached,
            "path": res.ref.path,
            "seconds": round(res.seconds, 3),
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
                train_inputs.append(TrainInput(trajs, kept, questions[name]))
        if needed("train") and train_inputs:
            job = Train(cfg.train, cfg.policy, tuple(train_inputs), cfg.judge_config())
            state = run_job(store.url, job)
            ref = state.result().ref
            record("train", job, state, history=read_train_log(store, ref))
            outputs["train"]["adapter"] = adapter_path(ref)
        if needed("evaluate"):
            trained_on = "+".join(i.questions.summary.get("dataset", "?") for i in train_inputs)
            adapter = outputs.get("train", {}).get("adapter")
            entries = []
            for spec in cfg.evaluate_datasets():
                for pol in eval_policies(cfg, adapter, trained_on):
                    job = Evaluate(
                        cfg.evaluate,
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
                job = Report(tuple(entries), cfg.evaluate, f"{cfg.run.name}: evaluation")
                ref = record("eval", job, run_job(store.url, job)).ref
                report_artifact_task(store.url, ref, job.title)
                log_report(tr, ref)
                outputs["eval"]["report"] = f"{ref.path}/files/report.md"
                outputs["eval"]["results"] = {
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
        summary = {
            "run": cfg.run.name,
            "store": store.url,
            "mlflow_run_id": tr.parent_run_id,
            "mlflow_uri": cfg.run.mlflow_uri,
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


def _unique(specs: list[DatasetSpec]) -> list[DatasetSpec]:
    return list({s.name: s for s in specs}.values())


def eval_policies(cfg: RunConfig, adapter: str | None, trained_on: str) -> list[EvalPolicy]:
    """The policies a round evaluates: the configured policy (base), this round's adapter, the listed
    extras."""
    out = [EvalPolicy("base", cfg.policy)] if cfg.evaluate.base else []
    if cfg.evaluate.trained and adapter:
        out.append(EvalPolicy("trained", cfg.policy.model_copy(update={"adapter": adapter}), trained_on))
    for p in cfg.evaluate.policies:  # an adapter from a swirl store knows what it was trained on
        engine = cfg.policy.model_copy(update={"adapter": p.adapter})
        out.append(EvalPolicy(p.name, engine, p.trained_on or train_datasets_of(p.adapter)))
    return out


@flow(name="swirl_round_from_file", flow_run_name="round-from-{config_path}")
def swirl_round_from_file(
    config_path: str = "configs/quickstart.yaml", stages: list[str] | None = None
) -> dict[str, Any]:
    """Run a round on a YAML config file (paths resolve from the worker's working directory, the project
    root)."""
    return swirl_round(with_stages(load_config(config_path), stages, source=config_path))
