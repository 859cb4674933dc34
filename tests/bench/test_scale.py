"""bench/scale.py's capacity part: the paper's setting at three scales, from scripts/capacity.py."""

from __future__ import annotations

import pytest

from bench.scale import capacity_plan


def test_the_capacity_plan_grows_linearly_and_names_its_sources():
    result, table = capacity_plan()
    x1, x10, x100 = (result["plans"][k] for k in ("x1", "x10", "x100"))
    # 50,000 trajectories of 3 steps of 60 generated tokens: 9.0M tokens generated at 1x (by hand)
    assert x1["data"]["generate_output"] == pytest.approx(50_000 * 3 * 60)
    # GPU-hours are linear in the number of trajectories (up to whole optimizer steps)
    assert x10["gpu_hours"] == pytest.approx(10 * x1["gpu_hours"], rel=1e-3)
    assert x100["gpu_hours"] == pytest.approx(100 * x1["gpu_hours"], rel=1e-3)
    assert "docs/scale.md" in result["sources"]
    assert "gpu_hours" in table and "x100" in table
