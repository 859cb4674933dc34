"""The swirl objective on the real sampler (the session's vLLM engine, LoRA enabled, max rank 8).

- The trainer's log-probs of the actions vLLM sampled (same adapter) match vLLM's own, every step: the adapter
  is re-served after each update, the template and masks agree. A sampler stuck on an old adapter is caught.
- A learning test: with a known, learnable rule reward, swirl raises the mean reward of freshly sampled
  actions on held-out states within a few dozen steps.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from swirl.engines.base import Sampling
from swirl.training.config import LoraSection, SwirlSection, TrainConfig
from swirl.training.loop import train
from swirl.training.objectives import load_train_data
from swirl.training.rewards import RuleReward
from tests.support.training import build_train_store

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def states(tmp_path_factory, tiny_model_dir):
    cfg = TrainConfig(objective="swirl")
    out = []
    for seed, n in ((0, 16), (1, 6)):
        store, inp = build_train_store(
            str(tmp_path_factory.mktemp(f"swirl-{seed}")), tiny_model_dir, n_questions=n, seed=seed
        )
        out.append(load_train_data(store, [inp], cfg))
    return out  # train, held-out


def _reward(state, action) -> float:
    """Used where only the log-probs matter: 1 when the action's first token id is a multiple of 4."""
    return 1.0 if action.token_ids and action.token_ids[0] % 4 == 0 else 0.0


@pytest.fixture(scope="module")
def learnable(tiny_model_dir):
    """A reward the tiny random model can learn: the share of an action's tokens in a set S of a quarter of
    the vocabulary, S = the tokens whose output embedding points most along one random direction (so one shift
    of the hidden state raises all of them; a random set, e.g. ids divisible by 4, learns far slower)."""
    import torch
    from transformers import AutoModelForCausalLM

    head = (
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        .get_output_embeddings()
        .weight
    )
    v = torch.randn(head.shape[1], generator=torch.Generator().manual_seed(0))
    score = head.detach() @ v  # [V]
    good = set(torch.nonzero(score > torch.quantile(score, 0.75)).flatten().tolist())
    return lambda state, action: sum(t in good for t in action.token_ids) / max(len(action.token_ids), 1)


def test_trainer_logprobs_match_vllm_every_step(
    vllm_engine, states, tiny_model_dir, tiny_adapter_dir, tmp_path
):
    data, _ = states
    cfg = TrainConfig(
        objective="swirl",
        kl_beta=0.01,
        max_steps=3,
        learning_rate=1e-2,
        lora=LoraSection(init_adapter=tiny_adapter_dir),
        swirl=SwirlSection(samples_per_state=2, states_per_step=4, max_tokens=16, max_logprob_drift=1e-3),
    )
    res = train(cfg, tiny_model_dir, data, str(tmp_path / "match"), vllm_engine, RuleReward(_reward))
    drifts = [(m["logprob_drift"], m["logprob_drift_max"]) for m in res.log]
    print("log-prob drift per step (mean, max):", [(f"{a:.1e}", f"{b:.1e}") for a, b in drifts])
    assert len(drifts) == 3
    assert all(mean < 2e-5 and mx < 2e-4 for mean, mx in drifts), drifts  # fp32: measured ~1e-6


class StaleSampler:
    """A sampler that keeps serving the first adapter it was given (the bug the drift check exists for)."""

    def __init__(self, engine, folder):
        self.engine, self.folder, self.name, self.model = engine, folder, "stale", "stale"
        self.tokenizer, self.max_context, self.token_exact = (
            engine.tokenizer,
            engine.max_context,
            engine.token_exact,
        )

    def generate(self, prompts, sampling, adapter=None, seeds=None):
        if not os.path.exists(self.folder):
            shutil.copytree(adapter, self.folder)
        return self.engine.generate(prompts, sampling, adapter=self.folder, seeds=seeds)


def test_a_stale_adapter_is_caught(vllm_engine, states, tiny_model_dir, tiny_adapter_dir, tmp_path):
    data, _ = states
    cfg = TrainConfig(
        objective="swirl",
        kl_beta=0.01,
        max_steps=3,
        learning_rate=1e-2,
        lora=LoraSection(init_adapter=tiny_adapter_dir),
        swirl=SwirlSection(samples_per_state=2, states_per_step=4, max_tokens=16, max_logprob_drift=1e-3),
    )
    with pytest.raises(RuntimeError, match="stale adapter") as err:
        train(
            cfg,
            tiny_model_dir,
            data,
            str(tmp_path / "stale"),
            StaleSampler(vllm_engine, str(tmp_path / "first")),
            RuleReward(_reward),
        )
    assert "step 2" in str(err.value)  # step 1 samples with the right (first) adapter


def _mean_reward(engine, states, adapter, reward, seed=123) -> float:
    sampling = Sampling(n=8, temperature=1.0, max_tokens=8, logprobs=False)
    res = engine.generate(
        [s.ids.tolist() for s in states],
        sampling,
        adapter=adapter,
        seeds=[seed + i for i in range(len(states))],
    )
    return float(np.mean([reward(None, c) for r in res for c in r.completions]))


def test_swirl_raises_heldout_reward(vllm_engine, states, tiny_model_dir, tmp_path, learnable):
    data, held = states
    cfg = TrainConfig(
        objective="swirl",
        max_steps=30,
        learning_rate=5e-2,
        warmup_steps=2,
        schedule="constant",
        lora=LoraSection(rank=8, alpha=16),
        swirl=SwirlSection(samples_per_state=4, states_per_step=8, max_tokens=8),
    )
    res = train(cfg, tiny_model_dir, data, str(tmp_path / "learn"), vllm_engine, RuleReward(learnable))
    before = _mean_reward(vllm_engine, held.states, None, learnable)
    after = _mean_reward(vllm_engine, held.states, res.adapter_dir, learnable)
    first = np.mean([m["reward_mean"] for m in res.log[:5]])
    last = np.mean([m["reward_mean"] for m in res.log[-5:]])
    print(
        f"held-out reward before {before:.3f} after {after:.3f}; training reward first 5 steps {first:.3f} "
        f"last 5 {last:.3f}"
    )
    assert after > before + 0.15, (before, after, first, last)
    assert last > first
