"""Two-hop questions over a made-up world, with held-out question templates: a test of reading, not recall.

`twohop_records(n, seed, split)` writes questions in HotpotQA's distractor JSON format (`_id, question,
answer, type, level, supporting_facts, context`, plus `template`). Every question needs exactly two searches,
and the gold solution searches the titles of `supporting_facts` in that order (the hop order).

The world (one per world split: train, dev, test; see `swirl.data.toysplits`), fixed in size by `_SIZES` and a
pure function of (seed, world), so growing `n` never changes the earlier questions:

- countries: population (millions), capital (one of its cities), currency, main export;
- cities: country, population, river;
- people (first and last name): birth year, job, birth city, employer (an organisation), teacher (a person
  born 15-45 years earlier; the oldest have none);
- organisations (a name and a kind word, e.g. `Velmo Guild`): founder (a person), founding year,
  headquarters city;
- books: author (a person), year published;
- bridges (`Tok Bridge`): designer (an architect or engineer), year opened, city;
- ships: builder (an organisation), year launched, length in metres, home port (a city).

One article per entity (title = the name, 2-4 short sentences, one fact or two per sentence, each article
under 200 characters so a search result cut to 200 characters still shows every fact). Facts point one way
(an article names the entities it links to; nothing names what links to it), and an article repeats its own
name, so a search for an entity's exact title ranks that entity's own article first.

Templates (`TWOHOP_TEMPLATES`, split by hand): a relation path asked in 3 wordings. A bridge template reads
one relation of the entity named in the question (hop 1), then one relation of the entity found there (hop
2); its answer is the second fact (a name, a year, a job, a river, a currency), which is neither a word of
the question nor written in the first article. A comparison template reads one number (a year, a population,
a length) in each of the two named entities' articles; its answer is one of the two names.

- train (12): bridges founder -> birth city, headquarters -> country, birth city -> country, author -> birth
  year, capital -> river, employer -> founder, builder -> headquarters, teacher -> job; comparisons birth
  year, founding year, city population, launch year;
- dev (4): bridges bridge's city -> country, book's author -> employer; comparisons country population,
  bridge opening year;
- test (5): bridges designer -> employer, city's country -> currency, ship's home port -> river;
  comparisons book publication year, ship length.
  A dev or test template's relation path and wordings never occur in training; some of its relations do
  (employer, country, river), some never do (a bridge's designer, a city's currency, a ship's home port and
  length).

Question splits (`swirl.data.toysplits.SPLITS`): `train`, `dev`, `test` draw from their own templates in
their own world; `test_seen` draws from the training templates in the test world (the in-template test).
`templates=k` keeps the first k training templates (the ablation of accuracy against the number of training
templates). The template of each question is drawn uniformly; a template whose questions run out leaves the
draw (a bridge template asks about each named entity once: `capital_river` has 150 countries, so beyond about
1,800 training questions the mix leans to the other templates). Name tokens are made-up syllable strings of
6-11 letters, unique in their first 5 letters, each in the world whose split its 5-letter key's SHA-1 bucket
names, so the three worlds share no name whatever the seed.

Everything is a pure function of (n, seed, split, templates), and prefix-stable: the first 10 of 20 records
are the 10 records.
"""

from __future__ import annotations

import bisect
import functools
import random
from dataclasses import dataclass
from typing import Any

from swirl.data.toysplits import bucket, bucket_of, check_split, templates_of, world_of

FORMAT = 1  # bump when the generated content changes, so written files are rebuilt
_PER_CONTEXT = 10


@dataclass(frozen=True)
class Template:
    """A question kind: `subject` is the entity kind named in the question; `relations` the fact read in
    each search (bridge: hop 1 of the subject, hop 2 of the entity it names; comparison: the one number read
    in both subjects' articles, the answer the one with the `pick` value); `wordings` hold `{a}` (and `{b}`).
    """

    id: str
    split: str
    kind: str
    subject: str
    relations: tuple[str, ...]
    wordings: tuple[str, ...]
    pick: str = ""  # comparison: "min" or "max"

    @property
    def level(self) -> str:
        return "hard" if self.kind == "bridge" else "medium"


