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
    dir: str = Field(description="Folder for the toy-world data files (written if missing).")
    arithmetic_train: int = Field(
        400,
        ge=0,
        description="Arithmetic word problems needing 2-4 calculator steps (GSM8K's JSONL format), train.",
    )
    arithmetic_test: int = Field(200, ge=0, description="Same, held-out test split.")
    twohop_train: int = Field(
        400,
        ge=0,
        description="Two-hop questions over a made-up world that need search (HotpotQA's format), train.",
    )
    twohop_test: int = Field(200, ge=0, description="Same, held-out dev split.")
    seed: int = Field(0, description="Seed of the worlds; the same seed writes the same files.")
