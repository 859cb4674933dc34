"""Toy tool worlds: deterministic files that swirl loads, arithmetic that checks out, two-hop facts that
resolve."""

from __future__ import annotations

import ast
import json
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from swirl.data.config import DatasetSpec
from swirl.data.corpus import corpus_from_questions
from swirl.data.loaders import load_questions
from swirl.data.toyworld import arithmetic_records, twohop_records, write_toy_worlds
from swirl.judging.outcome import exact_match, math_equal
from swirl.tools.config import SearchConfig
from swirl.tools.search import build_retriever

SIZES = {"arithmetic_train": 120, "arithmetic_test": 60, "twohop_train": 80, "twohop_test": 40}
FORMATS = {
    "arithmetic_train": ("gsm8k", "train"),
    "arithmetic_test": ("gsm8k", "test"),
    "twohop_train": ("hotpotqa", "train"),
    "twohop_test": ("hotpotqa", "dev"),
}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("toy")
    paths = write_toy_worlds(str(out), **SIZES, seed=0)
    loaded = {}
    for key, path in paths.items():
        fmt, split = FORMATS[key]
        rows, report = load_questions(DatasetSpec(name=key, format=fmt, split=split, path=path))
        assert report.skipped == [] and not report.dropped and len(rows) == SIZES[key], report.summary()
        loaded[key] = rows
    return {"dir": out, "paths": paths, "rows": loaded}


def _read(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f] if path.endswith(".jsonl") else json.load(f)


# ------------------------------------------------------------------------------------------- files
def test_same_seed_same_bytes_other_seed_other_content(worlds: dict[str, Any], tmp_path: Path) -> None:
    again = write_toy_worlds(str(tmp_path / "a"), **SIZES, seed=0)
    other = write_toy_worlds(str(tmp_path / "b"), **SIZES, seed=1)
    for key, path in worlds["paths"].items():
        assert Path(again[key]).read_bytes() == Path(path).read_bytes(), key
        assert Path(other[key]).read_bytes() != Path(path).read_bytes(), key
    assert set(again) == {"arithmetic_train", "arithmetic_test", "twohop_train", "twohop_test"}
    assert again["twohop_test"].endswith(os.path.join("twohop", "dev.json"))


def test_written_files_are_kept_until_settings_change(tmp_path: Path) -> None:
    sizes = {"arithmetic_train": 5, "arithmetic_test": 5, "twohop_train": 5, "twohop_test": 5}
    paths = write_toy_worlds(str(tmp_path), **sizes)
    Path(paths["arithmetic_train"]).write_text("marker\n")
    write_toy_worlds(str(tmp_path), **sizes)  # same settings: kept
    assert Path(paths["arithmetic_train"]).read_text() == "marker\n"
    write_toy_worlds(str(tmp_path), **{**sizes, "twohop_test": 6})  # other settings: everything rewritten
    assert Path(paths["arithmetic_train"]).read_text() != "marker\n"
    assert len(_read(paths["twohop_test"])) == 6
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_records_are_prefix_stable_and_splits_validated() -> None:
    assert arithmetic_records(10, 3, "train") == arithmetic_records(20, 3, "train")[:10]
    with pytest.raises(ValueError, match="split"):
        arithmetic_records(1, 0, "validation")


# -------------------------------------------------------------------------------------- arithmetic
NOTE = re.compile(r"<<([^<>=]+)=([^<>]+)>>")


def _check_op(op: ast.operator, a: Fraction, b: Fraction) -> Fraction:
    """The value of `a op b`, asserting the operand rule: * both >= 12; + - both >= 100 (difference >= 100);
    / exact, divisor >= 3, dividend >= 100."""
    if isinstance(op, ast.Mult):
        assert a >= 12 and b >= 12, f"small factor in {a} * {b}"
        return a * b
    if isinstance(op, ast.Add):
        assert a >= 100 and b >= 100, f"small operand in {a} + {b}"
        return a + b
    if isinstance(op, ast.Sub):
        assert a >= 100 and b >= 100 and a - b >= 100, f"small operand or result in {a} - {b}"
        return a - b
    if isinstance(op, ast.Div):
        assert b >= 3 and a >= 100 and a % b == 0, f"inexact or easy division {a} / {b}"
        return a / b
    raise AssertionError(f"operator {type(op).__name__} not allowed")


