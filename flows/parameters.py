"""The knobs people change between runs, as typed parameters of the deployed flows (the Prefect Run form).

A deployment names a base config file; `Knobs` holds the overrides a user sets in the form (an empty field
keeps the file's value). `resolve_config` merges them over the file and validates the result like a config
file, so a bad value fails at once with one line naming the field. Prefect renders every field with its
description, the enumerations (stages, objective, filter strategy) as dropdowns, and the defaults.
"""

from __future__ import annotations

import os
import typing
from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema

from swirl.config import RunConfig, Stage, config_from_dict, load_config
from swirl.subtrajectories import Strategy
from swirl.training.config import Objective


def optional(of: Any) -> Any:
    """`of | None` whose form field is a plain `of` input (empty = None) instead of a type switch between
    `of` and None; a Literal becomes a dropdown, a list of strings a tag input."""
    if typing.get_origin(of) is typing.Literal:
        schema: dict[str, Any] = {"type": "string", "enum": list(typing.get_args(of))}
    elif typing.get_origin(of) is list:
        (item,) = typing.get_args(of)
        choices = list(typing.get_args(item)) if typing.get_origin(item) is typing.Literal else None
        schema = {"type": "array", "items": {"type": "string", **({"enum": choices} if choices else {})}}
    else:
        schema = {"type": {bool: "boolean", int: "integer", float: "number", str: "string"}[of]}
    return Annotated[of | None, WithJsonSchema(schema)]


class Knobs(BaseModel):
    """Overrides of the base config file; leave a field empty to keep the file's value."""

    run_name: optional(str) = Field(
        None,
        description="run.name: names the MLflow runs (`<name> #k`) and, with no run.root, the store folder.",
    )
    model: optional(str) = Field(
        None, description="policy.model: the base model (a hub id or a local folder) that is trained."
    )
    train_datasets: optional(list[str]) = Field(
        None,
        description="generate.datasets: the ingested datasets to generate and train on (names in the file).",
    )
    eval_datasets: optional(list[str]) = Field(
        None, description="evaluate.datasets: the ingested datasets to evaluate on (names in the file)."
    )
    samples_per_question: optional(int) = Field(
        None, ge=1, description="generate.samples_per_question: trajectories per question (the paper: 5)."
    )
    temperature: optional(float) = Field(
        None, ge=0, description="generate.temperature: sampling temperature."
    )
    filter_strategy: optional(Strategy) = Field(
        None, description="filter.strategy: which trajectories training keeps (the paper: process for SWiRL)."
    )
    objective: optional(Objective) = Field(None, description="train.objective: the training objective.")
    learning_rate: optional(float) = Field(
        None, gt=0, description="train.learning_rate: peak AdamW learning rate."
    )
    train_steps: optional(int) = Field(None, ge=1, description="train.max_steps: optimizer steps of a round.")
    eval_questions: optional(int) = Field(
        None,
        ge=1,
        description="evaluate.questions: questions sampled per evaluation dataset (the paper: 300).",
    )
    warmup: optional(bool) = Field(
        None,
        description="warmup.enabled: before the round trains (in an iteration: as round 0), SFT on the "
        "training datasets' gold demonstrations; the round starts from its adapter.",
    )
    warmup_steps: optional(int) = Field(
        None, ge=1, description="warmup.steps: optimizer steps of the warm-up's SFT."
    )

    def overrides(self) -> dict[str, Any]:
        """The set fields as config paths -> values."""
        where = {
            "run_name": ("run", "name"),
            "model": ("policy", "model"),
            "train_datasets": ("generate", "datasets"),
            "eval_datasets": ("evaluate", "datasets"),
            "samples_per_question": ("generate", "samples_per_question"),
            "temperature": ("generate", "temperature"),
            "filter_strategy": ("filter", "strategy"),
            "objective": ("train", "objective"),
            "learning_rate": ("train", "learning_rate"),
            "train_steps": ("train", "max_steps"),
            "eval_questions": ("evaluate", "questions"),
            "warmup": ("warmup", "enabled"),
            "warmup_steps": ("warmup", "steps"),
        }
        return {".".join(where[k]): v for k, v in self.model_dump(exclude_none=True).items()}


def config_name(config_path: str) -> str:
    """A config file's name without folder and suffix (`configs/quickstart.yaml` -> `quickstart`): what its
    deployments and, until the MLflow run is known, its flow runs are named after."""
    return os.path.splitext(os.path.basename(str(config_path)))[0]


def resolve_config(
    config_path: str, knobs: Knobs | None = None, stages: list[Stage] | None = None
) -> RunConfig:
    """The base config file with the knobs and the stage list applied, validated (ConfigError names the
    field)."""
    from swirl.config import ConfigError, check_config_files, with_stages

    cfg = load_config(config_path, check_files=False)
    changes = (knobs or Knobs()).overrides()
    if changes:
        data = cfg.model_dump(mode="json")
        for dotted, value in changes.items():
            section, key = dotted.split(".")
            if data.get(section) is None:
                raise ConfigError(
                    f"{config_path}: {dotted}: the file has no `{section}:` section to override; add one"
                )
            data[section][key] = value
        cfg = config_from_dict(data, source=f"{config_path} (with {', '.join(changes)})")
    cfg = with_stages(cfg, stages, source=config_path)
    check_config_files(cfg, source=config_path)
    return cfg
