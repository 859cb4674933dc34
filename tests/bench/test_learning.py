"""bench/learning.py's variants: what each changes in the learning config, and the seed table's statistics on
made-up per-question results (no run: the benchmark takes hours on this machine)."""

from __future__ import annotations

import pytest

from bench.learning import (
    EVAL_ONLY,
    ONLINE,
    VARIANTS,
    Options,
    evaluation_config,
    seed_accuracy,
    seed_comparison,
    seed_rows,
    seed_table,
    variant_config,
    variant_label,
    with_real_data,
    with_train_worlds,
)
from swirl.config import load_config


def _data():
    return load_config("configs/learn-cpu.yaml").model_dump(mode="json")


def test_oreo_beam_evaluates_the_oreo_policy_with_its_value_model_on_a_subset():
    beam = {"adapter": "a/adapter", "value_model": "a/value", "width": 3, "temperature": 0.7, "questions": 50}
    cfg = variant_config(_data(), "oreo_beam", Options(start_adapter="w/adapter", beam=beam))
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
    assert variant_config(_data(), "oreo_beam", Options(beam=beam)).evaluate.questions == 2000


def test_oreo_trains_on_every_trajectory_from_the_warm_up_adapter():
    cfg = variant_config(_data(), "oreo", Options(start_adapter="w/adapter"))
    assert (cfg.train.objective, cfg.filter.strategy, cfg.policy.adapter) == ("oreo", "none", "w/adapter")
    assert cfg.train.kl_beta == 0.0 and cfg.evaluate.trained is True


def test_oreo_learning_rate_changes_the_policys_rate_only():
    cfg = variant_config(_data(), "oreo", Options(start_adapter="w/adapter", oreo_learning_rate=1e-4))
    assert cfg.train.learning_rate == 1e-4
    assert cfg.train.oreo.value_learning_rate == 5e-4  # configs/learn-cpu.yaml's train.learning_rate
    sft = variant_config(_data(), "sft_process_outcome", Options(oreo_learning_rate=1e-4))
    assert sft.train.learning_rate == 5e-4


def test_rows_are_named_by_what_they_train():
    def trains(name):
        cfg = variant_config(_data(), name, Options(start_adapter="w/adapter"))
        off = cfg.train.offline
        return cfg.train.objective, cfg.filter.strategy, off.reward, off.baseline

    assert trains("sft_process_outcome")[:2] == ("sft", "process_outcome")
    assert trains("swirl_offline_process") == ("swirl_offline", "process", "process", "none")
    assert trains("swirl_offline_mean_none") == ("swirl_offline", "none", "process", "mean")  # BAD: negative
    assert "swirl_offline_mean_process" not in VARIANTS  # every kept step GOOD: every advantage would be 0
    assert {"sft", "swirl_none", "swirl_process"}.isdisjoint(VARIANTS)


def test_online_swirl_trains_with_a_lora_sampler_and_is_evaluated_merged():
    opts = Options(
        start_adapter="w/adapter", states_per_step=4, samples_per_state=3, online_learning_rate=1e-4
    )
    cfg = variant_config(_data(), "swirl_online_process", opts)
    t = cfg.train
    assert (t.objective, cfg.filter.strategy, cfg.policy.adapter) == ("swirl", "process", "w/adapter")
    assert (t.swirl.states_per_step, t.swirl.samples_per_state, t.learning_rate) == (4, 3, 1e-4)
    assert (t.swirl.temperature, t.swirl.max_tokens) == (0.8, 48)  # the data's sampling (generate.*)
    assert cfg.judge_config().process.kind == "rule"  # the strict rule judge is the reward model
    assert cfg.policy.merge_adapter is False and cfg.policy.enable_lora is True
    assert "evaluate" not in cfg.stages and "train" in cfg.stages
    default = variant_config(_data(), "swirl_online_none", Options(start_adapter="w/adapter")).train.swirl
    assert (default.states_per_step, default.samples_per_state) == (16, 4)  # the config's (its defaults)
    ev = evaluation_config(_data(), "t/adapter")
    assert (ev.policy.adapter, ev.policy.merge_adapter) == ("t/adapter", True)
    assert (ev.evaluate.base, ev.evaluate.trained) == (True, False)
    assert [s for s in ev.stages if s in ("generate", "train")] == []


