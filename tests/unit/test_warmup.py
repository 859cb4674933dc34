"""The warm-up as a pipeline step, without a Prefect server: the `warmup:` section, the warm-up's round config
(the same store versions as bench/learning.py's `warmup` variant), the round that starts from its adapter,
the Run form's switch, and how a round and an iteration name and count it."""

from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEARN_CPU = os.path.join(ROOT, "configs", "learn-cpu.yaml")


def _config(**warmup):
    from swirl.config import config_from_dict

    data = {
        "ingest": {
            "datasets": [
                {"name": "g", "format": "gsm8k", "split": "train", "hub": "a/b"},
                {"name": "h", "format": "gsm8k", "split": "train", "hub": "a/c"},
                {"name": "g_test", "format": "gsm8k", "split": "test", "hub": "a/b"},
            ]
        },
        "policy": {"kind": "hf", "model": "m"},
        "generate": {"samples_per_question": 4, "temperature": 0.7},
        "filter": {"strategy": "none"},
        "train": {"objective": "swirl_offline", "max_steps": 9, "batch_size": 3, "learning_rate": 2e-4},
        "evaluate": {"base": False, "policies": [{"name": "x", "adapter": "/a/x"}]},
        "warmup": warmup,
    }
    return config_from_dict(data)


def test_the_section_is_off_by_default_and_checks_its_datasets():
    from swirl.config import ConfigError, RunConfig

    w = RunConfig().warmup
    assert (w.enabled, w.steps, w.learning_rate, w.datasets) == (False, 30, None, ())
    with pytest.raises(ConfigError, match=r"warmup.datasets names \['nope'\]"):
        _config(enabled=True, datasets=["nope"])
    with pytest.raises(ConfigError, match="warmup.steps"):
        _config(steps=0)


def test_the_warm_up_trains_sft_on_one_gold_demonstration_per_question():
    from swirl.config import warmup_config

    cfg = _config(enabled=True, steps=5)
    w = warmup_config(cfg)
    assert (w.generate.source, w.generate.samples_per_question) == ("gold", 1)
    assert w.filter.strategy == "outcome"
    assert (w.train.objective, w.train.kl_beta, w.train.max_steps) == ("sft", 0.0, 5)
    assert w.train.learning_rate == 2e-4 and w.train.batch_size == 3  # the round's, unless set
    assert [d.name for d in w.generate_datasets()] == ["g", "h"]  # the training datasets
    assert (w.evaluate.base, w.evaluate.trained, w.evaluate.policies) == (True, True, ())  # base vs warm-up
    assert not w.warmup.enabled and w.generate.temperature == 0.7 and w.policy == cfg.policy
    w2 = warmup_config(_config(enabled=True, learning_rate=1e-3, datasets=["h"]))
    assert w2.train.learning_rate == 1e-3 and [d.name for d in w2.generate_datasets()] == ["h"]


def test_a_round_after_the_warm_up_starts_from_its_adapter():
    from swirl.config import starting_from
    from swirl.stages.train import effective_config

    cfg = _config(enabled=True)
    after = starting_from(cfg, "/s/train/w1/files/adapter")
    assert after.policy.adapter == "/s/train/w1/files/adapter" and not after.warmup.enabled
    assert effective_config(after.train, after.policy).lora.init_adapter == "/s/train/w1/files/adapter"
    assert after.train == cfg.train and after.filter == cfg.filter  # the round's own settings
    plain = _config()
    assert starting_from(plain, None) is plain  # no warm-up, no adapter: the config as it is


def test_the_run_form_switches_the_warm_up_on_and_sets_its_steps(monkeypatch):
    from prefect.utilities.callables import parameter_schema

    from flows.iterate import swirl_iterate
    from flows.parameters import Knobs, resolve_config

    knobs = parameter_schema(swirl_iterate.fn).model_dump_for_openapi()["definitions"]["Knobs"]["properties"]
    assert knobs["warmup"]["type"] == "boolean" and "anyOf" not in knobs["warmup"]
    assert knobs["warmup_steps"]["type"] == "integer" and knobs["warmup_steps"]["description"]
    monkeypatch.chdir(ROOT)
    cfg = resolve_config("configs/learn-cpu.yaml", Knobs(warmup=True, warmup_steps=60))
    assert (cfg.warmup.enabled, cfg.warmup.steps) == (True, 60)
    assert not resolve_config("configs/learn-cpu.yaml", Knobs()).warmup.enabled
    with pytest.raises(ValueError, match="warmup_steps"):
        Knobs(warmup_steps=0)


