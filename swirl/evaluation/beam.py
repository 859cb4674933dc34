"""Value-guided beam search at test time (docs/method.md §2, OREO): keep B partial episodes per question,
sample B next steps for each, keep the B best candidates by value, answer with the best-valued answer.

A step is one action and, unless it answered or was the last one allowed, its tool observation: it ends at
the action's closing tag (the engine stops there) and the observation that follows. A candidate is scored by
the value of its whole token sequence as it stands after the step (`Scorer`: token ids -> V); for a tool step
that is the state before the next action, the kind of state the value model was trained on.

The policy's decoding is the evaluation's (temperature, top_p, per-step seeds as in the rollout), so B = 1 is
exactly the plain rollout. An answered (or stopped) candidate keeps its place and its value until better
candidates push it out; the search ends when every kept candidate has ended.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from swirl.engines.base import Engine, Sampling
from swirl.protocol import STOP_STRINGS
from swirl.rollout import (
    ChatSegments,
    RolloutSettings,
    Tool,
    Trajectory,
    append_action,
    has_room,
    observe_all,
    step_budgets,
    trajectory_seed,
)

# Values of partial trajectories: a batch of token-id sequences -> one value each (swirl.models.value's
# ValueScorer, or a scripted function in tests).
Scorer = Callable[[Sequence[Sequence[int]]], list[float]]


def beam_search(
    engine: Engine,
    starts: list[Trajectory],
    tools: Mapping[str, Tool],
    settings: RolloutSettings,
    scorer: Scorer,
    width: int,
    adapter: str | None = None,
) -> list[Trajectory]:
    """One finished episode per started trajectory in `starts` (one per question): the best-valued answered
    candidate of its beam (the best-valued candidate when none answered)."""
    if width < 1:
        raise ValueError(f"beam width must be at least 1, got {width}")
    segments = ChatSegments(engine.tokenizer)
    beams: list[list[Trajectory]] = [[t] for t in starts]
    values: dict[int, tuple[Trajectory, float]] = {}  # id(candidate) -> (candidate, its value)
    with ThreadPoolExecutor(max_workers=settings.tool_workers) as pool:
        for step in range(settings.max_steps):
            live = [t for beam in beams for t in beam if not t.done and has_room(t, settings)]
            if not live:
                break
            children = _expand(engine, live, settings, step, width, adapter)
            new = [c for kids in children.values() for c in kids]
            if step + 1 < settings.max_steps:  # no observation after the last allowed action
                observe_all([c for c in new if not c.done], tools, settings, step, segments, pool)
            for q, beam in enumerate(beams):
                pool_q = [c for t in beam for c in (children.get(id(t)) or ([t] if t.done else []))]
                beams[q] = _best(pool_q, width, scorer, values)
    out = []
    for beam in beams:
        for t in beam:
            if not t.done:
                t.stop_reason = "max_steps"
        answered = [t for t in beam if t.stop_reason == "answer"]
        out.append(_best(answered or beam, 1, scorer, values)[0])
    return out


def _expand(
    engine: Engine,
    live: list[Trajectory],
    s: RolloutSettings,
    step: int,
    width: int,
    adapter: str | None,
) -> dict[int, list[Trajectory]]:
    """`width` sampled next actions for every live trajectory: id(parent) -> its children (copies of the
    parent, each with one more action)."""
    children: dict[int, list[Trajectory]] = {}
    for budget, group in step_budgets(live, s).items():
        sampling = Sampling(
            n=width,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=budget,
            stop=STOP_STRINGS,
            logprobs=True,
        )
        seeds = [trajectory_seed(s.seed, t.question_id, t.sample_idx, step) for t in group]
        results = engine.generate([t.token_ids for t in group], sampling, adapter=adapter, seeds=seeds)
        for t, res in zip(group, results, strict=True):
            kids = []
            for c in res.completions:
                kid = copy.deepcopy(t)
                append_action(kid, c, budget, s)
                kids.append(kid)
            children[id(t)] = kids
    return children


def _best(
    cands: list[Trajectory], k: int, scorer: Scorer, values: dict[int, tuple[Trajectory, float]]
) -> list[Trajectory]:
    """The k best-valued candidates (stable: ties keep the sampling order). Scores only when there is a choice
    to make, and each candidate once (`values` holds the candidate itself too, so its id stays its own)."""
    if len(cands) <= k:
        return cands
    todo = [c for c in cands if id(c) not in values]
    if todo:
        for c, v in zip(todo, scorer([c.token_ids for c in todo]), strict=True):
            values[id(c)] = (c, float(v))
    order = sorted(range(len(cands)), key=lambda i: -values[id(cands[i])][1])
    return [cands[i] for i in order[:k]]
