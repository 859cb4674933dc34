"""The `<math_exp>` tool: exact arithmetic on a model-written expression, answered as `EXPR -> VALUE`.

The model's text is untrusted, so it is never given to `eval`, `sympify` or `parse_expr` (all three can
execute code). Instead Python's `ast` parses it and a small tree walker accepts only: number literals (ASCII
digits, optional decimal point and exponent), `+ - * / // % **`, parentheses, unary `+`/`-`, and calls of
`sqrt`, `abs`, `round`, `min`, `max`. Each node becomes an exact SymPy number (decimals are exact rationals:
0.1 is 1/10), so `0.1 + 0.2` is exactly `0.3` and `sqrt(2)**2` is exactly `2`.

Resource bounds, checked *before* the work they guard so no single input can stall the rollout's thread pool
(signals cannot interrupt a worker thread, so the bounds are structural, plus a cooperative deadline):
- length (`max_chars`), syntax-tree nodes (`max_nodes`) and nesting depth (`max_depth`);
- literal size (mantissa digits and decimal exponent);
- the size of every intermediate value (`max_digits` of numerator and denominator); a power is refused when
  its estimated result, |exponent| * log10|base|, would exceed that, so `9**9**9**9` is refused without
  computing it;
- `deadline_s` of wall time, checked between nodes.

Output rule (`format_value`): an integer prints with no decimal point (`48 / 2 -> 24`); a rational whose
decimal expansion ends within 10 places prints exactly (`1/8 -> 0.125`); anything else (`1/3`, `sqrt(2)`) is
rounded to 6 decimal places with trailing zeros removed (`0.333333`, `1.414214`), or to 6 significant digits
in scientific notation when its magnitude is below 1e-4 (`3.33333e-05`). `round` follows Python (half to
even). Errors come back as observations too: `48 / 0 -> error: division by zero`.
"""

from __future__ import annotations

import ast
import math
import re
import time
from dataclasses import dataclass

import sympy

__all__ = ["CalcError", "CalcLimits", "calculate", "evaluate", "format_value"]


class CalcError(ValueError):
    """The expression is not allowed or cannot be evaluated; the message is what the model is shown."""


@dataclass(frozen=True)
class CalcLimits:
    max_chars: int = 200  # a GSM8K step is < 60 characters
    max_nodes: int = 120
    max_depth: int = 24
    max_digits: int = 100  # of any intermediate numerator or denominator
    max_literal_digits: int = 30
    max_literal_exponent: int = 30  # 1e30 is fine, 1e999999 is refused before it is expanded
    max_round_digits: int = 30
    deadline_s: float = 0.5


DEFAULT_LIMITS = CalcLimits()
_ALLOWED_CHARS = re.compile(r"^[0-9A-Za-z_+\-*/%().,\s]*$")
_LITERAL = re.compile(r"^(\d+\.?\d*|\.\d+)(?:[eE]([+-]?\d+))?$")
_FUNCS = {"sqrt", "abs", "round", "min", "max"}
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_HINTS = {
    ast.BitXor: "'^' is not a power here; write ** (e.g. 2**3)",
    ast.MatMult: "'@' is not arithmetic",
    ast.BitAnd: "'&' is not arithmetic",
    ast.BitOr: "'|' is not arithmetic",
    ast.LShift: "'<<' is not supported",
    ast.RShift: "'>>' is not supported",
}


def calculate(expr: str, limits: CalcLimits = DEFAULT_LIMITS) -> str:
    """The tool's observation for `expr`: `EXPR -> VALUE` or `EXPR -> error: WHY`. Never raises on bad
    input."""
    shown = _shown(expr)
    try:
        return f"{shown} -> {format_value(evaluate(expr, limits))}"
    except CalcError as e:
        return f"{shown} -> error: {e}"


def evaluate(expr: str, limits: CalcLimits = DEFAULT_LIMITS) -> sympy.Expr:
    """The exact value of `expr` as a real SymPy number or algebraic expression; CalcError when not
    allowed."""
    if not isinstance(expr, str):
        raise CalcError(f"expected text, got {type(expr).__name__}")
    text = expr.strip()
    if not text:
        raise CalcError("empty expression; write arithmetic such as 48 / 2")
    if len(text) > limits.max_chars:
        raise CalcError(f"expression longer than {limits.max_chars} characters; split it into smaller steps")
    if not _ALLOWED_CHARS.match(text):
        bad = next(c for c in text if not _ALLOWED_CHARS.match(c))
        raise CalcError(f"unsupported character {bad!r}; use digits, + - * / // % ** and parentheses")
    if _paren_depth(text) > limits.max_depth:
        raise CalcError(f"parentheses nested deeper than {limits.max_depth} levels; split it into steps")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise CalcError("not a valid arithmetic expression") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > limits.max_nodes:
        raise CalcError(f"expression too complex (more than {limits.max_nodes} parts); split it into steps")
    if _depth(tree.body) > limits.max_depth:
        raise CalcError(f"expression nested deeper than {limits.max_depth} levels; split it into steps")
    return _Walker(text, limits, time.monotonic() + limits.deadline_s).eval(tree.body)