def _bridge(tid: str, split: str, subject: str, hop1: str, hop2: str, *wordings: str) -> Template:
    return Template(tid, split, "bridge", subject, (hop1, hop2), tuple(wordings))


def _comparison(tid: str, split: str, subject: str, rel: str, pick: str, *wordings: str) -> Template:
    return Template(tid, split, "comparison", subject, (rel,), tuple(wordings), pick)


TWOHOP_TEMPLATES: tuple[Template, ...] = (
    # ------------------------------------------------------------------------------------------ train
    _bridge(
        "founder_birth_city",
        "train",
        "org",
        "founder",
        "birth_city",
        "In which city was the founder of the {a} born?",
        "The founder of the {a} was born in which city?",
        "What is the birthplace of the person who founded the {a}?",
    ),
    _bridge(
        "hq_country",
        "train",
        "org",
        "hq",
        "country",
        "In which country is the city where the {a} has its headquarters?",
        "The {a} is headquartered in a city of which country?",
        "Which country is home to the headquarters city of the {a}?",
    ),
    _bridge(
        "birth_city_country",
        "train",
        "person",
        "birth_city",
        "country",
        "In which country was {a} born?",
        "{a} was born in a city of which country?",
        "The city where {a} was born lies in which country?",
    ),
    _bridge(
        "author_birth_year",
        "train",
        "book",
        "author",
        "born",
        "In what year was the author of the book {a} born?",
        "When was the writer of the book {a} born?",
        "The book {a} was written by someone born in which year?",
    ),
    _bridge(
        "capital_river",
        "train",
        "country",
        "capital",
        "river",
        "On which river lies the capital of {a}?",
        "Which river flows through the capital city of {a}?",
        "The capital of {a} is on which river?",
    ),
    _bridge(
        "employer_founder",
        "train",
        "person",
        "employer",
        "founder",
        "Who founded the organisation that {a} worked for?",
        "Who was the founder of the employer of {a}?",
        "{a} worked for an organisation; who founded it?",
    ),
    _bridge(
        "builder_hq",
        "train",
        "ship",
        "builder",
        "hq",
        "In which city does the builder of the ship {a} have its headquarters?",
        "Where is the organisation that built the ship {a} headquartered?",
        "The ship {a} was built by an organisation based in which city?",
    ),
    _bridge(
        "teacher_job",
        "train",
        "person",
        "teacher",
        "job",
        "What was the profession of the teacher of {a}?",
        "{a} studied under someone; what was that person's job?",
        "What did the person who taught {a} work as?",
    ),
    _comparison(
        "born_first",
        "train",
        "person",
        "born",
        "min",
        "Who was born first, {a} or {b}?",
        "Which of {a} and {b} was born earlier?",
        "Of {a} and {b}, who is the elder?",
    ),
    _comparison(
        "founded_first",
        "train",
        "org",
        "founded",
        "min",
        "Which was founded first, the {a} or the {b}?",
        "Which organisation is older, the {a} or the {b}?",
        "Of the {a} and the {b}, which was founded earlier?",
    ),
    _comparison(
        "city_more_people",
        "train",
        "city",
        "population",
        "max",
        "Which city has more inhabitants, {a} or {b}?",
        "Which is the larger city by population, {a} or {b}?",
        "Of {a} and {b}, which city is home to more people?",
    ),
    _comparison(
        "launched_first",
        "train",
        "ship",
        "launched",
        "min",
        "Which ship was launched first, {a} or {b}?",
        "Of the ships {a} and {b}, which was launched earlier?",
        "Which is the older ship, {a} or {b}?",
    ),
    # -------------------------------------------------------------------------------------------- dev
    _bridge(
        "bridge_city_country",
        "dev",
        "bridge",
        "city",
        "country",
        "In which country does the {a} stand?",
        "The {a} is in a city of which country?",
        "Which country is the {a} located in?",
    ),
    _bridge(
        "author_employer",
        "dev",
        "book",
        "author",
        "employer",
        "Which organisation employed the author of the book {a}?",
        "For which organisation did the writer of the book {a} work?",
        "The author of the book {a} worked for which organisation?",
    ),
    _comparison(
        "country_more_people",
        "dev",
        "country",
        "population",
        "max",
        "Which country has more inhabitants, {a} or {b}?",
        "Which is the more populous country, {a} or {b}?",
        "Of {a} and {b}, which country has the larger population?",
    ),
    _comparison(
        "opened_first",
        "dev",
        "bridge",
        "opened",
        "min",
        "Which bridge opened first, the {a} or the {b}?",
        "Of the {a} and the {b}, which was opened earlier?",
        "Which bridge has been open longer, the {a} or the {b}?",
    ),
    # ------------------------------------------------------------------------------------------- test
    _bridge(
        "designer_employer",
        "test",
        "bridge",
        "designer",
        "employer",
        "For which organisation did the designer of the {a} work?",
        "The {a} was designed by someone who worked for which organisation?",
        "Which organisation employed the person who designed the {a}?",
    ),
    _bridge(
        "city_currency",
        "test",
        "city",
        "country",
        "currency",
        "What currency is used in the country where {a} lies?",
        "The city of {a} is in a country with which currency?",
        "Which currency does the country of the city {a} use?",
    ),
    _bridge(
        "port_river",
        "test",
        "ship",
        "port",
        "river",
        "On which river is the home port of the ship {a}?",
        "The ship {a} sails from a port on which river?",
        "What river runs through the home port of the ship {a}?",
    ),
    _comparison(
        "published_first",
        "test",
        "book",
        "published",
        "min",
        "Which book was published first, {a} or {b}?",
        "Of the books {a} and {b}, which came out earlier?",
        "Was {a} or {b} published earlier?",
    ),
    _comparison(
        "longer_ship",
        "test",
        "ship",
        "length",
        "max",
        "Which ship is longer, {a} or {b}?",
        "Of the ships {a} and {b}, which has the greater length?",
        "Which is the longer vessel, {a} or {b}?",
    ),
)


