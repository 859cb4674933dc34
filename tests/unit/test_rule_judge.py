"""The strict rule-based process judge: labels for hand-written steps (worked out by hand), every gold step of
the toy worlds GOOD, their one-step shortcuts and reorderings BAD, the judge stage without a model, the
reward."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from swirl.judging.config import JudgeConfig, ProcessJudgeConfig
from swirl.judging.rules import CONSTANTS, comparison_options, rule_process_label
from swirl.protocol import LAST_STEP_WARNING
from swirl.tools.calculator import calculate


def _conv(question: str, *turns: str) -> list[dict[str, str]]:
    """The prompt, then alternating (action, observation) turns."""
    msgs = [{"role": "user", "content": f"Help me answer.\n\nQuestion: {question}"}]
    for i, t in enumerate(turns):
        msgs.append({"role": "assistant" if i % 2 == 0 else "user", "content": t})
    return msgs


def _calcs(question: str, *exprs: str) -> list[dict[str, str]]:
    """The prompt, then each expression as a `<math_exp>` step with the real calculator's observation."""
    turns: list[str] = []
    for e in exprs:
        turns += [f"<math_exp>{e}</math_exp>", calculate(e)]
    return _conv(question, *turns)


def _label(msgs: list[dict[str, str]], question: str, action: str, math: bool) -> str:
    label, reason = rule_process_label(msgs, question, action, math=math)
    assert label in ("GOOD", "BAD") and reason and "\n" not in reason
    return label


# --------------------------------------------------------------------------------------------- math
Q_MATH = "A crate holds 36 jars. A shop orders 47 crates and sells 1200 jars. How many jars are left?"
PROMPT = _conv(Q_MATH)


def _after(*turns: str) -> list[dict[str, str]]:
    return _conv(Q_MATH, *turns)


@pytest.mark.parametrize(
    "context,action,label",
    [
        ((), "First the total. <math_exp>36 * 47</math_exp>", "GOOD"),  # numbers of the question
        ((), "<math_exp>36 * 48</math_exp>", "BAD"),  # 48 is made up
        ((), "<math_exp>36 * </math_exp>", "BAD"),  # the calculator rejects it
        # an earlier result
        (("<math_exp>36 * 47</math_exp>", "36 * 47 -> 1692"), "<math_exp>1692 - 1200</math_exp>", "GOOD"),
        # repeated
        (("<math_exp>36 * 47</math_exp>", "36 * 47 -> 1692"), "<math_exp>36*47</math_exp>", "BAD"),
        (
            (
                "<math_exp>36 * 47</math_exp>",
                "36 * 47 -> 1692",
                "<math_exp>1692 - 1200</math_exp>",
                "1692 - 1200 -> 492",
            ),
            "<answer>492</answer>",
            "GOOD",
        ),
        # 36, 47 unused (the 1692 is made up)
        (("<math_exp>1692 - 1200</math_exp>", "1692 - 1200 -> 492"), "<answer>492</answer>", "BAD"),
        # 1200 never used
        (("<math_exp>36 * 47</math_exp>", "36 * 47 -> 1692"), "<answer>1692</answer>", "BAD"),
        (
            ("<math_exp>1692 - 1200</math_exp>", "1692 - 1200 -> 492"),
            "<answer>The answer is 500</answer>",
            "BAD",
        ),
        ((), "<answer>1200</answer>", "BAD"),  # no calculation: the problem's other numbers are unused
        ((), "<answer>I think about 1700</answer>", "BAD"),
        ((), "I will think about it.", "BAD"),  # no action tag
        # the warning is no result
        (
            (
                "<math_exp>36 * 47</math_exp>",
                "36 * 47 -> 1692",
                "<math_exp>1692 - 1200</math_exp>",
                "1692 - 1200 -> 492\n\n" + LAST_STEP_WARNING,
            ),
            "<answer>492</answer>",
            "GOOD",
        ),
    ],
)
def test_math_steps(context, action, label):
    assert _label(_after(*context), Q_MATH, action, math=True) == label


Q_FARM = "A farm has 24 cows and 24 goats. Each animal eats 3 kg of hay a day. How many kg do they eat?"
Q_PENS = "A box holds 24 pens. A school buys 35 boxes and gives away 150 pens. How many pens are left?"


