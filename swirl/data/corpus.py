"""Rows of the `corpus` table (doc_id, title, text): from questions' context paragraphs or from a corpus file.

The paper searches "all articles of that dataset split", so the default corpus is the pool of every context
paragraph of the split's questions (HotpotQA/CofCA/BeerQA contexts, MuSiQue paragraphs, stored by the loaders
in each question's `metadata.paragraphs`), de-duplicated by (title, text): the same Wikipedia paragraph
appears under many questions. A user corpus file (JSONL or Parquet with `title`, `text` and optional `doc_id`)
replaces it, e.g. a full Wikipedia dump.

`doc_id` is a hash of title and text when the source has none, so the same paragraph has the same id in every
run and every split.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from swirl.data.loaders import DataError

Row = dict[str, Any]


def doc_id(title: str, text: str) -> str:
    return hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:16]


def corpus_from_questions(tables: Iterable[pa.Table]) -> tuple[list[Row], dict[str, Any]]:
    """Unique paragraphs of the questions' metadata, in first-seen order; and a summary of the pooling."""
    rows: list[Row] = []
    seen: set[tuple[str, str]] = set()
    stats = {"questions": 0, "questions_without_paragraphs": 0, "paragraphs": 0, "empty": 0, "duplicates": 0}
    datasets: set[str] = set()
    for table in tables:
        for qid, dataset, meta in zip(
            table.column("question_id").to_pylist(),
            table.column("dataset").to_pylist(),
            table.column("metadata").to_pylist(),
            strict=True,
        ):
            stats["questions"] += 1
            datasets.add(dataset)
            try:
                paragraphs = json.loads(meta or "{}").get("paragraphs") or []
            except json.JSONDecodeError as e:
                raise DataError(
                    f"question {qid}: field 'metadata' is not JSON ({e.msg}); re-run ingest"
                ) from None
            if not paragraphs:
                stats["questions_without_paragraphs"] += 1
            for p in paragraphs:
                stats["paragraphs"] += 1
                title, text = str(p.get("title") or "").strip(), str(p.get("text") or "").strip()
                if not text:
                    stats["empty"] += 1
                    continue
                if (title, text) in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add((title, text))
                rows.append({"doc_id": doc_id(title, text), "title": title, "text": text})
    if not rows:
        raise DataError(
            f"the questions of {sorted(datasets) or 'no dataset'} carry no context paragraphs to search "
            "(GSM8K has none); give the corpus stage a corpus file (JSONL/Parquet with title,text) or "
            "multi-hop QA questions"
        )
    return rows, {**stats, "documents": len(rows), "datasets": sorted(datasets)}


def read_corpus_file(path: str) -> tuple[list[Row], dict[str, Any]]:
    """A user corpus: JSONL (one `{title, text[, doc_id]}` per line) or Parquet with those columns.

    Given doc_ids must be unique; without them rows are de-duplicated by (title, text) like pooled
    paragraphs."""
    rows: list[Row] = []
    seen_ids: dict[str, str] = {}
    seen_text: set[tuple[str, str]] = set()
    duplicates = 0
    for where, rec in _records(path):
        title, text = _title_text(where, rec)
        did = _given_doc_id(where, rec)
        if did is None:
            if (title, text) in seen_text:
                duplicates += 1
                continue
            did = doc_id(title, text)
        if did in seen_ids:
            raise DataError(
                f"{where}: field 'doc_id': {did!r} repeats {seen_ids[did]}; doc ids must be unique"
            )
        seen_ids[did] = where
        seen_text.add((title, text))
        rows.append({"doc_id": did, "title": title, "text": text})
    if not rows:
        raise DataError(f"{path}: the corpus file has no rows")
    return rows, {"documents": len(rows), "duplicates": duplicates, "source": path}


def _records(path: str) -> Iterable[tuple[str, Any]]:
    """(where, record) of every row of a corpus file, by its type (Parquet or JSONL)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: corpus file not found; fix the corpus path")
    if path.endswith(".parquet"):
        table = pq.read_table(path)
        missing = {"title", "text"} - set(table.column_names)
        if missing:
            raise DataError(
                f"{path}: missing column(s) {sorted(missing)} (columns: {table.column_names}); a corpus "
                "needs title and text, and may have doc_id"
            )
        return ((f"{path} row {i}", r) for i, r in enumerate(table.to_pylist()))
    if path.endswith((".jsonl", ".json")):
        return _jsonl(path)
    raise DataError(f"{path}: unknown corpus file type; use .jsonl (one JSON object per line) or .parquet")


def _title_text(where: str, rec: Any) -> tuple[str, str]:
    """The stripped title and text of a corpus record, checked (both strings, text not empty)."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object with title and text, got {type(rec).__name__}")
    for name in ("title", "text"):
        if name not in rec:
            raise DataError(f"{where}: missing field {name!r} (fields present: {sorted(rec)})")
        if not isinstance(rec[name], str):
            raise DataError(f"{where}: field {name!r} must be a string, got {rec[name]!r:.60}")
    title, text = rec["title"].strip(), rec["text"].strip()
    if not text:
        raise DataError(f"{where}: field 'text' is empty; remove the row or give it text")
    return title, text


def _given_doc_id(where: str, rec: Row) -> str | None:
    """The record's own doc_id (stripped), or None when it has none."""
    given = rec.get("doc_id")
    if given is None:
        return None
    if not isinstance(given, str | int) or not str(given).strip():
        raise DataError(f"{where}: field 'doc_id' must be a non-empty string, got {given!r:.60}")
    return str(given).strip()


def _jsonl(path: str) -> Iterable[tuple[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno}); fix or remove the line"
                ) from None
