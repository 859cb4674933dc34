"""The tables that pass between stages (docs/design.md §2), as explicit pyarrow schemas.

Each table has a schema version; it is part of every stage version hash, so changing a schema re-runs the
stages that write it. Use `to_table` to build a table from Python rows and `check_table` to validate one read
from disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32())])  # [start, end) token offsets of one action

QUESTIONS = pa.schema(
    [
        ("question_id", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("question", pa.string()),
        ("answers", pa.list_(pa.string())),  # gold answer first, then aliases
        ("level", pa.string()),  # HotpotQA easy/medium/hard; MuSiQue "2hop"...; empty when unknown
        ("hops", pa.int32()),  # number of reasoning hops when known, else null
        ("metadata", pa.string()),  # JSON object: source fields not covered above
    ]
)

CORPUS = pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])

TRAJECTORIES = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("question_id", pa.string()),
        ("sample_idx", pa.int32()),
        ("messages", pa.list_(MESSAGE)),
        ("token_ids", pa.list_(pa.int32())),  # the whole trajectory, exactly as the model saw/produced it
        ("action_spans", pa.list_(SPAN)),  # one span per action, into token_ids
        ("action_logprobs", pa.list_(pa.list_(pa.float32()))),  # per action, per generated token
        ("final_answer", pa.string()),
        ("stop_reason", pa.string()),  # answer / max_steps / context_limit / ...
        ("num_actions", pa.int32()),
        ("model", pa.string()),
        ("adapter", pa.string()),
    ]
)

JUDGMENTS = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("step", pa.int32()),
        ("process_label", pa.string()),  # GOOD / BAD / UNKNOWN
        ("judge_text", pa.string()),
        ("outcome_correct", pa.bool_()),  # rule-based outcome (numeric equality / EM or F1), per trajectory
        ("outcome_llm", pa.bool_()),  # LLM-graded outcome (YES/NO); null when not graded or no verdict
        ("outcome_llm_text", pa.string()),  # the LLM grader's reply ("" when not graded)
        ("judge_model", pa.string()),
    ]
)

STEPS = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("step", pa.int32()),
        ("question_id", pa.string()),
        # questions.dataset of the trajectory's question (per-dataset filter counts)
        ("dataset", pa.string()),
        # state = token_ids[:state_offset] of the trajectory (a reference, not a copy)
        ("state_offset", pa.int32()),
        ("action_text", pa.string()),
        ("action_kind", pa.string()),  # search / math / answer / invalid
        ("process_label", pa.string()),
        ("outcome_correct", pa.bool_()),
        ("keep", pa.bool_()),
    ]
)

EVAL_RESULTS = pa.schema(
    [
        ("question_id", pa.string()),
        ("dataset", pa.string()),
        ("model", pa.string()),  # the policy's base model
        ("adapter", pa.string()),  # its LoRA adapter folder ("" for none)
        ("decoding", pa.string()),  # greedy / sample(t=...,p=...)
        ("trajectory_id", pa.string()),
        ("messages", pa.list_(MESSAGE)),  # the whole episode: prompt, actions, observations
        ("prediction", pa.string()),  # the final answer ("" when the episode never answered)
        ("stop_reason", pa.string()),  # answer / max_steps / context_limit
        ("num_actions", pa.int32()),
        ("tool_calls", pa.int32()),  # search + calculator actions
        ("invalid_actions", pa.int32()),
        ("em", pa.float32()),  # QA: SQuAD exact match (max over aliases); null for math
        ("f1", pa.float32()),  # QA: SQuAD token F1 (max over aliases); null for math
        # QA: a normalised gold answer occurs in the normalised prediction; null for math
        ("contains", pa.bool_()),
        # math: numeric equality; QA: judge.outcome.qa_rule (em, or f1 >= threshold)
        ("rule_correct", pa.bool_()),
        ("judge_correct", pa.bool_()),  # the LLM judge's YES/NO; null when not judged or no verdict
        ("judge_text", pa.string()),  # the LLM judge's reply ("" when not judged)
    ]
)

TRAIN_LOG = pa.schema(  # one row per (optimizer step, metric): the metrics each objective shows vary
    [
        ("step", pa.int32()),  # optimizer step, from 1
        ("name", pa.string()),  # a metric its objective declares (swirl/training/metrics.py)
        ("value", pa.float64()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "questions": QUESTIONS,
    "corpus": CORPUS,
    "trajectories": TRAJECTORIES,
    "judgments": JUDGMENTS,
    "steps": STEPS,
    "eval_results": EVAL_RESULTS,
    "train_log": TRAIN_LOG,
}

# Bump a table's version whenever its schema or the meaning of a column changes.
SCHEMA_VERSIONS: dict[str, int] = {**{name: 1 for name in SCHEMAS}, "eval_results": 2, "train_log": 2}


class SchemaError(ValueError):
    pass


def schema(name: str) -> pa.Schema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise SchemaError(f"unknown table {name!r}; known tables: {sorted(SCHEMAS)}") from None


def to_table(name: str, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Build a table of schema `name` from dict rows; a missing or extra column is an error naming it."""
    sch = schema(name)
    rows = list(rows)
    cols = set(sch.names)
    for i, r in enumerate(rows):
        extra, missing = set(r) - cols, cols - set(r)
        if extra or missing:
            raise SchemaError(
                f"table {name!r}, row {i}: "
                + (f"unknown columns {sorted(extra)}; " if extra else "")
                + (f"missing columns {sorted(missing)}; " if missing else "")
                + f"expected exactly {sch.names}"
            )
    try:
        return pa.Table.from_pylist(rows, schema=sch)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise SchemaError(f"table {name!r}: a value does not fit the schema: {e}") from None


def check_table(name: str, table: pa.Table, source: str = "") -> pa.Table:
    """Validate that `table` has table `name`'s schema (column names and types, in order)."""
    sch = schema(name)
    if not table.schema.equals(sch, check_metadata=False):
        where = f" in {source}" if source else ""
        got = {f.name: str(f.type) for f in table.schema}
        want = {f.name: str(f.type) for f in sch}
        diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
        raise SchemaError(
            f"table {name!r}{where} does not match its schema; (got, expected) per column: {diff}"
        )
    return table
