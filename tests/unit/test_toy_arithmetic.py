"""Toy arithmetic world: templates by split, records whose arithmetic, number use and calculator replay are
checked independently of the generator, split mechanics, determinism, wording diversity, and the GSM8K
loader."""

from __future__ import annotations

import ast
import json
import random
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from swirl.data.config import DatasetSpec
from swirl.data.demonstrations import math_gold_actions
from swirl.data.loaders import load_questions
from swirl.data.toy_arithmetic import ARITHMETIC_TEMPLATES, arithmetic_record, arithmetic_records
from swirl.data.toysplits import SPLITS
from swirl.tools.calculator import calculate

BY_ID = {t.id: t for t in ARITHMETIC_TEMPLATES}
OF_SPLIT = {s: [t for t in ARITHMETIC_TEMPLATES if t.split == s] for s in ("train", "dev", "test")}
SIZES = {"train": 600, "dev": 150, "test": 150, "test_seen": 300}
NOTE = re.compile(r"<<([^=<>]+)=([^<>]+)>>(\S*)")
EXPR = re.compile(r"^\s*(\d+)\s*([-+*/])\s*(\d+)\s*$")
NUMBER_WORDS = re.compile(
    r"\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|hundred|thousand|"
    r"million|twice|thrice|half|halves|double|triple|dozen|dozens|pair|pairs|couple|quarter|first|second|"
    r"third|single|both)\b",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def records() -> dict[str, list[dict[str, str]]]:
    return {s: arithmetic_records(SIZES[s], 0, s) for s in SPLITS}


@pytest.fixture(scope="module")
def per_template() -> dict[str, list[dict[str, str]]]:
    """3 questions of every template, rendered without the split filter."""
    rng = random.Random(7)
    return {t.id: [arithmetic_record(t, rng) for _ in range(3)] for t in ARITHMETIC_TEMPLATES}


# ---------------------------------------------------------------------------------- independent checks
def _steps(answer: str) -> tuple[list[tuple[int, str, int, int]], int]:
    """(a, op, b, value) of every note, checked against an exact recomputation, and the #### number."""
    lines = answer.split("\n")
    assert lines[-1].startswith("#### "), answer
    final = lines[-1][5:].strip()
    assert re.fullmatch(r"\d+", final), answer
    steps = []
    for line in lines[:-1]:
        notes = NOTE.findall(line)
        assert len(notes) == 1, f"one note per step line: {line!r}"
        expr, value, shown = notes[0]
        m = EXPR.match(expr)
        assert m, f"a note must be a plain 'a op b' of integers: {expr!r}"
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        exact = {
            "+": Fraction(a) + b,
            "-": Fraction(a) - b,
            "*": Fraction(a) * b,
            "/": Fraction(a) / b if b else None,
        }[op]
        assert exact is not None and exact.denominator == 1 and exact > 0, line
        assert value == str(exact.numerator), line
        assert shown.rstrip(".") == value, line
        steps.append((a, op, b, int(value)))
    assert 2 <= len(steps) <= 4, answer
    assert int(final) == steps[-1][3], answer
    return steps, int(final)


def _one_tree(steps: list[tuple[int, str, int, int]], numbers: Counter[int]) -> bool:
    """Is there a reading of the steps in which every operand is either an unconsumed earlier result or a
    question number, every question number (as a multiset) is used exactly once, and every result but the
    last is consumed exactly once? Searched over both readings of an operand, so a result that equals a
    question number is decided by the tree, not by a guess."""
    operands = [x for a, _, b, _ in steps for x in (a, b)]

    def search(i: int, pending: Counter[int], leaves: Counter[int]) -> bool:
        """Operand i of step i // 2; `pending` holds the unconsumed results of the earlier steps."""
        if i == len(operands):  # every result before the last consumed, every question number used
            return leaves == numbers and not +pending
        if i % 2 == 0 and i:  # a new step begins: the previous step's result may now be consumed
            pending = pending + Counter([steps[i // 2 - 1][3]])
        x = operands[i]
        if pending[x] > 0 and search(i + 1, pending - Counter([x]), leaves):
            return True
        return leaves[x] < numbers[x] and search(i + 1, pending, leaves + Counter([x]))

    return search(0, Counter(), Counter())


def _question_numbers(question: str) -> Counter[int]:
    return Counter(int(x) for x in re.findall(r"\d+", question.replace(",", "")))


def _rules_ok(a: int, op: str, b: int, v: int) -> bool:
    """The module's operand rules, written out again."""
    return {
        "*": max(a, b) >= 12 and min(a, b) >= 3,
        "+": max(a, b) >= 100 and min(a, b) >= 12,
        "-": a >= 100 and b >= 12 and v >= 1,
        "/": b >= 3 and a >= 100 and a % b == 0,
    }[op]


def check_record(rec: dict[str, str]) -> None:
    assert set(rec) == {"question", "answer", "template"}
    assert rec["template"] in BY_ID
    steps, _ = _steps(rec["answer"])
    numbers = _question_numbers(rec["question"])
    assert sum(numbers.values()) == len(steps) + 1, rec  # a tree of k steps has k + 1 leaves
    assert _one_tree(steps, numbers), rec
    for a, op, b, v in steps:
        assert _rules_ok(a, op, b, v), (rec, (a, op, b, v))
    assert not NUMBER_WORDS.search(rec["question"]), rec["question"]
    # the gold demonstrations replay each note as a calculator call; the calculator agrees with every note
    calls = math_gold_actions(rec["answer"])
    assert len(calls) == len(steps)
    for call, (a, op, b, v) in zip(calls, steps, strict=True):
        expr = re.fullmatch(r"<math_exp>(.*)</math_exp>", call).group(1)
        assert expr == f"{a} {op} {b}"
        assert calculate(expr) == f"{a} {op} {b} -> {v}"


# ------------------------------------------------------------------------------------------- templates
def test_template_counts_and_ids() -> None:
    counts = Counter(t.split for t in ARITHMETIC_TEMPLATES)
    assert counts["train"] >= 40 and counts["dev"] >= 10 and counts["test"] >= 10, counts
    assert set(counts) == {"train", "dev", "test"}
    ids = [t.id for t in ARITHMETIC_TEMPLATES]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]{2,40}", i) for i in ids)


def test_template_texts_hold_only_their_variables() -> None:
    for t in ARITHMETIC_TEMPLATES:
        bare = re.sub(r"\{\w+\}", "", t.text)
        assert not re.search(r"\d", bare), t.id
        assert not NUMBER_WORDS.search(bare), (t.id, NUMBER_WORDS.search(bare))
        variables = sorted(re.findall(r"\b[a-z]\b", t.formula))
        assert sorted(re.findall(r"\{([a-z])\}", t.text)) == variables, t.id


def test_every_template_makes_valid_records(per_template: dict[str, list[dict[str, str]]]) -> None:
    for tid, recs in per_template.items():
        for rec in recs:
            assert rec["template"] == tid
            check_record(rec)


def test_records_of_every_split_are_valid(records: dict[str, list[dict[str, str]]]) -> None:
    for split, recs in records.items():
        assert len(recs) == SIZES[split]
        for rec in recs:
            check_record(rec)


def test_every_template_appears_in_its_splits(records: dict[str, list[dict[str, str]]]) -> None:
    for split, source in (("train", "train"), ("test_seen", "train"), ("dev", "dev"), ("test", "test")):
        assert {r["template"] for r in records[split]} == {t.id for t in OF_SPLIT[source]}, split


def test_step_counts_and_operations_vary(records: dict[str, list[dict[str, str]]]) -> None:
    for split in ("train", "dev", "test"):
        counts = Counter(r["answer"].count("<<") for r in records[split])
        assert set(counts) == {2, 3, 4}, (split, counts)
        ops = Counter(op for r in records[split] for _, op, _, _ in _steps(r["answer"])[0])
        assert set(ops) == {"+", "-", "*", "/"}, (split, ops)


# ---------------------------------------------------------------------------------------------- splits
def test_splits_are_disjoint_and_draw_from_their_templates(records: dict[str, list[dict[str, str]]]) -> None:
    texts = {s: {r["question"] for r in recs} for s, recs in records.items()}
    for s in SPLITS:
        assert len(texts[s]) == len(records[s]), f"repeated question in {s}"
    for i, s in enumerate(SPLITS):
        for other in SPLITS[i + 1 :]:
            assert not texts[s] & texts[other], (s, other)
    for split, source in (("train", "train"), ("test_seen", "train"), ("dev", "dev"), ("test", "test")):
        assert all(BY_ID[r["template"]].split == source for r in records[split]), split


def test_template_prefix_for_the_ablation() -> None:
    first5 = [t.id for t in OF_SPLIT["train"][:5]]
    for split in ("train", "test_seen"):
        recs = arithmetic_records(100, 0, split, templates=5)
        assert Counter(r["template"] for r in recs).keys() == set(first5), split
    assert arithmetic_records(30, 1, "train", templates=len(OF_SPLIT["train"])) == arithmetic_records(
        30, 1, "train"
    )
    # the prefixes of the ablation mix operations: the first 5 templates use all four
    ops = set("".join(t.formula for t in OF_SPLIT["train"][:5]))
    assert {"+", "-", "*", "/"} <= ops


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"split": "validation"}, "choose one of"),
        ({"split": "train", "templates": 0}, "choose 1.."),
        ({"split": "train", "templates": len(OF_SPLIT["train"]) + 1}, "choose 1.."),
        ({"split": "dev", "templates": 5}, "use templates only with train or test_seen"),
        ({"split": "test", "templates": 5}, "use templates only with train or test_seen"),
    ],
)
def test_bad_arguments_raise_one_clear_error(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)) as e:
        arithmetic_records(3, 0, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(e.value)


def test_deterministic_prefix_stable_and_seeded() -> None:
    for split in SPLITS:
        a = arithmetic_records(20, 3, split)
        assert a == arithmetic_records(20, 3, split)
        assert a[:10] == arithmetic_records(10, 3, split)
        other = {r["question"] for r in arithmetic_records(20, 4, split)}
        assert len(other & {r["question"] for r in a}) <= 1, split
    assert arithmetic_records(0, 0, "train") == []


# -------------------------------------------------------------------------------------------- wording
def _words(text: str) -> list[str]:
    text = re.sub(r"\{name2?\}", " NAME ", text)
    text = re.sub(r"\$?\{[a-z]\}", " # ", text)
    return re.findall(r"[a-z#']+|NAME", text.lower().replace("name", "NAME"))


def _grams(text: str, k: int = 4) -> set[tuple[str, ...]]:
    w = _words(text)
    return {tuple(w[i : i + k]) for i in range(len(w) - k + 1)}


# Generic 4-word phrases a held-out template may share with the train templates (none are needed today; a
# phrase belongs here only if it says nothing about a template's story or its operations).
ALLOWED_SHARED: set[tuple[str, ...]] = set()


def test_held_out_templates_share_no_phrasing_with_train() -> None:
    train = set().union(*(_grams(t.text) for t in OF_SPLIT["train"]))
    for t in OF_SPLIT["dev"] + OF_SPLIT["test"]:
        shared = (_grams(t.text) & train) - ALLOWED_SHARED
        assert not shared, (t.id, sorted(" ".join(g) for g in shared))


def _shape(node: ast.expr) -> str:
    """A formula's operation structure with the variables erased (+ and * operands unordered)."""
    if isinstance(node, ast.Name):
        return "x"
    assert isinstance(node, ast.BinOp)
    op = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(node.op)]
    left, right = _shape(node.left), _shape(node.right)
    if op in "+*":
        left, right = sorted([left, right])
    return f"({left}{op}{right})"


