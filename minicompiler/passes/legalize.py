"""Vector legalization: a vectorized loop wider than the target's registers becomes
``width / lanes`` unrolled copies of a register-wide vectorized loop.

LLVM would split a ``<48 x float>`` itself, but an accumulator tile held in a stack array
then stops being promotable to registers; register-wide pieces keep every access aligned
to a whole vector, so the tile lives in registers. Widths that are not a multiple of the
lanes stay as they are.
"""
from __future__ import annotations

from ..ir.expr import Const, Var, const
from ..ir.stmt import Accumulate, For, Function, Stmt, Store
from ..ir.visitor import Mutator, substitute, walk
from ..target import Target


class LegalizeVectors(Mutator):
    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target

    def visit_For(self, s: For) -> Stmt:
        body = self.visit(s.body)
        if s.kind != "vectorized" or not isinstance(s.extent, Const):
            return For(s.var, s.extent, body, s.kind)
        writes = [w for w in walk(body) if isinstance(w, (Store, Accumulate))]
        lanes = min((self.target.vector_lanes(w.tensor.dtype) for w in writes), default=0)
        width = int(s.extent.value)
        if lanes < 2 or width <= lanes or width % lanes:
            return For(s.var, s.extent, body, s.kind)
        piece, lane = Var(s.var.name + "_v"), Var(s.var.name + "_l")
        inner = For(lane, const(lanes, "int64"), substitute(body, {s.var: piece * lanes + lane}), "vectorized")
        return For(piece, const(width // lanes, "int64"), inner, "unrolled")


def legalize_vectors(func: Function, target: Target) -> Function:
    return func.with_body(LegalizeVectors(target).visit(func.body))