def split_templates(split: str, templates: int | None = None) -> tuple[Template, ...]:
    """The templates a question split draws from (`templates=k`: the first k training templates)."""
    tsplit = templates_of(split)
    chosen = tuple(t for t in TWOHOP_TEMPLATES if t.split == tsplit)
    if templates is None:
        return chosen
    if tsplit != "train":
        raise ValueError(
            f"templates={templates!r} picks training templates, but split {split!r} draws from the {tsplit} "
            "templates: pass templates=None"
        )
    if isinstance(templates, bool) or not isinstance(templates, int) or not 1 <= templates <= len(chosen):
        raise ValueError(f"templates={templates!r}: give None or an int from 1 to {len(chosen)}")
    return chosen[:templates]


# ------------------------------------------------------------------------------------------- names
_ONSETS = "b d f g k l m n p r t v z br dr gr kr tr th st sk vr".split()
_VOWELS = ["a", "e", "i", "o", "u", "a", "o", "ae"]
_MID_CODAS = ["", "", "", "", "n", "r", "l", "m", "s"]
_END_VOWELS = ["a", "o", "u", "i"]
_END_CODAS = ["", "n", "r", "k", "m", "x", "th"]


def _token(rng: random.Random) -> str:
    mids = "".join(
        rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_MID_CODAS) for _ in range(rng.randint(1, 2))
    )
    return (mids + rng.choice(_ONSETS) + rng.choice(_END_VOWELS) + rng.choice(_END_CODAS)).capitalize()


class _Names:
    """Made-up name tokens of one world: unique in their first 5 letters, in the world's SHA-1 bucket."""

    def __init__(self, seed: int, world: str):
        self.rng = random.Random(f"toy-twohop-names-{seed}-{world}")
        self.want = bucket_of(world)
        self.keys: set[str] = set()

    def __call__(self) -> str:
        for _ in range(100_000):
            t = _token(self.rng)
            key = t[:5].lower()
            if 6 <= len(t) <= 11 and key not in self.keys and bucket(key) == self.want:
                self.keys.add(key)
                return t
        raise RuntimeError("toy_twohop: ran out of made-up names; lower _SIZES")