def _evaluate(expr: str) -> tuple[Fraction, list[Fraction]]:
    """Value and literal operands of an expression of integers and + - * / (parsed with ast, never eval)."""
    literals: list[Fraction] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            literals.append(Fraction(node.value))
            return Fraction(node.value)
        if isinstance(node, ast.BinOp):
            return _check_op(node.op, walk(node.left), walk(node.right))
        raise AssertionError(f"unexpected {ast.dump(node)} in {expr!r}")

    return walk(ast.parse(expr, mode="eval").body), literals


def test_arithmetic_solutions_check_out(worlds: dict[str, Any]) -> None:
    seen_steps = set()
    for key in ("arithmetic_train", "arithmetic_test"):
        records = _read(worlds["paths"][key])
        rows = worlds["rows"][key]
        for rec, row in zip(records, rows, strict=True):
            notes = NOTE.findall(rec["answer"])
            steps = rec["answer"].count("<<")
            assert len(notes) == steps and 2 <= steps <= 4, rec
            seen_steps.add(steps)
            given = {Fraction(x) for x in re.findall(r"\d+", rec["question"].replace(",", ""))}
            values: list[Fraction] = []
            for expr, value in notes:
                got, literals = _evaluate(expr)
                assert got == Fraction(value) and got.denominator == 1 and got > 0, (expr, value)
                assert all(x in given or x in values for x in literals), (
                    f"{expr}: operand not in question or steps"
                )
                values.append(got)
            final = rec["answer"].rsplit("####", 1)[1].strip()
            assert Fraction(final) == values[-1]
            gold = row["answers"][0]
            n = int(final)
            assert math_equal(str(n), gold) and not math_equal(str(n + 1), gold)
    assert seen_steps == {2, 3, 4}


def test_arithmetic_splits_share_no_question(worlds: dict[str, Any]) -> None:
    train = {r["question"] for r in worlds["rows"]["arithmetic_train"]}
    test = {r["question"] for r in worlds["rows"]["arithmetic_test"]}
    assert len(train) == SIZES["arithmetic_train"] and len(test) == SIZES["arithmetic_test"]
    assert not train & test
    assert not {r["question"] for r in arithmetic_records(300, 0, "train")} & test


# ----------------------------------------------------------------------------------------- two-hop
def _articles(row: dict[str, Any]) -> dict[str, str]:
    return {p["title"]: p["text"] for p in json.loads(row["metadata"])["paragraphs"]}


def _fact(text: str, pattern: str) -> str:
    m = re.search(pattern, text)
    assert m, (pattern, text)
    return m.group(1)


def _resolve(question: str, arts: dict[str, str]) -> str:
    """Answer a question by following the facts of its context articles (string lookup only)."""
    if m := re.fullmatch(r"In which city was the founder of the (.+) born\?", question):
        founder = _fact(arts[m.group(1)], r"founded by (.+?) in \d{4}\.")
        return _fact(arts[founder], r"who was born in (\w+)\.")
    if m := re.fullmatch(r"In which country is the city where the (.+) has its headquarters\?", question):
        city = _fact(arts[m.group(1)], r"headquarters in (\w+)\.")
        return _fact(arts[city], r"is a city in (\w+)\.")
    if m := re.fullmatch(r"In which country was the \w+ (\w+ \w+) born\?", question):
        city = _fact(arts[m.group(1)], r"who was born in (\w+)\.")
        return _fact(arts[city], r"is a city in (\w+)\.")
    m = re.fullmatch(r"Who was born first, (\w+ \w+) or (\w+ \w+)\?", question)
    assert m, question
    years = {p: int(_fact(arts[p], r"\(born (\d{4})\)")) for p in m.groups()}
    assert len(set(years.values())) == 2
    return min(years, key=years.__getitem__)


