"""A strict rule-based process judge: GOOD/BAD for a step from the conversation before it, without a model.

It plays the LLM judge's role (docs/method.md §1.3: "judge only my last message given the conversation so
far"; no gold answers) with structural checks a program can make. It is the process filter of the pipeline
on machines without a judge model and the reward of the online `swirl` objective (training/rewards.py), so
the usual structural mistakes must be BAD, not only invalid actions. It never reads the gold answer.
bench/judge.py measures it on gold solutions (real GSM8K and HotpotQA, the toy worlds).

Math (`<math_exp>`): the work must be one tree of calculations whose leaves are the problem's quantities.

- Quantities: each number written in the question, with multiplicity ("24 ... 24" is two; `1,200`, `$3.50`;
  `25%` may be written 25 or 0.25; `3/4` gives 3 and 4), each number word of the question (`_WORDS`, `_UNITS`,
  `_TENS`: "three" 3, "twenty-five" 25, "twice"/"double"/"pair" 2, "half" 2 or 0.5, "third" 3 or 1/3,
  "quarter" 4 or 0.25, "dozen" 12, "hundred" 100, "percent" 100, ...), and each calculator result (also as
  value/100 when the question speaks of percent). Each may be consumed once. Errors are no results.
- Conventional constants (`CONSTANTS`: 0, 1, 2, 3, 4, 7, 10, 12, 24, 30, 52, 60, 100, 365, 1000, 0.5, 0.01:
  halves, doubles, days of a week, months, hours, dozens, minutes, percent, thousands) are free and may be
  used any number of times, except a value the question writes as a number: there it is the problem's
  quantity.
- Each number of a calculation is matched to an unused quantity of its value, the latest result first, then
  earlier results (latest first), then the question's numbers, then its number words; else to a free
  constant; else it re-uses a consumed quantity, or it is made up.
- A calculation is GOOD when the calculator accepts it, it is no repeat (same expression, spaces aside), no
  number is made up, it consumes at least one unused quantity (not only constants), and it re-uses no
  consumed quantity - except one that a result consumed by the same calculation was computed from (`REUSE =
  "parent"`): "20% less than $20" is `20 * 0.2 -> 4` then `20 - 4`, half of 48 then `48 + 24`. So `150 - 24`
  after `24 * 35 -> 840` is BAD (24 was consumed and the 840 hangs), and so is `690 - 24` after `840 - 150 ->
  690` (24 is no operand of the 690's calculation). Real GSM8K solutions also re-use a quantity in two
  branches (`6 * 3` and `6 * 12`); those steps are BAD here (bench/judge.py counts them).
- An answer is GOOD only when its number is the LAST calculator result and the work is one tree with the
  answer at its root: every number written in the question (but 0 and 1) and every earlier result was
  consumed; number words may stay unused ("three colours" is often no operand). An intermediate result is
  BAD; answering without a calculation is BAD when the question has two or more numbers (else the answer must
  be a quantity of the question).

Search (`<search_query>`). Entities of the question: the words of its capitalised words and numbers that are
not stopwords (its content words when it has none); names of a result: the same in the result's text.

- Comparison questions (`comparison_options`: "Who was born first, A or B?", "Which ... older, the A or the
  B?", "Was A or B ...?", "Of A and B, which ...?", "Which of A and B ...?"): each query names an option not
  searched yet (a word of it that the other option lacks), one option per query; the answer must be one of
  the options, after both were searched.
- Yes/no questions ("Were A and B both ...?"): queries as for bridge questions; the answer is yes or no, after
  two searches with results.
- Bridge questions (all others): the first query names an entity of the question; every later query either
  follows the last result that found something (the bridge hop: it holds a name of that result that is
  neither in the question nor in an earlier query) or names an entity of the question that no earlier query
  named (a question about two named things; a retry after a search that found nothing). The answer must occur
  in the LAST result (whole words; an answer found only in an earlier result is BAD), after at least two
  searches with results (the questions are multi-hop: HotpotQA, MuSiQue, the toy world), and must be neither
  the entity just searched for (the last query or the last result's title: the bridge) nor only words of the
  question.
- A repeated query is BAD.

An invalid action is BAD. Every label comes with a one-line reason, stored as the judge text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from swirl.engines.base import Message
from swirl.judging.outcome import contains_answer, extract_number, normalize_answer, parse_number
from swirl.protocol import LAST_STEP_WARNING, Action, parse_action

_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    """a an the of in on at to for from by with and or is was were are be been being who what which when
    where why how whom whose many much did does do done that this these those it its as than then there their
    his her he she they them into about has have had not both same also can could would will shall should may
    might one ones name named other another any some all each either neither if but so such s""".split()
)

# ------------------------------------------------------------------------------------------------ math
CONSTANTS = frozenset(
    Fraction(x)
    for x in (
        "0",
        "1",
        "2",
        "3",
        "4",
        "7",
        "10",
        "12",
        "24",
        "30",
        "52",
        "60",
        "100",
        "365",
        "1000",
        "0.5",
        "0.01",
    )
)
# When may a calculation use a quantity an earlier one consumed? "parent": when it also consumes a result that
# was computed from that quantity (`20 - 4` after `20 * 0.2 -> 4`, `48 + 24` after `48 / 2 -> 24`: a quantity
# combined with a part of itself); "latest": when it consumes the latest result; "strict": never.
REUSE = "parent"
NUMBER_WORDS = True  # number words of the question ("three", "twice", "half", "a dozen") are quantities
_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
# words with a value but no digits: (forms a calculation may write it as)
_WORDS: dict[str, tuple[Fraction, ...]] = {
    "twice": (Fraction(2),),
    "double": (Fraction(2),),
    "doubled": (Fraction(2),),
    "doubles": (Fraction(2),),
    "pair": (Fraction(2),),
    "pairs": (Fraction(2),),
    "couple": (Fraction(2),),
    "half": (Fraction(2), Fraction(1, 2)),
    "halves": (Fraction(2), Fraction(1, 2)),
    "triple": (Fraction(3),),
    "tripled": (Fraction(3),),
    "triples": (Fraction(3),),
    "thrice": (Fraction(3),),
    "third": (Fraction(3), Fraction(1, 3)),
    "thirds": (Fraction(3), Fraction(1, 3)),
    "quadruple": (Fraction(4),),
    "quarter": (Fraction(4), Fraction(1, 4)),
    "quarters": (Fraction(4), Fraction(1, 4)),
    "fourth": (Fraction(4), Fraction(1, 4)),
    "fourths": (Fraction(4), Fraction(1, 4)),
    "fifth": (Fraction(5), Fraction(1, 5)),
    "fifths": (Fraction(5), Fraction(1, 5)),
    "sixth": (Fraction(6),),
    "tenth": (Fraction(10),),
    "dozen": (Fraction(12),),
    "dozens": (Fraction(12),),
    "hundred": (Fraction(100),),
    "thousand": (Fraction(1000),),
    "million": (Fraction(10**6),),
    "percent": (Fraction(100),),
}
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(\s*%)?")
_OPTIONAL = frozenset([Fraction(0), Fraction(1)])  # identities: a problem's 0 or 1 need not be an operand
_PERCENT = re.compile(r"%|\bpercent", re.IGNORECASE)
_NUMBER_IN_EXPR = re.compile(r"\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?")
_NUMBER_WORD = re.compile(
    r"\b(?:("
    + "|".join(_TENS)
    + r")(?:[- ]("
    + "|".join(list(_UNITS)[1:10])
    + r"))?|("
    + "|".join(_UNITS)
    + ")|("
    + "|".join(sorted(_WORDS, key=len, reverse=True))
    + r"))\b",
    re.IGNORECASE,
)


@dataclass
class _Qty:
    forms: tuple[Fraction, ...]  # the values a calculation may write it as
    kind: str  # "result", "number" (written in the question) or "word" (a number word of the question)
    shown: str
    step: int = -1  # for results: the index of the calculation that produced it
    used: bool = False
    parents: frozenset[int] = frozenset()  # for results: the quantities (indices) its calculation used


def _fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else format(float(x), "g")


def question_quantities(question: str) -> list[_Qty]:
    """The quantities a problem states: its numbers (with multiplicity), then its number words."""
    out = []
    for m in _NUMBER_IN_TEXT.finditer(question):
        v = Fraction(m.group(1).replace(",", ""))
        forms = (v, v / 100) if m.group(2) else (v,)
        out.append(_Qty(forms, "number", m.group(0).strip()))
    for m in _NUMBER_WORD.finditer(question) if NUMBER_WORDS else ():
        word = m.group(0).lower()
        if m.group(1):
            v = Fraction(_TENS[m.group(1).lower()] + (_UNITS[m.group(2).lower()] if m.group(2) else 0))
            forms: tuple[Fraction, ...] = (v,)
        elif m.group(3):
            forms = (Fraction(_UNITS[m.group(3).lower()]),)
        else:
            forms = _WORDS[m.group(4).lower()]
        out.append(_Qty(forms, "word", word))
    return out


def _expr_numbers(expr: str) -> list[Fraction]:
    return [Fraction(m.group(0)) for m in _NUMBER_IN_EXPR.finditer(expr.replace(",", ""))]


@dataclass
class _Use:
    value: Fraction
    how: str  # result / number / word / constant / reused / made_up
    qty: _Qty | None = None
    index: int = -1  # of the quantity consumed
    cands: tuple[int, ...] = ()  # reused: the consumed quantities of that value


@dataclass
class _MathWork:
    """The quantities of a problem and which ones the calculations so far consumed."""

    question: str
    qtys: list[_Qty] = field(default_factory=list)
    exprs: list[str] = field(default_factory=list)
    steps: int = 0

    def __post_init__(self) -> None:
        self.qtys = question_quantities(self.question)
        self.stated = {q.forms[0] for q in self.qtys if q.kind == "number"}
        self.percent = bool(_PERCENT.search(self.question))

    def results(self) -> list[_Qty]:
        return [q for q in self.qtys if q.kind == "result"]

    def match(self, expr: str) -> list[_Use]:
        """How each number of `expr` is matched to a quantity (nothing is consumed)."""
        taken: set[int] = set()
        uses = []
        rank = {"result": 0, "number": 1, "word": 2}
        for v in _expr_numbers(expr):
            free = [
                (rank[q.kind], -q.step, i)
                for i, q in enumerate(self.qtys)
                if not q.used and i not in taken and v in q.forms
            ]
            if free:
                i = min(free)[2]
                taken.add(i)
                uses.append(_Use(v, self.qtys[i].kind, self.qtys[i], i))
            elif v in CONSTANTS and v not in self.stated:
                uses.append(_Use(v, "constant"))
            elif any(v in q.forms for q in self.qtys):
                cands = tuple(i for i, q in enumerate(self.qtys) if v in q.forms)
                uses.append(_Use(v, "reused", cands=cands))
            else:
                uses.append(_Use(v, "made_up"))
        return uses

    def apply(self, expr: str, result: str) -> None:
        """Record a calculation of the conversation: consume what it used and add its result (an error
        consumes nothing)."""
        self.exprs.append(_squash(expr))
        value = None if result.startswith("error") else parse_number(result)
        if value is not None:
            uses = self.match(expr)
            for u in uses:
                if u.qty is not None:
                    u.qty.used = True
            parents = frozenset(i for u in uses for i in (u.index, *u.cands) if i >= 0)
            forms = (value, value / 100) if self.percent else (value,)
            self.qtys.append(_Qty(forms, "result", result, step=self.steps, parents=parents))
        self.steps += 1


def _squash(expr: str) -> str:
    return "".join(expr.split())


def _math_step(expr: str, work: _MathWork) -> tuple[str, str]:
    from swirl.tools.calculator import calculate

    result = calculate(expr).partition(" -> ")[2]
    if result.startswith("error"):
        return "BAD", f"the calculator rejects it ({result})"
    if _squash(expr) in work.exprs:
        return "BAD", "this expression was already computed"
    uses = work.match(expr)
    made_up = [_fmt(u.value) for u in uses if u.how == "made_up"]
    if made_up:
        return (
            "BAD",
            f"uses numbers that are neither in the question nor earlier results: {', '.join(made_up)}",
        )
    reused = [u for u in uses if u.how == "reused"]
    results = work.results()
    latest = results[-1] if results else None
    if reused:
        if REUSE == "parent":
            parents = {i for u in uses if u.qty is not None and u.qty.kind == "result" for i in u.qty.parents}
            ok = all(parents.intersection(u.cands) for u in reused)
        else:
            ok = REUSE == "latest" and latest is not None and any(u.qty is latest for u in uses)
        if not ok:
            feeds = latest is not None and any(u.qty is latest for u in uses)
            hang = (
                f"; the latest result {latest.shown} is left unused"
                if latest and not latest.used and not feeds
                else ""
            )
            shown = ", ".join(_fmt(u.value) for u in reused)
            return "BAD", f"re-uses quantities already consumed: {shown}{hang}"
    if not any(u.qty is not None for u in uses):
        return "BAD", "consumes no quantity of the problem or earlier result (only constants)"
    return "GOOD", "a new, valid calculation consuming unused quantities of the problem and earlier results"


def _math_answer(answer: str, work: _MathWork) -> tuple[str, str]:
    value = extract_number(answer)
    if value is None:
        return "BAD", "the answer holds no number"
    results = work.results()
    numbers = [q for q in work.qtys if q.kind == "number"]
    if not results:
        if len(numbers) >= 2:
            return "BAD", "answered without calculating from the problem's numbers"
        if any(value in q.forms for q in work.qtys):
            return "GOOD", "the answer is the problem's only quantity"
        return "BAD", "the answer is neither calculated nor a quantity of the problem"
    last = results[-1]
    if value not in last.forms:
        if any(value in r.forms for r in results):
            return "BAD", f"answers an intermediate result, not the last one ({last.shown})"
        return "BAD", "the answer is not the last result of the calculations"
    unused = [q.shown for q in numbers if not q.used and q.forms[0] not in _OPTIONAL]
    if unused:
        return "BAD", f"the work never used some of the problem's numbers: {', '.join(unused)}"
    hanging = [r.shown for r in results[:-1] if not r.used]
    if hanging:
        return "BAD", f"earlier results never used (not one tree): {', '.join(hanging)}"
    return "GOOD", "the answer is the last result, of work that used every number and result"


# ---------------------------------------------------------------------------------------------- search
_CAPITAL = re.compile(r"\b(?:[A-Z][\w'’-]*|\d[\d,.]*)")
_OPTIONS = re.compile(r",\s*([^,?]+?)\s+or\s+([^,?]+?)\s*\?\s*$")
_CAP_RUN = r"[A-Z0-9][\w'’.&-]*(?:\s+(?:(?:of|the|de|for)\s+)*[A-Z0-9][\w'’.&-]*)*"
_NAMED_OPTIONS = re.compile(rf"(?<![\w'’])({_CAP_RUN})\s+or\s+(?:the\s+)?({_CAP_RUN})")
_OF_OPTIONS = re.compile(
    rf"(?:[Ww]hich\s+)?(?:[Oo]f|[Bb]etween)\s+(?:the\s+(?:[a-z]+\s+)?)?({_CAP_RUN})\s+and\s+(?:the\s+)?({_CAP_RUN})"
)
_LEADING_STOPWORDS = re.compile(r"^(?:(?:the|of|was|is|were|are|did|does|do|which|who)\s+)+", re.IGNORECASE)
_YES_NO = re.compile(r"(?:are|is|was|were|do|does|did|can|could|has|have|had|will|would)\b", re.IGNORECASE)


def _words(text: str) -> list[str]:
    return _WORD.findall(normalize_answer(text))


def _content_words(text: str) -> set[str]:
    return {w for w in _words(text) if w not in STOPWORDS and (len(w) > 2 or w.isdigit())}


def _names(text: str) -> set[str]:
    """Words of the names and numbers of a text: capitalised words and numbers that are not stopwords."""
    return {w for m in _CAPITAL.finditer(text) for w in _content_words(m.group(0))}


def question_entities(question: str) -> set[str]:
    """Words of the question's names (capitalised words and numbers that are not stopwords); its content
    words when it has none."""
    return _names(question) or _content_words(question)


def comparison_options(question: str) -> tuple[str, str] | None:
    """The two options of a comparison question, else None: "..., A or B?", "... A or B ..." with A and B
    capitalised names, or "Of A and B, ...?" / "Which of A and B ...?" (options of at most 8 words)."""
    q = " ".join(question.split())
    m = _OPTIONS.search(q) or _NAMED_OPTIONS.search(q) or _OF_OPTIONS.match(q)
    if not m:
        return None
    a, b = (_LEADING_STOPWORDS.sub("", x.strip()) for x in m.groups())
    if not (_content_words(a) and _content_words(b)) or max(len(a.split()), len(b.split())) > 8:
        return None
    return a, b


def is_yes_no(question: str) -> bool:
    """A question answered yes or no ("Are both X and Y ...?", "Was X ...?") that is not an A-or-B choice."""
    return bool(_YES_NO.match(question.strip())) and comparison_options(question) is None


def _option_names(query: str, option: str, other: str) -> bool:
    own = _content_words(option) - _content_words(other) or _content_words(option)
    return bool(own & _content_words(query))


@dataclass
class _Search:
    query: str
    result: str  # "" when the search found nothing or failed
    title: str


def _searches(turns: list[tuple[Action, str | None]]) -> list[_Search]:
    out = []
    for action, obs in turns:
        if action.kind != "search" or obs is None:
            continue
        head, _, result = obs.partition(" -> ")
        result = result.strip()
        if result.startswith(("no result", "error")):
            result = ""
        out.append(_Search(action.content, result, result.partition(":")[0].strip() if result else ""))
    return out


def _search_step(query: str, question: str, searches: list[_Search]) -> tuple[str, str]:
    if any(normalize_answer(query) == normalize_answer(s.query) for s in searches):
        return "BAD", "this query was already searched"
    words = _content_words(query)
    if not words:
        return "BAD", "the query holds only stopwords"
    options = comparison_options(question)
    if options:
        a, b = options
        if _option_names(query, a, b) and _option_names(query, b, a):
            return (
                "BAD",
                "names both options in one query (a search shows one article): search them one by one",
            )
        todo = [
            o
            for o, other in ((a, b), (b, a))
            if not any(_option_names(s.query, o, other) for s in searches) and _option_names(query, o, other)
        ]
        if todo:
            return "GOOD", f"searches the option {todo[0]!r}, not searched yet"
        return "BAD", "a comparison question: the query names no option that was not searched yet"
    found = [s for s in searches if s.result]
    entities = question_entities(question)
    earlier = {w for s in searches for w in _content_words(s.query)}
    if found:
        bridge = _names(found[-1].result) - _content_words(question) - earlier
        hit = sorted(words & bridge)
        if hit:
            return "GOOD", f"follows the previous result ({', '.join(hit[:3])}): a bridge hop"
    if not searches and words & entities:
        return "GOOD", "a first query naming an entity of the question"
    new_names = sorted(words & entities - earlier)
    if new_names:
        return "GOOD", f"names an entity of the question not searched yet ({', '.join(new_names[:3])})"
    if searches and not searches[-1].result and words & entities:
        return "GOOD", "after a search that found nothing, a new query naming an entity of the question"
    if not searches:
        return "BAD", "the first query names no entity of the question"
    return "BAD", "the query follows nothing new from the previous result (no word of it beyond the question)"


def _search_answer(answer: str, question: str, searches: list[_Search]) -> tuple[str, str]:
    norm = normalize_answer(answer)
    if not norm:
        return "BAD", "the answer is empty"
    options = comparison_options(question)
    if options:
        return _comparison_answer(answer, question, options, searches)
    informative = sum(1 for s in searches if s.result)
    if is_yes_no(question):
        if norm not in ("yes", "no"):
            return "BAD", "a yes/no question: the answer is neither yes nor no"
        if informative < 2:
            return "BAD", "a yes/no question about two things, answered before two searches with results"
        return "GOOD", "yes or no, after searching the question's entities"
    return _bridge_answer(answer, question, searches, informative)


def _comparison_answer(
    answer: str, question: str, options: tuple[str, str], searches: list[_Search]
) -> tuple[str, str]:
    """A comparison's answer: one of its options, after searching both, the one the results favour."""
    a, b = options
    picked = [o for o, other in ((a, b), (b, a)) if _is_option(answer, o, other)]
    if len(picked) != 1:
        return "BAD", "a comparison question: the answer is not one of its options"
    missing = [
        o for o, other in ((a, b), (b, a)) if not any(_option_names(s.query, o, other) for s in searches)
    ]
    if missing:
        return "BAD", f"answered before searching the option {missing[0]!r}"
    return _compared(
        question, picked[0], {o: _option_result(o, other, searches) for o, other in ((a, b), (b, a))}
    )


