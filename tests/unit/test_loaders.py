"""Loaders: each benchmark format from tiny fixtures in its original layout, malformed input, sampling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swirl.data.config import DatasetSpec
from swirl.data.loaders import DataError, load_questions, parse_hotpotqa


def _jsonl(path: Path, records: list[Any]) -> str:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8"
    )
    return str(path)


def _json(path: Path, doc: Any) -> str:
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return str(path)


def _spec(fmt: str, path: str, **kw: Any) -> DatasetSpec:
    return DatasetSpec(name=kw.pop("name", fmt), format=fmt, path=path, split=kw.pop("split", "dev"), **kw)


def _hotpot(i: int, level: str = "medium", **over: Any) -> dict[str, Any]:
    rec = {
        "_id": f"hp{i}",
        "question": f"Which city was person {i} born in?",
        "answer": f"City {i}",
        "type": "bridge",
        "level": level,
        "supporting_facts": [[f"Person {i}", 0], [f"City {i}", 1]],
        "context": [
            [f"Person {i}", [f"Person {i} is a painter.", f" They were born in City {i}."]],
            [f"City {i}", [f"City {i} is a port.", f" It lies in Country {i}."]],
            ["Shared", ["A paragraph every question has."]],
        ],
    }
    rec.update(over)
    return rec


def _musique(sid: str, answerable: bool = True, **over: Any) -> dict[str, Any]:
    rec = {
        "id": sid,
        "question": f"Question {sid}?",
        "answer": "Stanley",
        "answer_aliases": ["Stanley, ND", "Stanley"],
        "answerable": answerable,
        "paragraphs": [
            {
                "idx": 0,
                "title": "Van Hook",
                "paragraph_text": "Van Hook is in Mountrail County.",
                "is_supporting": True,
            },
            {
                "idx": 1,
                "title": "Port Blair",
                "paragraph_text": "Port Blair is a capital.",
                "is_supporting": False,
            },
        ],
        "question_decomposition": [
            {"id": 1, "question": "q1", "answer": "Mountrail County", "paragraph_support_idx": 0}
        ],
    }
    rec.update(over)
    return rec


# ------------------------------------------------------------------------------------- formats
def test_gsm8k_unchanged(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "g.jsonl",
        [{"question": " How many? ", "answer": "2 * 800 = <<2*800=1600>>1600\n#### 1,600"}],
    )
    rows, report = load_questions(_spec("gsm8k", path, split="test"))
    assert rows[0]["question_id"] == "gsm8k-test-00000"
    assert rows[0]["question"] == "How many?" and rows[0]["answers"] == ["1600"]
    assert rows[0]["level"] == "" and rows[0]["hops"] is None
    assert report.summary()["kept"] == 1


def test_hotpotqa_json_list(tmp_path: Path) -> None:
    path = _json(tmp_path / "hotpot.json", [_hotpot(1), _hotpot(2, level="hard")])
    rows, report = load_questions(_spec("hotpotqa", path))
    assert [r["question_id"] for r in rows] == ["hotpotqa-dev-hp1", "hotpotqa-dev-hp2"]
    r = rows[0]
    assert r["answers"] == ["City 1"] and r["level"] == "medium" and r["hops"] == 2
    meta = json.loads(r["metadata"])
    assert meta["id"] == "hp1" and meta["type"] == "bridge"
    assert meta["supporting_facts"] == [["Person 1", 0], ["City 1", 1]]
    assert meta["paragraphs"][0] == {
        "title": "Person 1",
        "text": "Person 1 is a painter. They were born in City 1.",
        "supporting": True,
    }
    assert meta["paragraphs"][2]["supporting"] is False
    assert report.summary() == {
        "source": path,
        "records": 2,
        "kept": 2,
        "skipped": 0,
        "skipped_examples": [],
        "dropped": {},
    }


def test_hotpotqa_jsonl_and_hub_columnar_layout(tmp_path: Path) -> None:
    rows, _ = load_questions(_spec("hotpotqa", _jsonl(tmp_path / "h.jsonl", [_hotpot(1), _hotpot(2)])))
    assert len(rows) == 2
    hub = {
        "id": "h9",
        "question": "Q?",
        "answer": "A",
        "type": "comparison",
        "level": "easy",
        "supporting_facts": {"title": ["T1"], "sent_id": [0]},
        "context": {"title": ["T1", "T2"], "sentences": [["One.", " Two."], ["Three."]]},
    }
    row = parse_hotpotqa(hub, "hub row 0", "train", "hotpotqa", 0)
    meta = json.loads(row["metadata"])
    assert row["question_id"] == "hotpotqa-train-h9"
    assert meta["paragraphs"] == [
        {"title": "T1", "text": "One. Two.", "supporting": True},
        {"title": "T2", "text": "Three.", "supporting": False},
    ]


def test_drop_levels_before_sampling(tmp_path: Path) -> None:
    recs = [_hotpot(i, level="easy" if i % 2 else "hard") for i in range(10)]
    path = _json(tmp_path / "h.json", recs)
    rows, report = load_questions(_spec("hotpotqa", path, drop_levels=("easy",), limit=3, seed=1))
    assert len(rows) == 3 and all(r["level"] == "hard" for r in rows)
    assert report.summary()["dropped"] == {"level=easy": 5}
    assert report.summary()["kept"] == 5


def test_musique_hops_aliases_and_unanswerable(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "m.jsonl",
        [
            _musique("2hop__1_2"),
            _musique("3hop1__1_2_3"),
            _musique("4hop2__1_2_3_4"),
            _musique("2hop__9_9", answerable=False),
        ],
    )
    rows, report = load_questions(_spec("musique", path))
    assert [(r["level"], r["hops"]) for r in rows] == [("2hop", 2), ("3hop", 3), ("4hop", 4)]
    assert rows[0]["answers"] == ["Stanley", "Stanley, ND"]  # gold first, aliases after, no repeats
    meta = json.loads(rows[1]["metadata"])
    assert meta["composition"] == "3hop1"
    assert meta["paragraphs"][0] == {
        "title": "Van Hook",
        "text": "Van Hook is in Mountrail County.",
        "supporting": True,
    }
    assert report.summary()["dropped"] == {"unanswerable": 1} and report.summary()["kept"] == 3


def test_beerqa_file(tmp_path: Path) -> None:
    doc = {
        "version": "1.0",
        "split": "dev",
        "data": [
            {
                "id": "b1",
                "src": "squad",
                "question": "Q1?",
                "answers": ["A1", "a one"],
                "context": [["T1", "Text one."]],
            },
            {
                "id": "b2",
                "src": "hotpotqa",
                "question": "Q2?",
                "answers": ["A2"],
                "context": [["T2", "Text two."], ["T3", "x"]],
            },
            {
                "id": "b3",
                "src": "beerqa",
                "question": "Q3?",
                "answers": ["A3"],
                "context": [["T4", "Text four."]],
            },
        ],
    }
    rows, _ = load_questions(_spec("beerqa", _json(tmp_path / "beerqa_dev_v1.0.json", doc)))
    assert [r["hops"] for r in rows] == [1, 2, None]
    assert rows[0]["answers"] == ["A1", "a one"]
    meta = json.loads(rows[1]["metadata"])
    assert meta["src"] == "hotpotqa"
    assert meta["paragraphs"] == [
        {"title": "T2", "text": "Text two.", "supporting": None},
        {"title": "T3", "text": "x", "supporting": None},
    ]


def test_cofca_hotpot_style(tmp_path: Path) -> None:
    recs = [
        {"_id": "c1", "question": "Q?", "answer": "A", "type": "3-hop", "context": [["T", ["S1.", " S2."]]]},
        {
            "_id": "c2",
            "question": "Q2?",
            "answer": "B",
            "type": "bridge",
            "hops": 4,
            "context": [["U", ["S."]]],
        },
        {"_id": "c3", "question": "Q3?", "answer": "C", "context": [["V", ["S."]]]},
    ]
    rows, _ = load_questions(_spec("cofca", _json(tmp_path / "cofca.json", recs)))
    assert [r["hops"] for r in rows] == [3, 4, None]
    assert json.loads(rows[0]["metadata"])["paragraphs"][0]["text"] == "S1. S2."


# ------------------------------------------------------------------------------ file layouts
def _beerqa(i: int, src: str) -> dict[str, Any]:
    return {
        "id": f"b{i}",
        "src": src,
        "question": f"Q{i}?",
        "answers": [f"A{i}", f"a {i}"],
        "context": [[f"T{i}", f"Text {i}."]],
    }


# format -> (the same records for every layout, expected (question id, answers) per row)
LAYOUT_CASES: dict[str, tuple[list[dict[str, Any]], list[tuple[str, list[str]]]]] = {
    "gsm8k": (
        [
            {"question": "How many?", "answer": "2 * 800 = 1600\n#### 1,600"},
            {"question": "And now?", "answer": "#### 7"},
        ],
        [("gsm8k-dev-00000", ["1600"]), ("gsm8k-dev-00001", ["7"])],
    ),
    "hotpotqa": (
        [_hotpot(1), _hotpot(2, level="hard")],
        [("hotpotqa-dev-hp1", ["City 1"]), ("hotpotqa-dev-hp2", ["City 2"])],
    ),
    "musique": (
        [
            _musique("2hop__1_2"),
            _musique("3hop1__1_2_3", answer="Minot", answer_aliases=["Minot, ND"]),
            _musique("2hop__9_9", answerable=False),
        ],
        [
            ("musique-dev-2hop__1_2", ["Stanley", "Stanley, ND"]),
            ("musique-dev-3hop1__1_2_3", ["Minot", "Minot, ND"]),
        ],
    ),
    "beerqa": (
        [_beerqa(1, "squad"), _beerqa(2, "hotpotqa"), _beerqa(3, "beerqa")],
        [
            ("beerqa-dev-b1", ["A1", "a 1"]),
            ("beerqa-dev-b2", ["A2", "a 2"]),
            ("beerqa-dev-b3", ["A3", "a 3"]),
        ],
    ),
    "cofca": (
        [
            {
                "_id": "c1",
                "question": "Q?",
                "answer": "A",
                "answer_aliases": ["a"],
                "type": "3-hop",
                "context": [["T", ["S1.", " S2."]]],
            },
            {"_id": "c2", "question": "Q2?", "answer": "B", "hops": 4, "context": [["U", ["S."]]]},
        ],
        [("cofca-dev-c1", ["A", "a"]), ("cofca-dev-c2", ["B"])],
    ),
}


def _layouts(tmp_path: Path, fmt: str, records: list[Any]) -> dict[str, str]:
    """The same records as JSONL, a pretty-printed and a one-line JSON list, and (BeerQA style) an object with
    a `data` list, pretty-printed with indent=2 and on one line."""
    doc = {"version": "1.0", "split": "dev", "data": records}
    files = {
        "jsonl": _jsonl(tmp_path / f"{fmt}.jsonl", records),
        "list": _json(tmp_path / f"{fmt}.json", records),
        "list-one-line": _jsonl(tmp_path / f"{fmt}-one-line.json", [json.dumps(records)]),
        "data-object": str(tmp_path / f"{fmt}-data.json"),
        "data-object-one-line": _jsonl(tmp_path / f"{fmt}-data-one-line.json", [doc]),
    }
    Path(files["data-object"]).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return files


@pytest.mark.parametrize("fmt", sorted(LAYOUT_CASES))
def test_every_format_reads_every_layout(tmp_path: Path, fmt: str) -> None:
    records, expected = LAYOUT_CASES[fmt]
    loaded = {
        layout: load_questions(_spec(fmt, path)) for layout, path in _layouts(tmp_path, fmt, records).items()
    }
    rows = loaded["jsonl"][0]
    assert [(r["question_id"], r["answers"]) for r in rows] == expected
    for layout, (other, report) in loaded.items():
        assert other == rows, layout
        assert report.summary()["records"] == len(records) and report.summary()["kept"] == len(expected), (
            layout
        )


def test_record_names_per_layout(tmp_path: Path) -> None:
    """Each layout names its records its own way: file:line, file record i, file data[i]."""
    bad = _musique("2hop__5_6", question="")
    recs = [_musique("2hop__1_2"), bad]
    names = {
        "jsonl": ":2:",
        "list": " record 1:",
        "list-one-line": " record 1:",
        "data-object": " data[1]:",
        "data-object-one-line": " data[1]:",
    }
    for layout, path in _layouts(tmp_path, "musique", recs).items():
        with pytest.raises(DataError) as e:
            load_questions(_spec("musique", path))
        assert f"{path}{names[layout]} field 'question' must be a non-empty str" in str(e.value), layout
        rows, report = load_questions(_spec("musique", path, skip_invalid=True))
        assert len(rows) == 1 and report.summary()["skipped"] == 1, layout


def test_musique_json_list_file(tmp_path: Path) -> None:
    """The bug report: a MuSiQue copy that is one JSON list failed with 'expected a JSON object, got list'."""
    path = tmp_path / "musique_ans_v1.0_dev.json"
    path.write_text(json.dumps([_musique("2hop__1_2"), _musique("4hop2__1_2_3_4")]), encoding="utf-8")
    rows, report = load_questions(_spec("musique", str(path)))
    assert [(r["question_id"], r["hops"]) for r in rows] == [
        ("musique-dev-2hop__1_2", 2),
        ("musique-dev-4hop2__1_2_3_4", 4),
    ]
    assert rows[0]["answers"] == ["Stanley", "Stanley, ND"]
    assert report.summary()["kept"] == 2 and report.summary()["skipped"] == 0


@pytest.mark.parametrize("fmt", sorted(LAYOUT_CASES))
def test_bad_record_in_json_list_is_named_record_1(tmp_path: Path, fmt: str) -> None:
    records, _ = LAYOUT_CASES[fmt]
    path = _json(tmp_path / "d.json", [records[0], ["a list, not an object"], *records[1:]])
    with pytest.raises(DataError, match=rf"{path} record 1: expected a JSON object, got list"):
        load_questions(_spec(fmt, path))
    no_question = {k: v for k, v in records[0].items() if k != "question"}
    path = _json(tmp_path / "q.json", [records[0], no_question])
    with pytest.raises(DataError, match=rf"{path} record 1: missing field 'question'"):
        load_questions(_spec(fmt, path))


@pytest.mark.parametrize("fmt", sorted(LAYOUT_CASES))
def test_invalid_json_on_jsonl_line_2_is_named(tmp_path: Path, fmt: str) -> None:
    records, expected = LAYOUT_CASES[fmt]
    path = _jsonl(tmp_path / "d.jsonl", [records[0], '{"question": "cut off', *records[1:]])
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON"):
        load_questions(_spec(fmt, path))
    rows, report = load_questions(_spec(fmt, path, skip_invalid=True))
    assert [r["answers"] for r in rows] == [a for _, a in expected]  # (gsm8k ids count the bad line too)
    assert report.summary()["skipped"] == 1 and report.skipped[0].startswith(f"{path}:2: invalid JSON")


def test_jsonl_with_broken_first_line_is_still_jsonl(tmp_path: Path) -> None:
    """A first line that is not a complete value may start a pretty-printed document; when the whole-file
    parse fails and the next line is a JSON object, the file is JSONL and only line 1 is bad."""
    path = _jsonl(
        tmp_path / "m.jsonl",
        ['{"id": "2hop__0_0", "question": ', _musique("2hop__1_2"), _musique("2hop__3_4")],
    )
    with pytest.raises(DataError, match=rf"{path}:1: invalid JSON"):
        load_questions(_spec("musique", path))
    rows, report = load_questions(_spec("musique", path, skip_invalid=True))
    assert len(rows) == 2 and report.summary()["skipped"] == 1


def test_jsonl_record_with_a_data_list_is_a_record(tmp_path: Path) -> None:
    """Only a file whose single JSON value is an object with a `data` list is read as that list."""
    recs = [_hotpot(1, data=["x"]), _hotpot(2, data=["y"])]
    rows, _ = load_questions(_spec("hotpotqa", _jsonl(tmp_path / "h.jsonl", recs)))
    assert [r["question_id"] for r in rows] == ["hotpotqa-dev-hp1", "hotpotqa-dev-hp2"]


def test_broken_pretty_printed_object_is_a_whole_file_error(tmp_path: Path) -> None:
    path = tmp_path / "beerqa_dev_v1.0.json"
    path.write_text('{\n  "version": "1.0",\n  "data": [\n    {"id": "b1", oops}\n  ]\n}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:4: invalid JSON .*whole file is one JSON document"):
        load_questions(_spec("beerqa", str(path), skip_invalid=True))


# -------------------------------------------------------------------------------- malformed input
def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "m.jsonl",
        [_musique("2hop__1_2"), '{"id": "2hop__3_4", "question": ', _musique("2hop__5_6")],
    )
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON") as e:
        load_questions(_spec("musique", path))
    assert "skip_invalid" in str(e.value)
    rows, report = load_questions(_spec("musique", path, skip_invalid=True))
    assert len(rows) == 2 and report.summary()["skipped"] == 1 and report.summary()["records"] == 3


@pytest.mark.parametrize(
    ("fmt", "bad", "field"),
    [
        ("gsm8k", {"answer": "#### 3"}, "'question'"),
        ("gsm8k", {"question": "   ", "answer": "#### 3"}, "'question'"),
        ("gsm8k", {"question": "Q?", "answer": "no marker"}, "'answer'"),
        ("musique", _musique("2hop__1_1", question=""), "'question'"),
        ("musique", {k: v for k, v in _musique("2hop__1_1").items() if k != "paragraphs"}, "'paragraphs'"),
        ("musique", _musique("twohop__1"), "'id'"),
        ("musique", _musique("2hop__1_1", answer_aliases="x"), "'answer_aliases'"),
        ("musique", _musique("2hop__1_1", paragraphs=[{"title": "t"}]), "'paragraphs[0]'"),
    ],
)
def test_jsonl_field_errors(tmp_path: Path, fmt: str, bad: dict[str, Any], field: str) -> None:
    good = {"question": "Q?", "answer": "#### 1"} if fmt == "gsm8k" else _musique("2hop__0_0")
    path = _jsonl(tmp_path / "d.jsonl", [good, bad])
    with pytest.raises(DataError) as e:
        load_questions(_spec(fmt, path))
    msg = str(e.value)
    assert f"{path}:2:" in msg and field in msg, msg
    _, report = load_questions(_spec(fmt, path, skip_invalid=True))
    assert report.summary()["skipped"] == 1 and field in report.skipped[0]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({k: v for k, v in _hotpot(2).items() if k != "answer"}, "'answer'"),
        (_hotpot(2, question=""), "'question'"),
        ({k: v for k, v in _hotpot(2).items() if k != "context"}, "'context'"),
        (_hotpot(2, context=[["only a title"]]), "'context[0]'"),
        (_hotpot(2, supporting_facts=[["T", "zero"]]), "'supporting_facts'"),
        (_hotpot(2, level=3), "'level'"),
        ({k: v for k, v in _hotpot(2).items() if k != "_id"}, "'_id'"),
        ("not an object", "expected a JSON object"),
    ],
)
def test_json_list_errors_name_record_and_field(tmp_path: Path, bad: Any, field: str) -> None:
    path = _json(tmp_path / "h.json", [_hotpot(1), bad, _hotpot(3)])
    with pytest.raises(DataError) as e:
        load_questions(_spec("hotpotqa", path))
    assert f"{path} record 1:" in str(e.value) and field in str(e.value)
    rows, report = load_questions(_spec("hotpotqa", path, skip_invalid=True))
    assert len(rows) == 2 and report.summary()["skipped"] == 1


def test_whole_file_errors(tmp_path: Path) -> None:
    broken = tmp_path / "h.json"
    broken.write_text('[\n {"_id": "a",\n  "question": oops}\n]')
    with pytest.raises(DataError, match=rf"{broken}:3: invalid JSON"):
        load_questions(_spec("hotpotqa", str(broken), skip_invalid=True))
    with pytest.raises(DataError, match=rf"{tmp_path / 'b.json'}: field 'data'.*JSON Lines"):
        load_questions(
            _spec("beerqa", _json(tmp_path / "b.json", {"version": "1.0", "split": "dev", "rows": []}))
        )
    with pytest.raises(DataError, match="file not found"):
        load_questions(_spec("musique", str(tmp_path / "missing.jsonl")))
    with pytest.raises(DataError, match="no valid questions"):
        load_questions(
            _spec("musique", _jsonl(tmp_path / "u.jsonl", [_musique("2hop__1", answerable=False)]))
        )
    with pytest.raises(DataError, match="set `path:`"):
        load_questions(DatasetSpec(name="beerqa", format="beerqa", hub="some/beerqa"))


def test_repeated_ids_are_an_error(tmp_path: Path) -> None:
    path = _json(tmp_path / "h.json", [_hotpot(1), _hotpot(1)])
    with pytest.raises(DataError, match=r"record 1: field 'id'.*repeats the record at .* record 0"):
        load_questions(_spec("hotpotqa", path))


# -------------------------------------------------------------------------------------- sampling
def test_seeded_sample_is_reproducible(tmp_path: Path) -> None:
    path = _json(tmp_path / "h.json", [_hotpot(i) for i in range(50)])

    def ids(seed: int) -> list[str]:
        return [r["question_id"] for r in load_questions(_spec("hotpotqa", path, limit=10, seed=seed))[0]]

    assert ids(7) == ids(7)
    assert ids(7) != ids(8)
    assert len(set(ids(7))) == 10
    assert ids(7) == sorted(ids(7), key=lambda q: int(q.rsplit("hp", 1)[1]))  # original order is kept


@pytest.mark.parametrize(
    ("fmt", "name", "head"),
    [
        ("gsm8k", "train.jsonl", b""),  # 4 KB of random bytes
        ("hotpotqa", "train.json", b""),  # read as one document
        ("gsm8k", "mixed.jsonl", b'{"question": "1+1?", "answer": "#### 2"}\n'),  # text, then binary
    ],
)
def test_a_file_that_is_not_text_is_a_data_error_naming_it(
    tmp_path: Path, fmt: str, name: str, head: bytes
) -> None:
    import random

    from tasks.stages import _is_transient

    data = random.Random(0).randbytes(4096)
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    path = tmp_path / name
    path.write_bytes(head + data)
    for skip in (False, True):  # a whole-file problem: skip_invalid cannot skip it
        with pytest.raises(DataError) as e:
            load_questions(_spec(fmt, str(path), skip_invalid=skip))
        msg = str(e.value)
        assert msg.startswith(f"{path}: not UTF-8 text (byte 0x") and "\n" not in msg, msg

    class State:  # what Prefect's retry condition sees: the failed task's exception
        def result(self, raise_on_failure: bool = True) -> Exception:
            return e.value

    assert not _is_transient(State())  # never retried
