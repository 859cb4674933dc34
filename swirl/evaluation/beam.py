"""Value-guided beam search at test time (docs/method.md §2, OREO), and its controls at equal samples: keep B
partial episodes per question, sample B next steps for each, keep the B best unfinished candidates by a
ranker, set finished ones aside, answer with the best-ranked finished answer.

A step is one action and, unless it answered or was the last one allowed, its tool observation: it ends at
the action's closing tag (the engine stops there) and the observation that follows. The ranker scores
candidates, higher first:
- `value_ranker`: OREO's value of the candidate's whole token sequence as it stands after the step (a
  `Scorer`: token ids -> V); for a tool step that is the state before the next action, the kind of state
  the value model was trained on;
- `logprob_ranker`: the policy's cumulative log-prob of the episode's actions (best-of-B by likelihood);
- `random_ranker`: a seeded random number per candidate (a random pick).
The three share everything else (the samples, the beam, the finished pool), so a gain of the value ranker over
the other two is the value model's, at equal samples.

Sampling: the policy's decoding is the evaluation's (temperature, top_p). Each expansion, child k of the
parent at index p of a question's beam at a step, has its own seed (`expansion_seed`: from the rollout's
per-step trajectory seed, p and k), so beams that share a prefix do not sample the same continuations; child 0
of parent 0 gets the rollout's seed itself, so B = 1 is exactly the plain rollout. Candidates are
deduplicated by token ids before they are observed and ranked (a copy would take a second beam slot).
A finished candidate (answered, or stopped at the context limit) leaves the beam for the question's finished
pool, freeing its slot for an unfinished one; the search of a question ends when no unfinished candidate is
left or at the step limit. The answer: the best-ranked answered candidate of the pool; when none answered, the
best-ranked candidate of all (pool and the last beam, which stops with max_steps).

Samples: B per kept partial episode per step, for every ranker; a question's total differs between rankers
only when a step has fewer than B distinct unfinished candidates (the beam is then narrower) or when the
kept episodes finish at different steps. `beam_search` counts them (`samples`).
"""

from __future__ import annotations

import copy
import hashlib
from array import array
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

# The search's behaviour, part of the version of a beam-search evaluation: bump when sampling,
# deduplication or selection changes (2: a seed per expansion, deduplicated candidates, finished ones aside).
SEARCH_VERSION = 2

# Values of partial trajectories: a batch of token-id sequences -> one value each (swirl.models.value's
# ValueScorer, or a scripted function in tests).
Scorer = Callable[[Sequence[Sequence[int]]], list[float]]
# Scores of one question's candidates, higher first: the value, the policy's log-prob or a random number.
Ranker = Callable[[Sequence[Trajectory]], list[float]]


def value_ranker(scorer: Scorer) -> Ranker:
    """OREO's ranking: the value model's V of each candidate's token ids."""

    def rank(cands: Sequence[Trajectory]) -> list[float]:
        return [float(v) for v in scorer([c.token_ids for c in cands])]

    return rank


def logprob_ranker() -> Ranker:
    """Best-of-B by likelihood: the policy's cumulative log-prob of all the episode's action tokens (as
    sampled, at the evaluation's temperature)."""

    def rank(cands: Sequence[Trajectory]) -> list[float]:
        return [float(sum(sum(lps) for lps in c.action_logprobs)) for c in cands]

    return rank


def random_ranker(seed: int) -> Ranker:
    """A seeded random pick: a number in [0, 1) from the seed, the question and the candidate's token ids, so
    it is the same on every run, whatever the batch or the candidates' order."""

    def rank(cands: Sequence[Trajectory]) -> list[float]:
        out = []
        for c in cands:
            h = hashlib.sha256(f"{seed}|{c.question_id}|".encode() + array("q", c.token_ids).tobytes())
            out.append(int.from_bytes(h.digest()[:8], "little") / 2**64)
        return out

    return rank


