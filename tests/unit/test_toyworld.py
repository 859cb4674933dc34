"""The toy-world files: every split of both worlds written in the benchmarks' formats, loadable,
deterministic, kept until the spec changes. (The worlds themselves: test_toy_arithmetic.py,
test_toy_twohop.py.)"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from swirl.data.config import DatasetSpec, ToyWorldSpec
from swirl.data.loaders import load_questions
from swirl.data.toy_arithmetic import ARITHMETIC_TEMPLATES
from swirl.data.toy_twohop import TWOHOP_TEMPLATES
from swirl.data.toyworld import write_toy_worlds

SIZES = {
    "arithmetic_train": 40,
    "arithmetic_dev": 10,
    "arithmetic_test": 12,
    "arithmetic_test_seen": 8,
    "twohop_train": 30,
    "twohop_dev": 9,
    "twohop_test": 11,
    "twohop_test_seen": 7,
}


def _spec(tmp: Path, **over: Any) -> ToyWorldSpec:
    return ToyWorldSpec(dir=str(tmp), **{**SIZES, **over})


def _read(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f] if path.endswith(".jsonl") else json.load(f)


def _split_of_template(world: str) -> dict[str, str]:
    templates = ARITHMETIC_TEMPLATES if world == "arithmetic" else TWOHOP_TEMPLATES
    return {t.id: t.split for t in templates}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_toy_worlds(_spec(tmp_path_factory.mktemp("toy")))


def test_every_split_of_both_worlds_loads_in_its_format(written: dict[str, str]) -> None:
    assert set(written) == set(SIZES)
    for key, path in written.items():
        world, split = key.split("_", 1)
        assert Path(path).name == f"{split}.{'jsonl' if world == 'arithmetic' else 'json'}"
        fmt = "gsm8k" if world == "arithmetic" else "hotpotqa"
        rows, report = load_questions(DatasetSpec(name=key, format=fmt, split="test", path=path))
        assert report.skipped == [] and len(rows) == SIZES[key], report.summary()
        template_split = _split_of_template(world)
        want = {"train": "train", "dev": "dev", "test": "test", "test_seen": "train"}[split]
        assert {template_split[r["template"]] for r in _read(path)} == {want}, key


def test_the_template_limit_applies_to_training_only(tmp_path: Path, written: dict[str, str]) -> None:
    paths = write_toy_worlds(_spec(tmp_path, train_templates=3))
    for world, templates in (("arithmetic", ARITHMETIC_TEMPLATES), ("twohop", TWOHOP_TEMPLATES)):
        first3 = [t.id for t in templates if t.split == "train"][:3]
        used = Counter(r["template"] for r in _read(paths[f"{world}_train"]))
        assert set(used) == set(first3), world
        seen = {r["template"] for r in _read(paths[f"{world}_test_seen"])}
        assert len(seen) > 3, world  # the in-template test keeps every training template
        assert Path(paths[f"{world}_test"]).read_bytes() == Path(written[f"{world}_test"]).read_bytes()


def test_a_template_limit_above_a_worlds_count_keeps_all_its_templates(tmp_path: Path) -> None:
    paths = write_toy_worlds(_spec(tmp_path, train_templates=15))  # 45 arithmetic, 12 two-hop templates
    arithmetic = {r["template"] for r in _read(paths["arithmetic_train"])}
    first15 = [t.id for t in ARITHMETIC_TEMPLATES if t.split == "train"][:15]
    assert arithmetic <= set(first15) and len(arithmetic) > 5
    twohop_train = [t.id for t in TWOHOP_TEMPLATES if t.split == "train"]
    assert len(twohop_train) < 15
    assert {r["template"] for r in _read(paths["twohop_train"])} == set(twohop_train)


def test_same_spec_same_bytes_other_seed_other_content(tmp_path: Path, written: dict[str, str]) -> None:
    again = write_toy_worlds(_spec(tmp_path / "a"))
    other = write_toy_worlds(_spec(tmp_path / "b", seed=1))
    for key, path in written.items():
        assert Path(again[key]).read_bytes() == Path(path).read_bytes(), key
        assert Path(other[key]).read_bytes() != Path(path).read_bytes(), key


def test_written_files_are_kept_until_the_spec_changes(tmp_path: Path) -> None:
    small = {k: 3 for k in SIZES}
    paths = write_toy_worlds(_spec(tmp_path, **small))
    Path(paths["arithmetic_train"]).write_text("marker\n")
    write_toy_worlds(_spec(tmp_path, **small))  # same spec: kept
    assert Path(paths["arithmetic_train"]).read_text() == "marker\n"
    write_toy_worlds(_spec(tmp_path, **{**small, "twohop_dev": 4}))  # another spec: everything rewritten
    assert Path(paths["arithmetic_train"]).read_text() != "marker\n"
    assert len(_read(paths["twohop_dev"])) == 4
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
