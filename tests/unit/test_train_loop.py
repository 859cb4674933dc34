"""The trainer: learning (sft lowers held-out loss), exact resume after SIGKILL, the schedule, the data order,
the train stage's output, and swirl's sampling path (scripted engine; vLLM in test_train_vllm.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from swirl.engines.base import Completion, Result
from swirl.stages.base import Context, run_stage
from swirl.stages.train import Train, adapter_path, read_train_log, work_dir
from swirl.training.config import LoraSection, SwirlSection, TrainConfig
from swirl.training.loop import lr_factor, shown_metrics, step_items, train
from swirl.training.objectives import load_train_data, objective_for
from swirl.training.rewards import RuleReward
from swirl.training.run import TrainSpec, launch
from tests.support.training import assert_trained, build_train_store, start_weights


def heldout_nll(model_dir: str, adapter: str | None, examples) -> float:
    """Mean negative log-likelihood of the kept action tokens of `examples` under the model (+ adapter)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from swirl.training.batches import assign_coefficients, micro_batches, prefix_shared
    from swirl.training.losses import token_logprobs

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    seqs = prefix_shared(examples)
    assign_coefficients(seqs, "token")
    total = n = 0.0
    with torch.no_grad():
        for mb in micro_batches(seqs, 4096, 0):
            lp = token_logprobs(model, mb)
            total += float(-lp.sum())
            n += lp.numel()
    return total / n


@pytest.fixture(scope="module")
def stores(tmp_path_factory, tiny_model_dir):
    train_store = build_train_store(
        str(tmp_path_factory.mktemp("train-store")), tiny_model_dir, n_questions=24, seed=0
    )
    held_store = build_train_store(
        str(tmp_path_factory.mktemp("held-store")), tiny_model_dir, n_questions=8, seed=1
    )
    return train_store, held_store


def test_load_train_data_keeps_only_filtered_actions(stores):
    (store, inp), _ = stores
    data = load_train_data(store, [inp], TrainConfig(objective="sft"))
    # 24 questions x 2 samples; the process filter drops the one in four trajectories with a BAD step
    assert len(data.examples) == 36 and all(e.kept == [0, 1] for e in data.examples)
    assert not any(
        e.key in {f"gsm8k-{q}#{k}" for q in range(24) for k in range(2) if (q * 2 + k) % 4 == 3}
        for e in data.examples
    )
    swirl = load_train_data(store, [inp], TrainConfig(objective="swirl"))
    assert len(swirl.states) == 72
    first, second = swirl.states[0], swirl.states[1]
    assert first.key.endswith("/0") and [m["role"] for m in first.messages] == ["user"]
    assert second.key.endswith("/1") and [m["role"] for m in second.messages] == ["user", "assistant", "user"]
    ex = next(e for e in data.examples if e.key == first.key.split("/")[0])
    assert first.ids.tolist() == ex.token_ids[: ex.spans[0][0]].tolist()  # the state is the stored prefix
    assert second.ids.tolist() == ex.token_ids[: ex.spans[1][0]].tolist()


def test_offline_weights_reward_minus_mean(stores):
    from swirl.stages.filter import Filter
    from swirl.subtrajectories import FilterConfig
    from swirl.training.data import TrainInput

    (store, inp), _ = stores
    cfg = TrainConfig(objective="swirl_offline", offline={"baseline": "mean"}, kl_beta=0.0)
    # every step the process filter keeps is GOOD: rewards 1, mean baseline 1, every advantage 0 -> refused
    with pytest.raises(ValueError, match="advantage 0"):
        load_train_data(store, [inp], cfg)
    kept_all = run_stage(store, Filter(inp.steps, FilterConfig(strategy="none"))).ref
    everything = TrainInput(inp.trajectories, kept_all, inp.questions)
    w = np.concatenate([e.weights for e in load_train_data(store, [everything], cfg).examples])
    # 96 steps, 12 of them BAD (reward 0): mean 0.875
    assert len(w) == 96 and abs(w.mean()) < 1e-12 and set(np.round(w, 12)) == {0.125, -0.875}
    process_none = TrainConfig(objective="swirl_offline", offline={"baseline": "none"})
    assert set(np.concatenate([e.weights for e in load_train_data(store, [inp], process_none).examples])) == {
        1.0
    }


