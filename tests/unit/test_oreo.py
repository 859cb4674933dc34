"""OREO (docs/method.md §2): the losses against hand computations, the micro-batch against a per-prefix
reference (the off-by-one of the value positions), learning on a toy offline dataset, exact resume, the train
stage's value folder, and the config checks. Value-guided beam search: test_beam_search.py."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from swirl.training.config import LoraSection, OreoSection, TrainConfig
from swirl.training.objectives.oreo import full_kl, policy_loss, to_steps, value_loss
from tests.support.training import assert_trained, start_weights

TOL = 1e-5


# ----------------------------------------------------------------------------------------- the losses
def _token_batch():
    """Two trajectories: A (R = 1) with 3 action tokens, B (R = 0) with 2; beta = 0.5; 2 trajectories, so each
    weighs 1/2.

    A: logratio [0.2, -0.4, 1.0], V [0.1, 0.3, -0.2]; sums over i >= t: [0.8, 0.6, 1.0]
       errors V - R + beta * sum: [0.1 - 1 + 0.4, 0.3 - 1 + 0.3, -0.2 - 1 + 0.5] = [-0.5, -0.4, -0.7]
       mean of squares (0.25 + 0.16 + 0.49) / 3 = 0.3
    B: logratio [0.6, -0.2], V [0.5, 0.0]; sums [0.4, -0.2]; errors [0.7, -0.1]; mean (0.49 + 0.01) / 2 = 0.25
    loss = (0.3 + 0.25) / 2 = 0.275 (the policy loss has the same value: sg changes only the gradient)."""
    values = torch.tensor([0.1, 0.3, -0.2, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    logratio = torch.tensor([0.2, -0.4, 1.0, 0.6, -0.2], dtype=torch.float64, requires_grad=True)
    reward = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    seq = torch.tensor([0, 0, 0, 1, 1])
    seq_weight = torch.full((5,), 0.5, dtype=torch.float64)
    return values, logratio, reward, seq, seq_weight


def test_value_loss_equals_hand_computation_and_trains_only_the_values():
    values, logratio, reward, seq, w = _token_batch()
    loss = value_loss(values, logratio, reward, seq, w, beta=0.5)
    assert abs(float(loss.detach()) - 0.275) < 1e-12
    loss.backward()
    # d/dV_t = (1/2) (1/n_seq) 2 err_t: A err/3, B err/2
    expected = [-0.5 / 3, -0.4 / 3, -0.7 / 3, 0.7 / 2, -0.1 / 2]
    assert np.allclose(values.grad.numpy(), expected, atol=1e-12)
    assert logratio.grad is None  # the log-ratios are the target: no gradient


def test_policy_loss_equals_hand_computation_and_only_the_current_logratio_has_gradient():
    values, logratio, reward, seq, w = _token_batch()
    loss = policy_loss(values, logratio, reward, seq, w, beta=0.5)
    assert abs(float(loss.detach()) - 0.275) < 1e-12
    loss.backward()
    # d/dlogratio_t = (1/2) (1/n_seq) 2 err_t beta: A err/6, B err/4; the later log-ratios are constants (a
    # gradient through them would add beta * sum_{j<t} err_j terms: A's second token would get -0.5/6 more)
    expected = [-0.5 / 6, -0.4 / 6, -0.7 / 6, 0.7 / 4, -0.1 / 4]
    assert np.allclose(logratio.grad.numpy(), expected, atol=1e-12)
    assert values.grad is None  # sg[V]


def test_step_level_sums_a_spans_logratios_and_takes_the_value_before_it():
    # A: action 7 = tokens 0-1, action 8 = token 2; B: action 9 = tokens 3-4
    action = torch.tensor([7, 7, 8, 9, 9])
    values = torch.tensor([0.1, 99.0, -0.2, 0.5, 99.0], dtype=torch.float64)  # 99: inside a span, unused
    logratio = torch.tensor([0.1, 0.1, -0.4, 0.3, 0.3], dtype=torch.float64)
    reward = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    seq = torch.tensor([0, 0, 0, 1, 1])
    v, lr, r, s = to_steps(action, values, logratio, reward, seq)
    assert v.tolist() == [0.1, -0.2, 0.5] and np.allclose(lr.tolist(), [0.2, -0.4, 0.6])
    assert r.tolist() == [1.0, 1.0, 0.0] and s.tolist() == [0, 0, 1]
    w = torch.full((3,), 0.5, dtype=torch.float64)
    # beta 1: A: sums [-0.2, -0.4], errors [0.1 - 1 - 0.2, -0.2 - 1 - 0.4] = [-1.1, -1.6], mean 1.885;
    # B: sum 0.6, error 0.5 + 0.6 = 1.1, 1.21; loss (1.885 + 1.21) / 2
    assert abs(float(value_loss(v, lr, r, s, w, beta=1.0)) - (1.885 + 1.21) / 2) < 1e-12


def test_full_kl_over_the_vocabulary():
    p = torch.tensor([[0.5, 0.25, 0.25]]).log()
    q = torch.tensor([[0.25, 0.5, 0.25]]).log()
    # 0.5 ln 2 + 0.25 ln 0.5 + 0 = 0.25 ln 2
    assert abs(float(full_kl(p, q)[0]) - 0.25 * math.log(2)) < 1e-6


# ---------------------------------------------------------------- the micro-batch, against a reference
@pytest.fixture(scope="module")
def policy_and_value(tiny_model_dir):
    """The tiny model with a random policy adapter, a random value adapter and a random value head."""
    from peft import LoraConfig

    from swirl.models.random_lora import random_lora

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"])
    return random_lora(tiny_model_dir, lora, std=0.2, seed=0, value=True).eval()


def _reference_parts(model, trajectories, rewards, beta, level):
    """The losses from scratch: every state's prefix run through the model on its own (no batching, no
    padding), the sums written as loops. `trajectories`: (token ids, action spans) each. Returns the value
    loss, the policy loss, the KL term, and the value loss with V read one token late (the bug to catch)."""
    from swirl.models.value import using_adapter

    def last_hidden(ids):
        out = model.get_base_model().model(input_ids=torch.tensor([ids]))
        return out.last_hidden_state[0, -1]

    head = model.get_base_model().lm_head
    per_seq = []
    for (ids, spans), r in zip(trajectories, rewards, strict=True):
        states = []  # per action token: V, V read late, logratio, KL, its span's start
        for a, b in spans:
            for p in range(a, b):
                with torch.no_grad():
                    with model.disable_adapter():
                        ref = torch.log_softmax(head(last_hidden(ids[:p])), -1)
                    pol = torch.log_softmax(head(last_hidden(ids[:p])), -1)
                    with using_adapter(model, "value"):
                        v = float(model.value_head(last_hidden(ids[:p])))  # the state s_t = ids[:p]
                        late = float(model.value_head(last_hidden(ids[: p + 1])))  # wrong: includes a_t
                kl = float((pol.exp() * (pol - ref)).sum())
                states.append((v, late, float(pol[ids[p]] - ref[ids[p]]), kl, a))
        per_seq.append((states, r))
    n = len(per_seq)
    v_loss = p_loss = kl = v_loss_late = 0.0
    for states, r in per_seq:
        kl += sum(s[3] for s in states) / len(states) / n
        if level == "step":  # one state per span: V at its first token, the span's log-ratios summed
            starts = sorted({s[4] for s in states})
            first = [next(s for s in states if s[4] == a) for a in starts]
            states = [(f[0], f[1], sum(s[2] for s in states if s[4] == f[4]), 0.0, f[4]) for f in first]
        for t, (v, late, lr, _, _) in enumerate(states):
            after = sum(s[2] for s in states[t + 1 :])
            v_loss += (v - r + beta * (lr + after)) ** 2 / len(states) / n
            p_loss += (v - r + beta * lr + beta * after) ** 2 / len(states) / n
            v_loss_late += (late - r + beta * (lr + after)) ** 2 / len(states) / n
    return v_loss, p_loss, kl, v_loss_late


@pytest.mark.parametrize("level", ["token", "step"])
def test_micro_batch_equals_the_per_prefix_reference_and_catches_a_shifted_value(policy_and_value, level):
    from swirl.training.batches import Example, collate, prefix_shared
    from swirl.training.objectives.oreo import oreo_coefficients, oreo_micro_batch

    model = policy_and_value
    rng = np.random.default_rng(3)
    # prompt, action, observation tokens, action (A); prompt, action (B): observations are in no span
    layouts = [(20, [(6, 4), (5, 3)]), (14, [(0, 5)])]
    examples, rewards, trajectories = [], [1.0, 0.0], []
    for i, (prompt, parts) in enumerate(layouts):
        spans, pos = [], prompt
        for gap, n in parts:
            spans.append((pos + gap, pos + gap + n))
            pos += gap + n
        ids = rng.integers(3, model.config.vocab_size, size=pos).tolist()
        trajectories.append((ids, spans))
        kept = list(range(len(spans)))
        examples.append(Example(f"t{i}", np.asarray(ids), spans, kept, [rewards[i]] * len(kept), i))
    seqs = oreo_coefficients(prefix_shared(examples))
    mb = collate(seqs, pad_id=0)
    with torch.no_grad():
        got = oreo_micro_batch(model, mb, beta=0.5, alpha=0.1, level=level)
    want = _reference_parts(model, trajectories, rewards, 0.5, level)
    assert abs(got.value_loss - want[0]) < TOL * max(1, abs(want[0])), (got.value_loss, want[0])
    assert abs(got.policy_loss - want[1]) < TOL * max(1, abs(want[1]))
    assert abs(got.kl - want[2]) < TOL and want[2] > 1e-4
    assert abs(got.value_loss - want[3]) > 100 * TOL  # V read one token late would be caught


# ------------------------------------------------------------------------------------------- training
def _toy_data(tiny_model_dir, copies=8):
    """Offline trajectories of two steps: a first action, 'good' or 'bad', then the tool's reply and the same
    second action; the good first action leads to R = 1, the bad one to R = 0. Returns the prompt, both first
    actions, the two states reached after them (before the second action) and the data."""
    from transformers import AutoTokenizer

    from swirl.rollout import ChatSegments
    from swirl.training.batches import Example
    from swirl.training.data import TrainData

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    seg = ChatSegments(tok)
    prompt = seg.prompt_ids([{"role": "user", "content": "Pick the right answer."}])
    good = tok.encode("Yes <math_exp>3 + 4</math_exp>", add_special_tokens=False)
    bad = tok.encode("No <math_exp>3 + 5</math_exp>", add_special_tokens=False)
    second = tok.encode("So <answer>done</answer>", add_special_tokens=False)
    assert good[0] != bad[0]
    examples, reached = [], {}
    for k in range(2 * copies):
        first, r = (good, 1.0) if k % 2 == 0 else (bad, 0.0)
        state = prompt + first + seg.between_ids("3 + 4 -> 7", action_ended_with_eos=False)
        reached[r] = state
        ids = np.asarray(state + second, dtype=np.int32)
        spans = [(len(prompt), len(prompt) + len(first)), (len(state), len(ids))]
        examples.append(Example(f"t{k}", ids, spans, [0, 1], [r, r], group=k))
    return prompt, good, bad, (reached[1.0], reached[0.0]), TrainData(examples=examples)


def _oreo_cfg(**kw):
    base = {
        "objective": "oreo",
        "batch_size": 8,
        "max_steps": 30,
        "learning_rate": 2e-3,
        "schedule": "constant",
        "lora": LoraSection(rank=4, alpha=8),
        "oreo": OreoSection(beta=0.1, value_learning_rate=5e-3),
        "checkpoint_every": 100,
    }
    return TrainConfig(**{**base, **kw})


def _action_logprob(model_dir, adapter, prompt, action):
    """log pi(action | prompt): the sum over the action's tokens."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    ids = torch.tensor([prompt + action])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)  # [T - 1, V]: predicts ids[1:]
    pos = torch.arange(len(prompt), ids.shape[1])
    return float(logp[pos - 1, ids[0, pos]].sum())


