"""The calculator tool: exact values, the output rule, hostile inputs, and agreement with
fractions.Fraction."""

from __future__ import annotations

import dataclasses
import time
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
import sympy
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from swirl.tools.calculator import DEFAULT_LIMITS, CalcError, calculate, evaluate, format_value


@pytest.mark.parametrize(
    ("expr", "shown"),
    [
        ("48 / 2", "24"),
        ("48/2", "24"),
        ("1/3", "0.333333"),
        ("2/3", "0.666667"),
        ("-1/3", "-0.333333"),
        ("100/7", "14.285714"),
        ("1/8", "0.125"),
        ("0.1 + 0.2", "0.3"),
        ("12.50 * 4", "50"),
        ("1/30000", "3.33333e-05"),
        ("2**10", "1024"),
        ("2 ** -2", "0.25"),
        ("2**0.5", "1.414214"),
        ("sqrt(2)", "1.414214"),
        ("sqrt(2)**2", "2"),
        ("sqrt(16) + abs(-3.5)", "7.5"),
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("-7 % 3", "2"),
        ("7 % -3", "-2"),
        ("round(2.5)", "2"),
        ("round(2.675, 2)", "2.68"),
        ("round(sqrt(2), 3)", "1.414"),
        ("min(3, 1/2, sqrt(2))", "0.5"),
        ("max(1, 2, 3)", "3"),
        ("-(-(-3))", "-3"),
        ("1e3 + 1_000", "2000"),
        ("(1 + 2) * (3 + 4)", "21"),
        ("  5 +\t5 ", "10"),
    ],
)
def test_values_and_output_rule(expr: str, shown: str) -> None:
    assert calculate(expr) == f"{' '.join(expr.split())} -> {shown}"


def test_errors_are_observations() -> None:
    assert calculate("48 / 0") == "48 / 0 -> error: division by zero"
    assert calculate("5 % 0") == "5 % 0 -> error: modulo by zero"
    assert "write 1600, not 1,600" in calculate("1,600 * 2")
    assert "error: the result is not a real number" in calculate("(-8)**(1/3)")
    assert "error: square root of a negative number" in calculate("sqrt(-4)")


HOSTILE = [
    "",
    "   ",
    "__import__('os').system('touch pwned')",
    "__import__",
    "().__class__.__bases__[0].__subclasses__()",
    "(1).__class__",
    "x",
    "x + 1",
    "pi * 2",
    "lambda: 1",
    "(lambda x: x)(1)",
    "eval('1+1')",
    "exec('import os')",
    "open('/etc/passwd')",
    "sqrt.__globals__",
    "sqrt(x=4)",
    "sqrt(*[4])",
    "sympify('1')",
    "factorial(100000)",
    "9**9**9**9",
    "2**100000",
    "10**101",
    "(10**60) * (10**60)",
    "1" * 10_000,
    "1" * 40,
    "1e999999999",
    "0.1e-999999",
    "(" * 1000 + "1" + ")" * 1000,
    "(" * 30 + "1" + ")" * 30,
    "-" * 150 + "1",
    "+".join(["1"] * 150),
    "\u0661\u0662 + 1",  # Arabic-Indic digits
    "\uff11 + \uff12",  # full-width digits
    "2^3",
    "1 if 1 else 2",
    "1 < 2",
    "1 and 2",
    "[1, 2]",
    "{1: 2}",
    "'a' * 3",
    "b'1'",
    "1j * 2",
    "True + 1",
    "None",
    "1; 2",
    "a = 1",
    "1 +",
    "48 / 0",
    "0 ** -1",
    "1 // 0",
    "sqrt(-1)",
    "(-1) ** 0.5",
    "round(1, 10**6)",
    "min()",
    "abs(1, 2)",
    "2 @ 3",
    "1 << 100000",
    "~1",
    "f'{1}'",
    "1\n+ 2",
    "\x00",
]


def test_hostile_inputs_are_fast_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    calculate("sqrt(2) + 1/3")  # warm SymPy's caches so the bound below measures the guards, not imports
    assert len(HOSTILE) >= 30
    for expr in HOSTILE:
        t0 = time.perf_counter()
        out = calculate(expr)
        elapsed = time.perf_counter() - t0
        assert " -> error: " in out, (expr[:60], out)
        assert elapsed < 0.1, (expr[:60], elapsed)  # a generous sanity bound, not a benchmark
        assert len(out) < 250
    assert not (tmp_path / "pwned").exists()


