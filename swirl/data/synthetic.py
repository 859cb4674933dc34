"""Synthetic datasets for the offline quickstart and tests, written in the benchmarks' original formats.

- `gsm8k_records`: multi-step arithmetic word problems in GSM8K's JSONL format (`question`, `answer` with
  `<<a*b=c>>` calculator notes and a final `#### N` line).
- `hotpot_records`: two-hop questions over a made-up world (people, cities, countries) in HotpotQA's
  distractor JSON format (`_id, question, answer, type, level, supporting_facts, context`), so that search is
  needed.

Everything is a pure function of the seed: the same seed writes byte-identical files.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from typing import Any

NAMES = [
    "Ava",
    "Ben",
    "Chen",
    "Dara",
    "Eli",
    "Farah",
    "Gus",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
    "Lena",
    "Milo",
    "Nia",
    "Omar",
    "Pia",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Uma",
    "Vik",
    "Wes",
    "Yara",
    "Zane",
]
ITEMS = [
    ("apples", 2),
    ("pencils", 1),
    ("books", 12),
    ("stickers", 1),
    ("cupcakes", 3),
    ("marbles", 1),
    ("toy cars", 5),
]


def _gsm8k_problem(rng: random.Random) -> dict[str, str]:
    name, other = rng.sample(NAMES, 2)
    item, price = rng.choice(ITEMS)
    kind = rng.randrange(4)
    if kind == 0:
        a, b, c = rng.randint(3, 40), rng.randint(2, 9), rng.randint(1, 20)
        total = a * b
        left = total - c
        q = (
            f"{name} has {b} bags with {a} {item} in each bag. {name} gives {c} {item} to {other}. How many "
            f"{item} does {name} have left?"
        )
        steps = [
            f"{name} starts with {b} * {a} = <<{b}*{a}={total}>>{total} {item}.",
            f"After giving {c} away, {name} has {total} - {c} = <<{total}-{c}={left}>>{left} {item}.",
        ]
        ans = left
    elif kind == 1:
        n, m = rng.randint(2, 15), rng.randint(2, 15)
        cost = (n + m) * price
        q = (
            f"{name} buys {n} {item} and {other} buys {m} {item}. Each costs ${price}. How many dollars do "
            "they spend together?"
        )
        steps = [
            f"They buy {n} + {m} = <<{n}+{m}={n + m}>>{n + m} {item}.",
            f"They spend {n + m} * {price} = <<{n + m}*{price}={cost}>>{cost} dollars.",
        ]
        ans = cost
    elif kind == 2:
        per, days = rng.randint(2, 12), rng.randint(2, 9)
        share = rng.choice([2, 3, 4])
        total = per * days * share
        q = (
            f"{name} reads {per * share} pages a day for {days} days and shares them equally with "
            f"{share - 1} friends, so {share} people read. How many pages does each person get?"
        )
        steps = [
            f"{name} reads {per * share} * {days} = <<{per * share}*{days}={total}>>{total} pages.",
            f"Each of {share} people gets {total} / {share} = <<{total}/{share}={per * days}>>{per * days} "
            "pages.",
        ]
        ans = per * days
    else:
        a, b = rng.randint(100, 2000), rng.randint(100, 2000)
        q = f"A shop sold {a} {item} in June and {b} in July. How many {item} did it sell in the two months?"
        steps = [f"It sold {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {item}."]
        ans = a + b
    # GSM8K sometimes writes 1,600
    answer_num = f"{ans:,}" if ans >= 1000 and rng.random() < 0.5 else str(ans)
    return {"question": q, "answer": "\n".join(steps) + f"\n#### {answer_num}"}


def gsm8k_records(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(f"gsm8k-{seed}")
    return [_gsm8k_problem(rng) for _ in range(n)]


_SYL = [
    "ka",
    "lo",
    "mi",
    "ra",
    "ven",
    "tor",
    "bel",
    "dun",
    "si",
    "qua",
    "zel",
    "mor",
    "fen",
    "ar",
    "is",
    "ul",
]
_JOBS = ["painter", "chemist", "poet", "architect", "violinist", "botanist", "sculptor", "engineer"]


def _word(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYL) for _ in range(parts)).capitalize()


def _world(rng: random.Random, n_people: int) -> dict[str, Any]:
    countries = sorted({_word(rng, 3) for _ in range(12)})
    cities = {}
    while len(cities) < 30:
        cities[_word(rng, 2) + rng.choice(["ville", "ford", "grad", "port", "heim"])] = rng.choice(countries)
    people = {}
    while len(people) < n_people:
        name = f"{_word(rng, 2)} {_word(rng, 3)}"
        people[name] = {
            "city": rng.choice(sorted(cities)),
            "year": rng.randint(1820, 1990),
            "job": rng.choice(_JOBS),
        }
    return {"countries": countries, "cities": cities, "people": people}


def _person_para(name: str, p: dict[str, Any]) -> list[str]:
    return [
        f"{name} (born {p['year']}) is a {p['job']} from {p['city']}.",
        f"{name.split()[0]} is best known for work made in {p['city']}.",
    ]


def _city_para(city: str, country: str) -> list[str]:
    return [f"{city} is a city in {country}.", f"{city} lies on a river and is known for its markets."]


def hotpot_records(n: int, seed: int, split: str = "train") -> list[dict[str, Any]]:
    rng = random.Random(f"hotpot-{seed}-{split}")
    world = _world(rng, max(2 * n + 10, 20))
    names = sorted(world["people"])
    out = []
    for i in range(n):
        if rng.random() < 0.6:
            name = rng.choice(names)
            p = world["people"][name]
            country = world["cities"][p["city"]]
            q = f"In which country is the city where the {p['job']} {name} is from?"
            gold = [(name, _person_para(name, p)), (p["city"], _city_para(p["city"], country))]
            facts, answer, typ = [[name, 0], [p["city"], 0]], country, "bridge"
        else:
            a, b = rng.sample(names, 2)
            pa, pb = world["people"][a], world["people"][b]
            while pa["year"] == pb["year"] or a == b:
                b = rng.choice(names)
                pb = world["people"][b]
            q = f"Who was born first, {a} or {b}?"
            gold = [(a, _person_para(a, pa)), (b, _person_para(b, pb))]
            facts, answer, typ = [[a, 0], [b, 0]], a if pa["year"] < pb["year"] else b, "comparison"
        distract = []
        for other in rng.sample(names, 6):
            if other not in (g[0] for g in gold):
                distract.append((other, _person_para(other, world["people"][other])))
        for city in rng.sample(sorted(world["cities"]), 4):
            if city not in (g[0] for g in gold):
                distract.append((city, _city_para(city, world["cities"][city])))
        context = [[t, s] for t, s in gold + distract[: 10 - len(gold)]]
        rng.shuffle(context)
        out.append(
            {
                "_id": f"{seed:02x}{i:06x}{rng.getrandbits(32):08x}",
                "answer": answer,
                "question": q,
                "supporting_facts": facts,
                "context": context,
                "type": typ,
                "level": rng.choice(["easy", "medium", "hard"]),
            }
        )
    return out


def _atomic_write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def synthetic_paths(out_dir: str) -> dict[str, str]:
    """Name -> the file `write_synthetic(out_dir, ...)` writes it to (every size writes every file)."""
    return {
        "gsm8k_train": os.path.join(out_dir, "gsm8k", "train.jsonl"),
        "gsm8k_test": os.path.join(out_dir, "gsm8k", "test.jsonl"),
        "hotpotqa_train": os.path.join(out_dir, "hotpotqa", "train.json"),
        "hotpotqa_test": os.path.join(out_dir, "hotpotqa", "dev.json"),
    }


def write_synthetic(
    out_dir: str,
    gsm8k_train: int = 64,
    gsm8k_test: int = 32,
    hotpotqa_train: int = 32,
    hotpotqa_test: int = 16,
    seed: int = 0,
) -> dict[str, str]:
    """Write the synthetic datasets (skipping files that exist) and return their paths by name."""
    paths = synthetic_paths(out_dir)
    makers = {
        "gsm8k_train": lambda: "".join(json.dumps(r) + "\n" for r in gsm8k_records(gsm8k_train, seed)),
        "gsm8k_test": lambda: "".join(json.dumps(r) + "\n" for r in gsm8k_records(gsm8k_test, seed + 10_000)),
        "hotpotqa_train": lambda: json.dumps(hotpot_records(hotpotqa_train, seed, "train")),
        "hotpotqa_test": lambda: json.dumps(hotpot_records(hotpotqa_test, seed, "dev")),
    }
    stamp = {
        "gsm8k_train": gsm8k_train,
        "gsm8k_test": gsm8k_test,
        "hotpotqa_train": hotpotqa_train,
        "hotpotqa_test": hotpotqa_test,
        "seed": seed,
    }
    return write_once(os.path.join(out_dir, "_synthetic.json"), stamp, paths, makers)


def write_once(
    stamp_path: str, settings: dict[str, Any], paths: dict[str, str], makers: dict[str, Callable[[], str]]
) -> dict[str, str]:
    """Write each file `paths[k]` from `makers[k]()` unless it exists and was written with the same `settings`
    (recorded in the stamp file, written last). A rewrite first drops the stamp, so one cut short never leaves
    files of mixed settings under a valid stamp. Returns `paths`."""
    stamp = json.dumps(settings, sort_keys=True)
    same = False
    if os.path.exists(stamp_path):
        with open(stamp_path, encoding="utf-8") as f:
            same = f.read() == stamp
        if not same:
            os.remove(stamp_path)
    for key, path in paths.items():
        if not same or not os.path.exists(path):  # other settings than the files were written with: rewrite
            _atomic_write(path, makers[key]())
    _atomic_write(stamp_path, stamp)
    return paths


def sample_text(seed: int = 0, n: int = 400) -> list[str]:
    """Text resembling what the pipeline's prompts and tools produce (to train the tiny model's tokenizer)."""
    lines = []
    for r in gsm8k_records(n, seed):
        lines += [r["question"], r["answer"]]
    for r in hotpot_records(n // 4, seed):
        lines.append(r["question"] + " " + r["answer"])
        lines += [" ".join(s) for _, s in r["context"]]
    return lines
