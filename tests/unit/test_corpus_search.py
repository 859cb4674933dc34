"""Corpus pooling, the corpus stage (index built once, then loaded), BM25 and dense search observations."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import swirl.stages.corpus as corpus_stage
from swirl.data.config import DatasetSpec
from swirl.data.corpus import corpus_from_questions, doc_id, read_corpus_file
from swirl.data.loaders import DataError
from swirl.stages.base import run_stage
from swirl.stages.corpus import Corpus, open_retriever
from swirl.stages.ingest import Ingest
from swirl.store import Store
from swirl.tables import to_table
from swirl.tools.config import SearchConfig
from swirl.tools.search import (
    Doc,
    RetrieverError,
    build_retriever,
    load_retriever,
    search_observation,
    search_observations,
    truncate,
)

DOCS = [
    Doc(
        "d1",
        "Moscow State University",
        "Lomonosov Moscow State University was founded on January 25, 1755 by "
        "Mikhail Lomonosov. It houses the tallest educational building in the world.",
    ),
    Doc(
        "d2",
        "Sergei Tokarev",
        "Sergei Aleksandrovich Tokarev was a Russian ethnographer and historian of "
        "religion, and a professor at Moscow State University.",
    ),
    Doc(
        "d3",
        "Port Blair",
        "Port Blair is the capital of the Andaman and Nicobar Islands, a union territory of India "
        "in the Bay of Bengal.",
    ),
    Doc(
        "d4",
        "Golden retriever",
        "The golden retriever is a medium-large dog breed that was developed as a gun dog "
        "to retrieve shot waterfowl such as ducks during hunting.",
    ),
    Doc(
        "d5",
        "Photosynthesis",
        "Photosynthesis is the process by which plants use sunlight, water and carbon "
        "dioxide to create oxygen and energy in the form of sugar.",
    ),
]


def _question_row(qid: str, paragraphs: list[dict[str, Any]], dataset: str = "hotpotqa") -> dict[str, Any]:
    return {
        "question_id": qid,
        "dataset": dataset,
        "split": "dev",
        "question": "Q?",
        "answers": ["A"],
        "level": "",
        "hops": 2,
        "metadata": json.dumps({"paragraphs": paragraphs}),
    }


def _p(title: str, text: str) -> dict[str, Any]:
    return {"title": title, "text": text, "supporting": None}


# ------------------------------------------------------------------------------------------ corpus
def test_corpus_from_questions_dedupes_by_title_and_text() -> None:
    t1 = to_table(
        "questions",
        [
            _question_row("q1", [_p("A", "alpha"), _p("B", "beta"), _p("E", "  ")]),
            _question_row("q2", [_p("B", "beta"), _p("A", "alpha, another version")]),
        ],
    )
    t2 = to_table("questions", [_question_row("q3", [_p("A", "alpha")], dataset="musique")])
    rows, summary = corpus_from_questions([t1, t2])
    assert [(r["title"], r["text"]) for r in rows] == [
        ("A", "alpha"),
        ("B", "beta"),
        ("A", "alpha, another version"),
    ]
    assert rows[0]["doc_id"] == doc_id("A", "alpha") and len({r["doc_id"] for r in rows}) == 3
    assert summary["paragraphs"] == 6 and summary["duplicates"] == 2 and summary["empty"] == 1
    assert summary["datasets"] == ["hotpotqa", "musique"]


def test_corpus_needs_paragraphs() -> None:
    gsm = to_table(
        "questions", [{**_question_row("g1", []), "dataset": "gsm8k", "metadata": '{"solution": "x"}'}]
    )
    with pytest.raises(DataError, match="corpus file"):
        corpus_from_questions([gsm])


def test_read_corpus_file_jsonl_and_parquet(tmp_path: Path) -> None:
    jl = tmp_path / "c.jsonl"
    jl.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"title": "A", "text": "alpha"},
                {"title": "A", "text": "alpha"},
                {"title": "", "text": "untitled"},
            ]
        )
        + "\n"
    )
    rows, summary = read_corpus_file(str(jl))
    assert [r["text"] for r in rows] == ["alpha", "untitled"] and summary["duplicates"] == 1
    pq.write_table(
        pa.table({"doc_id": ["x1", "x2"], "title": ["A", "B"], "text": ["alpha", "beta"]}),
        tmp_path / "c.parquet",
    )
    rows, _ = read_corpus_file(str(tmp_path / "c.parquet"))
    assert [r["doc_id"] for r in rows] == ["x1", "x2"]


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (['{"title": "A", "text": "a"}', '{"title": "B", '], r"c.jsonl:2: invalid JSON"),
        (['{"title": "A"}'], r"c.jsonl:1: missing field 'text'"),
        (['{"title": "A", "text": "  "}'], r"c.jsonl:1: field 'text' is empty"),
        (['{"title": 3, "text": "x"}'], r"c.jsonl:1: field 'title' must be a string"),
        (
            ['{"doc_id": "1", "title": "A", "text": "a"}', '{"doc_id": "1", "title": "B", "text": "b"}'],
            r"c.jsonl:2: field 'doc_id'.*repeats .*c.jsonl:1",
        ),
    ],
)
def test_corpus_file_errors(tmp_path: Path, lines: list[str], match: str) -> None:
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=match):
        read_corpus_file(str(tmp_path / "c.jsonl"))


# -------------------------------------------------------------------------------------------- BM25
def test_bm25_observation_and_truncation() -> None:
    r = build_retriever(DOCS, SearchConfig())
    out = search_observation(r, "  When was   Moscow State University founded? ", SearchConfig(max_chars=60))
    query, result = out.split(" -> ", 1)
    assert query == "When was Moscow State University founded?"
    assert result.startswith("Moscow State University: Lomonosov Moscow State University")
    assert result.endswith("…") and len(result) <= len("Moscow State University: ") + 60
    full = search_observation(r, "dog breed retrieve ducks", SearchConfig())
    # stemming: retrieve~retriever
    assert full == f"dog breed retrieve ducks -> Golden retriever: {DOCS[3].text}"
    two = search_observation(r, "Moscow State University professor", SearchConfig(top_k=2))
    assert [line.split(":")[0] for line in two.split(" -> ", 1)[1].split("\n")] == [
        "Sergei Tokarev",
        "Moscow State University",
    ]


@pytest.mark.parametrize(
    "query", ["", "   ", "\n\t", "xqzv blorp fnord", "the of and to", "!!! ??? ...", "ñ§¶"]
)
def test_bm25_empty_or_absurd_queries_say_no_result(query: str) -> None:
    out = search_observation(build_retriever(DOCS, SearchConfig()), query, SearchConfig())
    assert "-> no result: " in out, out


def test_overlong_query_is_an_error_observation() -> None:
    out = search_observation(
        build_retriever(DOCS, SearchConfig()), "capital " * 100, SearchConfig(max_query_chars=300)
    )
    assert "-> error: the query is longer than 300 characters" in out and len(out) < 200


def test_batched_observations_keep_order() -> None:
    r = build_retriever(DOCS, SearchConfig())
    outs = search_observations(r, ["", "Port Blair capital", "zzzz"], SearchConfig(max_chars=50))
    assert outs[0].startswith('"" -> no result') and outs[1].startswith("Port Blair capital -> Port Blair: ")
    assert outs[2] == "zzzz -> no result: nothing in the corpus matches this query; try other words"


def test_bm25_save_load_roundtrip(tmp_path: Path) -> None:
    cfg = SearchConfig(stemmer="none", bm25_k1=1.2)
    r = build_retriever(DOCS, cfg)
    r.save(str(tmp_path / "idx"))
    loaded = load_retriever(str(tmp_path / "idx"), [d.__dict__ for d in DOCS])
    for q in ["sunlight oxygen", "Andaman Islands", "ethnographer"]:
        assert loaded.search([q], 3) == r.search([q], 3)
    with pytest.raises(RetrieverError, match="another corpus"):
        load_retriever(str(tmp_path / "idx"), DOCS[:4])
    with pytest.raises(RetrieverError, match="not a saved index"):
        load_retriever(str(tmp_path), DOCS)


def test_truncate_rule() -> None:
    assert truncate("short", 10) == "short"
    out = truncate("one two three four five six", 15)
    assert out == "one two three…" and len(out) <= 15


# ---------------------------------------------------------------------------------- corpus stage
def _hotpot_file(tmp_path: Path) -> str:
    recs = [
        {
            "_id": f"h{i}",
            "question": f"Q{i}?",
            "answer": "A",
            "level": "hard",
            "type": "bridge",
            "supporting_facts": [[d.title, 0]],
            "context": [[d.title, [d.text]], ["Shared", ["Same everywhere."]]],
        }
        for i, d in enumerate(DOCS)
    ]
    path = tmp_path / "hotpot.json"
    path.write_text(json.dumps(recs))
    return str(path)


def test_run_corpus_builds_once_then_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(str(tmp_path / "store"))
    spec = DatasetSpec(name="hotpotqa", format="hotpotqa", split="dev", path=_hotpot_file(tmp_path))
    q = run_stage(store, Ingest(spec)).ref
    cfg = SearchConfig()
    ref = run_stage(store, Corpus((q,), cfg)).ref
    assert ref.table == "corpus" and ref.rows == len(DOCS) + 1 and ref.summary["duplicates"] == len(DOCS) - 1
    index = Path(store.files_path(ref.stage, ref.version)) / "index"
    assert (index / "retriever.json").exists() and (index / "bm25").is_dir()
    assert {f["name"] for f in store.manifest(ref.stage, ref.version)["files"]} >= {
        "files/index/retriever.json"
    }

    def no_build(*a: Any, **k: Any) -> Any:
        raise AssertionError("the index must not be rebuilt")

    monkeypatch.setattr(corpus_stage, "build_retriever", no_build)
    again = run_stage(store, Corpus(q, cfg))  # one questions table, alone or in a tuple: the same corpus
    assert again.ref == ref and not again.computed
    r = open_retriever(store, ref, cfg)
    assert search_observation(r, "Andaman Nicobar", cfg).startswith("Andaman Nicobar -> Port Blair: ")
    # display settings do not change the version; index settings do
    assert Corpus((q,), SearchConfig(top_k=3, max_chars=99, bm25_min_score=1)).plan().version == ref.version
    assert Corpus((q,), SearchConfig(stemmer="none")).plan().version != ref.version
    assert Corpus((q,), SearchConfig(retriever="dense")).plan().version != ref.version


def test_run_corpus_from_file(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"title": d.title, "text": d.text}) + "\n" for d in DOCS))
    store = Store(str(tmp_path / "store"))
    ref = run_stage(store, Corpus(str(path), SearchConfig())).ref
    assert ref.rows == len(DOCS) and ref.summary["source"] == str(path)
    r = open_retriever(store, ref)
    assert search_observation(r, "plants sunlight", SearchConfig()).startswith(
        "plants sunlight -> Photosynthesis: "
    )
    path.write_text(path.read_text() + json.dumps({"title": "New", "text": "A new article."}) + "\n")
    # the file's contents are an input
    assert run_stage(store, Corpus(str(path), SearchConfig())).ref.version != ref.version


# ------------------------------------------------------------------------------------------- dense
def test_dense_retriever_bundled_minilm(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    cfg = SearchConfig(retriever="dense", dense_device="cpu")
    r = build_retriever(DOCS, cfg)
    # no word in common with the answer's article: only a semantic retriever finds it
    out = search_observation(r, "How do green leaves turn light into food?", cfg)
    assert out.split(" -> ", 1)[1].startswith("Photosynthesis: "), out
    assert "-> no result" in search_observation(r, "xqzv blorp fnord", cfg)
    r.save(str(tmp_path / "dense"))
    assert sorted(os.listdir(tmp_path / "dense")) == ["embeddings.npy", "retriever.json"]
    loaded = load_retriever(str(tmp_path / "dense"), DOCS, cfg)
    a, b = r.search(["dog breed"], 2)[0], loaded.search(["dog breed"], 2)[0]
    assert [h.doc_id for h in a] == [h.doc_id for h in b] == ["d4", a[1].doc_id]
    assert abs(a[0].score - b[0].score) < 1e-5
    assert time.perf_counter() - t0 < 120  # ~10 s on a 2-core CPU: not marked slow
