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


MODEL_FOLDERS = ("model", "tiny_model")  # the `written_paths` entries that are model folders, not data files


def written_paths(prepare: PrepareConfig) -> dict[str, str]:
    """Every path `run_prepare(prepare)` writes, under the name it returns it by: each data file of the
    synthetic datasets and of the toy worlds, and the folders of the converted and the tiny model. Nothing is
    written. Config validation reads it (a path a config names that is neither on disk nor here is a mistake,
    e.g. a typo), so it is built from the writers' own path functions; tests/unit/test_prepare_paths.py checks
    it against what run_prepare writes."""
    from swirl.data.synthetic import synthetic_paths
    from swirl.data.toyworld import toy_world_paths

    out: dict[str, str] = {}
    if prepare.synthetic:
        out.update(synthetic_paths(prepare.synthetic.dir))
    if prepare.toy_worlds:
        out.update(toy_world_paths(prepare.toy_worlds.dir))
    if prepare.model:
        out["model"] = prepare.model.path
    if prepare.tiny_model:
        out["tiny_model"] = prepare.tiny_model.path
    return out


def run_prepare(prepare: PrepareConfig) -> dict[str, str]:
    """Build what `prepare` asks for (kept when already built with the same settings); returns what
    `written_paths(prepare)` lists."""
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