def test_never_hands_text_to_sympy_parsers(monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("sympify/parse_expr must never see model text")

    monkeypatch.setattr(sympy, "sympify", boom)
    monkeypatch.setattr(sympy, "parse_expr", boom)
    assert calculate("sqrt(2) * sqrt(8) + 1/4") == "sqrt(2) * sqrt(8) + 1/4 -> 4.25"


def test_evaluate_raises_calc_error() -> None:
    with pytest.raises(CalcError, match="names are not allowed"):
        evaluate("y * 2")


# ------------------------------------------------------------------------------- property test
def _literal() -> st.SearchStrategy[tuple[str, Fraction]]:
    ints = st.integers(0, 10**6).map(lambda n: (str(n), Fraction(n)))
    decs = st.tuples(st.integers(0, 9999), st.integers(1, 3), st.integers(0, 999)).map(
        lambda t: (
            f"{t[0]}.{str(t[2]).zfill(t[1])[: t[1]]}",
            Fraction(f"{t[0]}.{str(t[2]).zfill(t[1])[: t[1]]}"),
        )
    )
    return st.one_of(ints, decs)


_OPS = ["+", "-", "*", "/", "//", "%"]


def _ref(op: str, a: Fraction, b: Fraction) -> Fraction:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    if op == "//":
        return Fraction(a // b)
    return a % b


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    binary = st.tuples(children, st.sampled_from(_OPS), children).map(
        lambda t: (f"({t[0][0]}) {t[1]} ({t[2][0]})", ("op", t[1], t[0][1], t[2][1]))
    )
    power = st.tuples(children, st.integers(-3, 3)).map(
        lambda t: (f"({t[0][0]}) ** {t[1]}", ("pow", t[0][1], t[1]))
    )
    neg = children.map(lambda c: (f"-({c[0]})", ("neg", c[1])))
    return st.one_of(binary, power, neg)


def _run(tree) -> Fraction:
    """Reference evaluation with Fraction; rejects cases whose intermediates exceed the calculator's size
    bound."""
    if isinstance(tree, Fraction):
        return tree
    if tree[0] == "neg":
        return -_run(tree[1])
    if tree[0] == "pow":
        v = _run(tree[1]) ** tree[2]
    else:
        v = _ref(tree[1], _run(tree[2]), _run(tree[3]))
    assume(abs(v.numerator) < 10**90 and v.denominator < 10**90)
    return v


def _reference_format(v: Fraction) -> str:
    """The documented output rule, re-implemented independently with decimal.Decimal (with enough digits: the
    default 28-digit context would round a 27-digit integer part, e.g. -(23693 ** 6) / 16)."""
    from decimal import localcontext

    with localcontext() as ctx:
        ctx.prec = 1000
        return _reference_format_exact(v)


def _reference_format_exact(v: Fraction) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    d = v.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d == 1:
        places = next(k for k in range(200) if (v * 10**k).denominator == 1)
        if places <= 10:
            return format(Decimal(v.numerator) / Decimal(v.denominator), "f")
    if abs(v) < Fraction(1, 10**4):
        m, e = f"{float(v):.5e}".split("e")
        return f"{m.rstrip('0').rstrip('.')}e{int(e):+03d}"
    q = (
        Decimal(abs(v.numerator)) * 10**6 // Decimal(v.denominator),
        Decimal(abs(v.numerator) * 10**6 % v.denominator),
    )
    scaled = q[0] + (1 if 2 * q[1] >= v.denominator else 0)
    text = (
        format((scaled / Decimal(10**6)).quantize(Decimal("0.000001"), ROUND_HALF_UP), "f")
        .rstrip("0")
        .rstrip(".")
    )
    return ("-" if v < 0 else "") + text


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(st.recursive(_literal(), _extend, max_leaves=8))
@example(
    case=(  # longer than the 80-character echo
        "(((100) + (100000)) + ((100000) ** -1)) + (((9728) ** -1) - ((1000) + (1000000)))",
        (
            "op",
            "+",
            ("op", "+", ("op", "+", Fraction(100), Fraction(100000)), ("pow", Fraction(100000), -1)),
            ("op", "-", ("pow", Fraction(9728), -1), ("op", "+", Fraction(1000), Fraction(1000000))),
        ),
    )
)
def test_agrees_with_fraction_arithmetic(case) -> None:
    text, tree = case
    assume(len(text) <= 200)
    # tests values, not the wall-clock bound on a busy machine
    slack = dataclasses.replace(DEFAULT_LIMITS, deadline_s=60.0)
    try:
        want = _run(tree)
    except ZeroDivisionError:
        out = calculate(text, slack)
        assert "-> error: division by zero" in out or "-> error: modulo by zero" in out
        return
    got = evaluate(text, slack)
    assert got == sympy.Rational(want.numerator, want.denominator), text
    echo = text if len(text) <= 80 else text[:77] + "..."  # the documented echo: cut to 80 characters
    assert calculate(text, slack) == f"{echo} -> {_reference_format(want)}"
    assert format_value(got) == _reference_format(want)
