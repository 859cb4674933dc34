"""The process judge (docs/method.md §1.3) and the LLM outcome grader, batched over many trajectories.

For step i of a trajectory the judge sees the conversation before action i and rates action i alone, GOOD or
BAD. Every question of a shard (all steps of all its trajectories, plus one outcome question per trajectory
when LLM grading is on) goes to the engine in one `generate` call, so a local engine batches them and the HTTP
engine runs them concurrently. A reply without a verdict is re-asked (the reply stays in the conversation,
followed by the re-ask prompt) at most `max_reasks` times; then the label is UNKNOWN, counted, and never
treated as GOOD. A question whose prompt does not fit the judge's context (`engine.max_context`) is not sent,
so that it cannot fail the batch: its label is UNKNOWN and its judge text says why (`TOO_LONG`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from swirl.engines.base import Engine, Message, Sampling, encode_prompt, too_long
from swirl.judging import outcome as rules
from swirl.judging.config import JudgeConfig
from swirl.judging.prompts import GOOD_BAD, YES_NO, fill, parse_verdict, render_conversation
from swirl.store import StageRef, Store, as_refs
from swirl.table_io import read_columns

UNKNOWN = "UNKNOWN"
TOO_LONG = "[not asked: the prompt does not fit the judge's context]"
REASK_SEPARATOR = "\n\n[re-ask]\n\n"  # between the replies of one question in judge_text / outcome_llm_text


@dataclass(frozen=True)
class Question:
    """What the judges need from the questions table."""

    dataset: str
    text: str
    answers: tuple[str, ...]


@dataclass
class Ask:
    """One question to the judge, asked until it gets a verdict or runs out of re-asks."""

    messages: list[Message]
    choices: tuple[str, str]
    replies: list[str] = field(default_factory=list)
    verdict: str | None = None

    def conversation(self, reask_template: str) -> list[Message]:
        conv = list(self.messages)
        reask = fill(reask_template, choices=" or ".join(self.choices))
        for reply in self.replies:
            conv += [{"role": "assistant", "content": reply}, {"role": "user", "content": reask}]
        return conv

    @property
    def text(self) -> str:
        return REASK_SEPARATOR.join(self.replies)

    @property
    def reasks(self) -> int:
        return max(0, len(self.replies) - 1)


def ask_all(engine: Engine, asks: Sequence[Ask], cfg: JudgeConfig) -> None:
    """Ask every question, in one engine call per round; re-ask the ones without a verdict (bounded)."""
    pending = [a for a in asks if a.verdict is None]
    for attempt in range(cfg.max_reasks + 1):
        pending = [a for a in pending if _fits(engine, a, cfg)]
        if not pending:
            return
        sampling = Sampling(
            n=1, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed + attempt * 1_000_003
        )
        results = engine.generate([a.conversation(cfg.reask_template) for a in pending], sampling)
        if len(results) != len(pending):
            raise RuntimeError(
                f"engine {engine.name} returned {len(results)} results for {len(pending)} prompts"
            )
        still = []
        for a, r in zip(pending, results, strict=True):
            text = r.completions[0].text if r.completions else ""
            a.replies.append(text)
            a.verdict = parse_verdict(text, a.choices)
            if a.verdict is None:
                still.append(a)
        pending = still


def _fits(engine: Engine, a: Ask, cfg: JudgeConfig) -> bool:
    """False (and the ask marked TOO_LONG) when its prompt leaves the judge no room; True when unknown."""
    if getattr(engine, "max_context", None) is None or getattr(engine, "tokenizer", None) is None:
        return True
    try:
        n = len(encode_prompt(engine.tokenizer, a.conversation(cfg.reask_template)))
    except Exception:  # noqa: BLE001 - no chat template etc.: let the engine decide
        return True
    if not too_long(engine, n):
        return True
    a.replies.append(f"{TOO_LONG} ({n} tokens, context {engine.max_context})")
    return False


def action_indices(row: Mapping[str, Any]) -> list[int]:
    """Indices of the assistant messages (the actions); they must agree with num_actions and action_spans."""
    msgs = row["messages"] or []
    idx = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    spans = row.get("action_spans")
    n_spans = len(spans) if spans is not None else len(idx)
    n_actions = row.get("num_actions")
    if len(idx) != n_spans or (n_actions is not None and n_actions != len(idx)):
        raise ValueError(
            f"trajectory {row['trajectory_id']!r}: {len(idx)} assistant messages but num_actions={n_actions} "
            f"and {n_spans} action_spans; the trajectories table is inconsistent (regenerate it)"
        )
    return idx


def process_asks(row: Mapping[str, Any], q: Question, math: bool, cfg: JudgeConfig) -> list[Ask]:
    """One GOOD/BAD question per action: the conversation before it, and the action itself."""
    template = cfg.process.math_template if math else cfg.process.search_template
    msgs = row["messages"]
    asks = []
    for i in action_indices(row):
        prompt = fill(
            template,
            question=q.text,
            conversation=render_conversation(msgs[:i], show_system=cfg.process.show_system),
            last_message=(msgs[i]["content"] or "").strip(),
        )
        asks.append(Ask([{"role": "user", "content": prompt}], GOOD_BAD))
    return asks


def rule_asks(row: Mapping[str, Any], q: Question, math: bool) -> list[Ask]:
    """The rule judge's labels (swirl.judging.rules), as already-answered asks (nothing is sent to a
    model)."""
    from swirl.judging.rules import rule_process_label

    msgs = row["messages"]
    asks = []
    for i in action_indices(row):
        label, reason = rule_process_label(msgs[:i], q.text, msgs[i]["content"] or "", math)
        asks.append(Ask([], GOOD_BAD, replies=[f"[rule] {reason}\n{label}"], verdict=label))
    return asks


def outcome_ask(row: Mapping[str, Any], q: Question, math: bool, cfg: JudgeConfig) -> Ask | None:
    """The paper's YES/NO grading question, or None when there is no final answer to grade (it is not
    correct)."""
    answer = row.get("final_answer")
    if not answer or not answer.strip():
        return None
    template = cfg.outcome.math_template if math else cfg.outcome.qa_template
    prompt = fill(template, question=q.text, answer_key=" / ".join(q.answers), prediction=answer.strip())
    return Ask([{"role": "user", "content": prompt}], YES_NO)


def judge_shard(
    rows: Sequence[Mapping[str, Any]], questions: Mapping[str, Question], engine: Engine, cfg: JudgeConfig
) -> list[dict[str, Any]]:
    """Judgment rows (one per action) for some trajectory rows: process labels, rule and LLM outcomes."""
    plan = []
    for row in rows:
        q = questions.get(row["question_id"])
        if q is None:
            raise ValueError(
                f"trajectory {row['trajectory_id']!r}: question {row['question_id']!r} is not in the "
                "questions tables given to the judge; pass the questions tables the trajectories were "
                "generated from"
            )
        math = cfg.outcome.is_math(q.dataset)
        steps = process_asks(row, q, math, cfg) if cfg.process.kind == "llm" else rule_asks(row, q, math)
        grade = outcome_ask(row, q, math, cfg) if cfg.outcome.llm and steps else None
        rule = rules.rule_outcome(
            row.get("final_answer"), q.answers, math, cfg.outcome.qa_rule, cfg.outcome.f1_threshold
        )
        plan.append((row, steps, grade, rule))
    asks = [
        a for _, steps, grade, _ in plan for a in (*steps, *([grade] if grade else [])) if a.verdict is None
    ]
    if asks:
        ask_all(engine, asks, cfg)
    out = []
    for row, steps, grade, rule in plan:
        llm = None if grade is None or grade.verdict is None else grade.verdict == "YES"
        for i, a in enumerate(steps):
            out.append(
                {
                    "trajectory_id": row["trajectory_id"],
                    "step": i,
                    "process_label": a.verdict or UNKNOWN,
                    "judge_text": a.text,
                    "outcome_correct": rule,
                    "outcome_llm": False if cfg.outcome.llm and grade is None else llm,
                    "outcome_llm_text": grade.text if grade else "",
                    "judge_model": engine.model if cfg.needs_model else "rule",
                }
            )
    return out


def load_questions(store: Store, questions: StageRef | Sequence[StageRef]) -> dict[str, Question]:
    columns = ["question_id", "dataset", "question", "answers"]
    t = read_columns(store, as_refs(questions, "questions", "load_questions"), columns)
    out: dict[str, Question] = {}
    for r in t.to_pylist():
        q = Question(r["dataset"], r["question"], tuple(r["answers"] or ()))
        if out.get(r["question_id"], q) != q:
            raise ValueError(
                f"question id {r['question_id']!r} appears twice with different content; fix the ids"
            )
        out[r["question_id"]] = q
    return out
