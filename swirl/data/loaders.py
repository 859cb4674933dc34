"""Dataset loaders: a benchmark's original format (local file or hub copy) -> rows of the `questions` table.

Each format has a record parser `parse_<format>(record, where, split, dataset, index) -> row` that raises
`DataError` naming the place (`file:line`, `file record i`, `file data[i]` or `hub[split] row i`), the field
and the fix. Every format's local files are read by one reader, `iter_json_records`, which detects the layout:

- JSON Lines, one record per line (records named `file:line`; a bad line is one bad record);
- one JSON list of records (the file starts with `[`; records named `file record i`, 0-based);
- one JSON object holding a `data` list of records, compact or pretty-printed (BeerQA's
  `{"version", "split", "data": [...]}`; records named `file data[i]`).

`load_questions(spec)` dispatches on the spec's format, drops the levels the spec excludes, samples by seed,
and reports skipped and dropped records.

Answers are the gold answer first, then aliases. Multi-hop formats keep their context paragraphs in the row's
`metadata` JSON as `paragraphs: [{title, text, supporting}]` (one shape for every format), which is what the
corpus stage indexes; `supporting` is true/false when the source says which paragraphs support the answer.

Hub copies (`hub:` in a DatasetSpec; needs network; `split` is the hub split name):

| format   | hub id               | config       | splits            | notes |
|----------|----------------------|--------------|-------------------|-------|
| gsm8k    | `openai/gsm8k`       | `main`       | train, test       |       |
| hotpotqa | `hotpotqa/hotpot_qa` | `distractor` | train, validation | (1)   |
| musique  | `dgslibisey/MuSiQue` | (none)       | train, validation | (2)   |
| beerqa   | none known           |              |                   | (3)   |
| cofca    | none known           |              |                   | (4)   |

(1) the hub's columnar context/supporting_facts are accepted; (2) the official `musique_ans_v1.0_*.jsonl`
files; (3) use `path:` to `beerqa_dev_v1.0.json`; (4) use `path:` to the CofCA JSON files.

BeerQA's file is one JSON object `{version, split, data: [...]}`, so a generic hub loader cannot read it as
records anyway (the local reader takes its `data` list); CofCA is distributed as files with its paper's code.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from swirl.data.config import DatasetSpec


class DataError(ValueError):
    """A malformed record or file, with the place (file and line), the field and the fix in the message."""


class Excluded(Exception):
    """A well-formed record that the format's rules leave out (e.g. an unanswerable MuSiQue question).

    Raised by a parser; `load_questions` counts it under `reason` in `LoadReport.dropped`, never as invalid.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class LoadReport:
    source: str
    records: int = 0  # records read (valid + skipped + dropped)
    skipped: list[str] = field(default_factory=list)  # one message per skipped (malformed) record
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> count of well-formed records left out

    def summary(self) -> dict[str, Any]:
        dropped = sum(self.dropped.values())
        return {
            "source": self.source,
            "records": self.records,
            "kept": self.records - len(self.skipped) - dropped,
            "skipped": len(self.skipped),
            "skipped_examples": self.skipped[:5],
            "dropped": dict(sorted(self.dropped.items())),
        }


Row = dict[str, Any]
Parser = Callable[[dict[str, Any], str, str, str, int], Row]


# ------------------------------------------------------------------------------------------ gsm8k
_NUM = re.compile(r"^-?\d+(\.\d+)?$")


def gsm8k_gold(answer: str) -> str:
    """The gold answer of a GSM8K solution: the text after `####`, commas removed (`1,600` -> `1600`)."""
    if "####" not in answer:
        raise ValueError("answer has no '#### <number>' line")
    gold = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not _NUM.match(gold):
        raise ValueError(f"the text after '####' is not a number: {gold!r}")
    return gold


def _require(rec: dict[str, Any], name: str, where: str, kind: type = str) -> Any:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if name not in rec:
        raise DataError(f"{where}: missing field {name!r} (fields present: {sorted(rec)})")
    val = rec[name]
    if not isinstance(val, kind) or (kind is str and not val.strip()):
        raise DataError(f"{where}: field {name!r} must be a non-empty {kind.__name__}, got {val!r:.80}")
    return val


def _optional(rec: dict[str, Any], name: str, where: str, kind: type, default: Any) -> Any:
    """A field that may be absent (or null); when present it must have the right type."""
    val = rec.get(name)
    if val is None:
        return default
    if not isinstance(val, kind):
        raise DataError(f"{where}: field {name!r} must be a {kind.__name__}, got {val!r:.80}")
    return val


