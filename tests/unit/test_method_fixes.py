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
