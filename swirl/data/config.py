"""Configs of the data subsystem: the datasets a run reads (`ingest:`), and the local data files the prepare
stage writes when missing (synthetic GSM8K/HotpotQA-format files, the toy tool worlds)."""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import Field, model_validator

from swirl.sections import Section

DatasetFormat = Literal["gsm8k", "hotpotqa", "musique", "beerqa", "cofca"]


class DatasetSpec(Section):
    name: str = Field(description="Label of this dataset in tables and metrics (e.g. gsm8k, hotpotqa).")
    format: DatasetFormat = Field(description="Original file format of the source.")
    split: str = Field("train", description="Split name recorded in the questions table (train/test/dev).")
    path: str | None = Field(None, description="Local file in the dataset's original format.")
    hub: str | None = Field(
        None, description="Hugging Face hub dataset id (needs network), e.g. openai/gsm8k."
    )
    hub_config: str | None = Field(None, description="Hub dataset config name, e.g. main for openai/gsm8k.")
    limit: int | None = Field(None, ge=1, description="Keep a seeded random sample of this many questions.")
    seed: int = Field(0, description="Seed of the sample when limit is set.")
    skip_invalid: bool = Field(
        False, description="Skip malformed records (counted and reported) instead of stopping at the first."
    )
    drop_levels: tuple[str, ...] = Field(
        (),
        description="Drop questions whose level is one of these, before sampling (e.g. [easy] for HotpotQA "
        "training seeds, as the SWiRL paper does). Dropped questions are counted in the ingest summary.",
    )

    def whole_split(self) -> DatasetSpec:
        """The same dataset without `limit` and `drop_levels`: every question of its split (what a search
        dataset's corpus is built from, so the sample searches all the split's articles)."""
        return self.model_copy(update={"limit": None, "drop_levels": ()})

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if (self.path is None) == (self.hub is None):
            raise ValueError(
                f"dataset {self.name!r}: give exactly one of `path` (a local file) or `hub` (a hub dataset "
                "id)"
            )
        return self


class IngestConfig(Section):
    datasets: tuple[DatasetSpec, ...] = Field((), description="Datasets to ingest into `questions` tables.")

    @model_validator(mode="after")
    def _unique(self) -> IngestConfig:
        names = [d.name for d in self.datasets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"dataset names must be unique; repeated: {dup}. Rename one (e.g. gsm8k_test).")
        return self


DATASET_FORMATS: tuple[str, ...] = typing.get_args(DatasetFormat)


class SyntheticDataSpec(Section):
    dir: str = Field(description="Folder for the generated data files (written if missing).")
    gsm8k_train: int = Field(
        64, ge=0, description="Arithmetic word problems in GSM8K's JSONL format, train split."
    )
    gsm8k_test: int = Field(32, ge=0, description="Same, test split.")
    hotpotqa_train: int = Field(
        32, ge=0, description="Two-hop questions over a made-up corpus, HotpotQA JSON format."
    )
    hotpotqa_test: int = Field(16, ge=0, description="Same, dev split.")
    seed: int = Field(0, description="Seed of the generator; the same seed writes the same files.")


class ToyWorldSpec(Section):
    """The toy tool worlds (swirl/data/toyworld.py): per world, a training split and three held-out splits:
    dev (templates of its own, for choosing settings), test (templates of its own: the unseen-template test)
    and test_seen (the training templates with other numbers and names: the in-template test)."""

    dir: str = Field(description="Folder for the toy-world data files (written if missing).")
    arithmetic_train: int = Field(
        400,
        ge=0,
        description="Arithmetic word problems needing 2-4 calculator steps (GSM8K's JSONL format), from the "
        "training templates.",
    )
    arithmetic_dev: int = Field(100, ge=0, description="Same, from the dev templates (choosing settings).")
    arithmetic_test: int = Field(
        200, ge=0, description="Same, from the test templates (never in training): the unseen-template test."
    )
    arithmetic_test_seen: int = Field(
        200,
        ge=0,
        description="Same, from the training templates with other numbers and names: the in-template test.",
    )
    twohop_train: int = Field(
        400,
        ge=0,
        description="Two-hop questions over a made-up world that need search (HotpotQA's format), from the "
        "training templates.",
    )
    twohop_dev: int = Field(100, ge=0, description="Same, from the dev templates, in a world of their own.")
    twohop_test: int = Field(
        200,
        ge=0,
        description="Same, from the test templates, in a world of their own: the unseen-template test.",
    )
    twohop_test_seen: int = Field(
        200,
        ge=0,
        description="Same, from the training templates in the test world: the in-template test.",
    )
    train_templates: int | None = Field(
        None,
        ge=1,
        description="Train on the first N training templates of each world only (default: all; all of a "
        "world that has fewer); the test splits keep theirs. For measuring accuracy against the number of "
        "training templates.",
    )
    seed: int = Field(0, description="Seed of the worlds; the same seed writes the same files.")

    def sizes(self) -> dict[str, int]:
        """`{world}_{split}` -> number of questions."""
        return {
            k: v
            for k, v in self.model_dump().items()
            if k.startswith(("arithmetic_", "twohop_")) and isinstance(v, int)
        }
