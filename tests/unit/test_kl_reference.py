"""The KL penalty of the likelihood objectives (swirl, swirl_offline) anchors to the adapter training starts
from (`lora.init_adapter`: a warm-up's, an earlier round's), as OREO's reference does, and to the base model
only when training starts from a fresh LoRA."""

from __future__ import annotations

import pytest
import torch

from swirl.training.batches import assign_coefficients, micro_batches, prefix_shared
from swirl.training.config import LoraSection, SwirlSection, TrainConfig
from swirl.training.loop import Dist, build_policy, step_items, train
from swirl.training.losses import micro_batch_loss, token_logprobs
from swirl.training.objectives import load_train_data, objective_for
from swirl.training.rewards import RuleReward
from tests.support.training import build_train_store
from tests.unit.test_train_loop import EchoEngine


@pytest.fixture(scope="module")
def kl_store(tmp_path_factory, tiny_model_dir):
    return build_train_store(str(tmp_path_factory.mktemp("kl-ref")), tiny_model_dir, n_questions=8, seed=0)


def _offline(init_adapter: str | None, **kw) -> TrainConfig:
    return TrainConfig(
        objective="swirl_offline",
        offline={"baseline": "none"},
        batch_size=4,
        max_steps=2,
        learning_rate=1e-2,
        kl_beta=0.1,
        lora=LoraSection(rank=8, alpha=32, init_adapter=init_adapter),
        checkpoint_every=1,
        **kw,
    )


def _plain_logprobs(model_dir: str, adapter: str | None, examples) -> torch.Tensor:
    """log pi of the examples' action tokens under the base model (+ `adapter`), loaded on its own: [N]."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    seqs = prefix_shared(examples)
    assign_coefficients(seqs, "token")
    with torch.no_grad():
        return torch.cat([token_logprobs(model, mb) for mb in micro_batches(seqs, 1 << 20, 0)])


def test_offline_kl_is_zero_at_the_starting_adapter_then_measured_against_it(
    kl_store, tiny_model_dir, tiny_adapter_dir, tmp_path
):
    """Before the first update the policy IS its starting adapter: the logged KL is exactly 0 (against the
    base it was > 0); the second step's KL is the k2 estimate of the policy after one step against that
    adapter, computed here from two separately loaded models."""
    store, inp = kl_store
    cfg = _offline(tiny_adapter_dir)
    data = load_train_data(store, [inp], cfg)
    res = train(cfg, tiny_model_dir, data, str(tmp_path / "out"))
    assert res.log[0]["kl"] == 0.0, f"step 1 KL {res.log[0]['kl']}: not measured against the starting adapter"
    after_one = str(tmp_path / "out" / "checkpoints" / "step-0000001" / "adapter")
    examples = [data.examples[i] for i in step_items(len(data.examples), 4, 1, cfg.seed)]
    pol = _plain_logprobs(tiny_model_dir, after_one, examples)
    ref = _plain_logprobs(tiny_model_dir, tiny_adapter_dir, examples)
    want = float(((pol - ref) ** 2 / 2).mean())
    assert want > 1e-6 and abs(res.log[1]["kl"] - want) < 1e-4 * want, (res.log[1]["kl"], want)


def test_online_kl_is_zero_at_the_starting_adapter(kl_store, tiny_model_dir, tiny_adapter_dir, tmp_path):
    from transformers import AutoTokenizer

    store, inp = kl_store
    cfg = TrainConfig(
        objective="swirl",
        swirl=SwirlSection(samples_per_state=2, states_per_step=2, max_tokens=16),
        max_steps=2,
        learning_rate=1e-2,
        lora=LoraSection(rank=8, alpha=32, init_adapter=tiny_adapter_dir),
        kl_beta=0.1,
    )
    eng = EchoEngine(AutoTokenizer.from_pretrained(tiny_model_dir))
    reward = RuleReward(lambda state, action: 1.0 if "7" in action.text else 0.0)
    res = train(cfg, tiny_model_dir, load_train_data(store, [inp], cfg), str(tmp_path / "sw"), eng, reward)
    assert res.log[0]["kl"] == 0.0, f"step 1 KL {res.log[0]['kl']}: not measured against the starting adapter"
    assert res.log[1]["kl"] > 0


@pytest.mark.parametrize("start", ["adapter", "fresh"])
def test_reference_log_probs_are_the_starting_policy(kl_store, tiny_model_dir, tiny_adapter_dir, start):
    """The KL's reference log-probs (k1: d = logp - ref, so kl - sum(kl_coef * logp) = -sum(kl_coef * ref))
    equal a plain forward of the starting adapter loaded on its own (the base for a fresh LoRA), after the
    policy has moved away from it."""
    store, inp = kl_store
    init = tiny_adapter_dir if start == "adapter" else None
    cfg = _offline(init)
    model, _, _ = build_policy(cfg, tiny_model_dir, Dist())
    objective_for(cfg).build(model, cfg)
    with torch.no_grad():  # move the policy away from where it started
        gen = torch.Generator().manual_seed(3)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    examples = load_train_data(store, [inp], cfg).examples[:3]
    seqs = prefix_shared(examples)
    assign_coefficients(seqs, "token")
    (mb,) = micro_batches(seqs, 1 << 20, 0)
    model.eval()
    parts = micro_batch_loss(model, mb, beta=0.1, kl_kind="k1")
    with torch.no_grad():
        logp = token_logprobs(model, mb)
    want = _plain_logprobs(tiny_model_dir, init, examples)
    got = float((mb.kl_coef * logp).sum()) - parts.kl  # = sum(kl_coef * ref)
    expected = float((mb.kl_coef * want).sum())
    assert (logp - want).abs().max() > 1e-2  # the policy is not its reference any more
    assert abs(got - expected) < 1e-5, f"reference mean log-prob {got:.6f}, starting policy's {expected:.6f}"


def test_a_kl_against_an_initial_adapter_has_its_own_train_version():
    """The KL term against an initial adapter now anchors to it (it anchored to the base): those train
    outputs get a new version; a KL from a fresh LoRA, or no KL, keeps the version it had."""
    lora = LoraSection(init_adapter="/runs/warmup/adapter")
    assert TrainConfig(kl_beta=0.05, lora=lora).version_config()["kl_reference"] == "init_adapter"
    assert "kl_reference" not in TrainConfig(kl_beta=0.05).version_config()
    assert "kl_reference" not in TrainConfig(kl_beta=0.0, lora=lora).version_config()