@pytest.mark.parametrize(
    "done,action,label",
    [
        ((), "<math_exp>24 * 35</math_exp>", "GOOD"),
        (("24 * 35",), "<math_exp>840 - 150</math_exp>", "GOOD"),
        (("24 * 35", "840 - 150"), "<answer>690</answer>", "GOOD"),
        (("24 * 35", "840 - 150"), "<answer>$690.</answer>", "GOOD"),
        # an intermediate result as the answer
        (("24 * 35", "840 - 150"), "<answer>840</answer>", "BAD"),
        (("24 * 35",), "<answer>840</answer>", "BAD"),  # the 150 never used
        # re-uses the consumed 24 and leaves the latest result 840 unused
        (("24 * 35",), "<math_exp>150 - 24</math_exp>", "BAD"),
        (("24 * 35",), "<math_exp>35 * 24</math_exp>", "BAD"),  # the same calculation again, reordered
        ((), "<math_exp>24 + 24</math_exp>", "BAD"),  # the question has one 24
        ((), "<math_exp>840 - 150</math_exp>", "BAD"),  # 840 is not computed yet
        ((), "<math_exp>2 * 12</math_exp>", "BAD"),  # only constants: consumes nothing of the problem
        ((), "<answer>690</answer>", "BAD"),  # no calculation, three numbers
        # an error consumes nothing, the answer is the last successful result
        (("24 * 35", "840 / 0", "840 - 150"), "<answer>690</answer>", "GOOD"),
        (("24 * 35", "840 / 0"), "<math_exp>840 - 150</math_exp>", "GOOD"),
        (("24 * 35", "840 - 150"), "<math_exp>690 - 24</math_exp>", "BAD"),  # 24 consumed, nothing new
    ],
)
def test_math_tree_rules(done, action, label):
    """Tree rules: an intermediate answer, a consumed number re-used while the latest result hangs."""
    assert _label(_calcs(Q_PENS, *done), Q_PENS, action, math=True) == label


@pytest.mark.parametrize(
    "question,done,answer",
    [
        # number word "half" (2 or 0.5); 48 used again by the step that consumes the latest result
        (
            "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?",
            ("48 / 2", "48 + 24"),
            "72",
        ),
        (
            "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
            "How many clips did Natalia sell altogether in April and May?",
            ("48 * 0.5", "48 + 24"),
            "72",
        ),
        # the constant 60 (minutes in an hour), decimals, $
        (
            "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How "
            "much did she earn?",
            ("12 / 60", "0.2 * 50"),
            "10",
        ),
        # a percentage as 25 or 0.25, the constant 100
        (
            "A coat costs $80. It is sold at 25% off. How many dollars does it cost now?",
            ("80 * 0.25", "80 - 20"),
            "60",
        ),
        (
            "A coat costs $80. It is sold at 25% off. How many dollars does it cost now?",
            ("80 * 25 / 100", "80 - 20"),
            "60",
        ),
        # number words, thousands commas
        ("Sam buys three bags of 25 apples. How many apples does he buy?", ("3 * 25",), "75"),
        ("A library has 1,200 books and lends 350 of them. How many are left?", ("1200 - 350",), "850"),
        # a number written twice is two quantities
        (
            Q_FARM,
            ("24 + 24", "48 * 3"),
            "144",
        ),
        # a value both a question number and a result: the result is consumed first, then the number
        (
            "A club has 12 teams of 15 players. Then 180 new players join. How many players are there now?",
            ("12 * 15", "180 + 180"),
            "360",
        ),
    ],
)
def test_real_style_gold_is_good(question, done, answer):
    msgs = _conv(question)
    for e in done:
        assert _label(msgs, question, f"<math_exp>{e}</math_exp>", math=True) == "GOOD", e
        msgs = msgs + [
            {"role": "assistant", "content": f"<math_exp>{e}</math_exp>"},
            {"role": "user", "content": calculate(e)},
        ]
    assert _label(msgs, question, f"<answer>{answer}</answer>", math=True) == "GOOD"


