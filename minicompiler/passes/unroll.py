"""Unrolling: a loop marked ``unrolled`` with a constant extent becomes that many copies of its body.

A loop whose extent is not constant (a tail after partitioning) stays a serial loop.
"""
from __future__ import annotations

from ..ir.expr import Const, const
from ..ir.stmt import For, Function, Stmt, seq
from ..ir.visitor import Mutator, substitute


class Unroll(Mutator):
    def visit_For(self, s: For) -> Stmt:
        body = self.visit(s.body)
        if s.kind != "unrolled":
            return For(s.var, s.extent, body, s.kind)
        if not isinstance(s.extent, Const):
            return For(s.var, s.extent, body, "serial")
        return seq(*[substitute(body, {s.var: const(n, "int64")}) for n in range(int(s.extent.value))])


def unroll_loops(func: Function) -> Function:
    return func.with_body(Unroll().visit(func.body))