def parse_gsm8k(rec: dict[str, Any], where: str, split: str, dataset: str, index: int) -> Row:
    question = _require(rec, "question", where)
    answer = _require(rec, "answer", where)
    try:
        gold = gsm8k_gold(answer)
    except ValueError as e:
        raise DataError(f"{where}: field 'answer': {e}") from None
    return {
        "question_id": f"{dataset}-{split}-{index:05d}",
        "dataset": dataset,
        "split": split,
        "question": question.strip(),
        "answers": [gold],
        "level": "",
        "hops": None,
        "metadata": json.dumps({"solution": answer}),
    }


# ------------------------------------------------------------------------------- multi-hop helpers
def _answers(gold: Any, aliases: Any, where: str, gold_field: str, alias_field: str) -> list[str]:
    """Gold first, then aliases; stripped, empty and repeated entries removed."""
    if not isinstance(gold, str) or not gold.strip():
        raise DataError(f"{where}: field {gold_field!r} must be a non-empty str, got {gold!r:.80}")
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise DataError(f"{where}: field {alias_field!r} must be a list of strings, got {aliases!r:.80}")
    out: list[str] = []
    for a in [gold, *aliases]:
        a = a.strip()
        if a and a not in out:
            out.append(a)
    return out


def _source_id(rec: dict[str, Any], where: str, *names: str) -> str:
    """The record's own id (the first of `names` present), so question ids are stable across samples."""
    for n in names:
        if n in rec:
            val = rec[n]
            if isinstance(val, int | str) and str(val).strip():
                return str(val).strip()
            raise DataError(f"{where}: field {n!r} must be a non-empty id, got {val!r:.80}")
    raise DataError(f"{where}: missing field {names[0]!r} (fields present: {sorted(rec)})")


def _paragraph(title: Any, text: Any, where: str, fld: str, supporting: bool | None) -> dict[str, Any]:
    if not isinstance(title, str) or not isinstance(text, str):
        raise DataError(
            f"{where}: field {fld!r}: title and text must be strings, got {title!r:.40} / {text!r:.40}"
        )
    return {"title": title.strip(), "text": text.strip(), "supporting": supporting}


def _hotpot_context(ctx: Any, where: str, support: set[str] | None) -> list[dict[str, Any]]:
    """HotpotQA context -> paragraphs; accepts the file layout `[[title, [sentence, ...]], ...]` and the hub's
    columnar `{title: [...], sentences: [[...], ...]}`. Sentences keep their own leading spaces, so they are
    joined with no separator (as HotpotQA's own scripts do)."""
    if isinstance(ctx, dict) and "title" in ctx and "sentences" in ctx:
        ctx = [[t, s] for t, s in zip(ctx["title"], ctx["sentences"], strict=False)]
    if not isinstance(ctx, list):
        raise DataError(
            f"{where}: field 'context' must be a list of [title, sentences], got {type(ctx).__name__}"
        )
    out = []
    for i, item in enumerate(ctx):
        if not (isinstance(item, list | tuple) and len(item) == 2):
            raise DataError(
                f"{where}: field 'context[{i}]' must be [title, sentences or text], got {item!r:.80}"
            )
        title, sents = item
        if isinstance(sents, list) and all(isinstance(x, str) for x in sents):
            sents = "".join(sents)
        sup = None if support is None else (isinstance(title, str) and title.strip() in support)
        out.append(_paragraph(title, sents, where, f"context[{i}]", sup))
    return out


def _supporting_facts(rec: dict[str, Any], where: str) -> list[list[Any]] | None:
    """[[title, sentence index], ...] from the file layout or the hub's `{title: [...], sent_id: [...]}`."""
    sf = rec.get("supporting_facts")
    if sf is None:
        return None
    if isinstance(sf, dict) and "title" in sf and "sent_id" in sf:
        sf = [[t, i] for t, i in zip(sf["title"], sf["sent_id"], strict=False)]
    if not isinstance(sf, list) or not all(
        isinstance(x, list | tuple) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], int)
        for x in sf
    ):
        raise DataError(
            f"{where}: field 'supporting_facts' must be a list of [title, sentence index], got {sf!r:.80}"
        )
    return [[t.strip(), i] for t, i in sf]