def test_fixed_count_and_seed_reach_every_trained_variant():
    beam = {"adapter": "a/adapter", "value_model": "a/value", "width": 3, "temperature": 0.7}
    opts = Options(seed=2, fixed_count="min", kl_beta=0.05, start_adapter="w/adapter", beam=beam)
    data = _data()
    for name in VARIANTS:
        cfg = variant_config(data, name, opts)
        trained = name not in (*EVAL_ONLY, "warmup")
        assert cfg.filter.fixed_count == ("min" if trained else None), name
        assert (cfg.run.seed, cfg.generate.seed, cfg.filter.seed, cfg.train.seed) == (2, 2, 2, 2), name
        assert cfg.evaluate.seed == 0 and cfg.prepare.toy_worlds.seed == 0  # the same questions for all seeds
        if name.startswith("swirl_"):
            assert cfg.train.kl_beta == 0.05, name
    assert set(ONLINE) == {f"swirl_online_{f}" for f in ("none", "process", "outcome", "process_outcome")}
    assert variant_config(data, "sft_none", Options(fixed_count=40)).filter.fixed_count == 40
    unseeded = variant_config(data, "sft_none")
    assert (unseeded.generate.seed, unseeded.train.seed, unseeded.filter.fixed_count) == (0, 0, None)