def _bridge_answer(answer: str, question: str, searches: list[_Search], informative: int) -> tuple[str, str]:
    """A multi-hop answer: in the last result, reached by a bridge hop, and not the bridge entity itself."""
    if not searches or not searches[-1].result:
        return "BAD", "the last search found nothing to support the answer"
    last = searches[-1]
    if not contains_answer(last.result, [answer]):
        if any(contains_answer(s.result, [answer]) for s in searches[:-1]):
            return "BAD", "the answer comes from an earlier result, not the last one"
        return "BAD", "the last search result does not contain the answer"
    if informative < 2:
        return "BAD", "answered after a single search: a multi-hop question needs a bridge hop"
    norm = normalize_answer(answer)
    ans_words = set(_words(answer))
    if norm in (normalize_answer(last.query), normalize_answer(last.title)) or ans_words <= set(
        _words(last.query)
    ):
        return "BAD", "the answer is the entity just searched for (the bridge), not what the question asks"
    if ans_words <= set(_words(question)):
        return "BAD", "the answer is only words of the question"
    return "GOOD", "the answer occurs in the last result, reached by a bridge hop"


# What a comparison asks for: (year or amount, min or max), by the first cue word of the question.
_CUES = [
    (r"\b(first|earlier|earliest|older|oldest|elder|eldest|sooner|before)\b", ("year", "min")),
    (r"\b(later|latest|younger|youngest|newer|newest|more recent(ly)?)\b", ("year", "max")),
    (r"\b(fewer|fewest|smaller|smallest|shorter|shortest|less|least|lower)\b", ("amount", "min")),
    (
        r"\b(more|most|larger|largest|bigger|biggest|greater|longer|longest|taller|higher|populous)\b",
        ("amount", "max"),
    ),
]
_YEAR = re.compile(r"(?<![\d,.])(1\d{3}|20\d{2})(?![\d,])")
_AMOUNT = re.compile(
    r"(\d[\d,]*(?:\.\d+)?)\s*(million|billion|thousand)?\s+"
    r"(inhabitants|people|residents|metres|meters|feet|foot|kilometres|kilometers|km|miles|tonnes|tons)\b",
    re.IGNORECASE,
)
_SCALE = {"thousand": 10**3, "million": 10**6, "billion": 10**9}