def _row(
    dataset: str,
    split: str,
    sid: str,
    question: str,
    answers: list[str],
    level: str,
    hops: int | None,
    metadata: dict[str, Any],
) -> Row:
    return {
        "question_id": f"{dataset}-{split}-{sid}",
        "dataset": dataset,
        "split": split,
        "question": question.strip(),
        "answers": answers,
        "level": level,
        "hops": hops,
        "metadata": json.dumps({"id": sid, **metadata}, ensure_ascii=False),
    }


# ---------------------------------------------------------------------------------------- hotpotqa
def parse_hotpotqa(rec: dict[str, Any], where: str, split: str, dataset: str, index: int) -> Row:
    """HotpotQA (distractor or fullwiki file, or the hub copy). Every HotpotQA question is two-hop."""
    question = _require(rec, "question", where)
    sid = _source_id(rec, where, "_id", "id")
    answers = _answers(_require(rec, "answer", where), [], where, "answer", "answer")
    facts = _supporting_facts(rec, where)
    if "context" not in rec:
        raise DataError(f"{where}: missing field 'context' (fields present: {sorted(rec)})")
    support = {t for t, _ in facts} if facts is not None else None
    paragraphs = _hotpot_context(rec["context"], where, support)
    level = _optional(rec, "level", where, str, "")
    qtype = _optional(rec, "type", where, str, "")
    meta = {"type": qtype, "supporting_facts": facts or [], "paragraphs": paragraphs}
    return _row(dataset, split, sid, question, answers, level, 2, meta)


def _answer_and_aliases(rec: dict[str, Any], where: str) -> list[str]:
    """The gold answers of a record with an `answer` field and optional `answer_aliases` (CofCA, MuSiQue)."""
    aliases = _optional(rec, "answer_aliases", where, list, [])
    return _answers(_require(rec, "answer", where), aliases, where, "answer", "answer_aliases")


# ------------------------------------------------------------------------------------------- cofca
_HOPS_IN = re.compile(r"(\d)\s*-?\s*hop", re.IGNORECASE)


def parse_cofca(rec: dict[str, Any], where: str, split: str, dataset: str, index: int) -> Row:
    """CofCA: HotpotQA-style records over counterfactual passages. `supporting_facts` and `level` are
    optional; hops come from an integer `hops` field, or from `level`/`type` when they say e.g. "3hop", else
    unknown."""
    question = _require(rec, "question", where)
    sid = _source_id(rec, where, "_id", "id")
    answers = _answer_and_aliases(rec, where)
    facts = _supporting_facts(rec, where)
    if "context" not in rec:
        raise DataError(f"{where}: missing field 'context' (fields present: {sorted(rec)})")
    paragraphs = _hotpot_context(rec["context"], where, {t for t, _ in facts} if facts is not None else None)
    level = _optional(rec, "level", where, str, "")
    qtype = _optional(rec, "type", where, str, "")
    hops = _optional(rec, "hops", where, int, None)
    if hops is None:
        m = _HOPS_IN.search(f"{level} {qtype}")
        hops = int(m.group(1)) if m else None
    meta = {"type": qtype, "supporting_facts": facts or [], "paragraphs": paragraphs}
    return _row(dataset, split, sid, question, answers, level, hops, meta)


# ----------------------------------------------------------------------------------------- musique
_MUSIQUE_ID = re.compile(r"^(\d+)hop(\d*)__")


def parse_musique(rec: dict[str, Any], where: str, split: str, dataset: str, index: int) -> Row:
    """A MuSiQue-Ans / -Full record (the official files are JSONL; JSON-list copies are read too).
    Unanswerable records (MuSiQue-Full's contrast questions) are excluded, not invalid; a record without
    `answerable` counts as answerable (older Ans files). Hops come from the id prefix (`2hop__`, `3hop1__`,
    ...); `level` is `<n>hop` and the full prefix is kept as metadata `composition`."""
    question = _require(rec, "question", where)
    sid = _require(rec, "id", where)
    m = _MUSIQUE_ID.match(sid)
    if not m:
        raise DataError(
            f"{where}: field 'id' must start with '<n>hop__' or '<n>hop<k>__' (e.g. 2hop__1_2), "
            f"got {sid!r:.80}"
        )
    answerable = _optional(rec, "answerable", where, bool, True)
    if not answerable:
        raise Excluded("unanswerable")
    answers = _answer_and_aliases(rec, where)
    paras = _require(rec, "paragraphs", where, list)
    paragraphs = []
    for i, p in enumerate(paras):
        if not isinstance(p, dict) or "title" not in p or "paragraph_text" not in p:
            raise DataError(
                f"{where}: field 'paragraphs[{i}]' must be an object with title and paragraph_text, "
                f"got {p!r:.80}"
            )
        sup = p.get("is_supporting")
        paragraphs.append(
            _paragraph(
                p["title"],
                p["paragraph_text"],
                where,
                f"paragraphs[{i}]",
                sup if isinstance(sup, bool) else None,
            )
        )
    hops = int(m.group(1))
    meta = {
        "composition": sid.split("__", 1)[0],
        "paragraphs": paragraphs,
        "question_decomposition": rec.get("question_decomposition") or [],
    }
    return _row(dataset, split, sid, question, answers, f"{hops}hop", hops, meta)