# ------------------------------------------------------------------------------------------- world
_SIZES = {
    "country": 150,
    "city": 600,
    "river": 150,
    "person": 1500,
    "org": 400,
    "book": 400,
    "bridge": 300,
    "ship": 300,
}
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
    "historian",
    "surgeon",
]
_DESIGNER_JOBS = ("architect", "engineer")
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


@dataclass(frozen=True)
class _World:
    pools: dict[str, list[str]]  # entity kind -> titles
    articles: dict[str, list[str]]  # title -> sentences (HotpotQA style: later ones with a leading space)
    facts: dict[str, dict[str, tuple[Any, int]]]  # title -> relation -> (value, sentence index)


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


_Person = tuple[str, str, int, str, str]  # full name, last name, birth year, job, birth city


class _Builder:
    """A world being built: its random draws, its made-up names and the articles added so far."""

    def __init__(self, seed: int, world: str):
        self.rng = random.Random(f"toy-twohop-world-{seed}-{world}")
        self.name = _Names(seed, world)
        self.pools: dict[str, list[str]] = {}
        self.articles: dict[str, list[str]] = {}
        self.facts: dict[str, dict[str, tuple[Any, int]]] = {}

    def add(self, kind: str, title: str, sentences: list[tuple[str, dict[str, Any]]]) -> None:
        self.pools.setdefault(kind, []).append(title)
        self.articles[title] = [s for s, _ in sentences]
        self.facts[title] = {rel: (v, i) for i, (_, rels) in enumerate(sentences) for rel, v in rels.items()}


@functools.lru_cache(maxsize=8)
def _world(seed: int, world: str) -> _World:
    """One world's articles, built in a fixed order of random draws (the order is part of the data)."""
    w = _Builder(seed, world)
    rivers = [w.name() for _ in range(_SIZES["river"])]
    countries = [w.name() for _ in range(_SIZES["country"])]
    cities = [w.name() for _ in range(_SIZES["city"])]
    _add_places(w, rivers, countries, cities)
    people = _draw_people(w, cities)
    orgs = _add_orgs(w, people, cities)
    _add_people(w, people, orgs)
    _add_books(w, people)
    _add_bridges(w, people, cities)
    _add_ships(w, orgs, cities)
    return _World(w.pools, w.articles, w.facts)


def _add_places(w: _Builder, rivers: list[str], countries: list[str], cities: list[str]) -> None:
    """Countries and cities; every country has a city (its capital is one of them)."""
    rng, name = w.rng, w.name
    city_country = {
        c: countries[i] if i < len(countries) else rng.choice(countries) for i, c in enumerate(cities)
    }
    for k in countries:
        capital = rng.choice([c for c in cities if city_country[c] == k])
        pop = rng.randint(2, 300)
        w.add(
            "country",
            k,
            [
                (f"{k} is a country with about {pop} million inhabitants.", {"population": pop}),
                (f" Its capital is {capital}.", {"capital": capital}),
                (f" Its currency is the {(cur := name())}.", {"currency": cur}),
                (f" Its main export is {(exp := rng.choice(_EXPORTS))}.", {"export": exp}),
            ],
        )
    for c in cities:
        pop, river = rng.randint(20, 2000) * 1000, rng.choice(rivers)
        w.add(
            "city",
            c,
            [
                (f"{c} is a city in {city_country[c]}.", {"country": city_country[c]}),
                (f" It has about {pop:,} inhabitants.", {"population": pop}),
                (f" It lies on the river {river}.", {"river": river}),
            ],
        )


def _draw_people(w: _Builder, cities: list[str]) -> list[_Person]:
    people = []
    for _ in range(_SIZES["person"]):
        first, last = w.name(), w.name()
        born, job, city = w.rng.randint(1700, 1960), w.rng.choice(_JOBS), w.rng.choice(cities)
        people.append((f"{first} {last}", last, born, job, city))
    return people