def format_value(value: sympy.Expr) -> str:
    """Print a value by the module's rule: integers exactly, short decimals exactly, the rest to 6 places."""
    if value.is_Integer:
        return str(int(value))
    if value.is_Rational:
        p, q = int(value.p), int(value.q)
        q2, q5 = _strip_factor(q, 2), _strip_factor(q, 5)
        if _strip_factor(q2[0], 5)[0] == 1:  # terminating decimal
            places = max(q2[1], q5[1])
            if places <= 10:
                return _decimal(p * 10**places // q, places)
    x = float(sympy.N(value, 20))
    if x != 0 and abs(x) < 1e-4:
        return _sci(x)
    scaled = int(sympy.floor(abs(value) * 10**6 + sympy.Rational(1, 2)))  # exact: half rounds up on |x|
    text = _decimal(scaled, 6)
    return "-" + text if x < 0 else text


# ------------------------------------------------------------------------------------------ walker
class _Walker:
    def __init__(self, text: str, limits: CalcLimits, deadline: float):
        self.text, self.limits, self.deadline = text, limits, deadline

    def eval(self, node: ast.AST) -> sympy.Expr:
        if time.monotonic() > self.deadline:
            raise CalcError("took too long; split the expression into smaller steps")
        if isinstance(node, ast.Constant):
            return self._literal(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
            v = self.eval(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, _BINOPS):
                raise CalcError(_HINTS.get(type(node.op), "unsupported operator"))
            a, b = self.eval(node.left), self.eval(node.right)
            return self._check(_binop(node.op, a, b, self.limits))
        if isinstance(node, ast.Call):
            return self._call(node)
        raise CalcError(_describe(node))

    def _literal(self, node: ast.Constant) -> sympy.Expr:
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalcError(f"only numbers are allowed, not {type(node.value).__name__} values")
        src = (ast.get_source_segment(self.text, node) or "").replace("_", "")
        m = _LITERAL.match(src)
        if not m:
            raise CalcError(f"unsupported number {src[:20]!r}; write plain decimals such as 12 or 0.5")
        mantissa, exp = m.group(1), int(m.group(2) or 0)
        if len(mantissa.replace(".", "").lstrip("0")) > self.limits.max_literal_digits:
            raise CalcError(f"number with more than {self.limits.max_literal_digits} digits")
        if abs(exp) > self.limits.max_literal_exponent:
            raise CalcError(f"number exponent beyond +/-{self.limits.max_literal_exponent}")
        return self._check(sympy.Rational(src))

    def _call(self, node: ast.Call) -> sympy.Expr:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
            name = node.func.id if isinstance(node.func, ast.Name) else "this"
            raise CalcError(f"function {name!r} is not available; use sqrt, abs, round, min or max")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise CalcError(f"{node.func.id}() takes plain arguments only")
        name, args = node.func.id, [self.eval(a) for a in node.args]
        want = {"sqrt": (1, 1), "abs": (1, 1), "round": (1, 2), "min": (1, 20), "max": (1, 20)}[name]
        if not want[0] <= len(args) <= want[1]:
            raise CalcError(
                f"{name}() takes {want[0]}"
                + (f" to {want[1]}" if want[1] > want[0] else "")
                + f" argument(s), got {len(args)}"
            )
        if name == "sqrt":
            if args[0] < 0:
                raise CalcError("square root of a negative number")
            return self._check(_guard_power(args[0], sympy.Rational(1, 2), self.limits))
        if name == "abs":
            return abs(args[0])
        if name in ("min", "max"):
            return (min if name == "min" else max)(args, key=lambda v: sympy.N(v, 40))
        ndigits = 0
        if len(args) == 2:
            if not args[1].is_Integer or abs(int(args[1])) > self.limits.max_round_digits:
                raise CalcError(
                    f"round(x, n) needs a whole n between -{self.limits.max_round_digits} and "
                    f"{self.limits.max_round_digits}"
                )
            ndigits = int(args[1])
        return self._check(_round(args[0], ndigits))

    def _check(self, v: sympy.Expr) -> sympy.Expr:
        if v.has(sympy.zoo, sympy.oo, sympy.nan, -sympy.oo):
            raise CalcError("division by zero")
        if v.is_Rational:
            if max(_digits(v.p), _digits(v.q)) > self.limits.max_digits:
                raise CalcError(f"result has more than {self.limits.max_digits} digits")
            return v
        if v.is_real is not True or v.is_extended_real is False:
            raise CalcError("the result is not a real number (e.g. a negative number to a fractional power)")
        mag = abs(float(sympy.N(v, 20)))
        if mag and not (10.0**-self.limits.max_digits < mag < 10.0**self.limits.max_digits):
            raise CalcError(f"result has more than {self.limits.max_digits} digits")
        return v


def _binop(op: ast.operator, a: sympy.Expr, b: sympy.Expr, limits: CalcLimits) -> sympy.Expr:
    if isinstance(op, ast.Add):
        return a + b
    if isinstance(op, ast.Sub):
        return a - b
    if isinstance(op, ast.Mult):
        return a * b
    if isinstance(op, ast.Pow):
        return _guard_power(a, b, limits)
    if b == 0:
        raise CalcError("division by zero" if not isinstance(op, ast.Mod) else "modulo by zero")
    if isinstance(op, ast.Div):
        return a / b
    q = sympy.floor(a / b)  # Python's floor division and modulo: the remainder takes the divisor's sign
    return q if isinstance(op, ast.FloorDiv) else a - b * q


def _guard_power(base: sympy.Expr, exp: sympy.Expr, limits: CalcLimits) -> sympy.Expr:
    """base**exp, refused when the result's size, |exp| * log10|base| digits, would exceed the limit."""
    if base == 0:
        if exp.is_negative:
            raise CalcError("division by zero (zero to a negative power)")
        return sympy.Integer(1) if exp == 0 else sympy.Integer(0)
    b, e = abs(float(sympy.N(base, 20))), abs(float(sympy.N(exp, 20)))
    if e * abs(math.log10(b)) > limits.max_digits:
        raise CalcError(f"result would have more than {limits.max_digits} digits")
    if not exp.is_Integer and exp.is_Rational and exp.q > 1000:
        raise CalcError("fractional power with a denominator over 1000; round the exponent")
    if base.is_negative and not exp.is_Integer:
        raise CalcError("the result is not a real number (a negative number to a fractional power)")
    return sympy.Pow(base, exp)


def _round(x: sympy.Expr, ndigits: int) -> sympy.Expr:
    """Python's round(x, n) (half to even) on the exact value."""
    scaled = x * sympy.Integer(10) ** ndigits
    lo = sympy.floor(scaled)
    frac = scaled - lo
    half = sympy.Rational(1, 2)
    up = frac > half or (frac == half and lo % 2 == 1)
    return (lo + (1 if up else 0)) / sympy.Integer(10) ** ndigits


# ----------------------------------------------------------------------------------------- helpers
def _depth(node: ast.AST) -> int:
    children = list(ast.iter_child_nodes(node))
    return 1 + max((_depth(c) for c in children), default=0)


def _paren_depth(text: str) -> int:
    depth = deepest = 0
    for c in text:
        depth += (c == "(") - (c == ")")
        deepest = max(deepest, depth)
    return deepest


def _describe(node: ast.AST) -> str:
    kinds: dict[type, str] = {
        ast.Name: "names are not allowed (only numbers and sqrt/abs/round/min/max)",
        ast.Attribute: "attribute access is not allowed",
        ast.Subscript: "indexing is not allowed",
        ast.Lambda: "lambdas are not allowed",
        ast.Tuple: "commas are not allowed; write 1600, not 1,600",
        ast.Compare: "comparisons are not allowed; write only arithmetic",
        ast.BoolOp: "and/or are not allowed; write only arithmetic",
    }
    return kinds.get(type(node), f"{type(node).__name__.lower()} is not allowed; write only arithmetic")


def _digits(n: int) -> int:
    n = abs(int(n))
    return 1 if n == 0 else int(n.bit_length() * 0.30103) + 1


def _strip_factor(n: int, f: int) -> tuple[int, int]:
    k = 0
    while n % f == 0:
        n //= f
        k += 1
    return n, k


def _decimal(scaled: int, places: int) -> str:
    """`scaled / 10**places` as a decimal string without trailing zeros (sign handled by the caller or
    here)."""
    sign = "-" if scaled < 0 else ""
    s = str(abs(scaled)).rjust(places + 1, "0")
    whole, frac = (s[:-places], s[-places:].rstrip("0")) if places else (s, "")
    return sign + whole + ("." + frac if frac else "")


def _sci(x: float) -> str:
    mantissa, exp = f"{x:.5e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exp):+03d}"


def _shown(expr: object) -> str:
    """The expression as echoed in the observation: whitespace collapsed, cut to 80 characters."""
    text = " ".join(str(expr).split()) if isinstance(expr, str) else repr(expr)
    return text if len(text) <= 80 else text[:77] + "..."
