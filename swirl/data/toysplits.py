"""Splits of the toy tool worlds (shared by `toy_arithmetic`, `toy_twohop` and the file writer `toyworld`).

Two kinds of held-out data, so a report can tell learning to read a problem from recalling a template:

- **templates** are assigned to one of `TEMPLATE_SPLITS` (train / dev / test) by hand in each world's template
  list: the dev and test templates never appear in training (no wording, no operation structure, no relation
  kind of theirs);
- **question splits** (`SPLITS`) say which templates a split draws from:
  `train` (train templates), `dev` (dev templates, for choosing settings), `test` (test templates: the
  unseen-template test) and `test_seen` (train templates with other numbers and names: the in-template test).

Question texts (arithmetic) and made-up name tokens (two-hop) are also assigned by their SHA-1 (`bucket`), so
no question or name of `train` appears in `dev`, `test` or `test_seen`, whatever the seed or size.
"""

from __future__ import annotations

import hashlib

TEMPLATE_SPLITS = ("train", "dev", "test")
SPLITS = ("train", "dev", "test", "test_seen")
_BUCKETS = {"train": 0, "dev": 1, "test": 2, "test_seen": 2}  # test_seen shares the test world and bucket
_TEMPLATES_OF = {"train": "train", "dev": "dev", "test": "test", "test_seen": "train"}


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: choose one of {list(SPLITS)}")
    return split


def bucket_of(split: str) -> int:
    """The SHA-1 bucket whose questions and names belong to `split`."""
    return _BUCKETS[check_split(split)]


def templates_of(split: str) -> str:
    """The template split a question split draws from (test_seen: the training templates)."""
    return _TEMPLATES_OF[check_split(split)]


def world_of(split: str) -> str:
    """The made-up world a two-hop split lives in (test_seen shares the test world: other entities than
    train's)."""
    return "test" if check_split(split) == "test_seen" else split


def bucket(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % 3
