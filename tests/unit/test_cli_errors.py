"""Bad input ends in one clear line and is never retried; the CLI finds its tools and its config's outputs."""

from __future__ import annotations

import os
import sys

import pytest

from swirl.config import ConfigError, RunConfig, load_config, with_stages
from swirl.data.loaders import DataError


def _write(tmp_path, text: str) -> str:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return str(p)


def test_files_prepare_would_make_are_missing_when_prepare_does_not_run(tmp_path):
    body = (
        f"prepare:\n  synthetic: {{dir: {tmp_path}/data}}\n"
        f"ingest:\n  datasets:\n    - {{name: g, format: gsm8k, path: {tmp_path}/data/gsm8k/train.jsonl}}\n"
    )
    assert load_config(_write(tmp_path, "stages: [prepare, ingest]\n" + body))  # prepare writes it: fine
    with pytest.raises(ConfigError, match=r"ingest\.datasets\[0\]\.path: file not found"):
        load_config(_write(tmp_path, "stages: [ingest]\n" + body))


def test_an_empty_stage_list_is_an_error_and_none_keeps_the_config(tmp_path):
    cfg = RunConfig()
    assert with_stages(cfg, None) is cfg
    for empty in ([], [""], [" ", ""]):
        with pytest.raises(ConfigError, match="stages: the list is empty; name at least one of prepare"):
            with_stages(cfg, empty, source="cli")
    assert with_stages(cfg, [" ingest"]).stages == ("ingest",)


def test_a_missing_dataset_file_is_a_data_error_naming_the_field_and_is_not_retried(tmp_path):
    from swirl.data.config import DatasetSpec
    from swirl.stages.ingest import Ingest
    from tasks.stages import _is_transient

    spec = DatasetSpec(name="gsm8k", format="gsm8k", path=str(tmp_path / "gone.jsonl"))
    with pytest.raises(DataError) as e:
        Ingest(spec).plan()
    msg = str(e.value)
    assert msg.startswith("ingest.datasets (gsm8k).path: file not found") and "gone.jsonl" in msg
    assert "\n" not in msg

    class State:  # what Prefect's retry condition sees: the failed task's exception
        def __init__(self, exc):
            self.exc = exc

        def result(self, raise_on_failure=True):
            return self.exc

    assert not _is_transient(State(e.value))
    assert not _is_transient(State(FileNotFoundError("x")))
    assert _is_transient(State(ConnectionError("hub down")))  # I/O that may succeed later is retried


def test_ui_runs_the_tools_beside_its_own_python(tmp_path, monkeypatch):
    from flows.cli import own_tool

    exe = tmp_path / "bin" / "python"
    exe.parent.mkdir()
    exe.write_text("")
    tool = tmp_path / "bin" / "mlflow"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(exe))
    assert own_tool("mlflow") == str(tool)  # found without the venv on PATH
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert own_tool("prefect") == "prefect"  # nothing beside it, nothing on PATH: the bare name


