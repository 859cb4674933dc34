"""The rule-based outcome judge: GSM8K numeric equality, SQuAD EM/F1 (checked against the v1.1 reference)."""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest

from swirl.judging.outcome import (
    exact_match,
    extract_number,
    math_equal,
    normalize_answer,
    rule_outcome,
    token_f1,
)
from swirl.judging.prompts import OUTCOME_MATH, OUTCOME_QA, YES_NO, parse_verdict


# ------------------------------------------------------------------------------ SQuAD v1.1 reference
def ref_normalize_answer(s):
    """The official SQuAD v1.1 evaluation script's normalisation, verbatim in behaviour."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def ref_f1_score(prediction, ground_truth):
    prediction_tokens = ref_normalize_answer(prediction).split()
    ground_truth_tokens = ref_normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def ref_exact_match_score(prediction, ground_truth):
    return ref_normalize_answer(prediction) == ref_normalize_answer(ground_truth)


def ref_metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


F1_CASES = [  # (prediction, answers, expected F1 worked out by hand)
    ("Barack Obama", ["Barack Obama"], 1.0),
    ("the Barack Obama", ["Barack Obama"], 1.0),
    ("Obama", ["Barack Obama"], 2 / 3),
    ("President Barack Obama", ["Barack Obama"], 0.8),
    ("Barack Hussein Obama II", ["Barack Obama", "Obama"], 2 * 0.5 * 1 / 1.5),
    ("Paris, France.", ["Paris"], 2 / 3),
    ("an apple a day", ["The apple"], 2 * 0.5 * 1 / 1.5),
    ("1,600", ["1600"], 1.0),  # punctuation is removed inside tokens
    ("New York City", ["new york"], 0.8),
    ("the the the", ["the"], 0.0),  # both normalise to nothing: 0 in v1.1
    ("", ["Paris"], 0.0),
    ("Paris Paris", ["Paris"], 2 * 0.5 * 1 / 1.5),
    ("THE ANSWER: Lyon!", ["lyon", "Lyons"], 2 * 0.5 * 1 / 1.5),
    ("a an the", ["the a"], 0.0),
    ("théâtre d'été", ["Théâtre dété"], 1.0),  # non-ASCII letters kept, ASCII apostrophe dropped
    ("Apollo 11 mission", ["Apollo 11", "Apollo eleven"], 0.8),
    ("cats and dogs", ["dogs and cats"], 1.0),
    ("Washington D.C.", ["Washington, D. C."], 0.4),  # "dc" vs "d c"
]


@pytest.mark.parametrize("prediction,answers,expected", F1_CASES)
def test_token_f1_matches_the_squad_v11_reference(prediction, answers, expected):
    ref = ref_metric_max_over_ground_truths(ref_f1_score, prediction, answers)
    assert token_f1(prediction, answers) == pytest.approx(ref, abs=1e-12)
    assert token_f1(prediction, answers) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("prediction,answers,_", F1_CASES)
def test_exact_match_and_normalisation_match_the_reference(prediction, answers, _):
    assert normalize_answer(prediction) == ref_normalize_answer(prediction)
    assert exact_match(prediction, answers) == ref_metric_max_over_ground_truths(
        ref_exact_match_score, prediction, answers
    )


def test_exact_match_uses_aliases_and_none_is_wrong():
    assert exact_match("The Big Apple", ["New York City", "big apple"])
    assert not exact_match("Big Apples", ["New York City", "big apple"])
    assert not exact_match(None, ["x"]) and token_f1(None, ["x"]) == 0.0 and token_f1("x", []) == 0.0


# --------------------------------------------------------------------------------------------- math
@pytest.mark.parametrize(
    "prediction",
    [
        "1600",
        "$1,600",
        "1600.00",
        "1.6e3",
        "1,600",
        "$1600.00",
        "1600 dollars",
        "The answer is 1,600.",
        "x = 800 + 800 = 1600",
        "\\boxed{1600}",
        "\\frac{3200}{2}",
        "1600.",
        " 1600 \n",
        "16e2",
        "1600%",
        "\\$1,600",
    ],
)
def test_math_equal_accepts_the_same_number_written_differently(prediction):
    assert math_equal(prediction, "1600")


@pytest.mark.parametrize(
    "prediction",
    [
        "16000",
        "160",
        "1,6000",
        "-1600",
        "1601",
        "one thousand six hundred",
        "",
        "1600 apples and 3 pears",
        "1.6",
        "16,000",
        "$16,000.00",
    ],
)
def test_math_equal_rejects_other_numbers(prediction):
    assert not math_equal(prediction, "1600")


def test_math_equal_fractions_decimals_and_negatives():
    assert math_equal("0.5", "0.5") and math_equal("1/2", "0.5") and math_equal(".50", "0.5")
    assert math_equal("-3", "-3") and not math_equal("3", "-3")
    assert math_equal("33.333333", "33.3333333")  # 1e-6 relative tolerance
    assert not math_equal("33.3", "33.33")
    assert extract_number("Total: 5 + 7 = 12 apples") == 12


def test_rule_outcome_dispatches_by_task():
    assert rule_outcome("$1,600", ["1600"], math=True)
    assert not rule_outcome("16000", ["1600"], math=True)
    assert rule_outcome("the Eiffel Tower", ["Eiffel Tower"], math=False)
    assert not rule_outcome("Eiffel", ["Eiffel Tower"], math=False)  # EM
    assert rule_outcome("Eiffel Tower in Paris", ["Eiffel Tower"], math=False, qa_rule="f1", f1_threshold=0.6)
    assert not rule_outcome(None, ["x"], math=False) and not rule_outcome("  ", ["1"], math=True)
    with pytest.raises(ValueError, match="no gold answers"):
        rule_outcome("x", [], math=False)
    with pytest.raises(ValueError, match="qa_rule"):
        rule_outcome("x", ["x"], math=False, qa_rule="bleu")


# ------------------------------------------------------------------------------------ LLM grading
def test_llm_grading_prompts_follow_the_paper():
    for t in (OUTCOME_QA, OUTCOME_MATH):
        assert "{answer_key}" in t and "{prediction}" in t and "YES or NO" in t
        assert "Don't use your own knowledge" in t
    assert '"10", "10.00", "$10" and "$10.00" are the same' in OUTCOME_MATH
    assert "$10.00" not in OUTCOME_QA


@pytest.mark.parametrize(
    "reply,verdict",
    [
        ("The key says Paris and I said Paris.\nYES", "YES"),
        ("They differ.\n**No**", "NO"),
        ("I must answer YES or NO. The answer matches the key, so YES.", "YES"),
        ("Not the same: NO. (If they matched I would say yes.)", "NO"),
        ("I cannot tell.", None),
        ("", None),
    ],
)
def test_yes_no_parsing(reply, verdict):
    assert parse_verdict(reply, YES_NO) == verdict
