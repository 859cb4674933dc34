"""The `swirl_evaluate` flow: evaluate adapters (and the base policy) on a config's evaluation datasets.

What `swirl eval` runs: the round restricted to ingest, corpus and evaluate (plus train with `trained`, which
is a store hit when the config's round has run), with extra adapters as `evaluate.policies`. Its MLflow run
is `<run name> evaluate #k`; its Prefect run has the evaluation table and report as artifacts.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from flows.parameters import Knobs, config_name, optional, resolve_config
from flows.results import RoundResult
from flows.round import run_round
from swirl.config import ConfigError, RunConfig, check_config_files, config_from_dict
from tasks.artifacts import publish_config


class AdapterEntry(BaseModel):
    """A LoRA adapter to evaluate beside the base policy."""

    name: str = Field(description="Its label in tables and MLflow metrics (e.g. round3).")
    path: str = Field(description="The peft adapter folder (e.g. a train output's files/adapter).")
    trained_on: str = Field(
        "", description="What it was trained on; read from a swirl train output if empty."
    )


def evaluation_config(
    cfg: RunConfig,
    adapters: list[AdapterEntry] | tuple[AdapterEntry, ...] = (),
    datasets: list[str] | None = None,
    trained: bool = False,
    source: str = "<config>",
) -> RunConfig:
    """The config's round restricted to evaluation: its evaluation datasets (or `datasets`), the base
    policy, the listed adapters and, with `trained`, the config's own trained adapter."""
    data = cfg.model_dump(mode="json")
    extra = list(data["evaluate"]["policies"])
    extra += [{"name": a.name, "adapter": a.path, "trained_on": a.trained_on} for a in adapters]
    data["evaluate"]["policies"] = extra
    if datasets:
        data["evaluate"]["datasets"] = [d.strip() for d in datasets if d.strip()]
    stages = ["ingest", "corpus", "evaluate"] + (["train"] if trained else [])
    prepares = any(v is not None for v in cfg.prepare.model_dump().values())
    data["stages"] = (["prepare"] if prepares else []) + stages
    out = config_from_dict(data, source=source)
    check_config_files(out, source=source)
    if not out.evaluate_datasets():
        raise ConfigError(
            f"{source}: nothing to evaluate: the config ingests no dataset whose split is not train; add "
            "one, or name datasets (--datasets)"
        )
    return out


def _evaluate_run_name() -> str:
    params = flow_run.get_parameters() or {}
    return config_name(params.get("config_path", "swirl")) + " evaluate"


@flow(name="swirl_evaluate", flow_run_name=_evaluate_run_name, log_prints=True)
def swirl_evaluate(
    config_path: str = "configs/quickstart.yaml",
    adapters: list[AdapterEntry] | None = None,
    datasets: optional(list[str]) = None,
    trained: bool = False,
    knobs: Knobs = Knobs(),  # noqa: B008  (a frozen default: Prefect shows it in the Run form)
) -> RoundResult:
    """Evaluate the base policy and adapters on a config's evaluation datasets.

    Args:
        config_path: the base run config (a YAML file, relative to the project root).
        adapters: LoRA adapters to evaluate beside the base policy.
        datasets: evaluation datasets (names in the config); empty: every split that is not train.
        trained: also evaluate the config's own trained adapter (its round must have run).
        knobs: overrides of the base config.
    """
    base = resolve_config(config_path, knobs)
    cfg = evaluation_config(base, adapters or [], datasets, trained, source=config_path)
    publish_config(cfg, f"resolved config: {config_path}", "resolved-config")
    return run_round(cfg, kind="evaluate", source="flows/evaluate.py:swirl_evaluate")
