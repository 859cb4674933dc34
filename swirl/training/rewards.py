"""Reward models of the `swirl` objective: score an action sampled at a state.

The paper's reward model is a generative judge rating the step given its context (docs/method.md §1.4): here
the process judge of the judge stage (same prompts, any engine: the policy itself, a bigger local model, or an
OpenAI-compatible endpoint). `RuleReward` wraps a plain function (tests, verifiable rewards).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from swirl.engines.base import Completion, Engine
from swirl.judging.config import JudgeConfig
from swirl.judging.process import UNKNOWN, Ask, ask_all
from swirl.judging.prompts import GOOD_BAD, fill, render_conversation
from swirl.training.data import State


class RewardModel(Protocol):
    def score(self, states: Sequence[State], actions: Sequence[Completion]) -> list[float]:
        """One reward per (state, action) pair."""
        ...


class JudgeReward:
    """The process judge as reward model: GOOD/BAD/UNKNOWN for the action given the conversation before it."""

    def __init__(self, engine: Engine, cfg: JudgeConfig, label_rewards: Mapping[str, float]):
        self.engine, self.cfg, self.label_rewards = engine, cfg, dict(label_rewards)
        self.last_labels: list[str] = []

    def score(self, states: Sequence[State], actions: Sequence[Completion]) -> list[float]:
        asks = []
        for s, a in zip(states, actions, strict=True):
            math = self.cfg.outcome.is_math(s.dataset)
            template = self.cfg.process.math_template if math else self.cfg.process.search_template
            prompt = fill(
                template,
                question=s.question,
                conversation=render_conversation(s.messages, show_system=self.cfg.process.show_system),
                last_message=(a.text or "").strip(),
            )
            asks.append(Ask([{"role": "user", "content": prompt}], GOOD_BAD))
        ask_all(self.engine, asks, self.cfg)
        self.last_labels = [a.verdict or UNKNOWN for a in asks]
        return [float(self.label_rewards.get(x, 0.0)) for x in self.last_labels]


class RuleReward:
    """A reward computed by a function of (state, action)."""

    def __init__(self, fn: Callable[[State, Completion], float]):
        self.fn = fn

    def score(self, states: Sequence[State], actions: Sequence[Completion]) -> list[float]:
        return [float(self.fn(s, a)) for s, a in zip(states, actions, strict=True)]


def rule_process_reward(cfg: JudgeConfig, label_rewards: Mapping[str, float]) -> RuleReward:
    """The rule-based process judge (swirl.judging.rules) as reward model: no judge model is asked."""
    from swirl.judging.rules import rule_process_label

    def score(s: State, a: Completion) -> float:
        label, _ = rule_process_label(s.messages, s.question, a.text or "", cfg.outcome.is_math(s.dataset))
        return float(label_rewards.get(label, 0.0))

    return RuleReward(score)
