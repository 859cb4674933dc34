"""The training objectives behind one small interface, chosen once per run (`objective_for`).

An objective decides two things: what one training item is (`load`: the kept steps become weighted logged
actions, or states to sample from) and how an optimizer step's sequences are made from its items
(`sequences`). Everything else (coefficients, micro-batches, the loss formula, checkpoints, resume) is shared
by the loop in loop.py. A new objective is one subclass here and its name in `TrainConfig.objective`.

- `sft`: the kept actions, weight 1.
- `swirl_offline`: the kept actions, weighted by reward minus baseline (`train.offline`).
- `swirl`: actions sampled from the current policy at the kept states, scored by the reward model, weighted
  by reward minus the state's mean (`samples = True`: it needs a sampler engine and a reward model).
- `oreo`: whole trajectories with their 0/1 outcomes; a value model (its own adapter and head on the same
  base) and the policy trained together through the soft Bellman equation (swirl/training/oreo.py).

The training step's own parts are hooks with the shared behaviour as default: `build` (extra trainable
modules and the optimiser's parameter groups), `coefficients`, `loss` (one micro-batch), `loss_metrics` and
`save` (what is written beside the final adapter).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from swirl.store import Store
from swirl.training.batches import Seq, assign_coefficients, prefix_shared
from swirl.training.config import Objective as ObjectiveName
from swirl.training.config import OfflineSection, TrainConfig
from swirl.training.data import (
    TrainData,
    TrainInput,
    examples_of,
    read_kept_steps,
    states_of,
    trajectory_examples,
)


@dataclass
class Step:
    """What an objective may use to make one optimizer step's sequences."""

    cfg: TrainConfig
    data: TrainData
    items: list[int]  # indices of this step's training items
    step: int
    model: Any
    out_dir: str
    sampler: Any  # the policy's engine (objectives that sample)
    reward: Any  # the reward model (objectives that sample)
    dist: Any  # swirl.training.loop.Dist
    save_adapter: Callable[[Any, str], None]


class Objective:
    name: ClassVar[str]
    samples: ClassVar[bool] = False  # samples from the current policy: needs a sampler and a reward model
    # the per-micro-batch numbers `loss` returns that are summed over the step (and over ranks)
    sums: ClassVar[tuple[str, ...]] = ("policy", "kl", "logp_sum", "drift_sum", "tokens")

    def load(self, store: Store, inputs: Sequence[TrainInput], cfg: TrainConfig) -> TrainData:
        """The training items of this objective, from the filter stage's kept steps."""
        kept = read_kept_steps(store, inputs)
        summary = kept.summary()
        examples, too_long = examples_of(kept, self.weights(kept.rows, cfg, summary), cfg)
        summary.update(examples=len(examples), dropped_too_long=too_long)
        return TrainData(examples=examples, summary=summary)

    def weights(self, rows: list[dict[str, Any]], cfg: TrainConfig, summary: dict[str, Any]) -> np.ndarray:
        """The weight of each kept action (aligned with `rows`)."""
        raise NotImplementedError

    def items(self, data: TrainData) -> int:
        return len(data.examples)

    def per_step(self, cfg: TrainConfig) -> int:
        return cfg.batch_size

    def sequences(self, s: Step) -> tuple[list[Seq], dict[str, float]]:
        """The step's sequences (their tokens, actions and weights) and metrics about them."""
        seqs = prefix_shared([s.data.examples[i] for i in s.items])
        w = np.concatenate([q.weight for q in seqs]) if seqs else np.zeros(0)
        return seqs, {"weight_mean": float(w.mean()) if len(w) else 0.0}

    def build(self, model: Any, cfg: TrainConfig) -> list[tuple[str, list[Any], float]]:
        """Add this objective's own trainable modules to the policy model; return the optimiser's parameter
        groups as (name, parameters, peak learning rate), the policy's first. Each group is clipped on its
        own."""
        return [("policy", [p for p in model.parameters() if p.requires_grad], cfg.learning_rate)]

    def coefficients(self, seqs: list[Seq], cfg: TrainConfig) -> list[Seq]:
        """Set the step's loss coefficients (normalised over the whole step); drop what cannot matter."""
        assign_coefficients(seqs, cfg.aggregation)
        if cfg.kl_beta == 0:
            seqs = [s for s in seqs if np.any(s.coef != 0)]  # zero weight: no gradient, skip the compute
        return seqs

    def loss(self, model: Any, mb: Any, cfg: TrainConfig) -> tuple[Any, dict[str, float]]:
        """One micro-batch's share of the step loss (a tensor to backward) and its `sums` (and
        `drift_max`)."""
        from swirl.training.losses import micro_batch_loss

        part = micro_batch_loss(model, mb, cfg.kl_beta, cfg.kl_estimator)
        return part.loss, {
            "policy": part.policy,
            "kl": part.kl,
            "logp_sum": part.logp_sum,
            "drift_sum": part.drift_sum,
            "tokens": part.tokens,
            "drift_max": part.drift_max,
        }

    def loss_metrics(self, sums: dict[str, float], cfg: TrainConfig) -> dict[str, float]:
        """The step's loss metrics from its `sums`."""
        return {
            "loss": sums["policy"] + cfg.kl_beta * sums["kl"],
            "policy_loss": sums["policy"],
            "kl": sums["kl"],
            "logp_mean": sums["logp_sum"],
        }

    def save(self, model: Any, out_dir: str) -> None:
        """Write this objective's own trained modules beside the final adapter (`out_dir/adapter`)."""

    def check(
        self, cfg: TrainConfig, step: int, seqs: list[Seq], metrics: dict[str, Any], sums: dict[str, float]
    ) -> None:
        """After the backward pass (`sums`: see loop.backward): add metrics, or stop a run gone wrong."""


