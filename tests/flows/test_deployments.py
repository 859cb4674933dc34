"""Every deployment in deployments/prefect.yaml points at a real flow and carries valid parameters."""

import importlib
import inspect
import os

import pytest
import yaml

from swirl.config import load_config, with_stages

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = yaml.safe_load(open(os.path.join(ROOT, "deployments", "prefect.yaml")))


@pytest.mark.parametrize("dep", SPEC["deployments"], ids=lambda d: d["name"])
def test_deployment_parameters_are_valid(dep, monkeypatch):
    monkeypatch.chdir(ROOT)
    module, func = dep["entrypoint"].split(":")
    flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), func)
    params = dep.get("parameters", {})
    sig = inspect.signature(flow.fn)
    assert set(params) <= set(sig.parameters), f"unknown parameters {set(params) - set(sig.parameters)}"
    sig.bind(**params)
    cfg = with_stages(load_config(params["config_path"]), params.get("stages"))
    assert cfg.stages
    assert dep["work_pool"]["name"]
