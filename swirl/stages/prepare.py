"""Prepare: build the local fixtures a run config asks for (the tiny model, synthetic datasets) if missing.

These are inputs, not stage outputs: later stages fingerprint the files they read, so rebuilding them with
other settings re-runs what depends on them.
"""

from __future__ import annotations

from pydantic import Field

from swirl.data.config import SyntheticDataSpec, ToyWorldSpec
from swirl.models.config import PackagedModelSpec, TinyModelSpec
from swirl.sections import Section


class PrepareConfig(Section):
    tiny_model: TinyModelSpec | None = Field(None, description="Build a tiny random model here if missing.")
    model: PackagedModelSpec | None = Field(
        None, description="Convert a packaged real model here if missing."
    )
    synthetic: SyntheticDataSpec | None = Field(None, description="Write synthetic datasets here if missing.")
    toy_worlds: ToyWorldSpec | None = Field(
        None,
        description="Write the toy tool worlds (training data and held-out tests with unseen and seen "
        "templates, for a real model) if missing.",
    )


def run_prepare(prepare: PrepareConfig) -> dict[str, str]:
    made: dict[str, str] = {}
    if prepare.synthetic:
        from swirl.data.synthetic import write_synthetic

        s = prepare.synthetic
        made.update(
            write_synthetic(
                s.dir, s.gsm8k_train, s.gsm8k_test, s.hotpotqa_train, s.hotpotqa_test, seed=s.seed
            )
        )
    if prepare.toy_worlds:
        from swirl.data.toyworld import write_toy_worlds

        made.update(write_toy_worlds(prepare.toy_worlds))
    if prepare.model:
        from swirl.models.packaged import convert_packaged_model

        made["model"] = convert_packaged_model(prepare.model.name, prepare.model.path)
    if prepare.tiny_model:
        from swirl.models.tiny import build_tiny_model

        made["tiny_model"] = build_tiny_model(**prepare.tiny_model.model_dump())
    return made
