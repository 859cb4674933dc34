"""The pipeline's warm-up step (`warmup:`, swirl.config.warmup_config) plans exactly the outputs of the
learning bench's warm-up variant, so the two share the store."""

from __future__ import annotations

import os

import pytest

from tests.support.plans import training_versions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEARN_CPU = os.path.join(ROOT, "configs", "learn-cpu.yaml")


@pytest.mark.parametrize("steps", [None, 60])
def test_the_warm_up_s_store_versions_are_the_learning_bench_s(steps, monkeypatch):
    """configs/learn-cpu.yaml with `warmup: {enabled: true, steps: N}` plans the same generate, judge,
    decompose, filter and train outputs as `bench/learning.py --warmup-steps N`'s warm-up variant."""
    from bench.learning import Options, variant_config
    from swirl.config import config_from_dict, load_config, warmup_config

    monkeypatch.chdir(ROOT)
    base = load_config(LEARN_CPU, check_files=False)
    data = base.model_dump(mode="json")
    data["warmup"] = {"enabled": True, **({"steps": steps} if steps else {})}
    ours = training_versions(warmup_config(config_from_dict(data)))
    bench = training_versions(
        variant_config(base.model_dump(mode="json"), "warmup", Options(warmup_steps=steps))
    )
    assert set(ours) == {
        f"{s}/{d}" for s in ("generate", "judge", "decompose", "filter") for d in ("arith", "twohop")
    } | {"train"}
    assert ours == bench
    assert ours["train"] != training_versions(base)["train"]  # the check can tell configs apart