def test_math_quantities_are_counted():
    assert _label(_conv(Q_FARM), Q_FARM, "<math_exp>24 + 24 + 24</math_exp>", True) == "BAD"  # a third 24
    q_club = "A club has 12 teams of 15 players. Then 180 new players join. How many players are there now?"
    # 180 is the last result, but the question's 180 was never added
    assert _label(_calcs(q_club, "12 * 15"), q_club, "<answer>180</answer>", True) == "BAD"


# ------------------------------------------------------------------------------------------- search
Q_QA = "In which country was the founder of Velmora Labs born?"


@pytest.mark.parametrize(
    "context,action,label",
    [
        ((), "<search_query>Velmora Labs founder</search_query>", "GOOD"),
        ((), "<search_query>weather today</search_query>", "BAD"),  # nothing of the question
        # a word of an earlier result
        (
            (
                "<search_query>Velmora Labs</search_query>",
                "Velmora Labs -> Velmora Labs: founded by Kira Ostvan.",
            ),
            "<search_query>Kira Ostvan</search_query>",
            "GOOD",
        ),
        # the same query again
        (
            (
                "<search_query>Velmora Labs</search_query>",
                "Velmora Labs -> Velmora Labs: founded by Kira Ostvan.",
            ),
            "<search_query>velmora labs</search_query>",
            "BAD",
        ),
        (
            (
                "<search_query>Velmora Labs</search_query>",
                "Velmora Labs -> Velmora Labs: founded by Kira Ostvan.",
                "<search_query>Kira Ostvan</search_query>",
                "Kira Ostvan -> Kira Ostvan: born in Dunport, Zelmar.",
            ),
            "<answer>Zelmar</answer>",
            "GOOD",
        ),
        # whole words only
        (
            (
                "<search_query>Velmora Labs</search_query>",
                "Velmora Labs -> Velmora Labs: founded by Kira Ostvan.",
                "<search_query>Kira Ostvan</search_query>",
                "Kira Ostvan -> Kira Ostvan: born in Dunport, Zelmaria.",
            ),
            "<answer>Zelmar</answer>",
            "BAD",
        ),
        ((), "<answer>France</answer>", "BAD"),  # nothing supports it yet
    ],
)
def test_search_steps(context, action, label):
    assert _label(_conv(Q_QA, *context), Q_QA, action, math=False) == label


Q_BRIDGE = "In which city was the founder of the Tarnel Works born?"
HOP1 = (
    "<search_query>Tarnel Works</search_query>",
    "Tarnel Works -> Tarnel Works: The Tarnel Works was founded by Kira Ostvan in 1820. It has its "
    "headquarters in Dunport.",
)
HOP2 = (
    "<search_query>Kira Ostvan</search_query>",
    "Kira Ostvan -> Kira Ostvan: Kira Ostvan (born 1790) is a painter who was born in Velmar. Ostvan ran the "
    "Tarnel Works.",
)
MISS = (
    "<search_query>Kira Ostvn</search_query>",
    "Kira Ostvn -> no result: nothing in the corpus matches this query",
)


@pytest.mark.parametrize(
    "context,action,label",
    [
        ((), "<search_query>Tarnel Works</search_query>", "GOOD"),
        ((), "<search_query>founder city born</search_query>", "BAD"),  # no entity of the question
        ((), "<search_query>Kira Ostvan</search_query>", "BAD"),  # the bridge before it is found
        (HOP1, "<search_query>Kira Ostvan</search_query>", "GOOD"),  # the bridge hop
        (HOP1, "<search_query>country born</search_query>", "BAD"),  # follows nothing of the result
        (HOP1, "<search_query>Tarnel Works founder</search_query>", "BAD"),  # nothing new
        (HOP1, "<search_query>the tarnel works</search_query>", "BAD"),  # repeated
        (HOP1 + MISS, "<search_query>Kira Ostvan</search_query>", "GOOD"),  # a retry after no result
        (HOP1 + HOP2, "<answer>Velmar</answer>", "GOOD"),
        (HOP1 + HOP2, "<answer>Dunport</answer>", "BAD"),  # from the earlier result
        (HOP1 + HOP2, "<answer>Kira Ostvan</answer>", "BAD"),  # the bridge entity
        (HOP1 + HOP2, "<answer>Ostvan</answer>", "BAD"),  # the bridge entity, in part
        (HOP1 + HOP2, "<answer>Works</answer>", "BAD"),  # a word of the question
        (HOP1 + HOP2, "<answer>the Tarnel Works</answer>", "BAD"),
        (HOP1, "<answer>Kira Ostvan</answer>", "BAD"),  # one hop only: the bridge as the answer
        (HOP1, "<answer>Velmar</answer>", "BAD"),  # not in any result
        (HOP1 + MISS, "<answer>Kira Ostvan</answer>", "BAD"),  # the last search found nothing
        ((), "<answer>Velmar</answer>", "BAD"),
    ],
)
def test_bridge_rules(context, action, label):
    assert _label(_conv(Q_BRIDGE, *context), Q_BRIDGE, action, math=False) == label