def _add_orgs(w: _Builder, people: list[_Person], cities: list[str]) -> list[str]:
    """Organisations, each founded by its own person; returns their titles."""
    orgs = [f"{w.name()} {w.rng.choice(_ORG_KINDS)}" for _ in range(_SIZES["org"])]
    founders = w.rng.sample(people, len(orgs))  # every founder founds one organisation
    for o, (f, _, born, _, _) in zip(orgs, founders, strict=True):
        year, hq = born + w.rng.randint(25, 60), w.rng.choice(cities)
        w.add(
            "org",
            o,
            [
                (f"The {o} was founded by {f} in {year}.", {"founder": f, "founded": year}),
                (f" It has its headquarters in {hq}.", {"hq": hq}),
            ],
        )
    return orgs


def _add_people(w: _Builder, people: list[_Person], orgs: list[str]) -> None:
    """People: birth, job, employer, and a teacher 15 to 45 years older where there is one."""
    by_year = sorted((b, p) for p, _, b, _, _ in people)
    years = [b for b, _ in by_year]
    for p, last, born, job, city in people:
        lo, hi = bisect.bisect_left(years, born - 45), bisect.bisect_right(years, born - 15)
        older = [q for _, q in by_year[lo:hi]]
        sentences = [
            (
                f"{p} (born {born}) is {_a(job)} who was born in {city}.",
                {"born": born, "job": job, "birth_city": city},
            ),
            (f" {last} worked for the {(employer := w.rng.choice(orgs))}.", {"employer": employer}),
        ]
        if older:
            teacher = w.rng.choice(older)
            sentences.append((f" {last} studied under {teacher}.", {"teacher": teacher}))
        w.add("person", p, sentences)


def _add_books(w: _Builder, people: list[_Person]) -> None:
    for _ in range(_SIZES["book"]):
        b, (author, _, born, _, _) = w.name(), w.rng.choice(people)
        year = born + w.rng.randint(20, 70)
        w.add(
            "book",
            b,
            [
                (f"{b} is a book by {author}.", {"author": author}),
                (f" It was published in {year}.", {"published": year}),
            ],
        )


def _add_bridges(w: _Builder, people: list[_Person], cities: list[str]) -> None:
    designers = [p for p in people if p[3] in _DESIGNER_JOBS]
    for _ in range(_SIZES["bridge"]):
        x, (designer, _, born, _, _) = f"{w.name()} Bridge", w.rng.choice(designers)
        year, city = born + w.rng.randint(25, 60), w.rng.choice(cities)
        w.add(
            "bridge",
            x,
            [
                (f"The {x} was designed by {designer}.", {"designer": designer}),
                (f" It opened in {year}.", {"opened": year}),
                (f" It stands in {city}.", {"city": city}),
            ],
        )


def _add_ships(w: _Builder, orgs: list[str], cities: list[str]) -> None:
    for _ in range(_SIZES["ship"]):
        s, builder = w.name(), w.rng.choice(orgs)
        year, length, port = w.rng.randint(1750, 2010), w.rng.randint(30, 320), w.rng.choice(cities)
        w.add(
            "ship",
            s,
            [
                (f"{s} is a ship built by the {builder}.", {"builder": builder}),
                (f" It was launched in {year}.", {"launched": year}),
                (f" It is {length} metres long.", {"length": length}),
                (f" Its home port is {port}.", {"port": port}),
            ],
        )


# --------------------------------------------------------------------------------------- questions
_Question = tuple[str, str, list[list[Any]]]  # question, answer, supporting facts in hop order


