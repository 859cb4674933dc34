"""`swirl`: the paper's objective. Each step samples m actions at each of its kept states from the current
policy (the adapter as it is now, which the loop publishes for the sampler), scores them with the reward
model, and trains on one sequence per action weighted by its advantage: its reward minus the mean reward of
its state's m samples (REINFORCE with a per-state baseline)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from swirl.engines.base import Engine, Result, Sampling, too_long
from swirl.protocol import STOP_STRINGS
from swirl.rollout import trajectory_seed
from swirl.store import Store
from swirl.training.batches import Seq
from swirl.training.config import TrainConfig
from swirl.training.data import State, TrainData, TrainInput, read_kept_steps, states_of
from swirl.training.metrics import Metrics
from swirl.training.objectives.base import LIKELIHOOD, Step, WeightedLikelihood, likelihood_coefficients
from swirl.training.rewards import RewardModel

SAMPLING = Metrics(  # what `sequences` and the drift check report
    ("reward_mean", "logprob_drift"),
    ("reward_positive", "logprob_drift_max", "states_too_long", "sample_seconds", "reward_seconds"),
)


class Swirl(WeightedLikelihood):
    name = "swirl"
    samples = True
    shows = LIKELIHOOD + SAMPLING

    def load(self, store: Store, inputs: Sequence[TrainInput], cfg: TrainConfig) -> TrainData:
        kept = read_kept_steps(store, inputs)
        states, too_long = states_of(kept, cfg)
        summary = {**kept.summary(), "states": len(states), "dropped_too_long": too_long}
        return TrainData(states=states, summary=summary)

    def per_step(self, cfg: TrainConfig) -> int:
        return cfg.swirl.states_per_step

    def sequences(self, s: Step) -> tuple[list[Seq], dict[str, float]]:
        """This rank's share of the step's states, sampled, scored and turned into weighted sequences; every
        rank gets every rank's sequences."""
        if s.sampler is None or s.reward is None or s.adapter is None:
            raise ValueError("the swirl objective needs a sampler, a reward model and the published adapter")
        t0 = time.perf_counter()
        mine, skipped = fitting_states(s, s.sampler)
        states = [s.data.states[i] for i in mine]
        results = sample(s, s.sampler, states)
        t1 = time.perf_counter()
        rewards = score(s.reward, states, results)
        t2 = time.perf_counter()
        seqs = advantage_sequences(s.step, mine, states, results, rewards)
        seqs, stats = s.dist.gather_seqs(
            seqs, [float(rewards.sum()), float(len(rewards)), float((rewards > 0).sum()), float(skipped)]
        )
        return likelihood_coefficients(seqs, s.cfg), {
            "reward_mean": stats[0] / max(stats[1], 1),
            "reward_positive": stats[2] / max(stats[1], 1),
            "states_too_long": stats[3],
            "sample_seconds": t1 - t0,
            "reward_seconds": t2 - t1,
        }

    def loss_metrics(
        self, sums: dict[str, float], seqs: list[Seq], step: int, cfg: TrainConfig
    ) -> dict[str, float]:
        """The shared loss metrics, and the drift check: the trainer must score the sampled actions as the
        sampler did (else the sampler served a stale adapter)."""
        metrics = super().loss_metrics(sums, seqs, step, cfg)
        tokens, drift_sum = sums["tokens"], sums["drift_sum"]
        if not tokens or not any(q.sample_logprobs is not None for q in seqs):
            return metrics
        metrics.update(logprob_drift=drift_sum / tokens, logprob_drift_max=sums["drift_max"])
        limit = cfg.swirl.max_logprob_drift
        if limit is not None and drift_sum / tokens > limit:
            raise RuntimeError(
                f"step {step}: the trainer's log-probs of the sampled actions differ from the "
                f"sampler's by {drift_sum / tokens:.2e} on average (> train.swirl.max_logprob_drift "
                f"{limit}): the sampler served a stale adapter, or the sampler and trainer disagree on "
                "the model, dtype or tokens"
            )
        return metrics


def fitting_states(s: Step, sampler: Engine) -> tuple[list[int], int]:
    """This rank's share of the step's states, less those with no room left in the sampler's context (vLLM
    would fail the whole batch); (their indices, how many were skipped)."""
    assigned = s.items[s.dist.rank :: s.dist.world]
    mine = [i for i in assigned if not too_long(sampler, len(s.data.states[i].ids))]
    return mine, len(assigned) - len(mine)


def sample(s: Step, sampler: Engine, states: list[State]) -> list[Result]:
    """m actions per state from the published adapter, each state's seed a function of (seed, state,
    step)."""
    if not states:
        return []
    sw = s.cfg.swirl
    sampling = Sampling(
        n=sw.samples_per_state,
        temperature=sw.temperature,
        top_p=sw.top_p,
        max_tokens=sw.max_tokens,
        stop=STOP_STRINGS,
        logprobs=True,
    )
    seeds = [trajectory_seed(s.cfg.seed, st.key, 0, s.step) for st in states]
    return sampler.generate([st.ids.tolist() for st in states], sampling, adapter=s.adapter, seeds=seeds)


def score(reward: RewardModel, states: list[State], results: list[Result]) -> np.ndarray:
    """The reward of every sampled action, in (state, sample) order."""
    pairs = [(st, c) for st, r in zip(states, results, strict=False) for c in r.completions]
    scores = reward.score([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else []
    return np.asarray(scores, dtype=np.float64)


def advantage_sequences(
    step: int, mine: list[int], states: list[State], results: list[Result], rewards: np.ndarray
) -> list[Seq]:
    """One sequence per non-empty sampled action (its state's tokens, then its own), weighted by its reward
    minus the mean reward of its state's samples."""
    seqs: list[Seq] = []
    k = 0
    for i, st, r in zip(mine, states, results, strict=False):
        r_state = rewards[k : k + len(r.completions)]
        adv = r_state - r_state.mean()
        for j, (c, a) in enumerate(zip(r.completions, adv, strict=False)):
            n = len(c.token_ids)
            if n == 0:
                continue
            ids = np.concatenate([st.ids.astype(np.int64), np.asarray(c.token_ids, dtype=np.int64)])
            key = (step * 1_000_003 + i) * 64 + j  # unique per sampled action within the step
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
    return seqs
