"""Integer analyses: value ranges of index expressions, affine forms, and the bounds check.

The bounds check proves, before any code exists, that every ``Load`` stays inside its
tensor. Ranges come from interval arithmetic over the loop variables' ranges, sharpened
by the conditions known to hold where the load sits: inside ``where(y + r >= 1, X[y + r - 1], 0)``
the index differs from the guarded expression ``y + r`` by a constant, so the guard bounds it.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

from .ir.expr import BinOp, Call, Cast, Const, Expr, Load, Reduce, Select, Var, const
from .ir.tensor import Tensor

Interval = tuple[float, float]  # inclusive; -inf / inf when unknown
UNKNOWN: Interval = (-math.inf, math.inf)
Affine = dict[Optional[Var], int]  # coefficient per variable; key None holds the constant term


def value_range(e: Expr, ranges: dict[Var, Interval]) -> Interval:
    """An interval that contains every value ``e`` takes when each Var stays in ``ranges``."""
    if isinstance(e, Const):
        return (float(e.value), float(e.value))
    if isinstance(e, Var):
        return ranges.get(e, UNKNOWN)
    if isinstance(e, Cast):
        return value_range(e.value, ranges)
    if isinstance(e, Select):
        t, f = value_range(e.true_value, ranges), value_range(e.false_value, ranges)
        return (min(t[0], f[0]), max(t[1], f[1]))
    if isinstance(e, BinOp):
        a, b = value_range(e.a, ranges), value_range(e.b, ranges)
        if e.op == "add":
            return (a[0] + b[0], a[1] + b[1])
        if e.op == "sub":
            return (a[0] - b[1], a[1] - b[0])
        if e.op == "mul":
            if not all(math.isfinite(x) for x in a + b):
                return UNKNOWN
            products = [x * y for x in a for y in b]
            return (min(products), max(products))
        if e.op == "max":
            return (max(a[0], b[0]), max(a[1], b[1]))
        if e.op == "min":
            return (min(a[0], b[0]), min(a[1], b[1]))
        if e.op in ("floordiv", "mod") and b[0] == b[1] and b[0] > 0:
            d = b[0]
            if e.op == "floordiv":
                return (math.floor(a[0] / d) if math.isfinite(a[0]) else a[0],
                        math.floor(a[1] / d) if math.isfinite(a[1]) else a[1])
            if a[0] >= 0 and a[1] < d:
                return a
            return (0.0, d - 1)
    return UNKNOWN


def affine_form(e: Expr) -> Optional[Affine]:
    """``e`` as ``sum(c * var) + c0`` with integer coefficients, or None if it is not affine."""
    if isinstance(e, Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return {None: e.value}
    if isinstance(e, Var):
        return {e: 1}
    if isinstance(e, Cast):
        return affine_form(e.value)
    if isinstance(e, BinOp) and e.op in ("add", "sub", "mul"):
        a, b = affine_form(e.a), affine_form(e.b)
        if a is None or b is None:
            return None
        if e.op == "mul":
            if set(a) == {None}:
                a, b = b, a
            if set(b) != {None}:
                return None
            return {k: v * b[None] for k, v in a.items()}
        sign = 1 if e.op == "add" else -1
        out = dict(a)
        for k, v in b.items():
            out[k] = out.get(k, 0) + sign * v
        return out
    return None


def affine_expr(form: Affine) -> Expr:
    """An expression for an affine form (variables in a stable order, constant last)."""
    terms = [(v, c) for v, c in form.items() if v is not None and c != 0]
    expr: Optional[Expr] = None
    for v, c in terms:
        term = v if c == 1 else v * c
        expr = term if expr is None else expr + term
    constant = form.get(None, 0)
    if expr is None:
        return const(constant, "int64")
    return expr + constant if constant else expr


def _difference(a: Affine, b: Affine) -> Optional[int]:
    """``a - b`` if it is a constant, else None."""
    keys = set(a) | set(b)
    if any(a.get(k, 0) != b.get(k, 0) for k in keys if k is not None):
        return None
    return a.get(None, 0) - b.get(None, 0)


# A fact is (affine form f, interval): "f lies in the interval" holds where the load is evaluated.
Fact = tuple[Affine, Interval]


def facts_of(cond: Expr, negated: bool = False) -> list[Fact]:
    """What a condition (or its negation) tells about affine expressions; partial by design."""
    if isinstance(cond, Call) and cond.fn == "not":
        return facts_of(cond.args[0], not negated)
    if isinstance(cond, BinOp) and cond.op in ("and", "or"):
        # (a and b) holds: both facts hold.  not (a or b): neither holds.  Other mixes say nothing simple.
        if (cond.op == "and") != negated:
            return facts_of(cond.a, negated) + facts_of(cond.b, negated)
        return []
    if not (isinstance(cond, BinOp) and cond.op in ("lt", "le", "gt", "ge")):
        return []
    op = cond.op
    if negated:
        op = {"lt": "ge", "le": "gt", "gt": "le", "ge": "lt"}[op]
    lhs, rhs = affine_form(cond.a), affine_form(cond.b)
    if lhs is None or rhs is None:
        return []
    diff: Affine = dict(lhs)
    for k, v in rhs.items():
        diff[k] = diff.get(k, 0) - v
    constant = diff.pop(None, 0)
    # diff_vars + constant  (op)  0   →   diff_vars in an interval
    interval = {"lt": (-math.inf, -constant - 1), "le": (-math.inf, -constant),
                "gt": (-constant + 1, math.inf), "ge": (-constant, math.inf)}[op]
    return [(diff, interval)]


def index_range(index: Expr, ranges: dict[Var, Interval], facts: Iterable[Fact]) -> Interval:
    lo, hi = value_range(index, ranges)
    form = affine_form(index)
    if form is None:
        return lo, hi
    for fact_form, (flo, fhi) in facts:
        offset = _difference(form, fact_form)
        if offset is not None:
            lo, hi = max(lo, flo + offset), min(hi, fhi + offset)
    return lo, hi


def _refine_ranges(ranges: dict[Var, Interval], facts: list[Fact]) -> dict[Var, Interval]:
    """Facts about a single variable (``i >= 1``) narrow that variable's range."""
    refined = dict(ranges)
    for form, (lo, hi) in facts:
        if len(form) == 1:
            (var, coeff), = form.items()
            if var is not None and coeff in (1, -1):
                cur = refined.get(var, UNKNOWN)
                new = (lo, hi) if coeff == 1 else (-hi, -lo)
                refined[var] = (max(cur[0], new[0]), min(cur[1], new[1]))
    return refined