def test_held_out_structures_and_orders_differ() -> None:
    shapes = {s: [_shape(ast.parse(t.formula, mode="eval").body) for t in OF_SPLIT[s]] for s in OF_SPLIT}
    assert len(set(shapes["train"])) >= 25, "train templates should cover many operation structures"
    for s in ("dev", "test"):
        assert not set(shapes[s]) & set(shapes["train"]), s
    # the question often gives the numbers in another order than the calculation uses them
    reordered = {
        t.id
        for t in ARITHMETIC_TEMPLATES
        if re.findall(r"\{([a-z])\}", t.text) != re.findall(r"\b[a-z]\b", t.formula)
    }
    assert len(reordered) >= 10 and len(reordered & {t.id for t in OF_SPLIT["dev"] + OF_SPLIT["test"]}) >= 4


# Wordings of each operation (a cue counts when it appears in a train template that uses the operation).
CUES = {
    "+": ["receives", "more", "arrive", "adds", "in total", "altogether", "another", "bring", "together"],
    "-": ["left", "rest", "sold", "sells", "gives away", "throws away", "remaining", "shipped out"]
    + ["get off", "knocks down", "spends", "after paying", "cut from", "stay empty"],
    "*": ["each", "per ", "every", " a day", " a week", "an hour", "times as many", " at $", "rows of"],
    "/": ["boxes of", "shared equally", "split evenly", "bags of", "cartons of", "reams of", "pallets of"]
    + ["bunches of", "loaded equally", "sets of", "on each litre", "how many days", "every bus"],
}


def test_each_operation_has_several_phrasings_in_train() -> None:
    for op, cues in CUES.items():
        texts = [t.text.lower() for t in OF_SPLIT["train"] if op in t.formula]
        used = {c for c in cues if any(c in x for x in texts)}
        assert len(used) >= 4, (op, used)


# ---------------------------------------------------------------------------------------------- loader
def test_written_file_loads_as_gsm8k(tmp_path: Path, records: dict[str, list[dict[str, str]]]) -> None:
    recs = records["test"][:60] + records["dev"][:20]
    path = tmp_path / "toy_arithmetic_test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    rows, report = load_questions(DatasetSpec(name="a", format="gsm8k", split="test", path=str(path)))
    assert report.summary()["kept"] == len(recs) == len(rows)
    for rec, row in zip(recs, rows, strict=True):
        assert row["question"] == rec["question"]
        assert row["answers"] == [rec["answer"].rsplit("#### ", 1)[1]]
        assert row["answers"] == [str(_steps(rec["answer"])[0][-1][3])]
