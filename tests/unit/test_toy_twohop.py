"""The two-hop toy world with held-out templates: every template's gold searches, replayed through the real
BM25 search tool as a run configures it (top 1, 200 characters), find what the question needs; the splits keep
worlds and templates apart. Values are checked from the observation text, not from the generator's tables."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from swirl.data.config import DatasetSpec
from swirl.data.corpus import corpus_from_questions
from swirl.data.demonstrations import search_gold_queries
from swirl.data.loaders import load_questions
from swirl.data.toy_twohop import TWOHOP_TEMPLATES, twohop_records
from swirl.data.toysplits import SPLITS, TEMPLATE_SPLITS, bucket
from swirl.tools.config import SearchConfig
from swirl.tools.search import build_retriever, search_observation

SIZES = {"train": 120, "dev": 60, "test": 60, "test_seen": 120}
PER_TEMPLATE = 3
SEARCH = SearchConfig(retriever="bm25", top_k=1, max_chars=200)
WORLD_BUCKET = {"train": 0, "dev": 1, "test": 2, "test_seen": 2}
TEMPLATE_SPLIT = {"train": "train", "dev": "dev", "test": "test", "test_seen": "train"}
KIND_WORDS = {
    "institute",
    "guild",
    "society",
    "foundation",
    "company",
    "trust",
    "observatory",
    "academy",
    "collective",
    "bank",
    "bridge",
}
# comparison template -> (the number in an observation, the winner's pick), written from the question
NUMBER = r"(\d[\d,]*)"
COMPARE: dict[str, tuple[str, Callable[..., Any]]] = {
    "born_first": (rf"\(born {NUMBER}\)", min),
    "founded_first": (rf"was founded by .+? in {NUMBER}\.", min),
    "city_more_people": (rf"is a city in .+ It has about {NUMBER} inhabitants\.", max),
    "launched_first": (rf"launched in {NUMBER}\.", min),
    "country_more_people": (rf"is a country with about {NUMBER} million inhabitants\.", max),
    "opened_first": (rf"opened in {NUMBER}\.", min),
    "published_first": (rf"published in {NUMBER}\.", min),
    "longer_ship": (rf"It is {NUMBER} metres long\.", max),
}


def _ids(split: str) -> list[str]:
    return [t.id for t in TWOHOP_TEMPLATES if t.split == split]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("toy2hop")
    records, rows = {}, {}
    for split in SPLITS:
        records[split] = twohop_records(SIZES[split], 0, split)
        path = out / f"{split}.json"
        path.write_text(json.dumps(records[split]), encoding="utf-8")
        rows[split], report = load_questions(
            DatasetSpec(name="t", format="hotpotqa", split="dev", path=str(path))
        )
        assert report.skipped == [] and not report.dropped and len(rows[split]) == SIZES[split]
    return {"records": records, "rows": rows}


# --------------------------------------------------------------------------------------- templates
def test_templates_per_split_kinds_and_wordings() -> None:
    ids = [t.id for t in TWOHOP_TEMPLATES]
    assert len(ids) == len(set(ids)) >= 16
    assert len(_ids("train")) >= 10 and len(_ids("dev")) >= 3 and len(_ids("test")) >= 3
    wordings = [w for t in TWOHOP_TEMPLATES for w in t.wordings]
    assert len(wordings) == len(set(wordings))  # no wording shared, so none of dev/test is seen in training
    train_paths = {(t.subject, t.relations) for t in TWOHOP_TEMPLATES if t.split == "train"}
    for split in TEMPLATE_SPLITS:
        assert {t.kind for t in TWOHOP_TEMPLATES if t.split == split} == {"bridge", "comparison"}, split
    for t in TWOHOP_TEMPLATES:
        assert t.split in TEMPLATE_SPLITS and len(t.wordings) >= 3, t.id
        assert all("{a}" in w and ("{b}" in w) == (t.kind == "comparison") for w in t.wordings), t.id
        assert (t.kind == "comparison") == (t.id in COMPARE), t.id
        if t.split != "train":
            assert (t.subject, t.relations) not in train_paths, f"{t.id}: a training relation path"


# ------------------------------------------------------------------------------------- gold replay
def _after_arrow(obs: str, title: str) -> str:
    """The article text of an observation `QUERY -> Title: text`, asserting the top hit is `title`."""
    head = f"{title} -> {title}: "
    assert obs.startswith(head), (title, obs[:120])
    return obs[len(head) :]


def _sentence(rec: dict[str, Any], title: str, index: int) -> str:
    return dict((t, s) for t, s in rec["context"])[title][index]


@pytest.mark.parametrize("split", SPLITS)
def test_gold_searches_find_what_every_template_needs(data: dict[str, Any], split: str) -> None:
    records, rows = data["records"][split], data["rows"][split]
    corpus, _ = corpus_from_questions([pa.Table.from_pylist(rows)])
    assert len({d["title"] for d in corpus}) == len(corpus)  # one article per entity in the pooled corpus
    retriever = build_retriever(corpus, SEARCH)
    replayed: dict[str, int] = {}
    for rec, row in zip(records, rows, strict=True):
        t = rec["template"]
        if replayed.get(t, 0) == PER_TEMPLATE:
            continue
        replayed[t] = replayed.get(t, 0) + 1
        titles = search_gold_queries(json.loads(row["metadata"]))
        assert titles == [title for title, _ in rec["supporting_facts"]] and len(titles) == 2, rec
        assert len(rec["context"]) == 10 and all(x in {c[0] for c in rec["context"]} for x in titles)
        texts = [_after_arrow(search_observation(retriever, x, SEARCH), x) for x in titles]
        q, answer = rec["question"], rec["answer"]
        assert row["answers"] == [answer] and row["question"] == q
        if rec["type"] == "bridge":
            assert rec["level"] == "hard" and titles[0] in q and titles[1] not in q
            (_, i1), (_, i2) = rec["supporting_facts"]
            assert titles[1] in texts[0] and titles[1] in _sentence(rec, titles[0], i1)
            assert answer in texts[1] and answer in _sentence(rec, titles[1], i2)
            assert answer.lower() not in q.lower() and answer not in texts[0] and answer != titles[1], rec
        else:
            assert rec["type"] == "comparison" and rec["level"] == "medium"
            assert all(x in q for x in titles) and q.index(titles[0]) < q.index(titles[1])
            pattern, pick = COMPARE[t]
            values = []
            for title, text, (_, i) in zip(titles, texts, rec["supporting_facts"], strict=True):
                found = re.findall(pattern, text)
                assert len(found) == 1 and found[0] in _sentence(rec, title, i), (t, text)
                values.append(int(found[0].replace(",", "")))
            assert values[0] != values[1], rec
            assert answer == titles[values.index(pick(values))], (t, q, texts, answer)
    assert replayed == {t: PER_TEMPLATE for t in _ids(TEMPLATE_SPLIT[split])}


# ------------------------------------------------------------------------------------------ splits
def _titles(records: list[dict[str, Any]]) -> set[str]:
    return {t for r in records for t, _ in r["context"]}


def _tokens(titles: set[str]) -> set[str]:
    return {w for t in titles for w in t.split() if w.lower() not in KIND_WORDS}


def test_worlds_are_disjoint_and_test_seen_lives_in_the_test_world(data: dict[str, Any]) -> None:
    recs = data["records"]
    titles = {s: _titles(recs[s]) for s in SPLITS}
    assert not titles["train"] & titles["dev"] and not titles["train"] & titles["test"]
    assert not titles["dev"] & titles["test"]
    assert titles["test"] & titles["test_seen"]
    assert not titles["test_seen"] & (titles["train"] | titles["dev"])
    keys: dict[str, str] = {}
    for split in SPLITS:
        for tok in _tokens(titles[split]):
            assert tok.isalpha() and 6 <= len(tok) <= 11, tok
            assert bucket(tok[:5].lower()) == WORLD_BUCKET[split], (split, tok)
            assert keys.setdefault(tok[:5].lower(), tok) == tok, f"{tok} and {keys[tok[:5].lower()]}"
    for split in SPLITS:
        questions = [r["question"] for r in recs[split]]
        assert len(set(questions)) == len(questions), split
        assert {r["template"] for r in recs[split]} == set(_ids(TEMPLATE_SPLIT[split])), split
        assert len({r["_id"] for r in recs[split]}) == len(questions)
    assert not {r["question"] for r in recs["test_seen"]} & {r["question"] for r in recs["train"]}


def test_first_k_training_templates() -> None:
    first3 = set(_ids("train")[:3])
    for split in ("train", "test_seen"):
        recs = twohop_records(60, 0, split, templates=3)
        assert {r["template"] for r in recs} == first3, split
    for bad in ({"split": "dev", "templates": 3}, {"split": "train", "templates": 0}):
        with pytest.raises(ValueError, match="templates"):
            twohop_records(5, 0, **bad)
    with pytest.raises(ValueError, match="templates"):
        twohop_records(5, 0, "train", templates=len(_ids("train")) + 1)


def test_bad_arguments_say_what_to_fix() -> None:
    with pytest.raises(ValueError, match="split"):
        twohop_records(5, 0, "validation")
    with pytest.raises(ValueError, match="n=-1"):
        twohop_records(-1, 0, "train")
    with pytest.raises(ValueError, match="fewer"):
        twohop_records(10**9, 0, "dev")


# ---------------------------------------------------------------------------------- determinism
def test_deterministic_prefix_stable_and_seeded(data: dict[str, Any]) -> None:
    for split in SPLITS:
        assert twohop_records(SIZES[split], 0, split) == data["records"][split]
        assert twohop_records(10, 0, split) == data["records"][split][:10]
        assert twohop_records(0, 0, split) == []
        other = twohop_records(10, 1, split)
        assert {r["question"] for r in other} != {r["question"] for r in data["records"][split][:10]}
    assert json.dumps(twohop_records(5, 0, "train", templates=3)) == json.dumps(
        twohop_records(5, 0, "train", templates=3)
    )


def test_loaded_rows_keep_hop_order(data: dict[str, Any]) -> None:
    for split in SPLITS:
        for rec, row in zip(data["records"][split], data["rows"][split], strict=True):
            meta = json.loads(row["metadata"])
            assert meta["supporting_facts"] == rec["supporting_facts"] and meta["type"] == rec["type"]
            assert row["level"] == rec["level"] and len(meta["paragraphs"]) == 10
