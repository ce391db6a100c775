"""Vectorization: a loop marked ``vectorized`` becomes one SIMD operation per statement.

The loop variable becomes ``ramp(0, 1, lanes)``; expressions widen around it, following
Halide's rules: ``ramp + x → ramp(base + x)``, ``ramp * c → ramp(base * c, stride * c)``,
a lane-invariant operand is broadcast. A load whose last index is a stride-1 ramp is a
contiguous vector load; any other vector index is a gather. Where a body cannot be widened
(a guard that varies across lanes, a non-constant extent in a tail), the loop stays serial:
correct, and LLVM may still vectorize it.
"""
from __future__ import annotations

from ..dtypes import lanes, with_lanes
from ..ir.expr import BinOp, Broadcast, Call, Cast, Const, Expr, Load, Ramp, Select, Var
from ..ir.stmt import Accumulate, For, Function, If, Let, Prefetch, Stmt, Store
from ..ir.visitor import Mutator, walk


class NotVectorizable(Exception):
    pass


def broadcast(e: Expr, n: int) -> Expr:
    return e if lanes(e.dtype) == n else Broadcast(e, n)


class Widen(Mutator):
    def __init__(self, var: Var, n: int) -> None:
        super().__init__()
        self.var, self.n = var, n

    def visit_Var(self, e: Var) -> Expr:
        return Ramp(Const(0, e.dtype), 1, self.n) if e is self.var else e

    def visit_BinOp(self, e: BinOp) -> Expr:
        a, b = self.visit(e.a), self.visit(e.b)
        if lanes(a.dtype) == 1 and lanes(b.dtype) == 1:
            return e if (a is e.a and b is e.b) else BinOp(e.op, a, b, e.dtype)
        if isinstance(a, Ramp) and lanes(b.dtype) == 1 and e.op in ("add", "sub"):
            return Ramp(BinOp(e.op, a.base, b, b.dtype), a.stride, a.lanes)
        if isinstance(b, Ramp) and lanes(a.dtype) == 1 and e.op == "add":
            return Ramp(BinOp("add", a, b.base, a.dtype), b.stride, b.lanes)
        if isinstance(a, Ramp) and isinstance(b, Const) and e.op == "mul":
            return Ramp(BinOp("mul", a.base, b, b.dtype), a.stride * int(b.value), a.lanes)
        if isinstance(b, Ramp) and isinstance(a, Const) and e.op == "mul":
            return Ramp(BinOp("mul", a, b.base, a.dtype), b.stride * int(a.value), b.lanes)
        if isinstance(a, Ramp) and isinstance(b, Ramp) and e.op == "add":
            return Ramp(BinOp("add", a.base, b.base, a.base.dtype), a.stride + b.stride, a.lanes)
        return BinOp(e.op, broadcast(a, self.n), broadcast(b, self.n), with_lanes(e.dtype, self.n))

    def visit_Select(self, e: Select) -> Expr:
        cond, t, f = self.visit(e.cond), self.visit(e.true_value), self.visit(e.false_value)
        if lanes(cond.dtype) == 1 and lanes(t.dtype) == 1 and lanes(f.dtype) == 1:
            return Select(cond, t, f, e.dtype)
        reads = any(isinstance(x, Load) for x in walk(e.true_value)) or \
            any(isinstance(x, Load) for x in walk(e.false_value))
        if lanes(cond.dtype) > 1 and reads:
            raise NotVectorizable("a guarded read varies across lanes")
        # A lane-invariant condition stays scalar: it picks whole vectors (and may branch around a
        # guarded read, as padding does); only a per-lane condition is a vector mask.
        return Select(cond if lanes(cond.dtype) == 1 else broadcast(cond, self.n),
                      broadcast(t, self.n), broadcast(f, self.n), with_lanes(e.dtype, self.n))

    def visit_Call(self, e: Call) -> Expr:
        args = [self.visit(a) for a in e.args]
        if all(lanes(a.dtype) == 1 for a in args):
            return Call(e.fn, tuple(args), e.dtype)
        return Call(e.fn, tuple(broadcast(a, self.n) for a in args), with_lanes(e.dtype, self.n))

    def visit_Cast(self, e: Cast) -> Expr:
        value = self.visit(e.value)
        return Cast(with_lanes(e.dtype, lanes(value.dtype)), value)

    def visit_Store(self, s: Store) -> Stmt:
        indices = tuple(self.visit(i) for i in s.indices)
        value = self.visit(s.value)
        return Store(s.tensor, indices, self._store_value(indices, value))

    def visit_Prefetch(self, s: Prefetch) -> Stmt:
        # One prefetch per vector, of its first lane: a vector's lanes share one or two cache lines.
        indices = tuple(self.visit(i) for i in s.indices)
        if any(lanes(i.dtype) > 1 and not isinstance(i, Ramp) for i in indices):
            raise NotVectorizable("a prefetch whose address is not a ramp")
        return Prefetch(s.tensor, tuple(i.base if isinstance(i, Ramp) else i for i in indices))

    def visit_Accumulate(self, s: Accumulate) -> Stmt:
        indices = tuple(self.visit(i) for i in s.indices)
        value = self.visit(s.value)
        return Accumulate(s.tensor, indices, s.op, self._store_value(indices, value))

    def _store_value(self, indices: tuple[Expr, ...], value: Expr) -> Expr:
        n = max((lanes(i.dtype) for i in indices), default=1)
        if n == 1 and lanes(value.dtype) > 1:
            raise NotVectorizable("a store that is the same for every lane receives different values")
        return broadcast(value, n)

    def visit_If(self, s: If) -> Stmt:
        cond = self.visit(s.cond)
        if lanes(cond.dtype) > 1:
            raise NotVectorizable("a guard varies across lanes")
        return If(cond, self.visit(s.then_body), self.visit(s.else_body) if s.else_body else None)

    def visit_Let(self, s: Let) -> Stmt:
        raise NotVectorizable("let inside a vectorized loop")

    def visit_For(self, s: For) -> Stmt:
        raise NotVectorizable("a loop inside a vectorized loop")


class VectorizeLoops(Mutator):
    def visit_For(self, s: For) -> Stmt:
        body = self.visit(s.body)
        if s.kind != "vectorized":
            return For(s.var, s.extent, body, s.kind)
        if not isinstance(s.extent, Const) or int(s.extent.value) < 2:
            return For(s.var, s.extent, body, "serial")
        try:
            return Widen(s.var, int(s.extent.value)).visit(body)
        except NotVectorizable:
            return For(s.var, s.extent, body, "serial")


def vectorize_loops(func: Function) -> Function:
    return func.with_body(VectorizeLoops().visit(func.body))