@pytest.mark.parametrize("level", ["token", "step"])
def test_oreo_learns_the_rewarded_action_on_a_toy_dataset(tiny_model_dir, tmp_path, level):
    from swirl.models.value import ValueScorer
    from swirl.training.loop import train

    prompt, good, bad, (after_good, after_bad), data = _toy_data(tiny_model_dir)
    cfg = _oreo_cfg(oreo=OreoSection(level=level, beta=0.1, value_learning_rate=5e-3))
    res = train(cfg, tiny_model_dir, data, str(tmp_path / "out"))
    v_good, v_bad = ValueScorer(tiny_model_dir, str(tmp_path / "out" / "value"))([after_good, after_bad])
    print(f"{level}: V(after good) {v_good:.3f}, V(after bad) {v_bad:.3f}")
    assert v_good > v_bad + 0.2
    margin = {
        a: _action_logprob(tiny_model_dir, a, prompt, good) - _action_logprob(tiny_model_dir, a, prompt, bad)
        for a in (None, res.adapter_dir)
    }
    print(f"log pi(good) - log pi(bad): {margin[None]:.3f} -> {margin[res.adapter_dir]:.3f}")
    assert margin[res.adapter_dir] > margin[None] + 1.0
    # the final adapter is the policy alone; the value model is beside it
    assert not os.path.exists(os.path.join(res.adapter_dir, "value"))
    assert os.path.exists(os.path.join(tmp_path / "out" / "value", "adapter_config.json"))
    assert_trained(str(tmp_path / "out"), start_weights(cfg, tiny_model_dir), steps=30)


