"""The train stage's launchers, picked by `train.launcher`: each ends in `run_training` (run.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swirl.training.run import EngineFor, TrainSpec, launch, run_training


def train_with_launcher(
    spec: TrainSpec,
    engine_for: EngineFor | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`run_training` as `spec.train.launcher` says: here (with the caller's engines), in a child process
    (`python -m swirl.training`, under launch_prefix), or in Ray Train workers (ray_launch.py); returns
    (per-step log, data summary)."""
    launcher = spec.train.launcher
    if launcher == "inprocess":
        return run_training(spec, engine_for, on_step)
    if launcher == "ray":
        from swirl.training.ray_launch import launch_ray

        return launch_ray(spec, on_step)
    return launch(spec, on_step)