def comparison_cue(question: str) -> tuple[str, str] | None:
    """(year or amount, min or max): what a comparison question asks for, by its first cue word."""
    q = question.lower()
    found = [(m.start(), cue) for pattern, cue in _CUES if (m := re.search(pattern, q))]
    return min(found)[1] if found else None


def _option_result(option: str, other: str, searches: list[_Search]) -> str:
    """The last result of a search that named `option` ("" when none found anything)."""
    hits = [s.result for s in searches if s.result and _option_names(s.query, option, other)]
    return hits[-1] if hits else ""


def _compared_value(result: str, kind: str) -> Fraction | None:
    """The year (the first one in the result) or the amount (the first number with a unit) a result gives."""
    if kind == "year":
        m = _YEAR.search(result)
        return Fraction(m.group(1)) if m else None
    m = _AMOUNT.search(result)
    if not m:
        return None
    return Fraction(m.group(1).replace(",", "")) * _SCALE.get((m.group(2) or "").lower(), 1)


def _compared(question: str, picked: str, results: dict[str, str]) -> tuple[str, str]:
    """A comparison's answer against what the two options' results say (GOOD when they cannot be compared:
    no cue word, or a value missing from a result)."""
    cue = comparison_cue(question)
    values = {o: _compared_value(r, cue[0]) for o, r in results.items()} if cue else {}
    if not cue or None in values.values() or len(set(values.values())) < 2:
        return "GOOD", "one of the options, after searching both (the results give nothing to compare)"
    best = (min if cue[1] == "min" else max)(values, key=lambda o: values[o])
    shown = ", ".join(f"{o}: {_fmt(v)}" for o, v in values.items() if v is not None)
    if best != picked:
        return "BAD", f"the results say the {cue[1]} {cue[0]} is {best}'s ({shown})"
    return "GOOD", f"the option the results support ({shown})"