def test_oreo_resumes_exactly_after_a_crash(tiny_model_dir, tmp_path):
    from swirl.training.loop import train

    *_, data = _toy_data(tiny_model_dir, copies=4)
    cfg = _oreo_cfg(max_steps=6, checkpoint_every=2, lora=LoraSection(rank=4, alpha=8, dropout=0.1))
    straight = train(cfg, tiny_model_dir, data, str(tmp_path / "straight"))

    def crash(m):
        if m["step"] == 5:  # after the step-4 checkpoint, mid-way to the next one
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_model_dir, data, str(tmp_path / "resumed"), on_step=crash)
    resumed = train(cfg, tiny_model_dir, data, str(tmp_path / "resumed"))
    assert [m["value_loss"] for m in straight.log] == [m["value_loss"] for m in resumed.log]
    for rel in (
        "adapter/adapter_model.safetensors",
        "value/adapter_model.safetensors",
        "value/value_head.safetensors",
    ):
        a, b = load_file(str(tmp_path / "straight" / rel)), load_file(str(tmp_path / "resumed" / rel))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), rel
    assert_trained(str(tmp_path / "straight"), start_weights(cfg, tiny_model_dir), steps=6)


def test_train_stage_commits_the_value_model_and_keeps_other_versions(tiny_model_dir, tmp_path):
    from swirl.engines.config import EngineConfig
    from swirl.stages.base import run_stage
    from swirl.stages.train import Train, adapter_path, read_train_log, value_path
    from tests.support.training import build_train_store

    store, inp = build_train_store(str(tmp_path), tiny_model_dir, n_questions=6, wrong_every=3)
    policy = EngineConfig(kind="hf", model=tiny_model_dir)
    ref = run_stage(store, Train(_oreo_cfg(max_steps=2), policy, (inp,))).ref
    assert ref.summary["objective"] == "oreo" and 0 < ref.summary["reward_mean"] < 1
    assert_trained(os.path.dirname(adapter_path(ref)), start_weights(_oreo_cfg(), tiny_model_dir), steps=2)
    log = read_train_log(store, ref)  # oreo's own metrics reach the table, and its headline the summary
    assert [r["step"] for r in log] == [1, 2] and all(r["value_loss"] > 0 for r in log)
    assert ref.summary["final_value_loss"] == log[-1]["value_loss"]
    assert os.path.exists(os.path.join(value_path(ref), "value_head.safetensors"))
    assert os.path.exists(os.path.join(adapter_path(ref), "adapter_config.json"))
    assert not os.path.exists(os.path.join(adapter_path(ref), "value"))
    # the other objectives' versions do not see the oreo section
    assert "oreo" not in TrainConfig(objective="sft").version_config()
    assert "oreo" in TrainConfig(objective="oreo").version_config()
    # all trajectories correct: the value model cannot rank states; trained anyway, with a warning
    store2, inp2 = build_train_store(str(tmp_path / "all-correct"), tiny_model_dir, n_questions=4)
    ref2 = run_stage(store2, Train(_oreo_cfg(max_steps=1), policy, (inp2,))).ref
    assert "all 6 trajectories have outcome 1" in ref2.summary["warning"]


