"""Algebraic clean-up of integer index arithmetic, aware of loop ranges.

- fold constants, drop ``+ 0`` and ``* 1``;
- ``(j_o * 32 + j_i) // 32`` → ``j_o`` and ``% 32`` → ``j_i`` when ``j_i`` is known to be in [0, 32);
- comparisons that the loop ranges decide become True / False; guards and selects on them vanish;
- a loop that runs once becomes its body with the variable set to 0.

Floating-point expressions are left exactly as written: rewriting them could change results.
"""
from __future__ import annotations

from typing import Optional

from ..analysis import Interval, affine_expr, affine_form, value_range
from ..dtypes import is_int
from ..ir.expr import BinOp, Const, Expr, Select, Var, const
from ..ir.stmt import For, Function, If, Let, Seq, Stmt, seq
from ..ir.visitor import Mutator, substitute, walk

_DECIDE = {"lt": lambda lo, hi, b: (hi < b, lo >= b), "le": lambda lo, hi, b: (hi <= b, lo > b),
           "gt": lambda lo, hi, b: (lo > b, hi <= b), "ge": lambda lo, hi, b: (lo >= b, hi < b)}


def _fold(op: str, a: int, b: int) -> Optional[int]:
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "floordiv" and b != 0:
        return a // b
    if op == "mod" and b != 0:
        return a % b
    if op == "max":
        return max(a, b)
    if op == "min":
        return min(a, b)
    return None


def _empty(s: Stmt) -> bool:
    return isinstance(s, Seq) and not s.stmts


def _size(e: Expr) -> int:
    return sum(1 for _ in walk(e))


def _is(e: Expr, value: int) -> bool:
    return isinstance(e, Const) and e.value == value and is_int(e.dtype)


