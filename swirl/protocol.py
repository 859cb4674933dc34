"""The multi-step protocol of SWiRL (docs/method.md §1.1): prompts, action parsing and observations.

In each step the model may think freely, then takes exactly one action, an XML-like tag:
`<search_query>Q</search_query>`, `<math_exp>E</math_exp>` or `<answer>A</answer>`. Generation stops at the
first closing tag. The tool's result comes back as the next user turn, `QUERY -> RESULT`.

Parsing rules (`parse_action`):
- the first complete known tag wins; the text before it is the thought;
- no complete tag, an unclosed tag, an empty tag, an unknown tag, or a second action tag opened before the
  first one closes make the step `invalid`; the model then gets a corrective observation instead of a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ACTION_TAGS = {"search_query": "search", "math_exp": "math", "answer": "answer"}
STOP_STRINGS = tuple(f"</{t}>" for t in ACTION_TAGS)  # generation stops right after an action closes

SEARCH_PROMPT = (
    "Help me answer the question below in a few words. If a search would help, write a search query between "
    "<search_query> and </search_query> tags. You have {max_steps} steps, one query or the final answer in "
    "each, so you may make up to {max_queries} sequential queries before answering; do not repeat a query. "
    "Each result comes back to you as QUERY -> RESULT. When you have enough information, give the answer "
    "between <answer> and </answer> tags. In each message either search or answer, not both.\n\n"
    "Question: {question}"
)
MATH_PROMPT = (
    "Help me answer the question below. If a calculation would help, write an arithmetic expression between "
    "<math_exp> and </math_exp> tags; a calculator evaluates it and the result comes back to you as "
    "EXPRESSION -> RESULT. You have {max_steps} steps, one calculation or the final answer in each, so you "
    "may make up to {max_queries} calculations before answering. When you know the answer, give only the "
    "final number between <answer> and </answer> tags. In each message either calculate or answer, not "
    "both.\n\n"
    "Question: {question}"
)

_COMPLETE = re.compile(r"<(search_query|math_exp|answer)>(.*?)</\1>", re.DOTALL)
_OPEN = re.compile(r"<(search_query|math_exp|answer)>")
_ANY_TAG = re.compile(r"<([A-Za-z_][\w-]*)>(.*?)</\1>", re.DOTALL)


@dataclass(frozen=True)
class Action:
    kind: str  # search / math / answer / invalid
    content: str  # the query, expression or answer (stripped); the reason for invalid actions
    thought: str  # text before the action tag


def parse_action(text: str) -> Action:
    m = _COMPLETE.search(text)
    if m is None:
        opened = _OPEN.search(text)
        if opened:
            return Action("invalid", f"unclosed <{opened.group(1)}> tag", text[: opened.start()])
        other = _ANY_TAG.search(text)
        if other:
            return Action("invalid", f"unknown tag <{other.group(1)}>", text[: other.start()])
        return Action("invalid", "no action tag", text)
    thought, content = text[: m.start()], m.group(2)
    inner_open = _OPEN.search(content) or _OPEN.search(thought)
    if inner_open:
        return Action("invalid", "two action tags in one message", thought)
    if not content.strip():
        return Action("invalid", f"empty <{m.group(1)}> tag", thought)
    return Action(ACTION_TAGS[m.group(1)], content.strip(), thought)


def corrective_observation(reason: str, task: str) -> str:
    """What the model reads after an invalid step: what was wrong and the allowed format."""
    tool = "<search_query>QUERY</search_query>" if task == "search" else "<math_exp>EXPRESSION</math_exp>"
    return f"Invalid action ({reason}). Reply with exactly one of {tool} or <answer>ANSWER</answer>."


LAST_STEP_WARNING = "This is your last step: give your final answer now between <answer> and </answer> tags."


def render_prompt(template: str, question: str, max_steps: int) -> str:
    """The first user turn. `max_steps` counts every action, the final answer included (the rollout's step
    limit), so a template may also use {max_queries} = max_steps - 1, the tool calls possible before the
    answer."""
    return template.format(question=question, max_steps=max_steps, max_queries=max(max_steps - 1, 0))


def with_last_step_warning(observation: str) -> str:
    """The observation that precedes the last allowed action, ending with `LAST_STEP_WARNING`."""
    return f"{observation}\n\n{LAST_STEP_WARNING}"
