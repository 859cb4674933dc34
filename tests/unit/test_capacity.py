"""scripts/capacity.py: its figures against ones worked out by hand (docs/scale.md reads the rest)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "capacity.py")


@pytest.fixture(scope="module")
def capacity():
    spec = importlib.util.spec_from_file_location("capacity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["capacity"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("capacity", None)


def test_tokens_of_one_trajectory_by_hand(capacity):
    """2 steps, prompt 100, action 10, observation 20, judge instructions 50, judge output 5.
    Step 1 reads 100, step 2 reads 100 + 10 + 20 = 130 (the prefix again): 230; with the prefix cache only
    the prompt and one observation are computed: 120. The judge reads 50 + 100 + 10 = 160 for step 1 and
    50 + 130 + 10 = 190 for step 2."""
    s = capacity.Setting(
        steps=2,
        prompt_tokens=100,
        action_tokens=10,
        observation_tokens=20,
        judge_instruction_tokens=50,
        judge_output_tokens=5,
    )
    assert capacity.per_trajectory(s) == {
        "generate_prompt": 230,
        "generate_prompt_cached": 120,
        "generate_output": 20,
        "judge_prompt": 350,
        "judge_output": 10,
    }


def test_rates_and_gpu_hours_by_hand(capacity):
    """Prefill: 989e12 x 0.5 / (2 x 27e9) = 9,157.4 tok/s; decode 5,500 x 0.5 = 2,750 tok/s. The paper's
    50,000 trajectories at 3 steps (250/60/250): generate = 9.0M / 2,750 + 37.5M / 9,157.4 = 7,368 s."""
    s = capacity.Setting()
    r = capacity.rates(s)
    assert r["decode"] == 2750
    assert r["prefill"] == pytest.approx(9157.4, abs=0.1)
    assert r["train"] == pytest.approx(989e12 * 0.4 / 162e9)
    d = capacity.data_plan(s)
    assert d["generate_output"] == 9_000_000 and d["generate_prompt_cached"] == 37_500_000
    assert d["generate_prompt"] == 84_000_000  # 50,000 x (3 x 250 + 310 x 3)
    assert d["generate_gpu_hours"] == pytest.approx(7367.8 / 3600, rel=1e-4)


def test_training_and_layout_by_hand(capacity):
    """1,000 trajectories of 2 steps, half the steps GOOD: a quarter kept, 500 states, ceil(500 / 32) = 16
    steps of 32 x 4 = 128 samples. 10,000 questions in shards of 16: 625 shards over 8 GPUs / tp 2 = 4
    actors."""
    s = capacity.Setting(trajectories=1000, steps=2, step_good_rate=0.5)
    t = capacity.train_plan(s)
    assert t["kept_share"] == 0.25 and t["states"] == 500
    assert t["optimizer_steps"] == 16 and t["sampled_actions"] == 2048
    lay = capacity.layout(capacity.Setting(tensor_parallel=2))
    assert lay["questions"] == 10_000 and lay["generate_shards"] == 625 and lay["actors"] == 4
    assert lay["generate_shards_per_actor"] == 156.25


def test_growth_at_100x_by_hand(capacity):
    """100x: 5M trajectories, 1M questions. Shards: 62,500 generate + 78,125 judge, 2 objects each; LIST at
    1,000 a page: 125 + 157 = 282 calls."""
    s = dataclasses.replace(capacity.Setting(), trajectories=5_000_000)
    g = capacity.growth(s)
    assert g["shard_objects"] == 2 * (62_500 + 78_125)
    assert g["list_calls"] == 125 + 157
    assert g["judge_done_keys_mb"] == 500  # 5M keys x 100 bytes


def test_main_writes_json(capacity, tmp_path, capsys):
    out = tmp_path / "cap.json"
    assert capacity.main(["--scale", "1", "10", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "generate_gpu_hours" in printed and "x10" in printed
    data = json.loads(out.read_text())
    assert data["plans"]["x10"]["layout"]["questions"] == 100_000