# ------------------------------------------------------------------------------------------ beerqa
_BEERQA_HOPS = {"squad": 1, "hotpotqa": 2}


def parse_beerqa(rec: dict[str, Any], where: str, split: str, dataset: str, index: int) -> Row:
    """A BeerQA record `{id, src, question, answers: [str], context: [[title, text], ...]}`. `src` (squad,
    hotpotqa, beerqa) is kept as metadata; hops are 1 for SQuAD, 2 for HotpotQA, unknown (3+) for new ones."""
    question = _require(rec, "question", where)
    sid = _source_id(rec, where, "id")
    answers_in = _require(rec, "answers", where, list)
    if not answers_in:
        raise DataError(
            f"{where}: field 'answers' is empty (BeerQA's test split has no answers; use train/dev)"
        )
    answers = _answers(answers_in[0], answers_in[1:], where, "answers", "answers")
    src = _optional(rec, "src", where, str, "")
    ctx = _optional(rec, "context", where, list, [])
    paragraphs = _hotpot_context(ctx, where, None)
    meta = {"src": src, "paragraphs": paragraphs}
    return _row(dataset, split, sid, question, answers, "", _BEERQA_HOPS.get(src), meta)


# ----------------------------------------------------------------------------------------- readers
def iter_jsonl(path: str) -> Iterator[tuple[str, Any]]:
    """(where, record) per non-blank line; a line that is not JSON yields a DataError as its record."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                yield (
                    where,
                    DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno}); fix or remove the line"),
                )


def _load_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno}); the whole file is one "
            "JSON document, so it cannot be read past this point. Fix the file."
        ) from None


def _has_data_list(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("data"), list)


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _data_records(path: str, doc: Any) -> Iterator[tuple[str, Any]]:
    """The records of a whole-file JSON document: a list (`file record i`) or an object's `data` list."""
    if isinstance(doc, list):
        for i, rec in enumerate(doc):
            yield f"{path} record {i}", rec
        return
    if not _has_data_list(doc):
        got = f"fields {sorted(doc)}" if isinstance(doc, dict) else type(doc).__name__
        raise DataError(
            f"{path}: field 'data': the file is one JSON document ({got}) but not a list of records or "
            "an object with a 'data' list of records (BeerQA's layout, e.g. beerqa_dev_v1.0.json); "
            "write the records as JSON Lines (one object per line) or as one JSON list"
        )
    for i, rec in enumerate(doc["data"]):
        yield f"{path} data[{i}]", rec


def iter_json_records(path: str) -> Iterator[tuple[str, Any]]:
    """(where, record) from a file in any of the layouts every format accepts, detected from its start:

    - first non-blank character `[`: one JSON list of records, named `file record i` (0-based list index);
    - one JSON object holding a `data` list (BeerQA's `{"version", "split", "data": [...]}`), compact on one
      line or pretty-printed: the `data` list, records named `file data[i]`;
    - otherwise JSON Lines: records named `file:line`; a line that is not JSON yields a DataError as its
      record, so `skip_invalid` skips it alone.

    Only the first lines are read to decide: a JSONL file's first line is a complete JSON value, so a JSONL
    file is never parsed as one document (unless its first line is itself broken; then the whole-file parse
    fails and, when the next line is a complete JSON object, the file is read as JSONL after all).
    """
    doc: Any = None
    with open(path, encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
        if first.lstrip().startswith("["):
            layout = "document"
        else:
            try:
                value = json.loads(first) if first else None
            except json.JSONDecodeError:
                # Not a complete value: a pretty-printed document, or a JSONL file with a broken first line.
                layout = "document" if first.lstrip().startswith("{") else "jsonl"
            else:
                layout = "jsonl"
                if _has_data_list(value) and not any(line.strip() for line in f):
                    layout, doc = "object", value  # a compact BeerQA file: one line, one object
        second = next((line for line in f if line.strip()), "") if layout == "document" else ""
    starts_object = first.lstrip().startswith("{")
    first = ""  # a compact one-line file can be large: do not hold it while the document is parsed again
    if layout == "jsonl":
        yield from iter_jsonl(path)
        return
    if layout == "document":
        try:
            doc = _load_json(path)
        except DataError:
            if starts_object and _is_object(second):
                yield from iter_jsonl(path)  # JSONL whose first line is broken: report it per line
                return
            raise
    yield from _data_records(path, doc)


def _text(path: str, records: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """The records of a local file; a file that is not UTF-8 text (a binary or compressed file, another
    encoding) is a DataError naming it, not a UnicodeDecodeError."""
    try:
        yield from records
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} cannot be decoded); a dataset file is "
            "UTF-8 JSON or JSON Lines: check that the path names the data file (not a compressed or binary "
            "one) or convert it to UTF-8"
        ) from None