# -------------------------------------------------------------------------------------------- config
def test_bad_combinations_are_refused_with_the_field_and_the_fix(tmp_path):
    from swirl.config import ConfigError, load_config

    with pytest.raises(ValueError, match="train.kl_beta: oreo has its own KL term"):
        TrainConfig(objective="oreo", kl_beta=0.1)
    assert OreoSection().kl_alpha == 0.01 and OreoSection(level="step").kl_alpha == 0.1
    p = tmp_path / "run.yaml"
    p.write_text("train: {objective: oreo}\nfilter: {strategy: outcome}\n")
    with pytest.raises(ConfigError, match="filter.strategy outcome with train.objective oreo") as e:
        load_config(str(p))
    assert "filter.strategy none" in str(e.value)


def test_training_from_an_adapter_takes_the_kl_against_that_adapter(
    tiny_model_dir, tiny_adapter_dir, tmp_path
):
    """Started from an adapter (a warm-up's, a previous round's), the reference policy is that adapter, frozen
    (the paper's reference is the SFT model it starts from), not the raw base: before the first update the
    policy equals the reference, so the first step's KL is 0; the reference is never trained or saved."""
    from swirl.engines.config import EngineConfig
    from swirl.stages.base import run_stage
    from swirl.stages.train import Train, adapter_path, read_train_log
    from tests.support.training import build_train_store

    store, inp = build_train_store(str(tmp_path), tiny_model_dir, n_questions=6, wrong_every=3)
    policy = EngineConfig(kind="hf", model=tiny_model_dir, adapter=tiny_adapter_dir)
    ref = run_stage(store, Train(_oreo_cfg(max_steps=2), policy, (inp,))).ref
    log = read_train_log(store, ref)
    assert abs(log[0]["kl"]) < 1e-6  # against the base, this random adapter's KL is far from 0
    assert log[1]["kl"] > 1e-6  # the policy moved away from its frozen reference
    assert not any(
        "reference" in f or os.path.isdir(os.path.join(adapter_path(ref), f))
        for f in os.listdir(adapter_path(ref))
    )
