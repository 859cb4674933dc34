"""Toy tool worlds: held-out evaluation targets for a small real model, written in the benchmarks' formats.

- `arithmetic_records`: word problems in GSM8K's JSONL format (`question`, `answer` with one `<<expr=value>>`
  calculator note per step and a final `#### N`). 2-4 calculator steps each (the number of `<<` in `answer`),
  from five template families (shopping, rate x time, splitting a total, multi-stage stock totals, wages).
  Operand rule, so that mental arithmetic fails and every value is a positive integer:
  `*`: both factors >= 12; `+`/`-`: both operands >= 100 (and a difference >= 100); `/`: exact, divisor >= 3,
  dividend >= 100.
- `twohop_records`: two-hop questions over a made-up world (people, cities, countries, organisations) in
  HotpotQA's distractor JSON format. Every question needs exactly two searches:
  - bridge `founder_city` (level hard): org -> founder, founder -> birth city; answer a city;
  - bridge `org_country` (level hard): org -> headquarters city, city -> country; answer a country;
  - bridge `person_country` (level medium): person -> birth city, city -> country; answer a country;
  - comparison `born_first` (level medium): person A's and person B's birth years; answer a full name.
  One article per entity (title = the name, 2 sentences); facts point one way (org -> founder and city,
  person -> city, city -> country), so a search for a name finds that entity's own article first. Each
  question's `context` holds its 2 supporting articles and 8 distractors from the same world, so the split's
  pooled corpus holds every article its questions need.

Splits: each split has its own world (train and dev/test share no entity, so held-out questions need fresh
searches), and arithmetic splits share no question. Both are disjoint by construction: a name token or a
question belongs to the split its SHA-1 picks (`_SPLITS`), whatever the seed or size. Name tokens are made-up
syllable strings of 6-11 letters, unique in their first 5 letters across all splits of a seed (so their
stemmed forms differ too), ending in a, o, u, i or n, r, k, m, x, th (no English suffix for a stemmer to
strip).

Everything is a pure function of (n, seed, split): the same arguments give the same records, and
`write_toy_worlds` writes byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable
from typing import Any

from swirl.data.synthetic import NAMES, write_once

FORMAT = 1  # bump when the generated content changes, so written files are rebuilt
_SPLITS = {"train": 0, "dev": 1, "test": 2}


def _split_index(split: str) -> int:
    if split not in _SPLITS:
        raise ValueError(f"split {split!r}: choose one of {sorted(_SPLITS)}")
    return _SPLITS[split]


def _bucket(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % len(_SPLITS)


# ------------------------------------------------------------------------------------------ arithmetic
SHOP = [
    ("chairs", 18, 140),
    ("lamps", 15, 95),
    ("jackets", 25, 180),
    ("bicycles", 95, 480),
    ("tablets", 120, 650),
    ("desks", 60, 320),
    ("rugs", 35, 260),
    ("kettles", 14, 75),
    ("mirrors", 22, 210),
    ("tents", 45, 390),
]
PARTS = ["bolts", "bottles", "bricks", "tiles", "buttons", "labels", "cups", "boxes"]
CLUBS = ["chess club", "rowing club", "choir", "hiking club", "book club", "robotics club"]
GOODS = ["boxes", "crates", "sacks", "parcels", "barrels"]
PLACES = ["warehouse", "depot", "harbour store", "farm shed"]


def _note(a: int, op: str, b: int) -> tuple[str, int]:
    v = {"+": a + b, "-": a - b, "*": a * b}.get(op)
    if op == "/":
        assert a % b == 0, (a, b)
        v = a // b
    assert v is not None and v > 0
    return f"{a} {op} {b} = <<{a}{op}{b}={v}>>{v}", v


def _shopping(rng: random.Random, name: str) -> tuple[str, list[str], int]:
    (i1, lo1, hi1), (i2, lo2, hi2) = rng.sample(SHOP, 2)
    q1, q2, p1, p2 = rng.randint(12, 48), rng.randint(12, 48), rng.randint(lo1, hi1), rng.randint(lo2, hi2)
    s1, c1 = _note(q1, "*", p1)
    s2, c2 = _note(q2, "*", p2)
    s3, total = _note(c1, "+", c2)
    steps = [
        f"The {i1} cost {s1} dollars.",
        f"The {i2} cost {s2} dollars.",
        f"Together they cost {s3} dollars.",
    ]
    q = f"{name} orders {q1} {i1} at ${p1} each and {q2} {i2} at ${p2} each for a new hotel."
    if rng.random() < 0.5:
        budget = total + rng.randint(100, 4000)
        s4, left = _note(budget, "-", total)
        steps.append(f"{name} has {s4} dollars left.")
        return f"{q} {name} had ${budget}. How many dollars does {name} have left?", steps, left
    return f"{q} How many dollars does {name} spend in total?", steps, total


def _rate(rng: random.Random, name: str) -> tuple[str, list[str], int]:
    if rng.random() < 0.5:
        part = rng.choice(PARTS)
        r1, h1, r2, h2 = rng.randint(12, 99), rng.randint(12, 24), rng.randint(12, 99), rng.randint(12, 24)
        s1, a = _note(r1, "*", h1)
        s2, b = _note(r2, "*", h2)
        s3, total = _note(a, "+", b)
        q = (
            f"A machine makes {r1} {part} per hour for {h1} hours on Monday and {r2} {part} per hour for "
            f"{h2} hours on Tuesday. How many {part} does it make on the two days?"
        )
        return (
            q,
            [
                f"On Monday it makes {s1} {part}.",
                f"On Tuesday it makes {s2} {part}.",
                f"In all it makes {s3} {part}.",
            ],
            total,
        )
    r, w, x = rng.randint(12, 250), rng.randint(12, 52), rng.randint(100, 999)
    s1, a = _note(r, "*", w)
    s2, total = _note(a, "+", x)
    q = (
        f"{name} cycles {r} kilometres every week for {w} weeks and then rides {x} kilometres in a final "
        f"race. How many kilometres does {name} cycle in all?"
    )
    return (
        q,
        [f"The weekly rides add up to {s1} kilometres.", f"With the race that is {s2} kilometres."],
        total,
    )


def _split_total(rng: random.Random, name: str) -> tuple[str, list[str], int]:
    club = rng.choice(CLUBS)
    g, k, c = rng.randint(3, 12), rng.randint(4, 20), rng.randint(12, 99)
    n = g * k
    s1, total = _note(n, "*", c)
    steps = [f"The members pay {s1} dollars."]
    q = f"{n} members of a {club} each pay {c} dollars."
    if rng.random() < 0.5:
        d = g * rng.randint(-(-100 // g), 150)
        s2, total = _note(total, "+", d)
        steps.append(f"With the sponsor's money there are {s2} dollars.")
        q += f" A sponsor adds {d} dollars."
    s3, each = _note(total, "/", g)
    steps.append(f"Each project gets {s3} dollars.")
    return (
        f"{q} The money is shared equally among {g} projects. How many dollars does each project get?",
        steps,
        each,
    )


def _stock(rng: random.Random, name: str) -> tuple[str, list[str], int]:
    good, place = rng.choice(GOODS), rng.choice(PLACES)
    s, a, b = rng.randint(100, 9999), rng.randint(12, 40), rng.randint(12, 99)
    s1, got = _note(a, "*", b)
    s2, have = _note(s, "+", got)
    c = rng.randint(100, have - 100)
    s3, have = _note(have, "-", c)
    steps = [
        f"The trucks bring {s1} {good}.",
        f"The {place} then holds {s2} {good}.",
        f"After sending some out it holds {s3} {good}.",
    ]
    q = (
        f"A {place} holds {s} {good}. It receives {a} trucks carrying {b} {good} each, then sends out {c} "
        f"{good}."
    )
    if rng.random() < 0.5:
        e = rng.randint(100, 2500)
        s4, have = _note(have, "+", e)
        steps.append(f"With the late delivery it holds {s4} {good}.")
        q += f" Later {e} more {good} arrive."
    return f"{q} How many {good} are in the {place} now?", steps, have


def _wages(rng: random.Random, name: str) -> tuple[str, list[str], int]:
    h, w, k = rng.randint(12, 45), rng.randint(12, 60), rng.randint(12, 52)
    s1, week = _note(h, "*", w)
    s2, total = _note(week, "*", k)
    e = rng.randint(100, total - 100)
    s3, left = _note(total, "-", e)
    q = (
        f"{name} works {h} hours a week at ${w} an hour for {k} weeks, then pays ${e} in rent from the "
        f"earnings. How many dollars does {name} keep?"
    )
    return (
        q,
        [
            f"{name} earns {s1} dollars a week.",
            f"Over {k} weeks that is {s2} dollars.",
            f"After rent {name} keeps {s3} dollars.",
        ],
        left,
    )


_TEMPLATES: list[Callable[[random.Random, str], tuple[str, list[str], int]]] = [
    _shopping,
    _rate,
    _split_total,
    _stock,
    _wages,
]


def arithmetic_records(n: int, seed: int, split: str) -> list[dict[str, str]]:
    """`n` GSM8K-format word problems of `split` (train/dev/test; splits never share a question)."""
    want = _split_index(split)
    rng = random.Random(f"toyworld-arithmetic-{seed}-{split}")
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(out) < n:
        q, steps, ans = rng.choice(_TEMPLATES)(rng, rng.choice(NAMES))
        if q in seen or _bucket(q) != want:
            continue
        seen.add(q)
        out.append({"question": q, "answer": "\n".join(steps) + f"\n#### {ans}"})
    return out


# --------------------------------------------------------------------------------------------- two-hop
_ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "gr",
    "kr",
    "tr",
    "th",
    "st",
    "sk",
    "vr",
]
_VOWELS = ["a", "e", "i", "o", "u", "a", "o", "ae"]
_MID_CODAS = ["", "", "", "", "n", "r", "l", "m", "s"]
_END_VOWELS = ["a", "o", "u", "i"]
_END_CODAS = ["", "n", "r", "k", "m", "x", "th"]
_JOBS = [
    "painter",
    "chemist",
    "poet",
    "architect",
    "violinist",
    "botanist",
    "sculptor",
    "engineer",
    "cartographer",
    "astronomer",
    "weaver",
    "glassmaker",
]
_FIELDS = [
    "river surveys",
    "stained glass",
    "tide tables",
    "folk songs",
    "bridge design",
    "rare mosses",
    "star charts",
    "clockwork",
    "salt glazes",
    "mountain maps",
]
_ORG_KINDS = [
    "Institute",
    "Guild",
    "Society",
    "Foundation",
    "Company",
    "Trust",
    "Observatory",
    "Academy",
    "Collective",
    "Bank",
]
_EXPORTS = ["copper", "wool", "timber", "salt", "olives", "glass", "tea", "amber", "rice", "marble"]
_PER_CONTEXT = 10


def _token(rng: random.Random) -> str:
    mids = "".join(
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_MID_CODAS) for _ in range(rng.randint(1, 2))
    )
    return (mids + rng.choice(_ONSETS) + rng.choice(_END_VOWELS) + rng.choice(_END_CODAS)).capitalize()


class _Names:
    """Made-up name tokens of one split: unique in their first 5 letters over every split of the seed."""

    def __init__(self, seed: int, split: str):
        self.rng = random.Random(f"toyworld-names-{seed}-{split}")
        self.want = _split_index(split)
        self.keys: set[str] = set()

    def __call__(self) -> str:
        for _ in range(100_000):
            t = _token(self.rng)
            key = t[:5].lower()
            if 6 <= len(t) <= 11 and key not in self.keys and _bucket(key) == self.want:
                self.keys.add(key)
                return t
        raise RuntimeError("toyworld: ran out of made-up names; use fewer questions per split")


def _world(seed: int, split: str, n: int) -> dict[str, Any]:
    rng = random.Random(f"toyworld-world-{seed}-{split}")
    name = _Names(seed, split)
    n_people, n_orgs, n_cities, n_countries = max(24, n), max(12, n // 2), max(10, n // 4), max(5, n // 16)
    countries = {
        name(): {"pop": rng.randint(2, 90), "export": rng.choice(_EXPORTS)} for _ in range(n_countries)
    }
    cnames = list(countries)
    cities = {
        name(): {"country": rng.choice(cnames), "pop": rng.randint(20, 2000) * 1000} for _ in range(n_cities)
    }
    tnames = list(cities)
    people: dict[str, dict[str, Any]] = {}
    for _ in range(n_people):
        first, last = name(), name()
        people[f"{first} {last}"] = {
            "last": last,
            "city": rng.choice(tnames),
            "year": rng.randint(1700, 1960),
            "job": rng.choice(_JOBS),
            "field": rng.choice(_FIELDS),
        }
    pnames = list(people)
    orgs = {}
    for founder in rng.sample(pnames, n_orgs):  # every founder founds one organisation
        orgs[f"{name()} {rng.choice(_ORG_KINDS)}"] = {
            "founder": founder,
            "year": people[founder]["year"] + rng.randint(25, 60),
            "city": rng.choice(tnames),
        }
    articles: dict[str, list[str]] = {}
    for c, x in countries.items():
        articles[c] = [
            f"{c} is a country with about {x['pop']} million inhabitants.",
            f" Its main export is {x['export']}.",
        ]
    for t, x in cities.items():
        articles[t] = [f"{t} is a city in {x['country']}.", f" It has about {x['pop']:,} inhabitants."]
    for p, x in people.items():
        articles[p] = [
            f"{p} (born {x['year']}) is {_a(x['job'])} who was born in {x['city']}.",
            f" {x['last']} is remembered for work on {x['field']}.",
        ]
    for o, x in orgs.items():
        articles[o] = [
            f"The {o} was founded by {x['founder']} in {x['year']}.",
            f" It has its headquarters in {x['city']}.",
        ]
    return {"countries": countries, "cities": cities, "people": people, "orgs": orgs, "articles": articles}


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _question(rng: random.Random, w: dict[str, Any]) -> tuple[str, str, str, str, list[list[Any]]]:
    """(question, answer, type, level, supporting facts [[title, sentence], ...]) of one random question."""
    people, orgs, cities = w["people"], w["orgs"], w["cities"]
    kind = rng.choices(["founder_city", "org_country", "person_country", "born_first"], [3, 2, 2, 3])[0]
    if kind == "founder_city":
        o = rng.choice(list(orgs))
        f = orgs[o]["founder"]
        return (
            f"In which city was the founder of the {o} born?",
            people[f]["city"],
            "bridge",
            "hard",
            [[o, 0], [f, 0]],
        )
    if kind == "org_country":
        o = rng.choice(list(orgs))
        c = orgs[o]["city"]
        return (
            f"In which country is the city where the {o} has its headquarters?",
            cities[c]["country"],
            "bridge",
            "hard",
            [[o, 1], [c, 0]],
        )
    if kind == "person_country":
        p = rng.choice(list(people))
        c = people[p]["city"]
        return (
            f"In which country was the {people[p]['job']} {p} born?",
            cities[c]["country"],
            "bridge",
            "medium",
            [[p, 0], [c, 0]],
        )
    a, b = rng.sample(list(people), 2)
    while people[a]["year"] == people[b]["year"]:
        b = rng.choice([p for p in people if p != a])
    first = a if people[a]["year"] < people[b]["year"] else b
    return f"Who was born first, {a} or {b}?", first, "comparison", "medium", [[a, 0], [b, 0]]


def twohop_records(n: int, seed: int, split: str) -> list[dict[str, Any]]:
    """`n` HotpotQA-format two-hop questions over the made-up world of `split` (train/dev/test: one world
    each)."""
    _split_index(split)
    w = _world(seed, split, n)
    arts = w["articles"]
    titles = list(arts)
    rng = random.Random(f"toyworld-twohop-{seed}-{split}")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(out) < n:
        q, answer, typ, level, facts = _question(rng, w)
        if q in seen:
            continue
        seen.add(q)
        gold = list(dict.fromkeys(t for t, _ in facts))
        distract = [t for t in rng.sample(titles, _PER_CONTEXT + len(gold)) if t not in gold][
            : _PER_CONTEXT - len(gold)
        ]
        context = [[t, arts[t]] for t in gold + distract]
        rng.shuffle(context)
        out.append(
            {
                "_id": f"toy-{seed}-{split}-{len(out):05d}",
                "answer": answer,
                "question": q,
                "supporting_facts": facts,
                "context": context,
                "type": typ,
                "level": level,
            }
        )
    return out


# ----------------------------------------------------------------------------------------------- files
def write_toy_worlds(
    out_dir: str,
    arithmetic_train: int,
    arithmetic_test: int,
    twohop_train: int,
    twohop_test: int,
    seed: int = 0,
) -> dict[str, str]:
    """Write `arithmetic/{train,test}.jsonl` and `twohop/{train,dev}.json` under `out_dir` and return their
    paths by name (arithmetic_train, arithmetic_test, twohop_train, twohop_test). Files already written with
    the same settings (the `_toyworld.json` stamp) are kept; each file is written atomically."""
    paths = {
        "arithmetic_train": os.path.join(out_dir, "arithmetic", "train.jsonl"),
        "arithmetic_test": os.path.join(out_dir, "arithmetic", "test.jsonl"),
        "twohop_train": os.path.join(out_dir, "twohop", "train.json"),
        "twohop_test": os.path.join(out_dir, "twohop", "dev.json"),
    }
    makers = {
        "arithmetic_train": lambda: "".join(
            json.dumps(r) + "\n" for r in arithmetic_records(arithmetic_train, seed, "train")
        ),
        "arithmetic_test": lambda: "".join(
            json.dumps(r) + "\n" for r in arithmetic_records(arithmetic_test, seed, "test")
        ),
        "twohop_train": lambda: json.dumps(twohop_records(twohop_train, seed, "train")),
        "twohop_test": lambda: json.dumps(twohop_records(twohop_test, seed, "dev")),
    }
    settings = {
        "arithmetic_train": arithmetic_train,
        "arithmetic_test": arithmetic_test,
        "twohop_train": twohop_train,
        "twohop_test": twohop_test,
        "seed": seed,
        "format": FORMAT,
    }
    return write_once(os.path.join(out_dir, "_toyworld.json"), settings, paths, makers)