class _Asker:
    """The questions of one template in one split, in a fixed random order (each asked once)."""

    def __init__(self, t: Template, w: _World, seed: int, split: str):
        self.t, self.w = t, w
        self.rng = random.Random(f"toy-twohop-ask-{seed}-{split}-{t.id}")
        self.order = list(w.pools[t.subject])
        self.rng.shuffle(self.order)
        self.at = 0
        self.seen: set[frozenset[str]] = set()

    def next(self) -> _Question | None:
        """The next question of this template, or None when it has none left."""
        if self.t.kind == "bridge":
            while self.at < len(self.order):
                a = self.order[self.at]
                self.at += 1
                if (q := self._bridge(a)) is not None:
                    return q
            return None
        for _ in range(10_000):
            pair = frozenset(self.rng.sample(self.w.pools[self.t.subject], 2))
            if pair not in self.seen and (q := self._comparison(*sorted(pair))) is not None:
                self.seen.add(pair)
                return q
        return None

    def _bridge(self, a: str) -> _Question | None:
        rel1, rel2 = self.t.relations
        if rel1 not in self.w.facts[a]:  # e.g. the oldest people have no teacher
            return None
        mid, i1 = self.w.facts[a][rel1]
        value, i2 = self.w.facts[mid][rel2]
        answer = str(value)
        question = self.rng.choice(self.t.wordings).format(a=a)
        first = "".join(self.w.articles[a])
        if answer.lower() in question.lower() or answer in first or answer == mid or mid == a:
            return None  # answerable without the second search, or a circular path
        return question, answer, [[a, i1], [mid, i2]]

    def _comparison(self, a: str, b: str) -> _Question | None:
        (rel,) = self.t.relations
        (va, ia), (vb, ib) = self.w.facts[a][rel], self.w.facts[b][rel]
        if va == vb:
            return None
        if self.rng.random() < 0.5:
            a, b, va, vb, ia, ib = b, a, vb, va, ib, ia
        answer = a if (va < vb) == (self.t.pick == "min") else b
        question = self.rng.choice(self.t.wordings).format(a=a, b=b)
        return question, answer, [[a, ia], [b, ib]]


def _most(t: Template, w: _World) -> int:
    """At most how many distinct questions a template asks: one per subject (bridge) or pair (comparison)."""
    k = len(w.pools[t.subject])
    return k if t.kind == "bridge" else k * (k - 1) // 2


def twohop_records(n: int, seed: int, split: str, templates: int | None = None) -> list[dict[str, Any]]:
    """`n` HotpotQA-format two-hop questions of `split` (one of `SPLITS`): the split's templates
    (`templates=k`: the first k training templates) over the split's world; see the module docstring."""
    check_split(split)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r}: give the number of questions as an int >= 0")
    chosen = split_templates(split, templates)
    w = _world(seed, world_of(split))
    tag = split if templates is None else f"{split}-k{templates}"
    rng = random.Random(f"toy-twohop-{seed}-{tag}")
    most = sum(_most(t, w) for t in chosen)
    if n > most:
        raise ValueError(
            f"n={n}: split {split!r} has at most {most} distinct questions with these templates; ask for "
            "fewer"
        )
    askers = [_Asker(t, w, seed, split) for t in chosen]
    titles = list(w.articles)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(out) < n:
        if not askers:
            raise ValueError(
                f"n={n}: split {split!r} has only {len(out)} distinct questions with these templates; ask "
                "for fewer"
            )
        asker = rng.choice(askers)
        got = asker.next()
        if got is None:
            askers.remove(asker)
            continue
        question, answer, facts = got
        if question in seen:
            continue
        seen.add(question)
        gold = list(dict.fromkeys(t for t, _ in facts))
        distract = [t for t in rng.sample(titles, _PER_CONTEXT + len(gold)) if t not in gold]
        context = [[t, list(w.articles[t])] for t in gold + distract[: _PER_CONTEXT - len(gold)]]
        rng.shuffle(context)
        out.append(
            {
                "_id": f"toy2hop-{seed}-{tag}-{len(out):05d}",
                "answer": answer,
                "question": question,
                "supporting_facts": facts,
                "context": context,
                "type": asker.t.kind,
                "level": asker.t.level,
                "template": asker.t.id,
            }
        )
    return out


__all__ = ["FORMAT", "TWOHOP_TEMPLATES", "Template", "split_templates", "twohop_records"]
