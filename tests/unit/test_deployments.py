"""Every deployment in deployments/prefect.yaml points at a real flow and carries valid parameters, and the
Run form is typed: fields with descriptions and dropdowns for the enumerations."""

import importlib
import inspect
import os

import pytest
import yaml

from flows.parameters import Knobs, resolve_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = yaml.safe_load(open(os.path.join(ROOT, "deployments", "prefect.yaml")))


def _flow(entrypoint: str):
    module, func = entrypoint.split(":")
    return getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), func)


@pytest.mark.parametrize("dep", SPEC["deployments"], ids=lambda d: f"{d['entrypoint']}:{d['name']}")
def test_deployment_parameters_are_valid(dep, monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = _flow(dep["entrypoint"])
    params = dep.get("parameters", {})
    sig = inspect.signature(flow.fn)
    assert set(params) <= set(sig.parameters), f"unknown parameters {set(params) - set(sig.parameters)}"
    sig.bind(**params)
    cfg = resolve_config(params["config_path"], Knobs(**params.get("knobs", {})), params.get("stages"))
    assert cfg.stages
    assert dep["work_pool"]["name"]


def test_the_three_flows_are_deployed():
    flows = {_flow(d["entrypoint"]).name for d in SPEC["deployments"]}
    assert flows == {"swirl_round", "swirl_iterate", "swirl_evaluate"}


def test_run_form_is_typed():
    from prefect.utilities.callables import parameter_schema

    from flows.iterate import swirl_iterate
    from flows.round import swirl_round_from_file

    schema = parameter_schema(swirl_round_from_file.fn).model_dump_for_openapi()
    knobs = schema["definitions"]["Knobs"]["properties"]
    # enumerations are dropdowns (an `enum` on the field itself), optional numbers plain inputs (no switch
    # between a type and None): an empty field keeps the config file's value
    assert knobs["filter_strategy"]["enum"] == ["none", "process", "outcome", "process_outcome"]
    assert {"sft", "swirl"} <= set(knobs["objective"]["enum"])
    assert knobs["learning_rate"]["type"] == "number" and "anyOf" not in knobs["learning_rate"]
    stages = schema["properties"]["stages"]["items"]["enum"]
    assert stages[:3] == ["prepare", "ingest", "corpus"] and "train" in stages
    assert all(v.get("description") for v in knobs.values())
    it = parameter_schema(swirl_iterate.fn).model_dump_for_openapi()["properties"]
    assert (
        it["rounds"]["default"] == 2 and it["min_gain"]["description"] and it["min_gain"]["type"] == "number"
    )
    with pytest.raises(ValueError, match="eval_questions"):
        Knobs(eval_questions=0)


def test_knobs_override_the_file(tmp_path, monkeypatch):
    from swirl.config import ConfigError

    monkeypatch.chdir(ROOT)
    cfg = resolve_config(
        "configs/smoke.yaml",
        Knobs(run_name="qs-lr", learning_rate=0.02, filter_strategy="outcome", samples_per_question=3),
    )
    assert (cfg.run.name, cfg.train.learning_rate, cfg.filter.strategy) == ("qs-lr", 0.02, "outcome")
    assert cfg.generate.samples_per_question == 3
    assert cfg.train.max_steps == 3  # untouched knobs keep the file's value
    with pytest.raises(ConfigError, match="generate.datasets"):
        resolve_config("configs/smoke.yaml", Knobs(train_datasets=["nope"]))
