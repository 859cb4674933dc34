"""bench/learning.py's variants: what each changes in the learning config (no run: the benchmark takes an hour
on this machine)."""

from __future__ import annotations

from bench.learning import variant_config, variant_label
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
    assert variant_config(_data(), "oreo_beam", None, beam=beam).evaluate.questions == 200


def test_oreo_trains_on_every_trajectory_from_the_warm_up_adapter():
    cfg = variant_config(_data(), "oreo", None, start_adapter="w/adapter")
    assert (cfg.train.objective, cfg.filter.strategy, cfg.policy.adapter) == ("oreo", "none", "w/adapter")
    assert cfg.train.kl_beta == 0.0 and cfg.evaluate.trained is True


def test_oreo_learning_rate_changes_the_policys_rate_only():
    cfg = variant_config(_data(), "oreo", None, start_adapter="w/adapter", oreo_learning_rate=1e-4)
    assert cfg.train.learning_rate == 1e-4
    assert cfg.train.oreo.value_learning_rate == 5e-4  # configs/learn-cpu.yaml's train.learning_rate
    assert variant_config(_data(), "sft", None, oreo_learning_rate=1e-4).train.learning_rate == 5e-4