class Simplify(Mutator):
    def __init__(self, ranges: Optional[dict[Var, Interval]] = None) -> None:
        super().__init__()
        self.ranges: dict[Var, Interval] = dict(ranges or {})

    def visit_For(self, s: For) -> Stmt:
        extent = self.visit(s.extent)
        if _is(extent, 1) and s.kind in ("serial", "unrolled"):
            return self.visit(substitute(s.body, {s.var: const(0, "int64")}))
        hi = value_range(extent, self.ranges)[1]
        self.ranges[s.var] = (0, hi - 1)
        body = self.visit(s.body)
        del self.ranges[s.var]
        if isinstance(body, If) and body.else_body is None:
            extent, body = self._guard_to_extent(s.var, extent, body)
            if _is(extent, 1) and s.kind in ("serial", "unrolled"):
                return self.visit(substitute(body, {s.var: const(0, "int64")}))
        if isinstance(extent, Const) and extent.value <= 0 or _empty(body):
            return Seq(())
        return For(s.var, extent, body, s.kind)

    def _guard_to_extent(self, var: Var, extent: Expr, guard: If) -> tuple[Expr, Stmt]:
        """``for v in range(n): if v + c < m: S``  →  ``for v in range(min(n, m - c)): S``."""
        from .partition import conjoin, conjuncts, upper_bound_form
        kept: list[Expr] = []
        for c in conjuncts(guard.cond):
            form = upper_bound_form(c)
            if form is not None and form.get(var, 0) == 1:
                rest = {k: v for k, v in form.items() if k is not var}
                bound = self.visit(const(0, "int64") - affine_expr(rest))
                extent = self.visit(BinOp("min", extent, bound, "int64"))
            else:
                kept.append(c)
        cond = conjoin(kept)
        return extent, (If(cond, guard.then_body) if cond is not None else guard.then_body)

    def visit_Let(self, s: Let) -> Stmt:
        value = self.visit(s.value)
        self.ranges[s.var] = value_range(value, self.ranges)
        body = self.visit(s.body)
        del self.ranges[s.var]
        return Let(s.var, value, body)

    def visit_If(self, s: If) -> Stmt:
        cond = self.visit(s.cond)
        if isinstance(cond, Const):
            chosen = s.then_body if cond.value else s.else_body
            return self.visit(chosen) if chosen is not None else Seq(())
        else_body = self.visit(s.else_body) if s.else_body is not None else None
        then_body = self.visit(s.then_body)
        if _empty(then_body) and (else_body is None or _empty(else_body)):
            return Seq(())
        return If(cond, then_body, else_body)

    def visit_Seq(self, s: Seq) -> Stmt:
        return seq(*[self.visit(c) for c in s.stmts]) if s.stmts else s

    def visit_Select(self, e: Select) -> Expr:
        cond = self.visit(e.cond)
        if isinstance(cond, Const):
            return self.visit(e.true_value if cond.value else e.false_value)
        return Select(cond, self.visit(e.true_value), self.visit(e.false_value), e.dtype)

    def visit_BinOp(self, node: BinOp) -> Expr:
        a, b = self.visit(node.a), self.visit(node.b)
        if node.op in ("and", "or"):
            for x, y in ((a, b), (b, a)):
                if isinstance(x, Const):
                    absorbing = (not x.value) if node.op == "and" else bool(x.value)
                    return x if absorbing else y
        if node.op in _DECIDE and is_int(a.dtype):
            lo, hi = value_range(a - b if not isinstance(b, Const) else a, self.ranges)
            bound = b.value if isinstance(b, Const) else 0
            always, never = _DECIDE[node.op](lo, hi, bound)
            if always or never:
                return const(bool(always), "bool")
        if is_int(node.dtype):
            if isinstance(a, Const) and isinstance(b, Const):
                folded = _fold(node.op, a.value, b.value)  # type: ignore[arg-type]
                if folded is not None:
                    return const(folded, node.dtype)
            if node.op == "add" and _is(a, 0) or node.op == "mul" and _is(a, 1):
                return b
            if node.op in ("add", "sub") and _is(b, 0) or node.op in ("mul", "floordiv") and _is(b, 1):
                return a
            if node.op == "mul" and (_is(a, 0) or _is(b, 0)):
                return const(0, node.dtype)
            if node.op in ("floordiv", "mod") and isinstance(b, Const) and b.value > 0:
                split = self._divide(a, int(b.value), node.op)
                if split is not None:
                    return split
        if node.op == "add" and is_int(node.dtype):
            for q, r in ((a, b), (b, a)):  # (x // c) * c + x % c  →  x: a fused loop's index, unfused
                if isinstance(q, BinOp) and q.op == "mul" and isinstance(q.a, BinOp) and q.a.op == "floordiv" \
                        and isinstance(r, BinOp) and r.op == "mod" and q.a.a == r.a and q.a.b == r.b == q.b:
                    return r.a
        result = node if (a is node.a and b is node.b) else BinOp(node.op, a, b, node.dtype)
        if node.op in ("add", "sub") and node.dtype == "int64":
            return self._canonical(result)
        return result

    @staticmethod
    def _canonical(e: BinOp) -> Expr:
        """An affine sum in canonical form when that is smaller: ``i_o*6 + i_i - i_o*6`` → ``i_i``."""
        form = affine_form(e)
        if form is None:
            return e
        canonical = affine_expr(form)
        return canonical if _size(canonical) < _size(e) else e

    def _divide(self, a: Expr, divisor: int, op: str) -> Optional[Expr]:
        """``(q * d + r) // d`` → ``q`` and ``% d`` → ``r`` when ``r`` provably lies in [0, d)."""
        form = affine_form(a)
        if form is None:
            return None
        quotient = {v: c // divisor for v, c in form.items() if c % divisor == 0}
        remainder = {v: c for v, c in form.items() if c % divisor != 0}
        lo, hi = value_range(affine_expr(remainder), self.ranges)
        if not (0 <= lo and hi < divisor):
            return None
        result = affine_expr(quotient) if op == "floordiv" else affine_expr(remainder)
        return result if result.dtype == a.dtype else None


def simplify_expr(e: Expr, ranges: Optional[dict[Var, Interval]] = None) -> Expr:
    return Simplify(ranges).visit(e)


def simplify(node: Function | Stmt) -> Function | Stmt:
    if isinstance(node, Function):
        return node.with_body(Simplify().visit(node.body))
    return Simplify().visit(node)