def _first_entity(question: str) -> str:
    m = re.search(
        r"founder of the (.+) born|where the (.+) has its|was the \w+ (\w+ \w+) born|first, (\w+ \w+) or",
        question,
    )
    assert m, question
    return next(g for g in m.groups() if g)


def test_twohop_answers_follow_from_the_context(worlds: dict[str, Any]) -> None:
    for key in ("twohop_train", "twohop_test"):
        for rec, row in zip(_read(worlds["paths"][key]), worlds["rows"][key], strict=True):
            arts = _articles(row)
            gold = row["answers"][0]
            assert row["answers"] == [rec["answer"]] and len(arts) == 10
            assert _resolve(row["question"], arts) == gold, row["question"]
            assert exact_match(gold, [gold]) and not exact_match("Paris", [gold])
            assert all(t in arts for t, _ in rec["supporting_facts"])
            assert (rec["type"], rec["level"]) in {
                ("bridge", "hard"),
                ("bridge", "medium"),
                ("comparison", "medium"),
            }


def _entity_tokens(titles: set[str], texts: dict[str, str]) -> list[str]:
    """The made-up words of each entity name (an organisation's kind word, e.g. Guild, is shared on
    purpose)."""
    out = []
    for t in titles:
        words = t.split()
        out += words[:1] if texts[t].startswith(f"The {t} was founded") else words
    return out


def test_twohop_names_are_unique_and_splits_disjoint(worlds: dict[str, Any]) -> None:
    import Stemmer

    stem = Stemmer.Stemmer("english").stemWords
    texts: dict[str, str] = {}
    titles: dict[str, set[str]] = {}
    for key in ("twohop_train", "twohop_test"):
        titles[key] = set()
        for row in worlds["rows"][key]:
            for t, text in _articles(row).items():
                assert texts.setdefault(t, text) == text, f"two articles titled {t}"
                titles[key].add(t)
    assert not titles["twohop_train"] & titles["twohop_test"]
    tokens = _entity_tokens(titles["twohop_train"] | titles["twohop_test"], texts)
    assert (
        len(tokens)
        == len(set(tokens))
        == len({t.lower() for t in tokens})
        == len(set(stem([t.lower() for t in tokens])))
    )
    assert all(len(t) >= 6 and t.isalpha() for t in tokens)
    q_train = {r["question"] for r in worlds["rows"]["twohop_train"]}
    q_dev = {r["question"] for r in worlds["rows"]["twohop_test"]}
    assert len(q_train) == SIZES["twohop_train"] and not q_train & q_dev
    assert not {r["answer"] for r in twohop_records(5, 0, "dev")} & {
        r["answer"] for r in twohop_records(50, 0, "train")
    }


def test_bm25_finds_the_first_hop_article(worlds: dict[str, Any]) -> None:
    for key in ("twohop_train", "twohop_test"):
        rows = worlds["rows"][key]
        corpus, _ = corpus_from_questions([pa.Table.from_pylist(rows)])
        assert len({d["title"] for d in corpus}) == len(corpus)  # one article per entity in the pooled corpus
        retriever = build_retriever(corpus, SearchConfig())
        entities = [_first_entity(r["question"]) for r in rows]
        hits = retriever.search(entities, 1)
        found = sum(h[0].title == e for h, e in zip(hits, entities, strict=True))
        assert found >= 0.95 * len(rows), f"{key}: {found}/{len(rows)}"
        # and the second hop: the bridge entity (or the second person) named in the first article
        seconds = [_second_entity(r["question"], _articles(r)) for r in rows]
        hits = retriever.search(seconds, 1)
        assert sum(h[0].title == e for h, e in zip(hits, seconds, strict=True)) >= 0.95 * len(rows)


def _second_entity(question: str, arts: dict[str, str]) -> str:
    first = _first_entity(question)
    if "founder of" in question:
        return _fact(arts[first], r"founded by (.+?) in \d{4}\.")
    if "headquarters" in question:
        return _fact(arts[first], r"headquarters in (\w+)\.")
    if "born first" in question:
        return _fact(question, r" or (\w+ \w+)\?")
    return _fact(arts[first], r"who was born in (\w+)\.")
