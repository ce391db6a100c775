"""Algebraic clean-up of integer index arithmetic: fold constants, drop ``+ 0`` and ``* 1``.

Floating-point expressions are left exactly as written: rewriting them could change results.
"""
from __future__ import annotations

from ..dtypes import is_int
from ..ir.expr import BinOp, Const, Expr, const
from ..ir.stmt import For, Function, Stmt
from ..ir.visitor import Mutator


def _fold(op: str, a: int, b: int) -> int | None:
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


def _is(e: Expr, value: int) -> bool:
    return isinstance(e, Const) and e.value == value and is_int(e.dtype)


class Simplify(Mutator):
    def visit_BinOp(self, node: BinOp) -> Expr:
        a, b = self.visit(node.a), self.visit(node.b)
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
            if node.op == "mod" and _is(b, 1):
                return const(0, node.dtype)
        if a is node.a and b is node.b:
            return node
        return BinOp(node.op, a, b, node.dtype)


def simplify(node: Function | Stmt) -> Function | Stmt:
    if isinstance(node, Function):
        return node.with_body(Simplify().visit(node.body))
    return Simplify().visit(node)
