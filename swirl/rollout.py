"""The multi-step rollout loop (docs/design.md §4): step-synchronous, token-in/token-out. It runs any
trajectories it is given; `swirl.episodes` starts them for a dataset's questions under the protocol.

Every step, all unfinished trajectories generate their next action in one engine call (stopping at the closing
action tags), their tools run concurrently in a thread pool, and each observation is appended as the next user
turn, until every trajectory has answered or hit its step limit or the context limit.

Token ids are built incrementally and stored exactly as the model saw and produced them:

    prompt ids (chat template with the generation prompt)
    + generated ids of action 1                         <- action_spans[0]
    + template ids (end of assistant turn, user turn with the observation, start of the next assistant turn)
    + generated ids of action 2                         <- action_spans[1]
    ...

The template pieces come from the tokenizer's own chat template (rendered around marker strings), so for chat
templates that do not rewrite earlier turns, decoding the stored ids gives exactly the rendered conversation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from swirl.engines.base import Completion, Engine, Sampling
from swirl.protocol import STOP_STRINGS, Action, corrective_observation, parse_action, with_last_step_warning

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Tool = Callable[[str], str]  # action content -> full observation text ("QUERY -> RESULT")


@dataclass
class RolloutSettings:
    max_steps: int = 5
    max_tokens_per_step: int = 256
    max_context: int = 4096  # prompt + every generated and observation token
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    tool_workers: int = 8


@dataclass
class Trajectory:
    trajectory_id: str
    question_id: str
    sample_idx: int
    task: str  # "search" or "math": which tool the prompt offers
    messages: list[dict[str, str]]
    token_ids: list[int]
    action_spans: list[tuple[int, int]] = field(default_factory=list)
    action_logprobs: list[list[float]] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    final_answer: str = ""
    stop_reason: str = ""  # answer / max_steps / context_limit
    generated_tokens: int = 0
    # Turns the model sees before `messages` (worked examples as chat turns): part of token_ids, not of the
    # stored conversation, so judges and action counts see only the episode itself.
    context: list[dict[str, str]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return bool(self.stop_reason)

    def row(self, model: str, adapter: str | None) -> dict[str, Any]:
        """A row of the `trajectories` table."""
        return {
            "trajectory_id": self.trajectory_id,
            "question_id": self.question_id,
            "sample_idx": self.sample_idx,
            "messages": self.messages,
            "token_ids": self.token_ids,
            "action_spans": [{"start": a, "end": b} for a, b in self.action_spans],
            "action_logprobs": self.action_logprobs,
            "final_answer": self.final_answer,
            "stop_reason": self.stop_reason,
            "num_actions": len(self.action_spans),
            "model": model,
            "adapter": adapter or "",
        }


class ChatSegments:
    """Token pieces of a chat template: the prompt, and the text between one action and the next."""

    _A, _O = "\x00SWIRL_ACTION\x00", "\x00SWIRL_OBS\x00"

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tok = tokenizer
        text = tokenizer.apply_chat_template(
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": self._A},
                {"role": "user", "content": self._O},
            ],
            add_generation_prompt=True,
            tokenize=False,
        )
        a_end, o_start = text.index(self._A) + len(self._A), text.index(self._O)
        self.after_action = text[a_end:o_start]  # e.g. "<|im_end|>\n<|im_start|>user\n"
        self.after_obs = text[o_start + len(self._O) :]  # e.g. "<|im_end|>\n<|im_start|>assistant\n"
        self.eos_text = tokenizer.eos_token or ""
        self.eos_id = tokenizer.eos_token_id

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tok.encode(text, add_special_tokens=False))

    def between_ids(self, observation: str, action_ended_with_eos: bool) -> list[int]:
        head = self.after_action
        if action_ended_with_eos and self.eos_text and head.startswith(self.eos_text):
            head = head[len(self.eos_text) :]  # the model closed its own turn; don't close it twice
        return list(self.tok.encode(head + observation + self.after_obs, add_special_tokens=False))


def trajectory_seed(base: int, question_id: str, sample_idx: int, step: int) -> int:
    """A per-trajectory, per-step seed that does not depend on batch composition (resume-safe)."""
    h = hashlib.sha256(f"{base}|{question_id}|{sample_idx}|{step}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def start_trajectories(
    questions: Sequence[Mapping[str, str]],
    samples: int,
    prompt_for: Callable[[Mapping[str, str]], list[dict[str, str]]],
    segments: ChatSegments,
    context: Sequence[Mapping[str, str]] = (),
) -> list[Trajectory]:
    """`questions`: dicts with question_id, question, task. One trajectory per (question, sample). `context`:
    chat turns placed before each prompt (e.g. a worked example), seen by the model but not stored as the
    episode."""
    out = []
    ctx = [dict(m) for m in context]
    for q in questions:
        messages = prompt_for(q)
        ids = segments.prompt_ids(ctx + messages)
        for k in range(samples):
            out.append(
                Trajectory(
                    f"{q['question_id']}#{k}",
                    q["question_id"],
                    k,
                    q["task"],
                    list(messages),
                    list(ids),
                    context=ctx,
                )
            )
    return out


def rollout(
    engine: Engine,
    trajectories: list[Trajectory],
    tools: Mapping[str, Tool],
    settings: RolloutSettings,
    adapter: str | None = None,
    on_step: Callable[[int, list[Trajectory]], None] | None = None,
) -> list[Trajectory]:
    """Run every trajectory to its end; returns them (mutated in place)."""
    segments = ChatSegments(engine.tokenizer)
    with ThreadPoolExecutor(max_workers=settings.tool_workers) as pool:
        for step in range(settings.max_steps):
            live = [t for t in trajectories if not t.done]
            if not live:
                break
            live = [t for t in live if has_room(t, settings)]
            _generate_step(engine, live, settings, step, adapter, segments)
            if step + 1 == settings.max_steps:
                break  # no observation after the last allowed action
            going = [t for t in live if not t.done]  # not answered, not out of context
            observe_all(going, tools, settings, step, segments, pool)
            if on_step:
                on_step(step, trajectories)
    for t in trajectories:
        if not t.done:
            t.stop_reason = "max_steps"
    return trajectories


def observe_all(
    going: list[Trajectory],
    tools: Mapping[str, Tool],
    settings: RolloutSettings,
    step: int,
    segments: ChatSegments,
    pool: ThreadPoolExecutor,
) -> None:
    """Run the tools of step `step`'s actions (concurrently) and append each observation as the next user
    turn; the observation before the last allowed action says so."""
    observations = list(pool.map(lambda t: _observe(t, tools), going))
    if step + 1 == settings.max_steps - 1:  # the next action is the last one allowed: say so
        observations = [with_last_step_warning(o) for o in observations]
    for t, obs in zip(going, observations, strict=True):
        ended_eos = bool(t.token_ids) and t.token_ids[-1] == segments.eos_id
        t.messages.append({"role": "user", "content": obs})
        t.token_ids.extend(segments.between_ids(obs, ended_eos))
        if len(t.token_ids) >= settings.max_context:
            t.stop_reason = "context_limit"


def has_room(t: Trajectory, s: RolloutSettings) -> bool:
    """Whether the trajectory can still generate (else it stops with context_limit)."""
    if s.max_context - len(t.token_ids) < 2:
        t.stop_reason = "context_limit"
        return False
    return True


def _generate_step(
    engine: Engine,
    live: list[Trajectory],
    s: RolloutSettings,
    step: int,
    adapter: str | None,
    seg: ChatSegments,
) -> None:
    # One engine call per distinct token budget: all trajectories share one unless some are near the context
    # limit.
    for budget, group in step_budgets(live, s).items():
        sampling = Sampling(
            n=1, temperature=s.temperature, top_p=s.top_p, max_tokens=budget, stop=STOP_STRINGS, logprobs=True
        )
        seeds = [trajectory_seed(s.seed, t.question_id, t.sample_idx, step) for t in group]
        # Token-in/token-out where the engine allows it; a text-only engine (an HTTP chat API) gets the
        # messages, and its completions are re-tokenized locally (its `token_exact` is False and the stage
        # says so).
        prompts = [t.token_ids if engine.token_exact else t.context + t.messages for t in group]
        results = engine.generate(prompts, sampling, adapter=adapter, seeds=seeds)
        for t, res in zip(group, results, strict=False):
            append_action(t, res.completions[0], budget, s)


def step_budgets(live: list[Trajectory], s: RolloutSettings) -> dict[int, list[Trajectory]]:
    """The trajectories grouped by their token budget for the next action (all share one unless some are near
    the context limit)."""
    budgets: dict[int, list[Trajectory]] = {}
    for t in live:
        budgets.setdefault(min(s.max_tokens_per_step, s.max_context - len(t.token_ids)), []).append(t)
    return budgets


def append_action(t: Trajectory, c: Completion, budget: int, s: RolloutSettings) -> None:
    """Append a generated action (an engine Completion) to the trajectory; an answer ends it."""
    start = len(t.token_ids)
    t.token_ids.extend(c.token_ids)
    t.action_spans.append((start, len(t.token_ids)))
    t.action_logprobs.append(list(c.logprobs or []))
    t.generated_tokens += len(c.token_ids)
    t.messages.append({"role": "assistant", "content": c.text})
    action = parse_action(c.text)
    t.actions.append(action)
    if action.kind == "answer":
        t.final_answer, t.stop_reason = action.content, "answer"
    elif c.finish_reason == "length" and budget < s.max_tokens_per_step:
        t.stop_reason = "context_limit"


def _observe(t: Trajectory, tools: Mapping[str, Tool]) -> str:
    """The observation for a trajectory's last action (tool result, or a corrective message)."""
    a = t.actions[-1]
    if a.kind == "invalid":
        return corrective_observation(a.content, t.task)
    tool = tools.get(a.kind)
    if tool is None:
        return corrective_observation(f"no {a.kind} tool in this task", t.task)
    try:
        return tool(a.content)
    except Exception as e:  # noqa: BLE001 - a tool failure is an observation the model can read, never a crash
        return f"{a.content} -> error: {type(e).__name__}: {e}"