def test_store_ls_has_a_dataset_column_and_filters_by_it(tmp_path, capsys):
    from flows.cli import main
    from swirl.data.config import DatasetSpec
    from swirl.stages.base import run_stage
    from swirl.stages.ingest import Ingest
    from swirl.store import Store

    store = Store(str(tmp_path / "store"))
    for name in ("alpha", "beta"):
        f = tmp_path / f"{name}.jsonl"
        f.write_text('{"question": "1+1?", "answer": "1+1=2\\n#### 2"}\n')
        run_stage(store, Ingest(DatasetSpec(name=name, format="gsm8k", path=str(f))))
    os.environ["COLUMNS"] = "200"
    assert main(["store", "ls", "--root", store.root]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "beta" in out and "dataset" in out
    assert main(["store", "ls", "--root", store.root, "--dataset", "beta"]) == 0
    out = capsys.readouterr().out
    assert "beta" in out and "alpha" not in out


def _cli_error(capsys, argv: list[str]) -> str:
    """Run the CLI; it must exit 2 with one line on stderr, which is returned."""
    from flows.cli import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err, err
    return err


@pytest.mark.parametrize(
    "case",
    [
        "missing data file",
        "empty stages",
        "unknown stage",
        "bad yaml",
        "unknown field",
        "iterate without train",
    ],
)
def test_bad_input_ends_in_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal must not wrap the line
    store = tmp_path / "store"
    head = f"run: {{name: bad, root: {store}}}\nstages: [ingest]\n"
    data = f"ingest:\n  datasets:\n    - {{name: g, format: gsm8k, path: {tmp_path}/gone/train.jsonl}}\n"
    if case == "missing data file":
        err = _cli_error(capsys, ["run", _write(tmp_path, head + data)])
        assert "ingest.datasets[0].path: file not found" in err and "gone/train.jsonl" in err
    elif case == "empty stages":
        (tmp_path / "gone").mkdir()
        (tmp_path / "gone" / "train.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
        err = _cli_error(capsys, ["run", _write(tmp_path, head + data), "--stages", ""])
        assert "stages: the list is empty" in err
    elif case == "unknown stage":
        (tmp_path / "gone").mkdir()
        (tmp_path / "gone" / "train.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
        err = _cli_error(capsys, ["run", _write(tmp_path, head + data), "--stages", "ingest,trian"])
        assert "trian" in err
    elif case == "bad yaml":
        err = _cli_error(capsys, ["run", _write(tmp_path, head + "ingest: [\n")])
        assert "run.yaml:" in err and "invalid YAML" in err
    elif case == "unknown field":
        err = _cli_error(capsys, ["run", _write(tmp_path, head + "generate: {temprature: 0.5}\n")])
        assert "generate.temprature" in err and "temperature" in err  # the field and the likely fix
    else:
        err = _cli_error(capsys, ["iterate", _write(tmp_path, head)])
        assert "swirl_iterate" in err and "train" in err
    assert err.startswith(("config error", "data error", "error"))
    assert not store.exists() or not any(p.name != "mlflow.db" for p in store.iterdir()), list(
        store.iterdir()
    )


SMOKE = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "smoke.yaml")


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_typo_of_a_file_prepare_writes_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, command):
    """The smoke config with one data path misspelled: prepare writes dev.json, not dve.json. Nothing runs and
    nothing is written (the store is runs/smoke under the working folder)."""
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.chdir(tmp_path)
    with open(SMOKE) as f:
        text = f.read()
    assert text.count("runs/smoke/data/hotpotqa/dev.json") == 1
    cfg = tmp_path / "smoke.yaml"
    cfg.write_text(text.replace("hotpotqa/dev.json", "hotpotqa/dve.json"))
    err = _cli_error(capsys, [command, str(cfg)])
    assert "ingest.datasets[3].path: file not found, and the prepare stage does not write it" in err
    assert "'runs/smoke/data/hotpotqa/dve.json'" in err  # the path named
    assert "did you mean 'runs/smoke/data/hotpotqa/dev.json' (prepare writes it)?" in err  # the fix
    assert os.listdir(tmp_path) == ["smoke.yaml"]  # no store, no data, no model

    cfg.write_text(text)  # the smoke config as it is: every path it reads is one prepare writes
    if command == "validate":
        from flows.cli import main

        assert main(["validate", str(cfg)]) == 0
    else:  # without prepare: the file is missing, and the fix is to run prepare
        err = _cli_error(capsys, ["run", str(cfg), "--stages", "ingest"])
        assert "ingest.datasets[0].path: file not found: 'runs/smoke/data/gsm8k/train.jsonl'" in err
        assert "the prepare stage writes it: add prepare to the stages" in err
    assert os.listdir(tmp_path) == ["smoke.yaml"]


def test_the_real_model_quickstart_with_a_misspelled_path_is_one_line_and_writes_nothing(
    tmp_path, capsys, monkeypatch
):
    """The README's first command's config (configs/quickstart.yaml: SmolLM2 and the two-hop world) with its
    test file misspelled: `swirl validate` names the field, the path and what prepare writes instead."""
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.chdir(tmp_path)
    with open(os.path.join(os.path.dirname(SMOKE), "quickstart.yaml")) as f:
        text = f.read()
    assert text.count("runs/quickstart/data/twohop/test.json") == 1
    cfg = tmp_path / "quickstart.yaml"
    cfg.write_text(text.replace("twohop/test.json", "twohop/tset.json"))
    err = _cli_error(capsys, ["validate", str(cfg)])
    assert "ingest.datasets[1].path: file not found, and the prepare stage does not write it" in err
    assert "did you mean 'runs/quickstart/data/twohop/test.json' (prepare writes it)?" in err
    assert os.listdir(tmp_path) == ["quickstart.yaml"]  # no store, no data, no model


def test_a_path_inside_a_prepare_folder_is_not_assumed_to_be_written(tmp_path):
    """The old rule took any path under prepare's folders as written; only the files prepare writes are."""
    body = (
        "stages: [prepare, ingest]\n"
        f"prepare:\n  synthetic: {{dir: {tmp_path}/data}}\n  toy_worlds: {{dir: {tmp_path}/toy}}\n"
        "ingest:\n  datasets:\n"
        f"    - {{name: a, format: gsm8k, path: {tmp_path}/toy/arithmetic/test_seen.jsonl}}\n"
        f"    - {{name: g, format: gsm8k, path: {tmp_path}/data/gsm8k/train.json}}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, body))
    msg = str(e.value)
    assert "ingest.datasets[1].path: file not found, and the prepare stage does not write it" in msg
    assert f"did you mean '{tmp_path}/data/gsm8k/train.jsonl'" in msg and "\n" not in msg
    assert not (tmp_path / "data").exists()


def test_a_binary_dataset_file_fails_ingest_with_one_data_line(tmp_path):
    import random

    from swirl.data.config import DatasetSpec
    from swirl.stages.base import run_stage
    from swirl.stages.ingest import Ingest
    from swirl.store import Store

    path = tmp_path / "train.jsonl"
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(DataError) as e:
        run_stage(
            Store(str(tmp_path / "store")), Ingest(DatasetSpec(name="g", format="gsm8k", path=str(path)))
        )
    assert str(e.value).startswith(f"{path}: not UTF-8 text") and "\n" not in str(e.value)
