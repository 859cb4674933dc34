"""Gold demonstrations: a dataset's own solution, replayed as protocol actions through the rollout loop.

A small instruct model does not write the protocol's tags zero-shot, and copies a worked example only for one
step. The datasets say how each question is solved, so the pipeline can show the model whole episodes in the
protocol it will be trained and evaluated on (`generate.source: gold`, then SFT on them as a warm-up):

- GSM8K-style math: each calculator note `<<expr=value>>` of the solution is one `<math_exp>expr</math_exp>`
  action (operators spaced, as in the worked example), then `<answer>gold</answer>`;
- HotpotQA / CofCA: one `<search_query>title</search_query>` per supporting paragraph title, in the order of
  `supporting_facts` (the hop order in HotpotQA's bridge questions), then the answer;
- MuSiQue: the titles of the paragraphs that support each sub-question of `question_decomposition`, in order;
- BeerQA has no supporting facts: its questions have no demonstration (counted, not guessed).

`GoldScript` is a script for the `ScriptedEngine`: given the prompt text of a trajectory's next step, it finds
the question (the last known question text in the prompt; worked examples come before it) and returns the
first gold action not yet taken after it. The observations are the real tools' replies, so a demonstration is
exactly what the policy would have seen had it written the same actions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

_NOTE = re.compile(r"<<([^=<>]+)=[^<>]*>>")
_OPERATOR = re.compile(r"\s*([-+*/])\s*(?=[\d(.])")


def _spaced(expr: str) -> str:
    """'17*101' -> '17 * 101' (a leading sign stays attached: '-5+2' -> '-5 + 2')."""
    expr = expr.strip()
    head, rest = expr[:1], expr[1:]
    return head + _OPERATOR.sub(r" \1 ", rest)


def math_gold_actions(solution: str) -> list[str]:
    """The calculator calls of a GSM8K solution, in order: one per `<<expr=value>>` note."""
    return [f"<math_exp>{_spaced(e)}</math_exp>" for e in _NOTE.findall(solution)]


def search_gold_queries(meta: Mapping[str, Any]) -> list[str]:
    """The titles to search for, in hop order, from a multi-hop question's metadata ([] when it has none)."""
    titles: list[str] = []
    if meta.get("supporting_facts"):  # HotpotQA, CofCA: [[title, sentence], ...] in hop order
        titles = [t for t, _ in meta["supporting_facts"]]
    elif meta.get("question_decomposition"):  # MuSiQue: sub-questions, each supported by one paragraph index
        paragraphs = meta.get("paragraphs") or []
        for sub in meta["question_decomposition"]:
            i = sub.get("paragraph_support_idx")
            if isinstance(i, int) and 0 <= i < len(paragraphs):
                titles.append(paragraphs[i]["title"])
    seen: list[str] = []
    for t in titles:
        if t and t not in seen:
            seen.append(t)
    return seen


def gold_actions(row: Mapping[str, Any], task: str) -> list[str]:
    """Every action of a question's gold episode, the answer last; [] when the dataset gives no solution."""
    meta = json.loads(row.get("metadata") or "{}")
    if task == "math":
        steps = math_gold_actions(meta.get("solution", ""))
    else:
        steps = [f"<search_query>{q}</search_query>" for q in search_gold_queries(meta)]
    if not steps or not row.get("answers"):
        return []
    return [*steps, f"<answer>{row['answers'][0]}</answer>"]


class GoldScript:
    """`script(prompt_text, seed) -> next action` for the ScriptedEngine, from the questions' gold
    episodes."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], task: str):
        self.actions = {r["question"]: gold_actions(r, task) for r in rows}
        self.actions = {q: a for q, a in self.actions.items() if a}

    def __call__(self, prompt: str, seed: int | None = None) -> str:
        found = [(prompt.rfind(q), q) for q in self.actions if q in prompt]
        if not found:
            raise ValueError(f"no known question in the prompt (it ends {prompt[-200:]!r})")
        at, question = max(found)  # the latest one: worked examples come before the question
        pos = at + len(question)
        for action in self.actions[question]:
            hit = prompt.find(action, pos)
            if hit < 0:
                return action
            pos = hit + len(action)
        raise ValueError(f"every gold action of {question[:80]!r} was already taken")
