"""The `swirl_iterate` flow: rounds of the pipeline, each starting from the previous round's policy.

Round r generates with round r-1's policy (the base model + its adapter), judges, decomposes, filters, trains
that adapter further (`train.lora.init_adapter` follows the policy's adapter) and evaluates the new adapter
against the policy it started from (labelled `round r-1`; `base` in round 1). It stops after `rounds` rounds,
or earlier when a round's gain (mean rule-graded accuracy over the evaluation datasets, new adapter minus the
policy it started from) is below `min_gain`. With `warmup.enabled`, the warm-up (SFT on gold demonstrations,
`swirl.config.warmup_config`) is round 0: evaluated against the configured policy (`base`), its adapter is
round 1's policy (labelled `warm-up` there); `rounds` and `min_gain` count the rounds after it.

Every finished round is committed to the store as an `iteration` output: its version hashes the chain's
config (the run config without its stage list), the round number and the previous round's version, and its
summary holds the adapter, the accuracies and the MLflow ids. A re-run walks these records and starts at
the first unfinished round; that round's finished stages are store hits. `more_rounds` (what a schedule sets)
means "this many rounds after the last finished one", so every scheduled run trains one more round instead of
re-running a cached one.

MLflow: one parent run per iteration (`<run name> iterate #k`), each round a run under it (`<run name> round
r`; `<run name> warm-up` for round 0) with its stages under that; the iteration run holds the across-rounds
metrics (step = round) and the summary table. Prefect: each round is a `swirl_round` subflow run; the
iteration run has the summary table (the `rounds` artifact).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.parameters import Knobs, config_name, optional, resolve_config
from flows.results import IterationResult, RoundRecord
from flows.round import rename_flow_run, swirl_round
from swirl.config import ConfigError, RunConfig, starting_from, warmup_config
from swirl.stages.base import Context, Plan, run_stage
from swirl.store import StageRef, Store
from tasks.artifacts import mlflow_ui_url, publish_config, publish_link, publish_markdown
from tasks.engines import close_engines
from tasks.tracking import (
    Tracking,
    default_artifact_root,
    finish_tracked_run,
    log_round_metrics,
    log_rounds_table,
    mlflow_run_name,
    start_tracked_run,
)

ITERATION = "iteration"  # the store stage of finished rounds' records


def chain_config(cfg: RunConfig) -> dict[str, Any]:
    """What identifies a chain of rounds: the whole run config but its stage list (an iteration runs every
    stage a round needs)."""
    data = cfg.model_dump(mode="json")
    data.pop("stages")
    return data


def round_plan(chain: dict[str, Any], number: int, previous: str) -> Plan:
    """The plan of round `number`'s record: its version hashes the chain, the round number and the previous
    round's version (empty for round 1)."""
    return Plan(ITERATION, None, {"chain": chain, "round": number}, {"previous": previous})


@dataclass(frozen=True)
class CommitRound:
    """A finished round's record, committed as the chain's next `iteration` output: the record is its summary
    and its `round.json`."""

    chain: dict[str, Any]
    previous: str  # the previous round's `iteration` version ("" for round 1)
    record: RoundRecord
    stage: ClassVar[str] = ITERATION

    @property
    def label(self) -> str:
        return f"iteration-round-{self.record.round}"

    def plan(self) -> Plan:
        return round_plan(self.chain, self.record.round, self.previous)

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef:
        rec = self.record.as_dict()
        return plan.write(
            store, None, rec, lambda folder: _write_json(os.path.join(folder, "round.json"), rec)
        )

    def describe(self, ref: StageRef) -> str:
        return f"round {self.record.round}: adapter {self.record.adapter}"


def finished_rounds(store: Store, chain: dict[str, Any], first: int = 1) -> list[tuple[str, RoundRecord]]:
    """The chain's finished rounds in order, as (version, record); `first`: 0 when the chain starts with
    the warm-up."""
    out: list[tuple[str, RoundRecord]] = []
    while True:
        version = round_plan(chain, first + len(out), out[-1][0] if out else "").version
        if not store.is_complete(ITERATION, version):
            return out
        out.append((version, RoundRecord.from_dict(store.ref(ITERATION, version).summary)))


def round_config(cfg: RunConfig, number: int, adapter: str | None) -> RunConfig:
    """Round `number`'s config: the warm-up's (round 0), else the policy with the previous round's adapter
    (in round 1 without a warm-up: the config's) and no warm-up of its own."""
    return warmup_config(cfg) if number == 0 else starting_from(cfg, adapter)


def start_label(number: int, warmup: bool) -> str:
    """The label of the policy round `number` starts from, in its evaluation: `base` (the warm-up's and,
    without one, round 1's), `warm-up` (round 1 after it), `round r-1`."""
    if number == 0 or (number == 1 and not warmup):
        return "base"
    return "warm-up" if number == 1 else f"round {number - 1}"


