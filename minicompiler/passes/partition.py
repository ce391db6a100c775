"""Loop partitioning: split a loop into a guard-free main part and a tail.

After ``split("j", 32)`` on an extent of 1000, the body carries ``if j_o * 32 + j_i < 1000``.
For ``j_o`` in [0, 31) the guard always holds; so

    for j_o in range(32): ... if j_o*32 + j_i < 1000: S
becomes
    for j_o in range(31): ... S                      # main: no guard, vectorizes cleanly
    ... if 992 + j_i < 1000: S   (j_o = 31)          # tail: the guard then shortens the j_i loop

The guard-to-extent half of the rewrite lives in ``simplify`` (``for j_i in range(min(32, 8))``).
"""
from __future__ import annotations

import math
from typing import Optional

from ..analysis import Interval, affine_expr, affine_form, value_range
from ..ir.expr import BinOp, Const, Expr, Var, const
from ..ir.stmt import For, Function, If, Let, Stmt, seq
from ..ir.visitor import Mutator, substitute, walk


def conjuncts(cond: Expr) -> list[Expr]:
    if isinstance(cond, BinOp) and cond.op == "and":
        return conjuncts(cond.a) + conjuncts(cond.b)
    return [cond]


def conjoin(parts: list[Expr]) -> Optional[Expr]:
    out: Optional[Expr] = None
    for p in parts:
        out = p if out is None else out & p
    return out


def upper_bound_form(cond: Expr) -> Optional[dict]:
    """``cond`` as ``form < 0`` for an integer affine ``form``, or None."""
    if not (isinstance(cond, BinOp) and cond.op in ("lt", "le", "gt", "ge")):
        return None
    a, b = affine_form(cond.a), affine_form(cond.b)
    if a is None or b is None:
        return None
    if cond.op in ("gt", "ge"):
        a, b = b, a
    form = dict(a)
    for k, v in b.items():
        form[k] = form.get(k, 0) - v
    if cond.op in ("le", "ge"):
        form[None] = form.get(None, 0) - 1  # x <= 0  ⟺  x - 1 < 0
    return form


class _Drop(Mutator):
    """Replace the given guard conjuncts (by structure) with True."""

    def __init__(self, proven: list[Expr]) -> None:
        super().__init__()
        self.proven = proven

    def visit_If(self, s: If) -> Stmt:
        kept = [c for c in conjuncts(s.cond) if not any(c == p for p in self.proven)]
        then_body = self.visit(s.then_body)
        else_body = self.visit(s.else_body) if s.else_body is not None else None
        if not kept:
            return then_body
        return If(conjoin(kept), then_body, else_body)  # type: ignore[arg-type]


class PartitionTails(Mutator):
    def __init__(self) -> None:
        super().__init__()
        self.ranges: dict[Var, Interval] = {}

    def visit_Let(self, s: Let) -> Stmt:
        self.ranges[s.var] = value_range(s.value, self.ranges)
        body = self.visit(s.body)
        del self.ranges[s.var]
        return Let(s.var, s.value, body)

    def visit_For(self, s: For) -> Stmt:
        if not isinstance(s.extent, Const):
            return self._descend(s)
        extent = int(s.extent.value)
        main_count, proven = self._main_part(s, extent)
        if not proven or main_count >= extent:
            return self._descend(s)
        parts: list[Stmt] = []
        if main_count > 0:
            parts.append(self._descend(For(s.var, const(main_count, "int64"), _Drop(proven).visit(s.body), s.kind)))
        tail_count = extent - main_count
        if tail_count == 1:
            parts.append(self.visit(substitute(s.body, {s.var: const(main_count, "int64")})))
        else:
            tail_var = Var(s.var.name + "_tail")
            body = substitute(s.body, {s.var: tail_var + main_count}) if main_count else substitute(s.body, {s.var: tail_var})
            parts.append(self._descend(For(tail_var, const(tail_count, "int64"), body, s.kind)))
        return seq(*parts)

    def _descend(self, s: For) -> Stmt:
        hi = value_range(s.extent, self.ranges)[1]
        self.ranges[s.var] = (0, hi - 1)
        body = self.visit(s.body)
        del self.ranges[s.var]
        return For(s.var, s.extent, body, s.kind)

    def _main_part(self, s: For, extent: int) -> tuple[int, list[Expr]]:
        """How many leading iterations satisfy every guard that bounds ``s.var`` from above."""
        ranges = dict(self.ranges)
        for inner in (n for n in walk(s.body) if isinstance(n, For)):
            ranges[inner.var] = (0, value_range(inner.extent, ranges)[1] - 1)
        count, proven = extent, []
        for guard in (n for n in walk(s.body) if isinstance(n, If)):
            for c in conjuncts(guard.cond):
                form = upper_bound_form(c)
                if form is None or form.get(s.var, 0) <= 0:
                    continue
                if guard is s.body and form[s.var] == 1:
                    continue  # simplify turns this one into a shorter loop, with no tail to emit
                coeff = form[s.var]
                rest = {k: v for k, v in form.items() if k is not s.var}
                high = value_range(affine_expr(rest), ranges)[1]
                if not math.isfinite(high):
                    continue
                holds_below = max(0, math.ceil(-high / coeff))  # coeff*v + high < 0  ⟺  v < -high/coeff
                count = min(count, holds_below)
                proven.append(c)
        return count, proven


def partition_tails(func: Function) -> Function:
    return func.with_body(PartitionTails().visit(func.body))
