"""Judge: trajectories (+ their questions) -> the `judgments` table, one row per trajectory step.

Sharded and resumable: trajectories are judged `shard_size` at a time (all steps of a shard in one engine
batch) and each shard is committed with its trajectory ids as keys, so after a crash a re-run judges only the
trajectories not yet stored. The version hashes the judge config (prompts, sampling, outcome rules), the judge
model's identity (not its URL or concurrency) and the input versions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from swirl.engines.base import Engine
from swirl.judging.config import JudgeConfig, engine_identity
from swirl.judging.process import REASK_SEPARATOR, TOO_LONG, UNKNOWN, Question, judge_shard
from swirl.steps import iter_batches, read_columns, shard_columns
from swirl.store import ShardedWriter, StageRef, Store, as_refs, stage_version
from swirl.tables import to_table

log = logging.getLogger(__name__)

STAGE = "judge"
TABLE = "judgments"
Refs = StageRef | Sequence[StageRef]
TRAJECTORY_COLUMNS = (
    "trajectory_id",
    "question_id",
    "messages",
    "action_spans",
    "num_actions",
    "final_answer",
)


def _refs(refs: Refs, table: str, arg: str) -> list[StageRef]:
    return as_refs(refs, table, f"run_judge: `{arg}`")


def _plan(trajectories: Refs, questions: Refs, cfg: JudgeConfig, engine: Engine | None) -> tuple[dict, dict]:
    if not cfg.needs_model:
        identity = {"kind": "rule"}
    elif cfg.engine is not None:
        identity = engine_identity(cfg.engine)
    elif engine is not None:
        identity = {"kind": engine.name, "model": engine.model}
    else:
        raise ValueError(
            "run_judge: judge.engine is empty and no engine was passed; set judge.engine in the config"
        )
    inputs = {
        "trajectories": ",".join(r.short() for r in _refs(trajectories, "trajectories", "trajectories")),
        "questions": ",".join(r.short() for r in _refs(questions, "questions", "questions")),
    }
    return cfg.version_config(identity), inputs


def judge_version(trajectories: Refs, questions: Refs, cfg: JudgeConfig, engine: Engine | None = None) -> str:
    config, inputs = _plan(trajectories, questions, cfg, engine)
    return stage_version(STAGE, config, inputs, TABLE)


def load_questions(store: Store, questions: Refs) -> dict[str, Question]:
    columns = ["question_id", "dataset", "question", "answers"]
    t = read_columns(store, _refs(questions, "questions", "questions"), columns)
    out: dict[str, Question] = {}
    for r in t.to_pylist():
        q = Question(r["dataset"], r["question"], tuple(r["answers"] or ()))
        if out.get(r["question_id"], q) != q:
            raise ValueError(
                f"question id {r['question_id']!r} appears twice with different content; fix the ids"
            )
        out[r["question_id"]] = q
    return out


def _pending(store: Store, refs: list[StageRef], done: set[str], size: int) -> Iterator[list[dict[str, Any]]]:
    """Trajectory rows not judged yet, `size` at a time, in table order; a repeated trajectory id is an
    error."""
    seen: set[str] = set()
    chunk: list[dict[str, Any]] = []
    for ref in refs:
        for batch in iter_batches(store, ref, TRAJECTORY_COLUMNS, max(size, 256)):
            for row in batch.to_pylist():
                tid = row["trajectory_id"]
                if tid in seen:
                    where = [r.short() for r in refs]
                    raise ValueError(
                        f"trajectory id {tid!r} appears twice in the trajectories tables {where}"
                    )
                seen.add(tid)
                if tid in done:
                    continue
                chunk.append(row)
                if len(chunk) == size:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def run_judge(
    store: Store, trajectories: Refs, questions: Refs, cfg: JudgeConfig, engine: Engine | None = None
) -> StageRef:
    """Judge every step (GOOD/BAD/UNKNOWN) and every final answer; resume from the stored shards.

    `engine`: the judge engine when the caller owns one (e.g. the policy's); otherwise it is built from
    `cfg.engine` only if there is work left, and closed at the end.
    """
    config, inputs = _plan(trajectories, questions, cfg, engine)
    version = stage_version(STAGE, config, inputs, TABLE)
    if store.is_complete(STAGE, version):
        return store.ref(STAGE, version)
    writer = store.sharded(STAGE, version, TABLE, config, inputs)
    done = writer.done_keys()
    qs = load_questions(store, questions)
    own = engine is None
    eng = engine
    t0 = time.perf_counter()
    judged = 0
    try:
        for chunk in _pending(
            store, _refs(trajectories, "trajectories", "trajectories"), done, cfg.shard_size
        ):
            if eng is None and cfg.needs_model:
                from swirl.judging import make_judge_engine

                eng = make_judge_engine(cfg.engine)
            rows = judge_shard(chunk, qs, eng, cfg)
            writer.write_shard(to_table(TABLE, rows), [r["trajectory_id"] for r in chunk])
            judged += len(chunk)
            log.info(
                "judge: shard of %d trajectories (%d steps) committed; %d this run",
                len(chunk),
                len(rows),
                judged,
            )
        summary = summarize(writer)
        summary.update(
            resumed_trajectories=len(done),
            judged_this_run=judged,
            seconds_this_run=round(time.perf_counter() - t0, 3),
            outcome_llm_enabled=cfg.outcome.llm,
            judge_model=(eng.model if eng is not None else config["engine"].get("model", "rule")),
        )
        if not cfg.outcome.llm:
            for k in (
                "outcome_llm_reasks",
                "outcome_llm_correct",
                "outcome_llm_unknown",
                "rule_llm_agreement",
            ):
                summary.pop(k)
        for attr in ("requests", "retries"):
            if eng is not None and isinstance(getattr(eng, attr, None), int):
                summary[f"engine_{attr}_this_run"] = getattr(eng, attr)
        return writer.finalize(summary)
    finally:
        if own and eng is not None:
            eng.close()


def occurrences(texts: Any, pattern: str) -> int:
    """How many times `pattern` occurs in a text column, over all rows (nulls count 0)."""
    return int(pc.sum(pc.count_substring(texts, pattern)).as_py() or 0)


def reasks_sent(texts: Any) -> int:
    """Re-asks that reached the judge: reply separators, less those before a not-asked (too long) marker."""
    return occurrences(texts, REASK_SEPARATOR) - occurrences(texts, REASK_SEPARATOR + TOO_LONG)


def summarize(writer: ShardedWriter) -> dict[str, Any]:
    """Counts over every stored shard (this run's and earlier ones), read column-wise."""
    cols = [
        "trajectory_id",
        "step",
        "process_label",
        "judge_text",
        "outcome_correct",
        "outcome_llm",
        "outcome_llm_text",
    ]
    t = shard_columns(writer, cols)
    if t is None:
        t = to_table(TABLE, []).select(cols)
    labels = t.column("process_label")
    first = t.filter(pc.equal(t.column("step"), 0))  # one row per trajectory with at least one step
    rule, llm = first.column("outcome_correct"), first.column("outcome_llm")
    n = t.num_rows

    def count(arr, v):
        return int(pc.sum(pc.equal(arr, v)).as_py() or 0)

    good, bad, unknown = count(labels, "GOOD"), count(labels, "BAD"), count(labels, UNKNOWN)
    llm_known = pc.is_valid(llm)
    agree = pc.equal(pc.filter(rule, llm_known), pc.filter(llm, llm_known))
    return {
        "trajectories": len(writer.done_keys()),
        "trajectories_with_steps": first.num_rows,
        "steps": n,
        "good": good,
        "bad": bad,
        "unknown": unknown,
        "good_rate": round(good / n, 4) if n else None,
        "unknown_rate": round(unknown / n, 4) if n else None,
        "too_long": occurrences(t.column("judge_text"), TOO_LONG),
        "process_reasks": reasks_sent(t.column("judge_text")),
        "outcome_llm_reasks": reasks_sent(first.column("outcome_llm_text")),
        "outcome_rule_correct": count(rule, True),
        "outcome_llm_correct": count(llm, True),
        "outcome_llm_unknown": count(pc.is_null(llm), True),
        "rule_llm_agreement": round(pc.mean(agree.cast(pa.float64())).as_py(), 4) if len(agree) else None,
    }
