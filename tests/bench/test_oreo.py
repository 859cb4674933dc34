"""bench/oreo.py on the tiny model (`--tiny`): each micro-batch size runs the shared trainer's OREO in its own
subprocess and reports its memory, speed and losses. Gradient accumulation is exact, so the runs with small
and large micro-batches train the same thing: the same losses at every step."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_tiny_run_measures_the_trainers_oreo_per_micro_batch_size(tmp_path):
    out = tmp_path / "oreo.json"
    sizes = (512, 40)  # 512: a whole step (2 trajectories of 36 tokens) per micro-batch; 40: one trajectory
    cmd = [sys.executable, os.path.join(ROOT, "bench", "oreo.py"), "--tiny", "--steps", "2"]
    cmd += ["--trajectories", "2", "--actions", "2", "--prompt-tokens", "20", "--action-tokens", "5"]
    cmd += ["--obs-tokens", "6", "--lora-rank", "4", "--learning-rate", "5e-3", "--threads", "1"]
    cmd += ["--micro-batch-tokens", ",".join(map(str, sizes)), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    runs = json.loads(out.read_text())["runs"]
    assert [r["micro_batch_tokens"] for r in runs] == list(sizes)
    assert [r["micro_batches_per_step"] for r in runs] == [1, 2]
    for r in runs:
        assert r["peak_rss_bytes"] > r["rss_after_imports_bytes"] > 0  # the model and training came on top
        assert 0 < r["trainable_parameters"] < r["base_parameters"]
        assert r["processed_tokens_per_s"] > r["trained_tokens_per_s"] > 0  # prompt/observation tokens too
        assert [s["step"] for s in r["steps"]] == [1, 2]
        assert all(math.isfinite(s[k]) for s in r["steps"] for k in ("value_loss", "policy_loss", "kl"))
    whole, split = runs
    for a, b in zip(whole["steps"], split["steps"], strict=True):
        for k in ("value_loss", "policy_loss", "kl"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), (k, a, b)
    assert "| micro-batch tokens |" in (tmp_path / "oreo.md").read_text()