Q_CMP = "Who was born first, Kira Ostvan or Mela Dorn?"
Q_CMP_AND = "Of Kira Ostvan and Mela Dorn, who is the elder?"
Q_YES_NO = "Were Kira Ostvan and Mela Dorn both painters?"
OPT_A = (
    "<search_query>Kira Ostvan</search_query>",
    "Kira Ostvan -> Kira Ostvan: Kira Ostvan (born 1790) is a painter who was born in Velmar.",
)
OPT_B = (
    "<search_query>Mela Dorn</search_query>",
    "Mela Dorn -> Mela Dorn: Mela Dorn (born 1802) is a poet who was born in Dunport.",
)


@pytest.mark.parametrize(
    "question,context,action,label",
    [
        (Q_CMP, (), "<search_query>Kira Ostvan</search_query>", "GOOD"),
        (Q_CMP, (), "<search_query>Mela Dorn</search_query>", "GOOD"),
        (Q_CMP, (), "<search_query>born first</search_query>", "BAD"),  # names no option
        (Q_CMP, (), "<search_query>Kira Ostvan Mela Dorn</search_query>", "BAD"),  # both at once
        (Q_CMP, OPT_A, "<search_query>Mela Dorn</search_query>", "GOOD"),
        (Q_CMP, OPT_A, "<search_query>Kira Ostvan painter</search_query>", "BAD"),  # searched already
        (Q_CMP, OPT_A, "<search_query>Velmar</search_query>", "BAD"),  # no bridge in a comparison
        (Q_CMP, OPT_A + OPT_B, "<search_query>Kira Ostvan born</search_query>", "BAD"),
        (Q_CMP, OPT_A + OPT_B, "<answer>Kira Ostvan</answer>", "GOOD"),
        (Q_CMP, OPT_B + OPT_A, "<answer>Kira Ostvan</answer>", "GOOD"),  # either order
        (Q_CMP, OPT_A, "<answer>Kira Ostvan</answer>", "BAD"),  # Mela Dorn not searched
        (Q_CMP, OPT_A + OPT_B, "<answer>1790</answer>", "BAD"),  # not an option
        (Q_CMP, OPT_A + OPT_B, "<answer>Velmar</answer>", "BAD"),
        (Q_CMP_AND, OPT_A + OPT_B, "<answer>Kira Ostvan</answer>", "GOOD"),
        (Q_CMP_AND, OPT_A, "<answer>Kira Ostvan</answer>", "BAD"),
        (Q_YES_NO, OPT_A, "<search_query>Mela Dorn</search_query>", "GOOD"),  # the other entity
        (Q_YES_NO, OPT_A + OPT_B, "<answer>no</answer>", "GOOD"),
        (Q_YES_NO, OPT_A, "<answer>no</answer>", "BAD"),
        (Q_YES_NO, OPT_A + OPT_B, "<answer>Dunport</answer>", "BAD"),
    ],
)
def test_comparison_rules(question, context, action, label):
    assert _label(_conv(question, *context), question, action, math=False) == label


Q_LATER = "Who was born later, Kira Ostvan or Mela Dorn?"
Q_PEOPLE = "Of Velmar and Dunport, which city is home to more people?"
CITY_A = (
    "<search_query>Velmar</search_query>",
    "Velmar -> Velmar: Velmar is a city with about 1,236,000 inhabitants.",
)
CITY_B = (
    "<search_query>Dunport</search_query>",
    "Dunport -> Dunport: Dunport is a city of 2 million inhabitants.",
)
NO_YEARS = (
    "<search_query>Kira Ostvan</search_query>",
    "Kira Ostvan -> Kira Ostvan: Kira Ostvan is a painter.",
    "<search_query>Mela Dorn</search_query>",
    "Mela Dorn -> Mela Dorn: Mela Dorn is a poet.",
)