def test_one_world_trains_and_both_are_evaluated(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("")
    data = with_real_data(_data(), gsm8k_train=str(train))
    for worlds, trained in (("arith", ["arith", "gsm8k"]), ("twohop", ["twohop"]), ("both", None)):
        cfg = variant_config(with_train_worlds(data, worlds), "warmup")
        expected = trained or ["arith", "twohop", "gsm8k"]
        assert [d.name for d in cfg.generate_datasets()] == expected, worlds
        assert {"arith_unseen", "twohop_unseen", "arith_seen", "twohop_seen"} <= {
            d.name for d in cfg.evaluate_datasets()
        }
    with pytest.raises(SystemExit, match="no training dataset"):
        with_train_worlds(with_real_data(_data()) | {"ingest": {"datasets": []}}, "arith")


def test_real_data_joins_training_and_evaluation_and_is_graded_as_math(tmp_path):
    train, test, hotpot = (tmp_path / n for n in ("train.jsonl", "test.jsonl", "dev.json"))
    for f in (train, test, hotpot):
        f.write_text("")
    given = _data()
    data = with_real_data(given, str(train), 240, str(test), None, str(hotpot), 200)
    assert given == _data()  # the config passed in is not changed
    cfg = variant_config(data, "warmup")
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
    cfg = variant_config(data, "warmup")
    assert [d.name for d in cfg.ingest.datasets] == ["arith", "arith_dev", "arith_unseen", "arith_seen"]
    assert cfg.prepare.toy_worlds.train_templates == 5
    assert only_datasets(_data(), None, None) == _data()
    with pytest.raises(SystemExit, match="no dataset name starts so"):
        only_datasets(_data(), "gsm", None)


def test_variant_names_default_to_the_issues_rows():
    from bench.learning import _variant_names

    assert _variant_names(None, True) == [
        "base",
        "warmup",
        "sft_process_outcome",
        "swirl_online_process_outcome",
        "swirl_online_process",
        "swirl_online_none",
        "swirl_offline_mean_none",
    ]
    assert _variant_names("base,oreo_beam", True) == ["base", "warmup", "oreo", "oreo_beam"]
    with pytest.raises(SystemExit, match="unknown"):
        _variant_names("sft", True)


# Made-up verdicts on 4 questions: the variant and SFT over seeds 0 and 1, base once (shared by the seeds).
def _v(*bits):
    return {f"q{i}": bool(b) for i, b in enumerate(bits)}


VARIANT = {0: _v(1, 1, 0, 1), 1: _v(1, 0, 0, 1)}
SFT = {0: _v(0, 1, 0, 1), 1: _v(0, 1, 0, 0)}
BASE = {None: _v(0, 0, 0, 1)}


def test_seed_accuracy_is_the_mean_and_spread_over_seeds():
    acc = seed_accuracy(VARIANT)
    assert acc["accuracy"] == [0.75, 0.5] and acc["mean"] == 0.625 and (acc["min"], acc["max"]) == (0.5, 0.75)
    assert acc["sd"] == pytest.approx(0.25 / 2**0.5)  # sample sd of 0.75 and 0.5
    assert seed_accuracy(BASE)["sd"] is None and seed_accuracy(BASE)["seeds"] == [None]


def test_seed_comparison_pools_questions_and_seeds():
    # per question, the mean over seeds of variant - SFT: q0 (1 + 1)/2 = 1, q1 (0 - 1)/2 = -0.5, q2 0,
    # q3 (0 + 1)/2 = 0.5; the pooled difference 0.25 = 0.625 - 0.375
    c = seed_comparison(SFT, VARIANT, resamples=2000)
    assert c["diff"] == pytest.approx(0.25) and c["n"] == 4 and c["seeds"] == [0, 1]
    assert c["diff_low"] <= 0.25 <= c["diff_high"]
    # sign flips of (1, -0.5, 0.5): sums 2, 1, 1, 0, 0, -1, -1, -2; |sum| >= 1 in 6 of 8
    assert c["p"] == pytest.approx(0.75)
    # seed 0: the variant alone right on q0 (McNemar 0 vs 1: p 1); seed 1: on q0 and q3, SFT alone on q1 (p 1)
    assert c["mcnemar_p_per_seed"] == [1.0, 1.0]
    # against base, run once: q0 1, q1 0.5, q2 0, q3 0 -> diff 0.375; sign flips of (1, 0.5): |sum| >= 1.5
    # in 2 of 4
    b = seed_comparison(BASE, VARIANT)
    assert b["diff"] == pytest.approx(0.375) and b["p"] == pytest.approx(0.5)
    assert b["mcnemar_p_per_seed"] == [0.5, 1.0]  # seed 0: right alone on q0, q1 (2 vs 0: p 2/4)
    assert seed_comparison(SFT, BASE) is None  # base runs once: no seed of SFT to pair it with


def test_the_seed_comparison_is_mcnemars_with_one_seed():
    one = seed_comparison({0: _v(0, 0, 0, 0, 0, 1)}, {0: _v(1, 1, 1, 1, 1, 1)})
    assert one["p"] == one["mcnemar_p_per_seed"][0] == pytest.approx(0.0625)
    assert one["diff"] == pytest.approx(5 / 6)


def test_seed_table_holm_over_the_held_out_tests_only():
    from swirl.evaluation.metrics import holm_adjusted

    verdicts = {}
    for ds in ("t_unseen", "t_dev"):
        verdicts |= {("base", ds): BASE, ("sft_process_outcome", ds): SFT, ("swirl_online_none", ds): VARIANT}
    rows = seed_rows(verdicts, ["sft_process_outcome", "base"], dev=["t_dev"], resamples=500)
    by = {(r.variant, r.dataset): r for r in rows}
    assert by[("base", "t_unseen")].vs == {}  # base against nothing; sft against base; online against both
    names = ("base", "swirl_online_none", "sft_process_outcome")  # SFT run after the online variant
    late = seed_rows({(n, "t"): verdicts[(n, "t_unseen")] for n in names}, ["sft_process_outcome", "base"])
    assert [set(r.vs) for r in late] == [set(), {"base"}, {"base"}]  # only the baselines run before
    online = by[("swirl_online_none", "t_unseen")].vs
    family = [
        by[("sft_process_outcome", "t_unseen")].vs["base"],
        online["sft_process_outcome"],
        online["base"],
    ]
    assert [c["holm_p"] for c in family] == pytest.approx(holm_adjusted([c["p"] for c in family]))
    assert all("holm_p" not in c for c in by[("swirl_online_none", "t_dev")].vs.values())  # dev: no family
    md = seed_table(rows, ["sft_process_outcome", "base"], {"swirl_online_none": "warmup+swirl_online_none"})
    assert "| warmup+swirl_online_none | t_unseen | 4 | 0.625 [0.500–0.750] (0.177) | +0.250" in md
    assert "vs sft_process_outcome: diff [95% CI]" in md and "| 1 / 1 | 0.75 |" in md


def test_each_variant_round_is_named_by_what_it_runs_in_the_same_store():
    """MLflow's compare view lists rounds by name: `learn-cpu warmup+sft_outcome seed 1`, not `learn-cpu`."""
    data = _data()
    sft = variant_config(data, "sft_outcome", Options(seed=1, start_adapter="w/adapter"))
    assert sft.run.name == "learn-cpu warmup+sft_outcome seed 1"
    assert variant_config(data, "warmup", Options()).run.name == "learn-cpu warmup"
    assert variant_config(data, "base", Options()).run.name == "learn-cpu base"
    evaluated = evaluation_config(data, "t/adapter", "warmup+swirl_online_none seed 2")
    assert evaluated.run.name == "learn-cpu warmup+swirl_online_none seed 2 evaluation"
    # the rounds share one store: renaming must not move it
    assert {sft.run.store_root, evaluated.run.store_root} == {"runs/learn-cpu"}