def test_sft_lowers_heldout_loss(stores, tiny_model_dir, tmp_path):
    (store, inp), (hstore, hinp) = stores
    cfg = TrainConfig(
        objective="sft",
        batch_size=8,
        max_steps=24,
        learning_rate=3e-3,
        warmup_steps=2,
        lora=LoraSection(rank=8, alpha=16),
        checkpoint_every=100,
    )
    held = load_train_data(hstore, [hinp], cfg).examples
    before = heldout_nll(tiny_model_dir, None, held)
    res = train(cfg, tiny_model_dir, load_train_data(store, [inp], cfg), str(tmp_path / "out"))
    after = heldout_nll(tiny_model_dir, res.adapter_dir, held)
    print(f"held-out NLL per kept action token: before {before:.3f}, after {after:.3f}")
    assert [m["step"] for m in res.log] == list(range(1, 25))
    assert_trained(str(tmp_path / "out"), start_weights(cfg, tiny_model_dir), steps=24)
    assert after < before - 1.0, (before, after)  # nats per action token
    assert res.log[-1]["loss"] < res.log[0]["loss"]


def k2_reference(model_dir: str, adapter: str, examples) -> float:
    """The mean over the kept action tokens of k2 = (log pi - log pi_base)^2 / 2, from a plain forward of each
    whole trajectory through the base model and through the base + adapter (no micro-batches, no padding,
    logits of every position)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    def logps(model, e):
        ids = torch.tensor(np.asarray(e.token_ids, dtype=np.int64))[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)  # [T, V]
        return [float(logp[p - 1, ids[0, p]]) for k in e.kept for p in range(*e.spans[k])]

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ref = [x for e in examples for x in logps(base, e)]
    policy = PeftModel.from_pretrained(base, adapter).eval()
    pol = [x for e in examples for x in logps(policy, e)]
    return sum((a - b) ** 2 / 2 for a, b in zip(pol, ref, strict=True)) / len(ref)


def test_logged_kl_is_the_mean_k2_estimate_against_the_base(stores, tiny_model_dir, tmp_path):
    (store, inp), _ = stores
    cfg = TrainConfig(
        objective="swirl_offline",
        offline={"baseline": "none"},
        batch_size=4,
        max_steps=2,
        learning_rate=1e-2,
        kl_beta=0.1,
        lora=LoraSection(rank=4, alpha=8),
        checkpoint_every=1,
        keep_checkpoints=2,
    )
    data = load_train_data(store, [inp], cfg)
    res = train(cfg, tiny_model_dir, data, str(tmp_path / "out"))
    assert res.log[0]["kl"] == 0.0  # the first step's policy is the base model (LoRA B = 0)
    # the second step's KL: the policy after step 1 (its checkpoint) against the base, on step 2's actions
    after_one = str(tmp_path / "out" / "checkpoints" / "step-0000001" / "adapter")
    examples = [data.examples[i] for i in step_items(len(data.examples), 4, 1, cfg.seed)]
    want = k2_reference(tiny_model_dir, after_one, examples)
    assert want > 1e-6 and abs(res.log[1]["kl"] - want) < 1e-4 * want, (res.log[1]["kl"], want)


def test_lr_schedule_hand_computed():
    cfg = TrainConfig(warmup_steps=3, schedule="cosine", min_lr_ratio=0.1)
    got = [round(lr_factor(cfg, s, 7), 6) for s in range(8)]
    # warm-up (s+1)/(w+1); then 0.1 + 0.9 * 0.5 * (1 + cos(pi * (s - 3) / 4))
    assert got == [0.25, 0.5, 0.75, 1.0, 0.868198, 0.55, 0.231802, 0.1]
    lin = TrainConfig(schedule="linear")
    assert [lr_factor(lin, s, 4) for s in range(4)] == [1.0, 0.75, 0.5, 0.25]


def test_step_items_cover_each_epoch_once():
    epoch0 = [i for s in range(4) for i in step_items(10, 3, s, seed=5)]
    assert sorted(epoch0) == list(range(10))  # 3 + 3 + 3 + 1
    epoch1 = [i for s in range(4, 8) for i in step_items(10, 3, s, seed=5)]
    assert sorted(epoch1) == list(range(10)) and epoch1 != epoch0
    assert step_items(10, 3, 2, seed=5) == step_items(10, 3, 2, seed=5)


def _launch_and_kill(monkeypatch, spec: TrainSpec, checkpoint: str) -> None:
    """Run `launch(spec)` in a thread, SIGKILL its trainer process once `checkpoint` is written, and check
    that the launcher reports the killed process."""
    procs, failures = [], []
    real_popen = subprocess.Popen

    def popen(*a, **k):
        procs.append(real_popen(*a, **k))
        return procs[-1]

    def run_launcher():
        try:
            launch(spec)
        except RuntimeError as e:
            failures.append(e)

    monkeypatch.setattr(subprocess, "Popen", popen)
    launcher = threading.Thread(target=run_launcher)
    launcher.start()
    deadline = time.time() + 240
    while time.time() < deadline and not procs and launcher.is_alive():
        time.sleep(0.05)
    monkeypatch.setattr(subprocess, "Popen", real_popen)
    assert len(procs) == 1, f"the launcher did not start its trainer ({failures})"
    proc, ckpts = procs[0], os.path.join(spec.out_dir, "checkpoints")
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(ckpts) and any(d.startswith(checkpoint) for d in os.listdir(ckpts)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the trainer finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    launcher.join(60)
    assert not launcher.is_alive()
    assert len(failures) == 1 and "exit code -9" in str(failures[0])  # the launcher reports the kill


@pytest.mark.slow  # ~16 s on 2 cores: trains twice, once killed and resumed in a subprocess
def test_sigkill_mid_training_then_resume_gives_identical_adapter(tmp_path, tiny_model_dir, monkeypatch):
    from swirl.engines.config import EngineConfig

    policy = EngineConfig(kind="hf", model=tiny_model_dir)
    cfg = TrainConfig(
        objective="swirl_offline",
        offline={"baseline": "none"},
        kl_beta=0.05,
        batch_size=6,
        max_steps=10,
        learning_rate=2e-3,
        checkpoint_every=2,
        launcher="subprocess",
        lora=LoraSection(rank=4, alpha=8, dropout=0.1),
    )
    runs = {}
    for name in ("straight", "killed"):
        store, inp = build_train_store(str(tmp_path / name), tiny_model_dir, n_questions=10, seed=0)
        if name == "killed":
            work = work_dir(store, Train(cfg, policy, (inp,)).plan().version)
            os.makedirs(work)
            # the stage's own launcher, started by hand; its trainer process is killed after step 4
            spec = TrainSpec.of(store, cfg, policy, (inp,), None, work)
            _launch_and_kill(monkeypatch, spec, "step-0000004")
            assert not os.path.exists(os.path.join(work, "result.json"))
        # the uninterrupted run trains in-process, the killed one resumes in a subprocess: same numbers either
        # way
        run_cfg = cfg if name == "killed" else cfg.model_copy(update={"launcher": "inprocess"})
        ref = run_stage(store, Train(run_cfg, policy, (inp,))).ref
        runs[name] = (
            load_file(os.path.join(adapter_path(ref), "adapter_model.safetensors")),
            read_train_log(store, ref),
            ref,
        )
    (a, log_a, _ref_a), (b, log_b, ref_b) = runs["straight"], runs["killed"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b] and len(log_a) == 10
    assert ref_b.summary["steps"] == 10 and not os.path.exists(ref_b.path + ".work")
    assert os.path.exists(os.path.join(ref_b.path, "files", "train_curves.png"))
    assert_trained(os.path.join(ref_b.path, "files"), start_weights(cfg, tiny_model_dir), steps=10)


def test_train_stage_reuses_its_output(stores, tiny_model_dir):
    from swirl.engines.config import EngineConfig

    (store, inp), _ = stores
    policy = EngineConfig(kind="hf", model=tiny_model_dir)
    cfg = TrainConfig(objective="sft", batch_size=16, max_steps=2, lora=LoraSection(rank=4))
    ref = run_stage(store, Train(cfg, policy, (inp,))).ref
    assert ref.table == "train_log" and [r["step"] for r in read_train_log(store, ref)] == [1, 2]
    again = run_stage(
        store, Train(cfg, policy, (inp,)), Context(progress=lambda m: pytest.fail("trained again"))
    )
    assert again.ref.version == ref.version and not again.computed
    other = run_stage(store, Train(cfg.model_copy(update={"learning_rate": 1e-3}), policy, (inp,))).ref
    assert other.version != ref.version
    with pytest.raises(ValueError, match="reward model"):
        run_stage(store, Train(cfg.model_copy(update={"objective": "swirl"}), policy, (inp,)))


class EchoEngine:
    """A scripted sampler: answers every state with one of two fixed actions (tokenized by the tiny
    tokenizer), with seeded choice, and reports no log-probs."""

    name, model = "echo", "echo"

    def __init__(self, tokenizer, max_context=None):
        self.tokenizer = tokenizer
        self.adapters = []
        self.texts = []  # per call, every completion's text
        self.max_context = max_context
        self.longest = 0

    def generate(self, prompts, sampling, adapter=None, seeds=None):
        self.adapters.append(adapter)
        self.longest = max([self.longest, *map(len, prompts)])
        if self.max_context is not None and self.longest >= self.max_context:
            raise ValueError(
                f"prompt of {self.longest} tokens: over the maximum model length {self.max_context}"
            )
        out = []
        for p, s in zip(prompts, seeds, strict=False):
            rng = np.random.default_rng(s)
            comps = []
            for _ in range(sampling.n):
                text = "<answer>7</answer>" if rng.random() < 0.5 else "<answer>wrong</answer>"
                comps.append(Completion(self.tokenizer.encode(text, add_special_tokens=False), text, "stop"))
            out.append(Result(list(p), comps))
        self.texts.append([c.text for r in out for c in r.completions])
        return out

    def close(self):
        pass


def test_swirl_step_samples_with_the_current_adapter(stores, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    (store, inp), _ = stores
    cfg = TrainConfig(
        objective="swirl",
        swirl=SwirlSection(samples_per_state=4, states_per_step=4, max_tokens=16),
        max_steps=3,
        learning_rate=1e-3,
        lora=LoraSection(rank=4),
        kl_beta=0.01,
    )
    eng = EchoEngine(AutoTokenizer.from_pretrained(tiny_model_dir))
    reward = RuleReward(lambda state, action: 1.0 if "7" in action.text else 0.0)
    res = train(cfg, tiny_model_dir, load_train_data(store, [inp], cfg), str(tmp_path / "sw"), eng, reward)
    assert len(eng.adapters) == 3 and len(set(eng.adapters)) == 3  # a fresh adapter folder every step
    # each step's reward is the share of the engine's 16 answers (4 states x 4 samples) that say 7
    said_7 = [sum("7" in t for t in texts) / len(texts) for texts in eng.texts]
    assert [len(t) for t in eng.texts] == [16] * 3 and len(set(said_7)) > 1
    assert [m["reward_mean"] for m in res.log] == said_7 == [m["reward_positive"] for m in res.log]
    # before the first update the policy is its reference (LoRA B = 0): the KL is exactly 0, then it moves
    assert res.log[0]["kl"] == 0.0 and res.log[-1]["kl"] > 0
    assert "logprob_drift" not in res.log[0]  # the echo engine reports no log-probs
    assert set(res.log[0]) - {"step"} <= set(shown_metrics(objective_for(cfg)).names)  # all declared
    assert_trained(str(tmp_path / "sw"), start_weights(cfg, tiny_model_dir), steps=3)


def test_swirl_skips_states_with_no_room_in_the_sampler_context(stores, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    (store, inp), _ = stores
    cfg = TrainConfig(
        objective="swirl",
        swirl=SwirlSection(samples_per_state=2, states_per_step=8, max_tokens=16),
        max_steps=2,
        learning_rate=1e-3,
        lora=LoraSection(rank=4),
    )
    data = load_train_data(store, [inp], cfg)
    lengths = sorted(len(st.ids) for st in data.states)
    limit = lengths[len(lengths) // 2]  # about half the states do not fit
    eng = EchoEngine(AutoTokenizer.from_pretrained(tiny_model_dir), max_context=limit)
    reward = RuleReward(lambda state, action: 1.0 if "7" in action.text else 0.0)
    res = train(cfg, tiny_model_dir, data, str(tmp_path / "sw"), eng, reward)
    assert len(res.log) == 2 and 0 < eng.longest < limit
    assert sum(m["states_too_long"] for m in res.log) > 0


@pytest.mark.slow  # ~10 s on 2 cores: trains twice, once under torchrun with 2 ranks
def test_torchrun_two_ranks_match_one_process(tmp_path, tiny_model_dir):
    """The same code under torchrun (2 CPU ranks, gloo): micro-batches split over ranks, gradients summed, the
    same adapter as one process (up to float summation order)."""
    import sys

    from swirl.engines.config import EngineConfig

    policy = EngineConfig(kind="hf", model=tiny_model_dir)
    cfg = TrainConfig(
        objective="sft",
        batch_size=8,
        max_steps=4,
        learning_rate=2e-3,
        micro_batch_tokens=600,
        lora=LoraSection(rank=4, alpha=8),
        launcher="subprocess",
        launch_prefix=(
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
        ),
    )
    weights = {}
    for name in ("one", "two"):
        store, inp = build_train_store(str(tmp_path / name), tiny_model_dir, n_questions=8, seed=0)
        run_cfg = cfg if name == "two" else cfg.model_copy(update={"launcher": "inprocess"})
        ref = run_stage(store, Train(run_cfg, policy, (inp,))).ref
        weights[name] = load_file(os.path.join(adapter_path(ref), "adapter_model.safetensors"))
        assert ref.summary["steps"] == 4 and ref.summary.get("world_size", 1) == (2 if name == "two" else 1)
    one, two = weights["one"], weights["two"]
    assert one.keys() == two.keys()
    for k in one:
        assert torch.allclose(one[k], two[k], rtol=1e-4, atol=1e-6), k
    assert any(one[k].abs().sum() > 0 for k in one if "lora_B" in k)