@pytest.mark.parametrize(
    "question,context,answer,label",
    [
        (Q_CMP, OPT_A + OPT_B, "Mela Dorn", "BAD"),  # born 1802, after Kira Ostvan's 1790
        (Q_CMP_AND, OPT_B + OPT_A, "Mela Dorn", "BAD"),  # "the elder": the earlier year
        (Q_LATER, OPT_A + OPT_B, "Mela Dorn", "GOOD"),
        (Q_LATER, OPT_A + OPT_B, "Kira Ostvan", "BAD"),
        (Q_PEOPLE, CITY_A + CITY_B, "Dunport", "GOOD"),  # 2 million > 1,236,000
        (Q_PEOPLE, CITY_B + CITY_A, "Velmar", "BAD"),
        (Q_CMP, NO_YEARS, "Mela Dorn", "GOOD"),  # nothing to compare: the structure decides
    ],
)
def test_a_comparison_answer_follows_the_compared_values(question, context, answer, label):
    got = _label(_conv(question, *context), question, f"<answer>{answer}</answer>", math=False)
    assert got == label


@pytest.mark.parametrize(
    "question,options",
    [
        ("Who was born first, Kira Ostvan or Mela Dorn?", ("Kira Ostvan", "Mela Dorn")),
        (
            "Which magazine was started first, Arthur's Magazine or First for Women?",
            ("Arthur's Magazine", "First for Women"),
        ),
        ("Which organisation is older, the Velmo Guild or the Tarno Bank?", ("Velmo Guild", "Tarno Bank")),
        (
            "Of the Baenduk Bridge and the Desfo Bridge, which was opened earlier?",
            ("Baenduk Bridge", "Desfo Bridge"),
        ),
        ("Which of Kira Ostvan and Mela Dorn was born earlier?", ("Kira Ostvan", "Mela Dorn")),
        ("Was Vivrun or Felbux published earlier?", ("Vivrun", "Felbux")),
        ("In which city was the founder of the Tarnel Works born?", None),
        ("Were Kira Ostvan and Mela Dorn both painters?", None),
    ],
)
def test_comparison_options(question, options):
    assert comparison_options(question) == options


# ------------------------------------------------------------------------------------ toy-world gold
def _toy_worlds() -> dict[str, Any]:
    """The toy worlds' record makers and their question splits."""
    from swirl.data.toy_arithmetic import arithmetic_records
    from swirl.data.toy_twohop import twohop_records
    from swirl.data.toysplits import SPLITS

    return {"arithmetic": (arithmetic_records, tuple(SPLITS)), "twohop": (twohop_records, tuple(SPLITS))}


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+", text.replace(",", "")))


def _arithmetic_cases():
    records, splits = _toy_worlds()["arithmetic"]
    return [(split, r) for split in splits for r in records(150, 3, split)]


