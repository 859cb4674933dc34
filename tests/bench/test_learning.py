"""bench/learning.py's variants: what each changes in the learning config (no run: the benchmark takes an hour
on this machine)."""

from __future__ import annotations

import pytest

from bench.learning import variant_config, variant_label, with_real_data
from swirl.config import load_config


def _data():
    return load_config("configs/learn-cpu.yaml").model_dump(mode="json")


def test_oreo_beam_evaluates_the_oreo_policy_with_its_value_model_on_a_subset():
    beam = {"adapter": "a/adapter", "value_model": "a/value", "width": 3, "temperature": 0.7, "questions": 50}
    cfg = variant_config(_data(), "oreo_beam", None, start_adapter="w/adapter", beam=beam)
    assert cfg.policy.adapter == "a/adapter"  # the oreo variant's policy, not the warm-up it started from
    e = cfg.evaluate
    assert (e.decoding, e.beam_width, e.value_model, e.temperature, e.questions) == (
        "beam",
        3,
        "a/value",
        0.7,
        50,
    )
    assert e.trained is False and e.base is True  # evaluation only: its configured policy is the "base"
    assert [s for s in cfg.stages if s in ("generate", "train")] == []
    assert variant_label("oreo_beam", True, 3) == "warmup+oreo (beam 3)"
    # without --beam-questions: the configured held-out questions, the same as every other variant's
    del beam["questions"]
    assert variant_config(_data(), "oreo_beam", None, beam=beam).evaluate.questions == 2000


def test_oreo_trains_on_every_trajectory_from_the_warm_up_adapter():
    cfg = variant_config(_data(), "oreo", None, start_adapter="w/adapter")
    assert (cfg.train.objective, cfg.filter.strategy, cfg.policy.adapter) == ("oreo", "none", "w/adapter")
    assert cfg.train.kl_beta == 0.0 and cfg.evaluate.trained is True


def test_oreo_learning_rate_changes_the_policys_rate_only():
    cfg = variant_config(_data(), "oreo", None, start_adapter="w/adapter", oreo_learning_rate=1e-4)
    assert cfg.train.learning_rate == 1e-4
    assert cfg.train.oreo.value_learning_rate == 5e-4  # configs/learn-cpu.yaml's train.learning_rate
    assert variant_config(_data(), "sft", None, oreo_learning_rate=1e-4).train.learning_rate == 5e-4


def test_real_data_joins_training_and_evaluation_and_is_graded_as_math(tmp_path):
    train, test, hotpot = (tmp_path / n for n in ("train.jsonl", "test.jsonl", "dev.json"))
    for f in (train, test, hotpot):
        f.write_text("")
    given = _data()
    data = with_real_data(given, str(train), 240, str(test), None, str(hotpot), 200)
    assert given == _data()  # the config passed in is not changed
    cfg = variant_config(data, "warmup", None)
    by_name = {d.name: d for d in cfg.ingest.datasets}
    assert (by_name["gsm8k"].split, by_name["gsm8k"].limit) == ("train", 240)
    assert (by_name["gsm8k_test"].split, by_name["gsm8k_test"].limit) == ("test", None)
    assert (by_name["hotpotqa"].format, by_name["hotpotqa"].split) == ("hotpotqa", "dev")
    assert "gsm8k" in [d.name for d in cfg.generate_datasets()]  # warm-up demonstrations and round questions
    assert {"gsm8k_test", "hotpotqa", "arith_unseen"} <= {d.name for d in cfg.evaluate_datasets()}
    judge = cfg.judge_config().outcome
    assert judge.is_math("gsm8k_test") and not judge.is_math("hotpotqa")
    with pytest.raises(SystemExit, match="--gsm8k-test: no file"):
        with_real_data(_data(), gsm8k_test=str(tmp_path / "missing.jsonl"))


def test_one_world_and_fewer_training_templates():
    from bench.learning import only_datasets

    data = only_datasets(_data(), "arith", 5)
    cfg = variant_config(data, "warmup", None)
    assert [d.name for d in cfg.ingest.datasets] == ["arith", "arith_dev", "arith_unseen", "arith_seen"]
    assert cfg.prepare.toy_worlds.train_templates == 5
    assert only_datasets(_data(), None, None) == _data()
    with pytest.raises(SystemExit, match="no dataset name starts so"):
        only_datasets(_data(), "gsm", None)