def iter_hub(hub: str, config: str | None, split: str) -> Iterator[tuple[str, Any]]:
    import datasets

    ds = datasets.load_dataset(hub, config, split=split)
    for i, rec in enumerate(ds):
        yield f"{hub}[{split}] row {i}", dict(rec)


PARSERS: dict[str, Parser] = {
    "gsm8k": parse_gsm8k,
    "hotpotqa": parse_hotpotqa,
    "musique": parse_musique,
    "beerqa": parse_beerqa,
    "cofca": parse_cofca,
}
# Every format reads the same file layouts (JSONL, a JSON list, an object with a `data` list).
FILE_READERS: dict[str, Callable[[str], Iterator[tuple[str, Any]]]] = {
    fmt: iter_json_records for fmt in PARSERS
}
NO_HUB = {"beerqa", "cofca"}  # formats without a hub copy whose records the hub loader can read


def load_questions(spec: DatasetSpec) -> tuple[list[Row], LoadReport]:
    """Read a dataset into `questions` rows; stop at the first bad record unless spec.skip_invalid.

    Order of operations: parse (malformed -> error or skipped; excluded by the format -> dropped), drop
    `spec.drop_levels`, reject repeated question ids, then take the seeded sample, so `limit` counts kept
    rows.
    """
    parser = PARSERS[spec.format]
    if spec.path:
        if not os.path.exists(spec.path):
            raise DataError(
                f"{spec.path}: file not found (dataset {spec.name!r}); fix ingest.datasets[].path"
            )
        records, source = _text(spec.path, FILE_READERS[spec.format](spec.path)), spec.path
    else:
        if spec.format in NO_HUB:
            raise DataError(
                f"dataset {spec.name!r}: no hub copy of {spec.format} is supported; download the "
                f"original file and set `path:` instead of `hub:` (see swirl.data.loaders)"
            )
        records, source = iter_hub(spec.hub, spec.hub_config, spec.split), f"{spec.hub}[{spec.split}]"
    report = LoadReport(source)
    rows: list[Row] = []
    seen: dict[str, str] = {}
    drop = set(spec.drop_levels)
    for index, (where, rec) in enumerate(records):
        report.records += 1
        try:
            if isinstance(rec, DataError):
                raise rec
            row = parser(rec, where, spec.split, spec.name, index)
            if row["question_id"] in seen:
                raise DataError(
                    f"{where}: field 'id': question id {row['question_id']!r} repeats the record at "
                    f"{seen[row['question_id']]}; remove the duplicate"
                )
        except Excluded as e:
            report.dropped[e.reason] += 1
            continue
        except DataError as e:
            if not spec.skip_invalid:
                raise DataError(
                    f"{e}\n(set skip_invalid: true on dataset {spec.name!r} to skip and count bad records)"
                ) from None
            report.skipped.append(str(e))
            continue
        if row["level"] in drop:
            report.dropped[f"level={row['level']}"] += 1
            continue
        seen[row["question_id"]] = where
        rows.append(row)
    if not rows:
        raise DataError(
            f"{source}: no valid questions (dataset {spec.name!r}, {report.records} records read, "
            f"dropped {dict(report.dropped)}, skipped {len(report.skipped)})"
        )
    return sample_rows(rows, spec.limit, spec.seed), report


def sample_rows(rows: list[Row], limit: int | None, seed: int) -> list[Row]:
    """A seeded random sample of `limit` rows, in their original order (all rows when limit is None or
    larger)."""
    if limit is None or limit >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in keep]