def test_arithmetic_gold_is_good_and_shortcuts_are_bad():
    """Every step of every gold solution (the `<<expr=value>>` notes of the toy arithmetic world, replayed as
    protocol turns with the real calculator) is GOOD; answering a result before the last one, skipping a step,
    and redoing the first calculation with its operands swapped are BAD."""
    from swirl.data.demonstrations import math_gold_actions
    from swirl.data.loaders import gsm8k_gold

    cases = _arithmetic_cases()
    from swirl.data.toy_arithmetic import ARITHMETIC_TEMPLATES

    assert {r["template"] for _, r in cases} == {t.id for t in ARITHMETIC_TEMPLATES}  # every template
    for split, rec in cases:
        q, final = rec["question"], gsm8k_gold(rec["answer"])
        where = (split, rec.get("template"), q)
        exprs = [re.sub(r"</?math_exp>", "", a) for a in math_gold_actions(rec["answer"])]
        assert len(exprs) >= 2, where
        msgs = _conv(q)
        values = []
        for e in exprs:
            label, reason = rule_process_label(msgs, q, f"<math_exp>{e}</math_exp>", math=True)
            assert label == "GOOD", (where, e, reason)
            obs = calculate(e)
            values.append(obs.partition(" -> ")[2])
            msgs = msgs + [
                {"role": "assistant", "content": f"<math_exp>{e}</math_exp>"},
                {"role": "user", "content": obs},
            ]
        label, reason = rule_process_label(msgs, q, f"<answer>{final}</answer>", math=True)
        assert label == "GOOD", (where, reason)
        # shortcuts: the first result as the answer, right away or at the end
        first = _calcs(q, exprs[0])
        assert _label(first, q, f"<answer>{values[0]}</answer>", True) == "BAD", where
        assert _label(msgs, q, f"<answer>{values[0]}</answer>", True) == "BAD", where
        # reordering: the last step first (it needs a result not computed yet)
        if not _numbers(exprs[-1]) <= _numbers(q) | {str(c) for c in CONSTANTS}:
            assert _label(_conv(q), q, f"<math_exp>{exprs[-1]}</math_exp>", True) == "BAD", where
        # the first calculation again, operands swapped: re-uses what it consumed
        a, op, b = exprs[0].split()
        assert _label(first, q, f"<math_exp>{b} {op} {a}</math_exp>", True) == "BAD", where
        # answering the last result with a step skipped: the skipped step's result hangs or a number is unused
        skipped = _calcs(q, *exprs[1:]) if len(exprs) > 2 else first
        assert _label(skipped, q, f"<answer>{final}</answer>", True) == "BAD", where


def _search_world(records: list[dict[str, Any]]):
    """(retriever, cfg) over the split's pooled corpus, as the corpus stage builds it."""
    from swirl.data.corpus import corpus_from_questions
    from swirl.data.loaders import parse_hotpotqa
    from swirl.tables import to_table
    from swirl.tools.config import SearchConfig
    from swirl.tools.search import build_retriever

    rows = [parse_hotpotqa(r, f"record {i}", "dev", "hotpotqa", i) for i, r in enumerate(records)]
    corpus, _ = corpus_from_questions([to_table("questions", rows)])
    cfg = SearchConfig(retriever="bm25", top_k=1, max_chars=200)
    return build_retriever(corpus, cfg), cfg


def test_twohop_gold_is_good_and_shortcuts_are_bad():
    """Every gold episode of every two-hop template (search each supporting title in hop order, observed
    through BM25 over the split's corpus, then answer) is GOOD; answering after the first hop, answering the
    bridge entity or an earlier result, and searching the bridge before it was found are BAD."""
    from swirl.tools.search import search_observation

    records_of, splits = _toy_worlds()["twohop"]
    n_templates = set()
    for split in splits:
        records = records_of(80, 3, split)
        retriever, cfg = _search_world(records)

        def search(query: str) -> tuple[str, str]:
            return f"<search_query>{query}</search_query>", search_observation(retriever, query, cfg)  # noqa: B023

        for rec in records:
            q, answer = rec["question"], rec["answer"]
            where = (split, rec.get("template"), q)
            n_templates.add(rec.get("template"))
            titles = list(dict.fromkeys(t for t, _ in rec["supporting_facts"]))
            assert len(titles) == 2, where
            turns: list[str] = []
            for t in titles:
                label, reason = rule_process_label(
                    _conv(q, *turns), q, f"<search_query>{t}</search_query>", False
                )
                assert label == "GOOD", (where, t, reason)
                turns += search(t)
            label, reason = rule_process_label(_conv(q, *turns), q, f"<answer>{answer}</answer>", False)
            assert label == "GOOD", (where, reason, turns)
            hop1 = turns[:2]
            assert _label(_conv(q, *hop1), q, f"<answer>{answer}</answer>", False) == "BAD", where
            assert _label(_conv(q, *turns), q, f"<search_query>{titles[0]}</search_query>", False) == "BAD", (
                where
            )
            if comparison_options(q):
                assert rec["type"] == "comparison", where
                # either order is fine; the answer needs both options searched and is one of them
                again = search(titles[1]) + search(titles[0])
                assert _label(_conv(q, *again), q, f"<answer>{answer}</answer>", False) == "GOOD", where
                assert _label(_conv(q, *hop1), q, f"<answer>{titles[0]}</answer>", False) == "BAD", where
                year = re.search(r"\b1\d{3}\b", turns[1])
                if year:
                    assert _label(_conv(q, *turns), q, f"<answer>{year.group(0)}</answer>", False) == "BAD"
                continue
            assert rec["type"] == "bridge", where
            # the bridge before it was found; the bridge (or the first hop's title) as the answer
            assert _label(_conv(q), q, f"<search_query>{titles[1]}</search_query>", False) == "BAD", where
            assert _label(_conv(q, *hop1), q, f"<answer>{titles[1]}</answer>", False) == "BAD", where
            assert _label(_conv(q, *turns), q, f"<answer>{titles[1]}</answer>", False) == "BAD", where
            assert _label(_conv(q, *turns), q, f"<answer>{titles[0]}</answer>", False) == "BAD", where
            # a query that follows nothing of the first result
            assert (
                _label(_conv(q, *hop1), q, "<search_query>country born city</search_query>", False) == "BAD"
            )
    from swirl.data.toy_twohop import TWOHOP_TEMPLATES

    assert n_templates == {t.id for t in TWOHOP_TEMPLATES}  # every template


