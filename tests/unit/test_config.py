import glob
import os

import pytest
import yaml
from pydantic import ValidationError

from swirl.config import ConfigError, RunConfig, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write(tmp_path, text: str) -> str:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml"))))
def test_every_shipped_config_validates(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    assert cfg.ingest.datasets, "every shipped config ingests at least one dataset"


def test_configs_folder_is_not_empty():
    assert glob.glob(os.path.join(ROOT, "configs", "*.yaml"))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "accelerate", "*.yaml"))))
def test_every_shipped_accelerate_config_loads(path):
    """configs/accelerate/ holds `accelerate launch --config_file` files: accelerate itself reads them."""
    pytest.importorskip("accelerate")
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(path)
    assert cfg.distributed_type.value in {"FSDP", "MULTI_GPU", "DEEPSPEED"}, cfg.distributed_type


def test_invalid_yaml_names_file_and_line(tmp_path):
    p = _write(tmp_path, "run:\n  name: x\n  seed: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert p in msg and "invalid YAML" in msg and ":4:" in msg


def test_unknown_field_suggests_the_right_one(tmp_path):
    p = _write(tmp_path, "run:\n  name: x\n  sed: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "run.sed" in msg and "line 3" in msg and "did you mean 'seed'" in msg


def test_wrong_type_names_field_and_value(tmp_path):
    p = _write(tmp_path, "run:\n  name: x\n  seed: abc\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "run.seed" in msg and "'abc'" in msg and "integer" in msg
    assert "\n" not in msg and msg.startswith(f"{p}: run.seed (line 3): "), "one problem, one line"


def test_missing_required_file(tmp_path):
    p = _write(
        tmp_path,
        "stages: [ingest]\ningest:\n  datasets:\n    - {name: g, format: gsm8k, path: nowhere/train.jsonl}\n",
    )
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "ingest.datasets[0].path" in msg and "nowhere/train.jsonl" in msg and "file not found" in msg


def test_files_made_by_prepare_are_not_missing(tmp_path):
    p = _write(
        tmp_path,
        f"stages: [prepare, ingest]\nprepare:\n  synthetic: {{dir: {tmp_path}/data}}\n"
        f"ingest:\n  datasets:\n    - {{name: g, format: gsm8k, path: {tmp_path}/data/gsm8k/train.jsonl}}\n",
    )
    assert load_config(p).ingest.datasets[0].name == "g"


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/cfg.yaml")


def test_cross_field_errors(tmp_path):
    p = _write(tmp_path, "ingest:\n  datasets:\n    - {name: g, format: gsm8k}\n")
    with pytest.raises(ConfigError, match="exactly one of `path`"):
        load_config(p)
    p = _write(tmp_path, "prepare:\n  tiny_model: {path: x, hidden_size: 64, num_heads: 4}\n")
    with pytest.raises(ConfigError, match="head_dim"):
        load_config(p)
    p = _write(
        tmp_path,
        "ingest:\n"
        "  datasets:\n"
        "    - {name: g, format: gsm8k, hub: a/b}\n"
        "    - {name: g, format: gsm8k, hub: a/c}\n",
    )
    with pytest.raises(ConfigError, match="unique"):
        load_config(p)


def test_config_is_frozen_and_every_field_described():
    cfg = RunConfig()
    with pytest.raises(ValidationError):
        cfg.run.seed = 3  # type: ignore[misc]

    def walk(model):
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"
            for arg in getattr(f.annotation, "__args__", ()) + (f.annotation,):
                if isinstance(arg, type) and hasattr(arg, "model_fields"):
                    walk(arg)

    walk(RunConfig)


def test_round_trip_through_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(os.path.join(ROOT, "configs", "smoke.yaml"))
    p = _write(tmp_path, yaml.safe_dump(cfg.model_dump(mode="json")))
    assert load_config(p) == cfg


def test_generate_needs_a_policy_and_known_datasets(tmp_path):
    p = _write(tmp_path, "ingest:\n  datasets:\n    - {name: g, format: gsm8k, hub: a/b}\n")
    with pytest.raises(ConfigError, match="generate stage needs a policy"):
        load_config(p)
    p = _write(
        tmp_path,
        "generate: {datasets: [nope]}\ningest:\n  datasets:\n    - {name: g, format: gsm8k, hub: a/b}\n",
    )
    with pytest.raises(ConfigError, match="nope"):
        load_config(p)
    p = _write(tmp_path, "stages: [ingest]\ngenerate: {math_prompt: 'no placeholder'}\n")
    with pytest.raises(ConfigError, match="placeholder"):
        load_config(p)


def test_evaluate_section_is_checked(tmp_path):
    ds = "ingest:\n  datasets:\n    - {name: g, format: gsm8k, split: test, hub: a/b}\n"
    p = _write(tmp_path, "stages: [evaluate]\n" + ds)
    with pytest.raises(ConfigError, match="evaluate stage needs a policy"):
        load_config(p)
    p = _write(tmp_path, "stages: [ingest]\nevaluate: {datasets: [nope]}\n" + ds)
    with pytest.raises(ConfigError, match=r"evaluate.datasets names \['nope'\]"):
        load_config(p)
    p = _write(tmp_path, "stages: [ingest]\nevaluate: {policies: [{name: base, adapter: x}]}\n" + ds)
    with pytest.raises(ConfigError, match="reserved"):
        load_config(p)
    p = _write(
        tmp_path,
        "stages: [evaluate]\nevaluate: {policies: [{name: r1, adapter: nowhere/adapter}]}\n"
        "policy: {model: m}\n" + ds,
    )
    with pytest.raises(ConfigError, match=r"evaluate.policies\[0\].adapter: adapter folder not found"):
        load_config(p)
    p = _write(
        tmp_path,
        "stages: [evaluate]\nevaluate: {policies: [{name: r1, adapter: x}]}\n"
        "policy: {model: m, enable_lora: false}\n" + ds,
    )
    with pytest.raises(ConfigError, match="enable_lora"):
        load_config(p, check_files=False)
    p = _write(
        tmp_path,
        "stages: [evaluate]\npolicy: {model: m}\n"
        + ds
        + "    - {name: h, format: hotpotqa, split: train, hub: c/d}\n",
    )
    assert [d.name for d in load_config(p).evaluate_datasets()] == ["g"]  # every split but train


def test_an_adapter_in_a_remote_store_is_checked_where_it_lives(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    adapter = "memory://swirl-config-check/store/train/v1/files/adapter"
    fs.pipe_file(f"{adapter}/adapter_config.json", b"{}")
    ds = "ingest:\n  datasets:\n    - {name: g, format: gsm8k, split: test, hub: a/b}\n"
    try:
        for where in (
            "policy: {model: m, adapter: %s}\n",
            "policy: {model: m}\nevaluate: {policies: [{name: r1, adapter: %s}]}\n",
        ):
            p = _write(tmp_path, "stages: [evaluate]\n" + where % adapter + ds)
            assert load_config(p).policy.model == "m"  # an s3:// (here memory://) URL that exists
            p = _write(tmp_path, "stages: [evaluate]\n" + where % (adapter + "-gone") + ds)
            with pytest.raises(ConfigError, match=r"adapter: adapter folder not found: 'memory://"):
                load_config(p)
    finally:
        fs.rm("/swirl-config-check", recursive=True)