def check_bounds(body: Expr, ranges: dict[Var, Interval], where: str) -> None:
    """Raise ValueError if any load in ``body`` may read outside its tensor."""

    def visit(e: Expr, facts: list[Fact]) -> None:
        if isinstance(e, Select):
            visit(e.cond, facts)
            visit(e.true_value, facts + facts_of(e.cond))
            visit(e.false_value, facts + facts_of(e.cond, negated=True))
            return
        if isinstance(e, Reduce):
            visit(e.value, facts)
            return
        if isinstance(e, Load):
            _check_load(e, _refine_ranges(ranges, facts), facts, where)
            for i in e.indices:
                visit(i, facts)
            return
        if isinstance(e, BinOp):
            visit(e.a, facts)
            visit(e.b, facts)
        elif isinstance(e, (Call,)):
            for a in e.args:
                visit(a, facts)
        elif isinstance(e, Cast):
            visit(e.value, facts)

    visit(body, [])


def _check_load(load: Load, ranges: dict[Var, Interval], facts: list[Fact], where: str) -> None:
    t: Tensor = load.tensor
    from .ir.printer import format_expr
    for axis, (index, extent) in enumerate(zip(load.indices, t.shape)):
        lo, hi = index_range(index, ranges, facts)
        if lo > hi:  # the guards are contradictory: this load is never executed
            return
        if lo < 0 or hi > extent - 1:
            shown = f"[{_num(lo)}, {_num(hi)}]"
            raise ValueError(
                f"in {where}: index {format_expr(index)!r} of {t.name} (axis {axis}, size {extent}) "
                f"ranges over {shown} and may leave the tensor; shrink the shape, or guard the read "
                f"with mc.where(<condition>, {t.name}[...], <padding value>)")


def _num(x: float) -> str:
    return str(int(x)) if math.isfinite(x) else ("-inf" if x < 0 else "inf")