# ------------------------------------------------------------------------------------ stage, reward
def test_judge_stage_needs_no_model_with_the_rule_judge(tmp_path):
    from swirl.judging.process import Question, judge_shard

    cfg = JudgeConfig(process=ProcessJudgeConfig(kind="rule"))
    assert not cfg.needs_model and cfg.version_config()["engine"] == {"kind": "rule"}
    row = {
        "trajectory_id": "t#0",
        "question_id": "q",
        "final_answer": "492",
        "num_actions": 3,
        "messages": _after(
            "<math_exp>36 * 47</math_exp>",
            "36 * 47 -> 1692",
            "<math_exp>1692 - 1200</math_exp>",
            "1692 - 1200 -> 492",
            "<answer>492</answer>",
        ),
    }
    rows = judge_shard([row], {"q": Question("gsm8k", Q_MATH, ("492",))}, None, cfg)
    assert [r["process_label"] for r in rows] == ["GOOD", "GOOD", "GOOD"]
    assert all(r["judge_model"] == "rule" and r["judge_text"].startswith("[rule] ") for r in rows)
    assert rows[0]["outcome_correct"] is True


def test_rule_reward_scores_sampled_actions():
    import numpy as np

    from swirl.engines.base import Completion
    from swirl.training.data import State
    from swirl.training.rewards import rule_process_reward

    reward = rule_process_reward(
        JudgeConfig(process=ProcessJudgeConfig(kind="rule")), {"GOOD": 1.0, "BAD": -0.5}
    )
    s = State("t#0/0", np.zeros(1, np.int32), Q_MATH, "gsm8k", PROMPT)
    acts = [
        Completion([], "<math_exp>36 * 47</math_exp>", "stop"),
        Completion([], "<math_exp>2 + 2</math_exp>", "stop"),
        Completion([], "<answer>1692</answer>", "stop"),
    ]
    assert reward.score([s, s, s], acts) == [1.0, -0.5, -0.5]
    s2 = State(
        "t#0/1",
        np.zeros(1, np.int32),
        Q_MATH,
        "gsm8k",
        _after("<math_exp>36 * 47</math_exp>", "36 * 47 -> 1692"),
    )
    acts2 = [
        Completion([], "<math_exp>1692 - 1200</math_exp>", "stop"),
        Completion([], "<math_exp>1200 - 36</math_exp>", "stop"),  # re-uses 36, leaves 1692 hanging
        Completion([], "<answer>1692</answer>", "stop"),  # an intermediate result
    ]
    assert reward.score([s2, s2, s2], acts2) == [1.0, -0.5, -0.5]


def test_reasons_are_json_safe_one_liners():
    msgs = _calcs(Q_PENS, "24 * 35")
    for action in (
        "<math_exp>150 - 24</math_exp>",
        "<answer>840</answer>",
        "<math_exp>2 * 12</math_exp>",
        "x",
    ):
        label, reason = rule_process_label(msgs, Q_PENS, action, math=True)
        assert label == "BAD" and json.loads(json.dumps(reason)) == reason and "\n" not in reason