def round_name(r: RoundRecord) -> str:
    """A round's cell in the rounds table: its number, `0 (warm-up)` for the warm-up."""
    return "0 (warm-up)" if r.round == 0 else str(r.round)


def adapter_name(path: str) -> str:
    """An adapter as the rounds table shows it: a swirl train output's version (`<root>/train/<version>/
    files/adapter`), any other folder as it is, none as `-`."""
    parts = os.path.normpath(path).split(os.sep) if path else []
    if len(parts) >= 4 and parts[-4] == "train" and parts[-2:] == ["files", "adapter"]:
        return parts[-3]
    return path or "-"


def rounds_markdown(title: str, records: Sequence[RoundRecord], stopped: str | None) -> str:
    """The across-rounds table: accuracy per evaluation dataset (the first row: the policy the chain started
    from), the gain, kept steps, the final training reward, the policy each round started from and the
    adapter it trained (train versions)."""
    datasets = sorted({d for r in records for d in r.accuracy})
    head = ["round", *datasets, "mean", "gain", "kept steps", "reward", "from", "adapter", "model version"]
    head.append("MLflow run")
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(x: float | int | str | None, digits: int = 3) -> str:
        return "" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)

    if records:
        r0 = records[0]
        start = "0 (start)" if r0.round == 1 else "start"
        row0 = [start, *(fmt(r0.accuracy_before.get(d)) for d in datasets), fmt(r0.mean_accuracy_before)]
        row0 += ["", "", "", "", adapter_name(r0.adapter_in), "", ""]
        lines.append("| " + " | ".join(row0) + " |")
    for r in records:
        cells = [round_name(r), *(fmt(r.accuracy.get(d)) for d in datasets)]
        gain = "" if r.gain is None else f"{r.gain:+.3f}"
        cells += [fmt(r.mean_accuracy), gain, str(r.kept_steps), fmt(r.reward_mean)]
        cells += [
            adapter_name(r.adapter_in),
            adapter_name(r.adapter),
            fmt(r.model_version),
            r.mlflow_run_name,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if stopped:
        lines += ["", f"Stopped: {stopped}."]
    return "\n".join(lines) + "\n"


def check_iteration(cfg: RunConfig, rounds: int = 1, more_rounds: int | None = None) -> None:
    """An iteration needs a policy and the generate, train and evaluate stages; rounds at least 1."""
    missing = [s for s in ("generate", "train", "evaluate") if s not in cfg.stages]
    if missing or cfg.policy is None:
        raise ConfigError(
            f"swirl_iterate: stages {missing} are not in the config's stages (and a policy is needed); an "
            "iteration generates with the last adapter, trains it further and evaluates it: list them"
        )
    if rounds < 1 or (more_rounds is not None and more_rounds < 1):
        raise ConfigError("swirl_iterate: rounds and more_rounds must be at least 1")


def stop_reason(records: Sequence[RoundRecord], min_gain: float | None) -> str | None:
    """Why the chain stops: the first round of `records` (not the warm-up) that gained less than `min_gain`
    (None: it goes on)."""
    gains = [(r, r.gain) for r in records if r.round > 0 and r.gain is not None]  # round 0: the warm-up
    low = [r for r, gain in gains if min_gain is not None and gain < min_gain]
    return f"round {low[0].round} gained {low[0].gain:+.4f} < min_gain {min_gain}" if low else None


def _iterate_run_name() -> str:
    params = flow_run.get_parameters() or {}
    name = config_name(params.get("config_path", "swirl"))
    knobs = params.get("knobs")  # a Knobs object, or its dict from a deployment run
    run_name = knobs.get("run_name") if isinstance(knobs, dict) else getattr(knobs, "run_name", None)
    return f"{run_name or name} iterate"


@flow(name="swirl_iterate", flow_run_name=_iterate_run_name, log_prints=True)
def swirl_iterate(
    config_path: str = "configs/quickstart.yaml",
    rounds: int = 2,
    more_rounds: optional(int) = None,
    min_gain: optional(float) = None,
    knobs: Knobs = Knobs(),  # noqa: B008  (a frozen default: Prefect shows it in the Run form)
) -> IterationResult:
    """Rounds of the pipeline on a base config file with the Run form's overrides, each round training the
    previous round's adapter further.

    Args:
        config_path: the base run config (a YAML file, relative to the project root).
        rounds: how many rounds the chain should have; finished rounds (in the store) are not run again.
        more_rounds: run this many rounds after the last finished one instead (a schedule sets 1: "one more
            round").
        min_gain: stop when a round improves the mean evaluation accuracy by less than this (e.g. 0.01).
        knobs: overrides of the base config.
    """
    cfg = resolve_config(config_path, knobs)
    publish_config(cfg, f"resolved config: {config_path}", "resolved-config")
    return iterate(cfg, rounds, more_rounds, min_gain)


def iterate(
    cfg: RunConfig, rounds: int = 2, more_rounds: int | None = None, min_gain: float | None = None
) -> IterationResult:
    """The iteration's work in the calling flow (see the module docstring); returns the records of all the
    chain's rounds."""
    log = get_run_logger()
    check_iteration(cfg, rounds, more_rounds)
    store = Store(cfg.run.store_root)
    chain = chain_config(cfg)
    first = 0 if cfg.warmup.enabled else 1  # round 0: the warm-up
    done = finished_rounds(store, chain, first)
    records = [rec for _, rec in done]
    last = records[-1].round if records else 0  # the last finished round after the warm-up
    target = last + more_rounds if more_rounds is not None else rounds
    stopped = stop_reason(records, min_gain) if more_rounds is None else None
    tr, name, url = open_iteration(
        cfg, store, {"rounds": rounds, "more_rounds": more_rounds, "min_gain": min_gain}, target
    )
    log.info("%s: %d round(s) finished earlier, target %d; MLflow %s", name, len(records), target, url)
    for rec in records:
        log_round_metrics(tr, rec.as_dict(), start=rec.round == first)
    previous = done[-1][0] if done else ""
    try:
        while (number := first + len(records)) <= target and stopped is None:
            adapter = records[-1].adapter if records else cfg.policy.adapter
            previous, rec = next_round(cfg, store, chain, tr, number, adapter, previous)
            records.append(rec)
            log_round_metrics(tr, rec.as_dict(), start=rec.round == first)
            gain = "-" if rec.gain is None else f"{rec.gain:+.4f}"
            log.info(
                "round %d: mean accuracy %s (gain %s), adapter %s",
                rec.round,
                rec.mean_accuracy,
                gain,
                rec.adapter,
            )
            stopped = stop_reason([rec], min_gain)
        result = IterationResult(
            cfg.run.name, tr.parent_run_id, name, url, tuple(records), stopped, store.url
        )
        publish_rounds(tr, f"{name}: rounds of `{cfg.run.name}`", result)
        finish_tracked_run(tr, "FINISHED", result.as_dict())
        return result
    except BaseException:
        finish_tracked_run(tr, "FAILED", {"rounds": [r.as_dict() for r in records]})
        raise
    finally:
        close_engines()


def open_iteration(
    cfg: RunConfig, store: Store, settings: dict[str, int | float | None], target: int
) -> tuple[Tracking, str, str]:
    """Setup: the iteration's MLflow run (its params: the config and the iteration `settings`), the Prefect
    flow run renamed to its name, the link as an artifact; returns the run, its name and its URL."""
    tr = start_tracked_run(
        cfg.run.mlflow_uri,
        cfg.run.experiment,
        run_name=cfg.run.name,
        params={**cfg.model_dump(mode="json"), "iterate": settings},
        tags={"prefect.flow_run_id": str(flow_run.get_id() or ""), "swirl.store": store.url},
        artifact_root=default_artifact_root(cfg.run.store_root),
        description=f"swirl iteration of `{cfg.run.name}`: up to {target} rounds, each training the previous "
        f"round's adapter further (store {store.url})",
        kind="iterate",
        source="flows/iterate.py:swirl_iterate",
    )
    name = mlflow_run_name(tr)
    rename_flow_run(name)
    url = mlflow_ui_url(cfg.run.mlflow_uri, tr.experiment_id, tr.parent_run_id, cfg.run.mlflow_ui)
    publish_link(url, f"MLflow run {name}", "mlflow-run")
    return tr, name, url


def next_round(
    cfg: RunConfig,
    store: Store,
    chain: dict[str, Any],
    tr: Tracking,
    number: int,
    adapter: str | None,
    previous: str,
) -> tuple[str, RoundRecord]:
    """Round `number` as a `swirl_round` subflow from `adapter` (round 0: the warm-up), its record
    committed after the `previous` round's; returns the record's version and the record."""
    base_label = start_label(number, cfg.warmup.enabled)
    result = swirl_round(
        round_config(cfg, number, adapter),
        keep_engines=True,
        parent_run_id=tr.parent_run_id,
        round_number=number,
        base_label=base_label,
        kind="warm-up" if number == 0 else "round",
    )
    rec = RoundRecord.of_round(result, adapter, base_label)
    ref = run_stage(store, CommitRound(chain, previous, rec)).ref
    return ref.version, rec


def publish_rounds(tr: Tracking, title: str, result: IterationResult) -> None:
    """The across-rounds table as the Prefect artifact `rounds` and on the iteration's MLflow run."""
    table = rounds_markdown(title, result.rounds, result.stopped)
    publish_markdown(table, title, "rounds")
    log_rounds_table(tr, [r.as_dict() for r in result.rounds], table)


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=str)
