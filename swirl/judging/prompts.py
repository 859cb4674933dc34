"""Judge prompts (paraphrases of the SWiRL paper's appendix), their rendering, and verdict parsing.

The templates are defaults of the judge config (users may replace them); `check_template` validates a
template's `{placeholders}` when the config is loaded, so a typo fails before any request is sent. Parsing
never guesses: a reply without a clear verdict is `None`, which the judge re-asks and finally records as
UNKNOWN.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from swirl.engines.base import Message

PROCESS_SEARCH = """\
I need to answer a question with the help of a search engine, and I may need several searches before I can \
answer.

Question: {question}

Our conversation so far ("Me" is me, "Result" is what the search engine returned for my query):
{conversation}

My last message:
{last_message}

Judge only my last message, given the conversation before it. If it is a search query, it is GOOD if it is \
likely to help answer the question. If it is an answer, it is GOOD only if it follows from the search \
results in the conversation: judge whether the results support it, not whether you believe it is true. If \
the results are not enough to answer the question, rate the answer BAD. Explain your reasoning, then end \
with a final line holding one word: GOOD or BAD."""

PROCESS_MATH = """\
I need to solve a math word problem, and I can use a calculator for the arithmetic, one expression at a time.

Problem: {question}

Our conversation so far ("Me" is me, "Result" is what the calculator returned for my expression):
{conversation}

My last message:
{last_message}

Judge only my last message, given the conversation before it. If it is a calculation, it is GOOD if it is \
correct for the problem and likely to help solve it. If it is an answer, it is GOOD only if it follows from \
the problem and the calculations in the conversation: judge whether the work supports it, not whether you \
believe it is true. Explain your reasoning, then end with a final line holding one word: GOOD or BAD."""

OUTCOME_QA = """\
Question: {question}
The answer key says: {answer_key}
My answer is: {prediction}

Am I correct? Don't use your own knowledge: only check whether my answer gives the answer in the key. \
Explain your reasoning, then end with a final line holding one word: YES or NO."""

OUTCOME_MATH = """\
Question: {question}
The answer key says: {answer_key}
My answer is: {prediction}

Am I correct? Don't use your own knowledge: only check whether my answer gives the answer in the key. \
Numbers written differently are the same answer: "10", "10.00", "$10" and "$10.00" are the same. Explain \
your reasoning, then end with a final line holding one word: YES or NO."""

REASK = "Your reply did not end with a clear verdict. Reply with one word: {choices}."

PROCESS_FIELDS = ({"conversation", "last_message"}, {"question"})  # (required, optional)
OUTCOME_FIELDS = ({"answer_key", "prediction"}, {"question"})
REASK_FIELDS = (set(), {"choices"})

GOOD_BAD = ("GOOD", "BAD")
YES_NO = ("YES", "NO")


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def check_template(template: str, fields: tuple[set[str], set[str]], where: str) -> str:
    """Raise a ValueError naming the config field when a template misses a placeholder or has an unknown
    one."""
    required, optional = fields
    try:
        found = template_fields(template)
    except ValueError as e:
        raise ValueError(
            f"{where}: not a valid template ({e}); write literal braces as {{{{ and }}}}"
        ) from None
    if "" in found or any(not f.isidentifier() for f in found):
        raise ValueError(
            f"{where}: placeholders must be named, e.g. {{question}}; write literal braces as {{{{ }}}}"
        )
    missing, unknown = required - found, found - required - optional
    if missing or unknown:
        raise ValueError(
            f"{where}: "
            + (f"missing placeholders {sorted('{' + m + '}' for m in missing)}; " if missing else "")
            + (f"unknown placeholders {sorted('{' + u + '}' for u in unknown)}; " if unknown else "")
            + f"allowed: {sorted('{' + a + '}' for a in required | optional)}"
        )
    return template


def render_conversation(messages: Sequence[Message], show_system: bool = False) -> str:
    """The context before an action as a transcript: the prompt (User), my actions (Me), tool results
    (Result)."""
    blocks, seen_action = [], False
    for m in messages:
        role = m["role"]
        if role == "system":
            if not show_system:
                continue
            label = "System"
        elif role == "assistant":
            label, seen_action = "Me", True
        else:
            label = "Result" if seen_action else "User"
        blocks.append(f"[{label}]\n{(m['content'] or '').strip()}")
    return "\n\n".join(blocks) if blocks else "(nothing yet: my last message is the first)"


_MARKUP = re.compile(r"[*_#`\"'“”‘’\[\]():.!]")


def parse_verdict(text: str, choices: Sequence[str] = GOOD_BAD) -> str | None:
    """The verdict a judge reply ends with, or None when it has no clear one.

    The last non-empty line decides when it names exactly one choice (any case, markdown ignored: `**Good**`);
    otherwise the last choice written in capitals anywhere in the reply. Echoes of the instruction ("GOOD or
    BAD") are ignored. Lower-case words in the reasoning ("a good query") never decide.
    """
    if not text:
        return None
    alt = "|".join(re.escape(c) for c in choices)
    body = re.sub(rf"\b({alt})\s*(or|/|,)\s*({alt})\b", " ", text, flags=re.IGNORECASE)
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if lines:
        last = _MARKUP.sub(" ", lines[-1])
        found = {w.upper() for w in re.findall(rf"\b({alt})\b", last, flags=re.IGNORECASE)}
        if len(found) == 1:
            return found.pop()
    caps = re.findall(rf"\b({alt})\b", body)
    return caps[-1] if caps else None


def fill(template: str, **values: str) -> str:
    """str.format restricted to the placeholders the template uses (values may contain braces safely)."""
    return template.format(**{k: v for k, v in values.items() if k in template_fields(template)})
