"""A rule-based process judge: GOOD/BAD for a step from the conversation before it, without a judge model.

It plays the LLM judge's role (docs/method.md §1.3: "judge only my last message given the conversation so
far"; no gold answers) with checks a program can make, for machines without a judge model (a CPU) and tool
worlds where the checks are meaningful. It never reads the gold answer:

- a calculation is GOOD when the calculator accepts it, it was not computed before, and every number in it
  comes from the question or from an earlier result (it is grounded in the problem, not made up);
- a search is GOOD when it is new (not a repeated query) and shares a content word with the question or with
  an earlier result (it looks for something the task is about);
- an answer is GOOD when it follows from the work: for math, its number is an earlier calculator result and
  the calculations used every number of the problem (word problems whose every number matters, as in the toy
  worlds); for search, it occurs in an earlier search result;
- an invalid action is BAD.

Every label comes with a one-line reason, stored as the judge text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from swirl.engines.base import Message
from swirl.judging.outcome import contains_answer, extract_number, normalize_answer, parse_number
from swirl.protocol import LAST_STEP_WARNING, parse_action

_NUM = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "is",
        "was",
        "were",
        "are",
        "be",
        "been",
        "who",
        "what",
        "which",
        "when",
        "where",
        "how",
        "many",
        "much",
        "did",
        "does",
        "do",
        "that",
        "this",
        "it",
        "its",
        "as",
        "than",
        "then",
        "there",
        "their",
        "his",
        "her",
        "he",
        "she",
        "they",
        "them",
        "into",
        "about",
    ]
)


def _numbers(text: str) -> set[Fraction]:
    return {Fraction(m.group(0)) for m in _NUM.finditer(text.replace(",", ""))}


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 2}


def _observations(messages: Sequence[Message]) -> list[tuple[str, str]]:
    """(query or expression, result) of every tool observation after the first user message."""
    out = []
    for m in messages[1:]:
        text = (m["content"] or "").removesuffix("\n\n" + LAST_STEP_WARNING)
        if m["role"] == "user" and " -> " in text:
            head, _, result = text.partition(" -> ")
            out.append((head.strip(), result.strip()))
    return out


def rule_process_label(
    messages: Sequence[Message], question: str, action_text: str, math: bool
) -> tuple[str, str]:
    """(GOOD or BAD, reason) for the action `action_text` taken after `messages` (the prompt and earlier
    turns)."""
    action = parse_action(action_text or "")
    seen = _observations(messages)
    if action.kind == "invalid":
        return "BAD", f"not a valid action ({action.content})"
    if action.kind == "math":
        return _math_step(action.content, question, seen)
    if action.kind == "search":
        return _search_step(action.content, question, seen)
    return _answer_step(action.content, question, seen, math)


def _math_step(expr: str, question: str, seen: list[tuple[str, str]]) -> tuple[str, str]:
    from swirl.tools.calculator import calculate

    result = calculate(expr).partition(" -> ")[2]
    if result.startswith("error"):
        return "BAD", f"the calculator rejects it ({result})"
    if any("".join(expr.split()) == "".join(e.split()) for e, _ in seen):
        return "BAD", "this expression was already computed"
    known = _numbers(question) | {n for _, r in seen for n in _numbers(r)}
    made_up = sorted(str(n) for n in _numbers(expr) - known)
    if made_up:
        return (
            "BAD",
            f"uses numbers that are neither in the question nor earlier results: {', '.join(made_up)}",
        )
    return "GOOD", "a new, valid calculation on numbers from the question and earlier results"


def _search_step(query: str, question: str, seen: list[tuple[str, str]]) -> tuple[str, str]:
    if any(normalize_answer(query) == normalize_answer(q) for q, _ in seen):
        return "BAD", "this query was already searched"
    words = _content_words(query)
    context = _content_words(question) | {w for _, r in seen for w in _content_words(r)}
    if not words & context:
        return "BAD", "the query shares no content word with the question or earlier results"
    return "GOOD", "a new query about words of the question or earlier results"


def _answer_step(answer: str, question: str, seen: list[tuple[str, str]], math: bool) -> tuple[str, str]:
    if math:
        value = extract_number(answer)
        if value is None:
            return "BAD", "the answer holds no number"
        results = [parse_number(r) for _, r in seen]
        support = {r for r in results if r is not None} or _numbers(question)
        if value not in support:
            return "BAD", "the answer is not a result of the calculations so far"
        unused = _numbers(question) - {n for e, _ in seen for n in _numbers(e)} - {value}
        if unused and seen:
            return "BAD", f"the work never used the problem's {', '.join(sorted(str(n) for n in unused))}"
        if unused:
            return "BAD", "answered without calculating from the problem's numbers"
        return "GOOD", "the answer is a result of work that used every number of the problem"
    if normalize_answer(answer) and any(contains_answer(r, [answer]) for _, r in seen):
        return "GOOD", "the answer appears in a search result"
    return "BAD", "no search result so far supports the answer"
