"""bench/oreo.py's baseline, the paper's three separate models, computes the trainer's OREO losses: the same
as the shared-base design's (one base, two adapters, the reference with the adapters disabled) on one batch,
and again after one optimizer step, so the gradients agree too. This keeps the benchmark's memory comparison
one between designs that train the same thing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.oreo import (
    build_design,
    make_examples,
    make_optimizer,
    step_micro_batches,
    train_config,
    train_step,
)

KEYS = ("value_loss", "policy_loss", "kl", "value_mean", "logratio_mean")


def _two_steps(design, cfg, examples):
    opt = make_optimizer(design, cfg)
    return [
        train_step(design, opt, step_micro_batches(examples[i : i + 4], cfg, design.pad_id), cfg)
        for i in (0, 4)
    ]


def _close(a: dict, b: dict, tol: float = 1e-5) -> bool:
    return all(abs(a[k] - b[k]) <= tol * max(1.0, abs(a[k])) for k in KEYS)


@pytest.mark.parametrize("level", ["token", "step"])
def test_separate_copies_give_the_shared_designs_losses_before_and_after_a_step(tiny_model_dir, level):
    args = SimpleNamespace(
        trajectories=4,
        learning_rate=5e-3,
        lora_rank=4,
        level=level,
        seed=0,
        actions=2,
        prompt_tokens=20,
        action_tokens=5,
        obs_tokens=6,
        micro_batch_tokens=72,  # two trajectories (36 tokens) per micro-batch, two per step: accumulation
    )
    cfg = train_config(args)
    shared = build_design("shared", tiny_model_dir, cfg)
    examples = make_examples(args, shared.modules[0].config.vocab_size, 8)
    got_shared = _two_steps(shared, cfg, examples)
    got_separate = _two_steps(build_design("separate", tiny_model_dir, cfg), cfg, examples)
    first, second = got_shared
    assert first["kl"] > 1e-4 and abs(first["value_mean"]) > 1e-3  # the seeded starts: pi != pi_ref, V != 0
    assert second["value_loss"] != first["value_loss"]
    for a, b in zip(got_shared, got_separate, strict=True):
        assert _close(a, b), (a, b)
    if level == "token":  # full fine-tuning starts from the same function (the adapters merged in)
        full = _two_steps(build_design("separate_full", tiny_model_dir, cfg), cfg, examples)
        assert _close(first, full[0]), (first, full[0])