def _is_option(answer: str, option: str, other: str) -> bool:
    norm, opt = normalize_answer(answer), normalize_answer(option)
    if norm == opt:
        return True
    own = _content_words(option) - _content_words(other)
    words = set(_words(answer))
    return bool(words) and words <= set(_words(option)) and bool(words & own)


# ------------------------------------------------------------------------------------------------ entry
def _turns(messages: Sequence[Message]) -> list[tuple[Action, str | None]]:
    """(action, observation or None) of every assistant turn after the prompt, the warning removed."""
    out: list[tuple[Action, str | None]] = []
    for m in messages[1:]:
        text = (m["content"] or "").removesuffix("\n\n" + LAST_STEP_WARNING)
        if m["role"] == "assistant":
            out.append((parse_action(text), None))
        elif m["role"] == "user" and out and out[-1][1] is None and " -> " in text:
            out[-1] = (out[-1][0], text)
    return out


def rule_process_label(
    messages: Sequence[Message], question: str, action_text: str, math: bool
) -> tuple[str, str]:
    """(GOOD or BAD, reason) for the action `action_text` taken after `messages` (the prompt and earlier
    turns)."""
    action = parse_action(action_text or "")
    if action.kind == "invalid":
        return "BAD", f"not a valid action ({action.content})"
    turns = _turns(messages)
    if action.kind == "search":
        return _search_step(action.content, question, _searches(turns))
    if action.kind == "math" or math:
        work = _MathWork(question)
        for act, obs in turns:
            if act.kind == "math" and obs is not None:
                work.apply(act.content, obs.partition(" -> ")[2].strip())
        if action.kind == "math":
            return _math_step(action.content, work)
        return _math_answer(action.content, work)
    return _search_answer(action.content, question, _searches(turns))