def test_a_round_with_the_warm_up_runs_it_first_and_evaluates_base_warm_up_and_trained(monkeypatch):
    import flows.round as round_flow
    from flows.results import RoundResult, StageOutput

    calls = []

    def fake_round(
        cfg, keep_engines=False, parent_run_id=None, round_number=None, base_label="base", kind="round"
    ):
        calls.append((cfg, keep_engines, parent_run_id, kind))
        train = StageOutput("w1", 1, False, "/s/train/w1", 1.0, "r", adapter="/s/train/w1/files/adapter")
        return RoundResult("t", None, "t warm-up #1", "/s", "r0", "e", "u", "url", 1.0, {"train": train})

    monkeypatch.setattr(round_flow, "swirl_round", fake_round)
    cfg = _config(enabled=True, steps=4).model_copy(
        update={"evaluate": _config().evaluate.model_copy(update={"base": True})}
    )
    after, label, before = round_flow.warmup_phase(cfg, "parent", "base")
    ((warm_cfg, keep, parent, kind),) = calls
    assert (warm_cfg.generate.source, warm_cfg.train.max_steps, keep, parent, kind) == (
        "gold",
        4,
        True,
        "parent",
        "warm-up",
    )
    assert after.policy.adapter == "/s/train/w1/files/adapter" and label == "warm-up"
    assert [(p.label, p.engine.adapter) for p in before] == [("base", None)]  # the configured policy
    # what each adapter was trained on, as the train outputs' manifests would say
    datasets = {"/s/train/w1/files/adapter": "twohop", "/a/x": ""}
    monkeypatch.setattr(round_flow, "train_datasets_of", datasets.__getitem__)
    policies = [*before, *round_flow.eval_policies(after, "/s/train/r1/files/adapter", "g", label)]
    assert [(p.label, p.engine.adapter, p.trained_on) for p in policies] == [
        ("base", None, ""),
        ("warm-up", "/s/train/w1/files/adapter", "twohop"),  # the report's "trained on" column
        ("trained", "/s/train/r1/files/adapter", "g"),
        ("x", "/a/x", ""),
    ]
    # no warm-up: nothing runs first; a round that does not train does not warm up either
    assert round_flow.warmup_phase(_config(), None, "base")[1:] == ("base", ())
    evaluating = cfg.model_copy(update={"stages": ("ingest", "corpus", "evaluate")})
    assert round_flow.warmup_phase(evaluating, None, "base") == (evaluating, "base", ())
    assert len(calls) == 1


def test_the_warm_up_is_round_0_of_an_iteration():
    from flows.iterate import adapter_name, rounds_markdown, start_label, stop_reason
    from flows.results import RoundRecord
    from flows.round import round_label

    assert [start_label(n, True) for n in (0, 1, 2)] == ["base", "warm-up", "round 1"]
    assert [start_label(n, False) for n in (1, 2)] == ["base", "round 1"]
    assert round_label("it", "warm-up", 0) == "it warm-up" and round_label("it", "round", 1) == "it round 1"
    assert round_label("it", "warm-up", None) == "it warm-up" and round_label("it", "round", None) is None

    def rec(n, adapter_in, adapter, before, after):
        return RoundRecord(
            n,
            adapter_in,
            adapter,
            adapter.split("/")[-3],
            None,
            {"d": after},
            {"d": before},
            after,
            before,
            after - before,
            3,
            None,
            f"r{n}",
            f"it round {n}",
        )

    warm = rec(0, "", "/s/train/w0/files/adapter", 0.0, 0.5)
    one = rec(1, warm.adapter, "/s/train/t1/files/adapter", 0.5, 0.5)
    table = rounds_markdown("t", [warm, one], None)
    head, *rows = [
        [c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line[:2] == "| "
    ]
    rows = [dict(zip(head, r, strict=True)) for r in rows]
    assert [r["round"] for r in rows] == ["start", "0 (warm-up)", "1"]
    assert [(r["from"], r["adapter"]) for r in rows] == [("", "-"), ("-", "w0"), ("w0", "t1")]
    assert adapter_name("/x/my-adapter") == "/x/my-adapter"
    assert stop_reason([warm, one], 0.01) == "round 1 gained +0.0000 < min_gain 0.01"  # not the warm-up
    assert stop_reason([rec(0, "", warm.adapter, 0.5, 0.5)], 0.01) is None
