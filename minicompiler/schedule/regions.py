"""Regions of a tensor touched inside a loop: what cache_write and compute_at reason with.

An index like ``i_o * 6 + i_i`` inside loop ``i_o`` splits into an *outer* part fixed for
one iteration (``i_o * 6``) and an *inner* part that varies inside it (``i_i`` in [0, 6)).
The region one iteration touches is the outer part plus the inner part's range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..analysis import Affine, affine_expr, affine_form
from ..ir.expr import BinOp, Const, Expr, Load, Var
from ..ir.stmt import Accumulate, If, Stmt, Store
from ..ir.tensor import Tensor
from ..ir.visitor import Visitor, walk
from .loops import ScheduleError, loops


@dataclass(frozen=True)
class Region:
    """Per dimension: the outer part (an expression) and the inner range ``[lo, lo + extent)``."""

    outer: tuple[Expr, ...]
    lo: tuple[int, ...]
    extent: tuple[int, ...]


def accesses(body: Stmt, tensor: Tensor) -> list[Load | Store | Accumulate]:
    return [n for n in walk(body) if isinstance(n, (Load, Store, Accumulate)) and n.tensor is tensor]


def inner_ranges(body: Stmt) -> dict[Var, tuple[int, int]]:
    ranges: dict[Var, tuple[int, int]] = {}
    for loop in loops(body):
        if not hasattr(loop.extent, "value"):
            raise ScheduleError(f"loop {loop.var.name} has no constant extent")
        ranges[loop.var] = (0, int(loop.extent.value) - 1)  # type: ignore[attr-defined]
    return ranges


def region_in(loop_body: Stmt, tensor: Tensor, what: str) -> Region:
    """The region of ``tensor`` that one execution of ``loop_body`` touches."""
    found = accesses(loop_body, tensor)
    if not found:
        raise ScheduleError(f"{what}: {tensor.name} is not used inside that loop")
    ranges = inner_ranges(loop_body)
    outer: list[Optional[Affine]] = [None] * tensor.ndim
    lo = [0] * tensor.ndim
    hi = [0] * tensor.ndim
    for n, access in enumerate(found):
        for d, index in enumerate(access.indices):
            form = affine_form(index)
            if form is None:
                raise ScheduleError(f"{what}: index {index} of {tensor.name} is not affine")
            # Constant offsets (a stencil's i + 1) widen the inner range; they do not make a new region.
            fixed = {v: c for v, c in form.items() if v is not None and v not in ranges and c != 0}
            varying = {v: c for v, c in form.items() if v is not None and v in ranges}
            offset = form.get(None, 0)
            if n == 0:
                outer[d] = fixed
            elif fixed != outer[d]:
                raise ScheduleError(f"{what}: {tensor.name} is accessed at unrelated places inside the loop "
                                    f"({affine_expr(fixed)} vs {affine_expr(outer[d] or {})})")
            low = offset + sum(c * (ranges[v][0] if c > 0 else ranges[v][1]) for v, c in varying.items())
            high = offset + sum(c * (ranges[v][1] if c > 0 else ranges[v][0]) for v, c in varying.items())
            lo[d], hi[d] = (low, high) if n == 0 else (min(lo[d], low), max(hi[d], high))
    return Region(tuple(affine_expr(o or {}) for o in outer), tuple(lo), tuple(h - l + 1 for l, h in zip(lo, hi)))


def _dense(varying: dict[Var, int], ranges: dict[Var, tuple[int, int]]) -> bool:
    """Does ``sum(c * v)`` over the loops' ranges take every value between its least and greatest?

    Mixed radix: with the coefficients in increasing size, each must be at most one more than
    the span the smaller ones already cover (``j_o * 4 + j_i`` with ``j_i < 4`` is dense,
    ``j_o * 4`` alone is not)."""
    span = 0
    for c, v in sorted((abs(c), v) for v, c in varying.items() if ranges[v][1] > ranges[v][0]):
        if c > span + 1:
            return False
        span += c * (ranges[v][1] - ranges[v][0])
    return True


def _guards(body: Stmt) -> dict[int, list[Expr]]:
    """For each write (by id), the conditions of the guards around it inside ``body``."""
    found: dict[int, list[Expr]] = {}

    class Collect(Visitor):
        def __init__(self) -> None:
            super().__init__()
            self.conds: list[Expr] = []

        def visit_If(self, node: If) -> None:
            self.conds.append(node.cond)
            self.visit(node.then_body)
            self.conds.pop()
            if node.else_body is not None:
                self.visit(node.else_body)

        def visit_Store(self, node: Store | Accumulate) -> None:
            found[id(node)] = list(self.conds)

        visit_Accumulate = visit_Store

    Collect().visit(body)
    return found


def _edge_guard(cond: Expr, write: Store | Accumulate, tensor: Tensor, fixed: set[Var]) -> bool:
    """Does ``cond`` only cut points that no other write fills?

    ``index_d < n`` with ``n >= shape[d]`` cuts points outside the tensor. ``index_d + offset < n``
    with an offset of only ``fixed`` variables (loops around the tensor's allocation, constant for
    one instance of it: compute_at's guards at the stage's global edges) cuts the same far end of
    the buffer in every write of that instance. Anything else (a split's tail guard inside the
    tile, ``i_o * 4 + i_i < 6``) may leave points that other iterations write."""
    if isinstance(cond, BinOp) and cond.op == "and":
        return _edge_guard(cond.a, write, tensor, fixed) and _edge_guard(cond.b, write, tensor, fixed)
    if not (isinstance(cond, BinOp) and cond.op == "lt" and isinstance(cond.b, Const)):
        return False
    form = affine_form(cond.a)
    if form is None:
        return False
    for index, extent in zip(write.indices, tensor.shape):
        index_form = affine_form(index)
        if index_form is None:
            continue
        offset = {v: form.get(v, 0) - index_form.get(v, 0) for v in set(form) | set(index_form)}
        offset = {v: c for v, c in offset.items() if c != 0}
        if not offset and int(cond.b.value) >= extent:
            return True
        if offset and all(v is not None and v in fixed for v in offset):
            return True
    return False


def writes_cover(loop_body: Stmt, tensor: Tensor, region: Region, fixed: set[Var]) -> bool:
    """Does one execution of ``loop_body`` write every point of ``region`` (inside the tensor)?

    True when a single write's indices sweep the whole box: each dimension dense over its own
    loops, no loop shared between dimensions, and no guard around it but edges (``_edge_guard``;
    ``fixed``: the variables of the loops around the tensor's allocation)."""
    ranges = inner_ranges(loop_body)
    guards = _guards(loop_body)
    for write in (a for a in accesses(loop_body, tensor) if isinstance(a, (Store, Accumulate))):
        if not all(_edge_guard(cond, write, tensor, fixed) for cond in guards.get(id(write), [])):
            continue
        seen: set[Var] = set()
        ok = True
        for d, index in enumerate(write.indices):
            form = affine_form(index) or {}
            varying = {v: c for v, c in form.items() if v is not None and v in ranges and c != 0}
            span = sum(abs(c) * (ranges[v][1] - ranges[v][0]) for v, c in varying.items())
            if seen & set(varying) or not _dense(varying, ranges) or span + 1 != region.extent[d]:
                ok = False
                break
            seen |= set(varying)
        if ok:
            return True
    return False