class SFT(Objective):
    name = "sft"

    def weights(self, rows, cfg, summary):
        return np.ones(len(rows))


class SwirlOffline(Objective):
    name = "swirl_offline"

    def weights(self, rows, cfg, summary):
        rew = offline_rewards(
            [r["process_label"] for r in rows], [r["outcome_correct"] for r in rows], cfg.offline
        )
        adv = advantages(rew, [r["question_id"] for r in rows], cfg.offline)
        summary.update(
            reward_mean=float(rew.mean()) if len(rew) else 0.0,
            advantage_std=float(adv.std()) if len(adv) else 0.0,
        )
        if len(adv) and np.abs(adv).max() < 1e-6:  # 0 up to rounding (a mean of equal rewards)
            off = cfg.offline
            raise ValueError(
                f"train (swirl_offline): every one of the {len(adv)} kept actions has advantage 0 "
                f"(reward {off.reward} from {rew.min():g} to {rew.max():g}, baseline {off.baseline}), so "
                "nothing would be learned; with train.offline.baseline mean/question_mean the kept "
                "actions need different rewards (filter.strategy none keeps BAD steps), or use "
                "train.offline.baseline none"
            )
        return adv


class Swirl(Objective):
    name = "swirl"
    samples = True

    def load(self, store, inputs, cfg):
        kept = read_kept_steps(store, inputs)
        states, too_long = states_of(kept, cfg)
        summary = {**kept.summary(), "states": len(states), "dropped_too_long": too_long}
        return TrainData(states=states, summary=summary)

    def items(self, data):
        return len(data.states)

    def per_step(self, cfg):
        return cfg.swirl.states_per_step

    def sequences(self, s: Step) -> tuple[list[Seq], dict[str, float]]:
        """Sample m actions per state from the current policy (the adapter as it is now), score them with the
        reward model, and return one sequence per action weighted by its advantage (reward minus its state's
        mean)."""
        from swirl.engines.base import Sampling, too_long
        from swirl.protocol import STOP_STRINGS
        from swirl.rollout import trajectory_seed

        cfg, data, dist, sampler = s.cfg, s.data, s.dist, s.sampler
        t0 = time.perf_counter()
        adapter = os.path.join(s.out_dir, "sampler", f"step-{s.step:07d}")  # a new folder = a new LoRARequest
        if dist.rank == 0:
            s.save_adapter(s.model, adapter)
            for old in sorted(os.listdir(os.path.dirname(adapter)))[:-2]:
                shutil.rmtree(os.path.join(os.path.dirname(adapter), old), ignore_errors=True)
        dist.barrier()
        sw = cfg.swirl
        assigned = s.items[dist.rank :: dist.world]
        # A state with no room left in the sampler's context is skipped (vLLM would fail the whole batch).
        mine = [i for i in assigned if not too_long(sampler, len(data.states[i].ids))]
        skipped = len(assigned) - len(mine)
        states = [data.states[i] for i in mine]
        sampling = Sampling(
            n=sw.samples_per_state,
            temperature=sw.temperature,
            top_p=sw.top_p,
            max_tokens=sw.max_tokens,
            stop=STOP_STRINGS,
            logprobs=True,
        )
        seeds = [trajectory_seed(cfg.seed, st.key, 0, s.step) for st in states]
        prompts = [st.ids.tolist() for st in states]
        results = sampler.generate(prompts, sampling, adapter=adapter, seeds=seeds) if states else []
        t1 = time.perf_counter()
        pairs = [(st, c) for st, r in zip(states, results, strict=False) for c in r.completions]
        scores = s.reward.score([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else []
        rewards = np.asarray(scores, dtype=np.float64)
        t2 = time.perf_counter()
        seqs: list[Seq] = []
        k = 0
        for i, (st, r) in zip(mine, zip(states, results, strict=False), strict=False):
            r_state = rewards[k : k + len(r.completions)]
            adv = r_state - r_state.mean()
            for j, (c, a) in enumerate(zip(r.completions, adv, strict=False)):
                n = len(c.token_ids)
                if n == 0:
                    continue
                ids = np.concatenate([st.ids.astype(np.int64), np.asarray(c.token_ids, dtype=np.int64)])
                key = (s.step * 1_000_003 + i) * 64 + j  # unique per sampled action within the step
                seqs.append(
                    Seq(
                        ids,
                        np.arange(len(st.ids), len(ids), dtype=np.int64),
                        np.full(n, key, dtype=np.int64),
                        np.full(n, key, dtype=np.int64),
                        np.full(n, float(a)),
                        np.asarray(c.logprobs, dtype=np.float32) if c.logprobs is not None else None,
                    )
                )
            k += len(r.completions)
        seqs, stats = dist.gather_seqs(
            seqs, [float(rewards.sum()), float(len(rewards)), float((rewards > 0).sum()), float(skipped)]
        )
        return seqs, {
            "reward_mean": stats[0] / max(stats[1], 1),
            "reward_positive": stats[2] / max(stats[1], 1),
            "states_too_long": stats[3],
            "sample_seconds": t1 - t0,
            "reward_seconds": t2 - t1,
        }

    def check(self, cfg, step, seqs, metrics, sums):
        """The trainer must score the sampled actions as the sampler did (else the sampler is stale)."""
        tokens, drift_sum, drift_max = sums["tokens"], sums["drift_sum"], sums["drift_max"]
        if not tokens or not any(q.sample_logprobs is not None for q in seqs):
            return
        metrics.update(logprob_drift=drift_sum / tokens, logprob_drift_max=drift_max)
        limit = cfg.swirl.max_logprob_drift
        if limit is not None and drift_sum / tokens > limit:
            raise RuntimeError(
                f"step {step}: the trainer's log-probs of the sampled actions differ from the "
                f"sampler's by {drift_sum / tokens:.2e} on average (> train.swirl.max_logprob_drift "
                f"{limit}): the sampler served a stale adapter, or the sampler and trainer disagree on "
                "the model, dtype or tokens"
            )


class Oreo(Objective):
    """Whole trajectories (every action, observations masked out), each with its outcome R in {0, 1}; a value
    model (adapter `value` + a zero-initialised head on the same base) and the policy trained together
    (docs/method.md §2)."""

    name = "oreo"
    sums = ("value_loss", "policy_loss", "kl", "value_mean", "logratio_mean", "tokens")

    def load(self, store, inputs, cfg):
        kept = read_kept_steps(store, inputs)
        examples, too_long = trajectory_examples(kept, cfg)
        rewards = np.array([e.weights[0] for e in examples])
        summary = {
            **kept.summary(),
            "examples": len(examples),
            "dropped_too_long": too_long,
            "reward_mean": float(rewards.mean()) if len(rewards) else 0.0,
        }
        if len(rewards) and rewards.min() == rewards.max():
            # Not an error: a round whose trajectories all failed (or all succeeded) is a legitimate result
            # of generation, and the KL-regularised losses still train; the value model cannot rank states.
            summary["warning"] = (
                f"all {len(rewards)} trajectories have outcome {rewards[0]:g}: the value model cannot tell "
                "good states from bad ones (train on correct and incorrect trajectories: filter.strategy "
                "none or process)"
            )
            logging.getLogger("swirl.training").warning("train (oreo): %s", summary["warning"])
        return TrainData(examples=examples, summary=summary)

    def build(self, model, cfg):
        from swirl.models.value import add_reference, add_value_model, value_parameters

        policy = [p for p in model.parameters() if p.requires_grad]
        lora = cfg.lora.peft_config()
        add_value_model(model, lora)
        if cfg.lora.init_adapter:  # the reference is the policy training starts from (paper: the SFT model)
            add_reference(model, cfg.lora.init_adapter)
        value = [p for _, p in value_parameters(model)]
        return [
            ("policy", policy, cfg.learning_rate),
            ("value", value, cfg.oreo.value_learning_rate or cfg.learning_rate),
        ]

    def sequences(self, s: Step) -> tuple[list[Seq], dict[str, float]]:
        seqs = prefix_shared([s.data.examples[i] for i in s.items])  # one row per trajectory, weight = R
        rewards = [float(q.weight[0]) for q in seqs]
        return seqs, {"reward_mean": float(np.mean(rewards)) if rewards else 0.0}

    def coefficients(self, seqs, cfg):
        for q in seqs:  # each trajectory weighs 1 / (trajectories in the step); oreo.py averages its states
            q.coef = np.full(len(q.pos), 1.0 / len(seqs))
            q.kl_coef = q.coef
        return seqs  # R = 0 trajectories teach the value model too: none is dropped

    def loss(self, model, mb, cfg):
        from swirl.training.oreo import oreo_micro_batch

        o = cfg.oreo
        part = oreo_micro_batch(model, mb, o.beta, o.kl_alpha, o.level)
        return part.loss, {
            "value_loss": part.value_loss,
            "policy_loss": part.policy_loss,
            "kl": part.kl,
            "value_mean": part.value_mean,
            "logratio_mean": part.logratio_mean,
            "tokens": part.tokens,
        }

    def loss_metrics(self, sums, cfg):
        return {
            "loss": sums["policy_loss"] + cfg.oreo.kl_alpha * sums["kl"],  # the policy's loss
            "policy_loss": sums["policy_loss"],
            "value_loss": sums["value_loss"],
            "kl": sums["kl"],
            "value_mean": sums["value_mean"],
            "logratio_mean": sums["logratio_mean"],
        }

    def save(self, model, out_dir):
        from swirl.models.value import save_value_model

        save_value_model(model, os.path.join(out_dir, VALUE_DIR))


VALUE_DIR = "value"  # the value model beside the policy adapter in a train output (oreo)

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (SFT, SwirlOffline, Swirl, Oreo)}
assert set(OBJECTIVES) == set(typing.get_args(ObjectiveName)), "every configurable objective has a class"


def objective_for(cfg: TrainConfig) -> Objective:
    return OBJECTIVES[cfg.objective]()


def load_train_data(store: Store, inputs: Sequence[TrainInput], cfg: TrainConfig) -> TrainData:
    """The training items of `cfg.objective` from the filter stage's kept steps."""
    return objective_for(cfg).load(store, inputs, cfg)


# ------------------------------------------------------------------------------------- offline rewards
def offline_rewards(
    labels: Sequence[str], outcomes: Sequence[bool | None], cfg: OfflineSection
) -> np.ndarray:
    """Reward of each logged action (before the baseline)."""

    def label(x: str) -> float:
        if x not in cfg.label_rewards:
            raise ValueError(
                f"process label {x!r} has no reward in train.offline.label_rewards {cfg.label_rewards}; "
                "add it"
            )
        return float(cfg.label_rewards[x])

    proc = np.array([label(x or "UNKNOWN") for x in labels], dtype=np.float64)
    outc = np.array([1.0 if o else 0.0 for o in outcomes], dtype=np.float64)
    return {"process": proc, "outcome": outc, "process_outcome": proc * outc}[cfg.reward]


def advantages(rewards: np.ndarray, groups: Sequence[str], cfg: OfflineSection) -> np.ndarray:
    """Reward minus the configured baseline, optionally divided by the advantages' standard deviation."""
    if cfg.baseline == "none" or len(rewards) == 0:
        adv = rewards.copy()
    elif cfg.baseline == "mean":
        adv = rewards - rewards.mean()
    else:  # question_mean
        _uniq, inv = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
        means = np.bincount(inv, weights=rewards) / np.bincount(inv)
        adv = rewards - means[inv]
    if cfg.normalize == "std" and len(adv) > 1:
        adv = adv / (adv.std() + 1e-8)
    return adv
