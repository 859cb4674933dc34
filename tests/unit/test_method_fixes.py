"""Method fixes: the KL penalty's expected gradient, and swirl_offline configurations that cannot learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swirl.config import RunConfig
from swirl.stages.base import run_stage
from swirl.stages.filter import Filter
from swirl.subtrajectories import FilterConfig
from swirl.training.config import TrainConfig
from swirl.training.data import TrainInput
from swirl.training.loop import train
from swirl.training.losses import kl_estimate
from swirl.training.objectives import load_train_data
from tests.support.training import assert_trained, build_train_store, start_weights

# ------------------------------------------------------------------------------------------ KL penalty


def _expected_grad(kind: str, logits: torch.nn.Parameter, base_logp: torch.Tensor) -> torch.Tensor:
    """Expected gradient of the estimator used as a loss on samples from pi: sum_x pi(x) * grad est(x), with
    pi(x) detached (the sampling distribution is fixed; only the per-sample loss is differentiated)."""
    logp = torch.log_softmax(logits, -1)
    est = kl_estimate(logp, base_logp, kind)
    (g,) = torch.autograd.grad((logp.exp().detach() * est).sum(), logits)
    return g


def _exact_grad(fn, logits: torch.nn.Parameter) -> torch.Tensor:
    (g,) = torch.autograd.grad(fn(torch.log_softmax(logits, -1)), logits)
    return g


@pytest.fixture
def categorical():
    gen = torch.Generator().manual_seed(0)
    logits = torch.nn.Parameter(torch.randn(5, generator=gen, dtype=torch.float64))
    base_logp = torch.log_softmax(torch.randn(5, generator=gen, dtype=torch.float64), -1)  # pi_base, fixed
    return logits, base_logp


def test_k2_expected_gradient_is_grad_of_kl_pi_to_base(categorical):
    logits, base = categorical
    forward = _exact_grad(lambda lp: (lp.exp() * (lp - base)).sum(), logits)  # KL(pi || pi_base)
    got = _expected_grad("k2", logits, base)
    assert forward.abs().max() > 1e-2  # a real gradient to match
    assert torch.allclose(got, forward, atol=1e-6, rtol=0), (got, forward)


def test_k3_expected_gradient_is_grad_of_reverse_kl(categorical):
    logits, base = categorical
    reverse = _exact_grad(lambda lp: (base.exp() * (base - lp)).sum(), logits)  # KL(pi_base || pi)
    forward = _exact_grad(lambda lp: (lp.exp() * (lp - base)).sum(), logits)
    got = _expected_grad("k3", logits, base)
    assert torch.allclose(got, reverse, atol=1e-6, rtol=0), (got, reverse)
    # so k3 is not the documented KL(pi || pi_base)'s gradient
    assert not torch.allclose(got, forward, atol=1e-3)


def test_k1_expected_gradient_is_zero(categorical):
    logits, base = categorical
    assert torch.allclose(_expected_grad("k1", logits, base), torch.zeros(5, dtype=torch.float64), atol=1e-12)


def test_default_kl_estimator_is_k2():
    assert TrainConfig().kl_estimator == "k2"
    assert {TrainConfig(kl_estimator=k).kl_estimator for k in ("k1", "k2", "k3")} == {"k1", "k2", "k3"}


# --------------------------------------------------------------------- swirl_offline that learns nothing


@pytest.fixture(scope="module")
def offline_stores(tmp_path_factory, tiny_model_dir):
    """The train fixture (process filter: every kept step GOOD) and the same steps re-filtered with `none`
    (the BAD first steps of one trajectory in four kept too)."""
    store, inp = build_train_store(
        str(tmp_path_factory.mktemp("offline")), tiny_model_dir, n_questions=8, seed=0
    )
    kept_all = run_stage(store, Filter(inp.steps, FilterConfig(strategy="none"))).ref
    return store, {"process": inp, "none": TrainInput(inp.trajectories, kept_all, inp.questions)}


def _offline(baseline: str, reward: str = "process") -> dict:
    return {
        "objective": "swirl_offline",
        "offline": {"baseline": baseline, "reward": reward},
        "batch_size": 16,
        "max_steps": 1,
        "learning_rate": 1e-2,
        "lora": {"rank": 4, "alpha": 8},
    }


@pytest.mark.parametrize("strategy", ["none", "process"])
@pytest.mark.parametrize("baseline", ["none", "mean", "question_mean"])
def test_offline_config_that_validates_trains(offline_stores, tiny_model_dir, tmp_path, strategy, baseline):
    """Every swirl_offline configuration RunConfig accepts moves the LoRA weights in one step; the ones that
    cannot learn (process filter + process reward + a mean baseline) are refused, naming the fields."""
    store, inputs = offline_stores
    train_cfg = _offline(baseline)
    if strategy == "process" and baseline != "none":
        with pytest.raises(ValueError) as e:
            RunConfig(filter={"strategy": strategy}, train=train_cfg)
        msg = str(e.value)
        assert "train.offline.baseline" in msg and "filter.strategy" in msg and "nothing is learned" in msg
        return
    cfg = RunConfig(filter={"strategy": strategy}, train=train_cfg).train
    train(cfg, tiny_model_dir, load_train_data(store, [inputs[strategy]], cfg), str(tmp_path / "out"))
    assert_trained(str(tmp_path / "out"), start_weights(cfg, tiny_model_dir), steps=1)


def test_all_zero_advantages_fail_at_load_time(offline_stores):
    """A configuration can validate and still give every action advantage 0 on some data (here every
    trajectory's outcome is correct, so outcome rewards are all 1): the run fails instead of training
    nothing."""
    store, inputs = offline_stores
    cfg = RunConfig(filter={"strategy": "none"}, train=_offline("mean", reward="outcome")).train
    with pytest.raises(ValueError, match=r"advantage 0.*train\.offline\.baseline"):
        load_train_data(store, [inputs["none"]], cfg)
    ok = load_train_data(
        store,
        [inputs["none"]],
        cfg.model_copy(update={"offline": cfg.offline.model_copy(update={"reward": "process"})}),
    )
    assert np.abs(np.concatenate([e.weights for e in ok.examples])).max() > 0


@pytest.mark.parametrize(
    "strategy, reward",
    [("outcome", "outcome"), ("process_outcome", "process"), ("process_outcome", "process_outcome")],
)
def test_other_constant_reward_combinations_are_refused(strategy, reward):
    with pytest.raises(ValueError, match="filter.strategy"):
        RunConfig(filter={"strategy": strategy}, train=_offline("mean", reward=reward))
    RunConfig(filter={"strategy": strategy}, train=_offline("none", reward=reward))  # no baseline: fine
    RunConfig(filter={"strategy": "process"}, train=_offline("mean", reward="outcome"))  # outcomes still vary


# ------------------------------------------------------------- swirl_offline: bounded negative weights


def test_default_offline_weights_are_never_negative(offline_stores):
    """The default swirl_offline (no baseline) weighs every logged action by its reward >= 0: the BAD steps
    that the `none` filter keeps get weight 0, not a negative one, and a process filter is accepted."""
    store, inputs = offline_stores
    cfg = TrainConfig(objective="swirl_offline")
    w = np.concatenate([e.weights for e in load_train_data(store, [inputs["none"]], cfg).examples])
    assert w.min() >= 0, f"default swirl_offline gives logged actions negative weights: {sorted(set(w))}"
    assert set(w) == {0.0, 1.0}
    RunConfig(filter={"strategy": "process"}, train={"objective": "swirl_offline"})


def _good_and_bad(model_dir: str, off: TrainConfig):
    """Two logged actions of different questions, one judged GOOD and one BAD, weighted as `off` weighs
    them (`offline_weights`); the tokens are the tiny tokenizer's."""
    from transformers import AutoTokenizer

    from swirl.training.batches import Example
    from swirl.training.data import TrainData
    from swirl.training.objectives.swirl_offline import offline_weights

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [
        {"process_label": "GOOD", "outcome_correct": True, "question_id": "q0"},
        {"process_label": "BAD", "outcome_correct": False, "question_id": "q1"},
    ]
    w = offline_weights(rows, off, {})
    texts = [
        ("Tom has 6 apples and buys 7 more. ", "So the total is <answer>13</answer>"),
        ("Ann has 9 pears and eats 4. ", "I give up, ask someone else"),
    ]
    examples = []
    for g, ((state, action), wk) in enumerate(zip(texts, w, strict=True)):
        s = tok.encode(state, add_special_tokens=False)
        ids = np.array(s + tok.encode(action, add_special_tokens=False), dtype=np.int32)
        examples.append(Example(f"t{g}", ids, [(len(s), len(ids))], [0], [float(wk)], group=g))
    return TrainData(examples=examples), w


def _action_logprobs(model_dir: str, adapter: str | None, example) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from swirl.training.batches import assign_coefficients, micro_batches, prefix_shared
    from swirl.training.losses import token_logprobs

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    seqs = prefix_shared([example])
    assign_coefficients(seqs, "token")
    with torch.no_grad():
        return torch.cat([token_logprobs(model, mb) for mb in micro_batches(seqs, 1 << 20, 0)])


def _train_offline(model_dir: str, out: str, offline: dict, steps: int = 30):
    """`steps` steps of swirl_offline on the GOOD and the BAD action; the BAD action's token log-probs before
    and after, and its weight."""
    cfg = TrainConfig(
        objective="swirl_offline",
        offline=offline,
        batch_size=2,
        max_steps=steps,
        learning_rate=1e-2,
        schedule="constant",
        lora={"rank": 4, "alpha": 8},
        checkpoint_every=1000,
    )
    data, w = _good_and_bad(model_dir, cfg)
    train(cfg, model_dir, data, out)
    bad = data.examples[1]
    return _action_logprobs(model_dir, None, bad), _action_logprobs(model_dir, f"{out}/adapter", bad), w[1]


def test_default_offline_does_not_push_a_bad_action_down(tiny_model_dir, tmp_path):
    """The old default (baseline mean) gave the BAD action weight -0.5 and, with nothing to bound it, pushed
    its tokens' log-probs down (-7.5 -> -13 in 30 steps here, still falling); the default gives it weight 0:
    its log-prob stays where it was (only what it shares with the GOOD action moves it)."""
    start, end, w_bad = _train_offline(tiny_model_dir, str(tmp_path / "out"), {})
    drop = float(start.mean() - end.mean())
    assert drop < 1.0, f"the BAD action's mean token log-prob fell {drop:.2f} nats (weight {w_bad})"
    assert w_bad == 0


@pytest.mark.parametrize("floor", [None, -9.0])
def test_a_chosen_baseline_pushes_bad_tokens_down_only_to_the_floor(tiny_model_dir, tmp_path, floor):
    """With baseline mean the BAD action weighs -0.5. Without a floor its tokens fall well past where they
    started; with `negative_floor` they stop there (up to AdamW's momentum: about a nat)."""
    start, end, w_bad = _train_offline(
        tiny_model_dir, str(tmp_path / "out"), {"baseline": "mean", "negative_floor": floor}
    )
    assert w_bad == -0.5 and start.mean() > -8  # the random tiny model: every token near log(1/vocab)
    if floor is None:
        assert end.mean() < -11.5, float(end.mean())  # unbounded: -13 after 30 steps
    else:
        assert end.mean() > floor - 1.0 and end.min() > floor - 2.0, (float(end.mean()), float(end.min()))
        assert end.mean() < floor + 0.5  # it did go down to the floor


def test_negative_floor_is_in_the_train_version_only_where_it_can_act():
    def offline_version(objective: str = "swirl_offline", **offline) -> dict:
        return TrainConfig(objective=objective, offline=offline).version_config()["offline"]

    assert "negative_floor" not in offline_version()  # no baseline: no negative weight
    assert "negative_floor" not in offline_version("sft", baseline="mean")
    assert offline_version(baseline="mean")["negative_floor"] == -3.0
    assert "negative_floor" in offline_version(label_rewards={"GOOD": 1.0, "BAD": -1.0, "UNKNOWN": 0.0})