def expansion_seed(base: int, parent: int, child: int) -> int:
    """The seed of child `child` of the beam's parent at index `parent`, from the rollout's per-step
    trajectory seed `base`; child 0 of parent 0 keeps `base` (B = 1 is the plain rollout)."""
    if parent == child == 0:
        return base
    h = hashlib.sha256(f"{base}|{parent}|{child}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def beam_search(
    engine: Engine,
    starts: list[Trajectory],
    tools: Mapping[str, Tool],
    settings: RolloutSettings,
    ranker: Ranker,
    width: int,
    adapter: str | None = None,
    samples: list[int] | None = None,
) -> list[Trajectory]:
    """One finished episode per started trajectory in `starts` (one per question): the best-ranked answered
    candidate of its finished pool (the best-ranked candidate when none answered). `samples`, when given, is
    extended with the number of sampled steps of each question."""
    if width < 1:
        raise ValueError(f"beam width must be at least 1, got {width}")
    segments = ChatSegments(engine.tokenizer)
    beams: list[list[Trajectory]] = [[t] for t in starts]
    finished: list[list[Trajectory]] = [[] for _ in starts]
    drawn = [0] * len(starts)
    ranks = _Ranks(ranker)
    with ThreadPoolExecutor(max_workers=settings.tool_workers) as pool:
        for step in range(settings.max_steps):
            for q, beam in enumerate(beams):  # out of room: stopped at the context limit, finished
                finished[q] += [t for t in beam if not has_room(t, settings)]
                beams[q] = [t for t in beam if not t.done]
            if not any(beams):
                break
            children = _expand(engine, beams, settings, step, width, adapter)
            for q, kids in enumerate(children):
                drawn[q] += len(kids)
                children[q] = _unique(kids)
            if step + 1 < settings.max_steps:  # no observation after the last allowed action
                going = [c for kids in children for c in kids if not c.done]
                observe_all(going, tools, settings, step, segments, pool)
            for q, kids in enumerate(children):
                finished[q] += [c for c in kids if c.done]
                beams[q] = ranks.best([c for c in kids if not c.done], width)
    out = []
    for q, beam in enumerate(beams):
        for t in beam:
            t.stop_reason = "max_steps"
        answered = [t for t in finished[q] if t.stop_reason == "answer"]
        out.append(ranks.best(answered or finished[q] + beam, 1)[0])
    if samples is not None:
        samples.extend(drawn)
    return out


def _expand(
    engine: Engine,
    beams: list[list[Trajectory]],
    s: RolloutSettings,
    step: int,
    width: int,
    adapter: str | None,
) -> list[list[Trajectory]]:
    """`width` sampled next actions for every trajectory of every question's beam, one prompt per child with
    its own seed: per question, its children (copies of the parent, each with one more action) in
    (parent, child) order."""
    where = {id(t): (q, p) for q, beam in enumerate(beams) for p, t in enumerate(beam)}
    live = [t for beam in beams for t in beam]
    born: list[list[tuple[int, int, Trajectory]]] = [[] for _ in beams]
    for budget, group in step_budgets(live, s).items():
        sampling = Sampling(
            n=1, temperature=s.temperature, top_p=s.top_p, max_tokens=budget, stop=STOP_STRINGS, logprobs=True
        )
        jobs = [(t, k) for t in group for k in range(width)]
        seeds = [
            expansion_seed(trajectory_seed(s.seed, t.question_id, t.sample_idx, step), where[id(t)][1], k)
            for t, k in jobs
        ]
        results = engine.generate([t.token_ids for t, _ in jobs], sampling, adapter=adapter, seeds=seeds)
        for (t, k), res in zip(jobs, results, strict=True):
            kid = copy.deepcopy(t)
            append_action(kid, res.completions[0], budget, s)
            q, p = where[id(t)]
            born[q].append((p, k, kid))
    return [[kid for _, _, kid in sorted(kids, key=lambda x: x[:2])] for kids in born]


def _unique(cands: list[Trajectory]) -> list[Trajectory]:
    """The candidates with distinct token ids, each the first of its copies."""
    seen: set[tuple[int, ...]] = set()
    out = []
    for c in cands:
        key = tuple(c.token_ids)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


class _Ranks:
    """The ranker's scores, each candidate scored once (`scores` holds the candidate itself too, so its id
    stays its own)."""

    def __init__(self, ranker: Ranker):
        self.ranker = ranker
        self.scores: dict[int, tuple[Trajectory, float]] = {}

    def best(self, cands: list[Trajectory], k: int) -> list[Trajectory]:
        """The k best-ranked candidates (stable: ties keep the sampling order). Scores only when there is a
        choice to make."""
        if len(cands) <= k:
            return cands
        todo = [c for c in cands if id(c) not in self.scores]
        if todo:
            for c, v in zip(todo, self.ranker(todo), strict=True):
                self.scores[id(c)] = (c, float(v))
        order = sorted(range(len(cands)), key=lambda i: -self.scores[id(cands[i])][1])
        return [cands[i] for i in order[:k]]
