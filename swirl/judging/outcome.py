"""The rule-based outcome judge: is a trajectory's final answer the gold answer?

- Multi-hop QA: exact match and token F1 with the SQuAD v1.1 normalisation (lowercase, drop ASCII punctuation,
  drop the articles a/an/the, collapse whitespace), each the max over the gold answer and its aliases.
- Math (GSM8K): numeric equality. The answer's number is read strictly first (`$1,600`, `1600.00`, `1.6e3`,
  `3/4`, `25%` -> 25), then, for text around it, the number after the last `=` or else the last number in the
  text (GSM8K's usual convention). LaTeX answers (`\\frac{3}{2}`, `\\boxed{12}`) go through math-verify.
  Numbers are compared as exact fractions with a 1e-6 relative tolerance (so 1600 == 1600.0 but
  1600 != 16000).

The LLM grading prompt (the paper's YES/NO judge) lives in prompts.py and runs in process.py with the process
judge's requests.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

# ----------------------------------------------------------------------------------------------- QA
_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower, strip ASCII punctuation, strip articles, collapse whitespace."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


def exact_match(prediction: str | None, answers: Sequence[str]) -> bool:
    if prediction is None:
        return False
    p = normalize_answer(prediction)
    return any(p == normalize_answer(a) for a in answers)


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:  # also when both are empty, as in SQuAD v1.1's evaluation script
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str | None, answers: Sequence[str]) -> float:
    """SQuAD v1.1 token F1, the max over the gold answer and its aliases (0 for no prediction or no
    answers)."""
    if prediction is None or not answers:
        return 0.0
    p = normalize_answer(prediction).split()
    return max(_f1(p, normalize_answer(a).split()) for a in answers)


def contains_answer(prediction: str | None, answers: Sequence[str]) -> bool:
    """Some normalised gold answer occurs in the normalised prediction as whole words ("paris" is in "it is
    paris", "10" is not in "100"); a lenient QA verdict for verbose answers."""
    if prediction is None:
        return False
    p = normalize_answer(prediction).split()
    for a in answers:
        g = normalize_answer(a).split()
        if g and any(p[i : i + len(g)] == g for i in range(len(p) - len(g) + 1)):
            return True
    return False


# --------------------------------------------------------------------------------------------- math
_CURRENCY = re.compile(r"\\?[$€£¥]|\b(?:usd|dollars?|cents?)\b", re.IGNORECASE)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_STRICT = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_FRACTION = re.compile(r"([-+]?\d+)\s*/\s*(\d+)")
_NUMBER = re.compile(r"(?<![\d.])[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?!\d)")
_TOLERANCE = Fraction(1, 10**6)


def _clean(text: str) -> str:
    t = text.strip().replace("\u2212", "-").replace("\u2009", "").replace("\u202f", "")
    t = _CURRENCY.sub("", t)
    t = _THOUSANDS.sub("", t)
    return t.strip().rstrip(".").strip().rstrip("%").strip()


def parse_number(text: str | None) -> Fraction | None:
    """The value of a text that is only a number (after dropping currency, thousands commas, a %, a final
    dot)."""
    if not text:
        return None
    t = _clean(text).replace(" ", "")
    if _STRICT.fullmatch(t):
        try:
            return Fraction(t)
        except (ValueError, ZeroDivisionError):
            return None
    m = _FRACTION.fullmatch(t)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    return None


def extract_number(text: str | None) -> Fraction | None:
    """The answer's number: the whole text if it is one; else the number after the last `=`; else the last
    one."""
    if not text:
        return None
    whole = parse_number(text)
    if whole is not None:
        return whole
    t = _clean(text)
    tail = t.rsplit("=", 1)[-1]
    if any(c.isdigit() for c in tail):
        t = tail
    nums = [m.group(0) for m in _NUMBER.finditer(t) if any(c.isdigit() for c in m.group(0))]
    return parse_number(nums[-1]) if nums else None


def _close(a: Fraction, b: Fraction) -> bool:
    return abs(a - b) <= _TOLERANCE * max(1, abs(b))


def _math_verify_equal(prediction: str, gold: str) -> bool:
    """math-verify for LaTeX-ish answers; its signal-based timeouts are off (they only work on the main
    thread), so inputs are length-bounded instead."""
    if len(prediction) > 2000 or len(gold) > 2000:
        return False
    try:
        import logging

        from math_verify import parse, verify

        # "timeout disabled": we bound input instead
        logging.getLogger("math_verify.utils").setLevel(logging.ERROR)

        g = parse(gold, parsing_timeout=None)
        p = parse(prediction, parsing_timeout=None)
        return bool(g and p and verify(g, p, timeout_seconds=None))
    except Exception:  # noqa: BLE001 - an unparseable answer is simply not equal
        return False


def math_equal(prediction: str | None, gold: str) -> bool:
    if not prediction or not prediction.strip():
        return False
    g = parse_number(gold)
    if g is None:
        return _math_verify_equal(prediction, gold)
    if "\\" in prediction and _math_verify_equal(prediction, gold):
        return True
    p = extract_number(prediction)
    return p is not None and _close(p, g)


# ------------------------------------------------------------------------------------------ verdict
def rule_outcome(
    prediction: str | None, answers: Sequence[str], math: bool, qa_rule: str = "em", f1_threshold: float = 0.8
) -> bool:
    """Correct or not by rule. Math: equal to the gold answer (answers[0]) or any alias numerically."""
    if not answers:
        raise ValueError(
            "rule_outcome: the question has no gold answers; the questions table must list at least one"
        )
    if prediction is None or not prediction.strip():
        return False
    if math:
        return any(math_equal(prediction, a) for a in answers)
    if qa_rule == "em":
        return exact_match(prediction, answers)
    if qa_rule == "f1":
        return token_f1(prediction, answers) >= f1_threshold
    raise ValueError(f"judge.outcome.qa_rule: unknown rule {qa_rule!r}; choose em or f1")
