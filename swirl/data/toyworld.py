"""Toy tool worlds: evaluation targets for a small real model that tell reading from template recall, written
in the benchmarks' formats.

- arithmetic (`swirl.data.toy_arithmetic`): word problems in GSM8K's JSONL format, 2-4 calculator steps each,
  from hand-written templates over varied operation structures and wordings;
- two-hop (`swirl.data.toy_twohop`): bridge and comparison questions over made-up worlds in HotpotQA's
  distractor JSON format, each needing exactly two searches.

Each world is written in four files, one per question split (`swirl.data.toysplits`): `train` (the training
templates), `dev` (templates of their own, for choosing settings), `test` (templates of their own: the
unseen-template test) and `test_seen` (the training templates with other numbers and names: the in-template
test). A report that gives both test numbers shows whether a gain is reading or recall.

Everything is a pure function of the spec (sizes, seed, number of training templates): the same spec writes
byte-identical files, and files written with the same spec are kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from swirl.data import toy_arithmetic, toy_twohop
from swirl.data.config import ToyWorldSpec
from swirl.data.synthetic import write_once
from swirl.data.toy_arithmetic import arithmetic_records
from swirl.data.toy_twohop import twohop_records
from swirl.data.toysplits import SPLITS

FORMAT = 2  # bump when the files' layout changes; each world's own FORMAT tracks its content
FILES = {"arithmetic": ("jsonl", "gsm8k"), "twohop": ("json", "hotpotqa")}  # world: (file suffix, format)


def toy_world_paths(out_dir: str) -> dict[str, str]:
    """`{world}_{split}` -> the file it is written to (e.g. arithmetic_test -> OUT/arithmetic/test.jsonl)."""
    return {
        f"{world}_{split}": os.path.join(out_dir, world, f"{split}.{suffix}")
        for world, (suffix, _) in FILES.items()
        for split in SPLITS
    }


def write_toy_worlds(spec: ToyWorldSpec) -> dict[str, str]:
    """Write every split of both worlds under `spec.dir` (files already written with the same spec are kept;
    each file is written atomically) and return their paths by `{world}_{split}`."""
    paths = toy_world_paths(spec.dir)
    sizes = spec.sizes()
    k = spec.train_templates

    def arithmetic(split: str) -> str:
        limit = _k(k, split, toy_arithmetic.ARITHMETIC_TEMPLATES)
        rows = arithmetic_records(sizes[f"arithmetic_{split}"], spec.seed, split, templates=limit)
        return "".join(json.dumps(r) + "\n" for r in rows)

    def twohop(split: str) -> str:
        limit = _k(k, split, toy_twohop.TWOHOP_TEMPLATES)
        return json.dumps(twohop_records(sizes[f"twohop_{split}"], spec.seed, split, templates=limit))

    makers = {f"arithmetic_{s}": (lambda s=s: arithmetic(s)) for s in SPLITS}
    makers |= {f"twohop_{s}": (lambda s=s: twohop(s)) for s in SPLITS}
    formats = [FORMAT, toy_arithmetic.FORMAT, toy_twohop.FORMAT]  # a change in either rebuilds the files
    settings = {**sizes, "seed": spec.seed, "train_templates": k, "format": formats}
    return write_once(os.path.join(spec.dir, "_toyworld.json"), settings, paths, makers)


def _k(train_templates: int | None, split: str, templates: Sequence[Any]) -> int | None:
    """The template limit of `split` in a world with these templates: the training split only (the
    in-template test keeps every training template, so a smaller training set is measured on what it left out
    too), and every training template of a world that has fewer than the limit."""
    if train_templates is None or split != "train":
        return None
    return min(train_templates, sum(t.split == "train" for t in templates))
