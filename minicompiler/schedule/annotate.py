"""parallel, vectorize, unroll: mark how a loop runs; lowering carries the mark out.

Each check here proves the mark safe for every iteration, or refuses with the reason.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

from ..analysis import affine_expr, affine_form, value_range
from ..ir.expr import BinOp, Const, Expr, Load, Select, Var, const
from ..ir.stmt import Accumulate, Alloc, For, Function, Stmt, Store
from ..ir.visitor import walk
from .loops import (ScheduleError, children, constant_extent, enclosing_loops, find_loop, free_vars, loops,
                    replace_stmt)
from .params import COUNT, LOOP, primitive
from .split import split_named

MAX_VECTOR = 256
MAX_UNROLL = 256
# Nodes of the loop nest once unrolled loops are copies: beyond this, building takes minutes and
# gigabytes (LLVM's optimiser is superlinear in a function's size) for no speed a cache could hold.
MAX_UNROLLED_SIZE = 2**15
# What one serial loop counts for: LLVM vectorizes and unrolls each loop copy on its own (a vector
# body, an epilogue, runtime checks), so hundreds of small loops cost as much as a huge block.
LOOP_WEIGHT = 64


def unrolled_size(s: Stmt) -> int:
    """The nodes ``s`` becomes once its unrolled loops are copies (a vectorized loop counts one
    copy per 8 lanes, as register-wide pieces; every other loop ``LOOP_WEIGHT``)."""
    if isinstance(s, For):
        body = unrolled_size(s.body)
        n = int(s.extent.value) if isinstance(s.extent, Const) else 1
        return {"unrolled": n * body, "vectorized": max(1, n // 8) * body}.get(s.kind, body + LOOP_WEIGHT)
    inner = children(s)
    if inner:
        return 1 + sum(unrolled_size(c) for c in inner)
    return sum(1 for _ in walk(s))


def _mark(func: Function, loop: For, kind: str) -> Function:
    return replace_stmt(func, loop, lambda old: replace(old, kind=kind))  # type: ignore[arg-type]


def _inner_ranges(loop: For) -> dict[Var, tuple[float, float]]:
    ranges: dict[Var, tuple[float, float]] = {}
    for inner in loops(loop.body):
        hi = value_range(inner.extent, ranges)[1]
        ranges[inner.var] = (0, hi - 1)
    return ranges


def _window(loop: For, indices: list[Expr], ranges: dict[Var, tuple[float, float]]) -> bool:
    """Do these index expressions put each iteration of ``loop`` in its own slice?

    They must all read ``c * var + outer + inner`` with one ``c``, one ``outer`` part (loops
    around ``loop``: fixed while it runs) and ``inner`` parts (loops inside it, plus constants)
    whose values all fit in a window narrower than ``|c|``.
    """
    forms = [affine_form(i) for i in indices]
    if any(f is None for f in forms):
        return False
    coeffs = {f.get(loop.var, 0) for f in forms}  # type: ignore[union-attr]
    outers = [{v: c for v, c in f.items() if v is not None and v is not loop.var and v not in ranges}  # type: ignore[union-attr]
              for f in forms]
    if len(coeffs) != 1 or 0 in coeffs or any(o != outers[0] for o in outers):
        return False
    lo, hi = math.inf, -math.inf
    for f in forms:
        inner = {v: c for v, c in f.items() if v is None or v in ranges}  # type: ignore[union-attr]
        r_lo, r_hi = value_range(affine_expr(inner), ranges)
        lo, hi = min(lo, r_lo), max(hi, r_hi)
    return math.isfinite(lo) and math.isfinite(hi) and hi - lo < abs(coeffs.pop())


def _iterations_apart(loop: For, tensor_accesses: list) -> bool:
    """True when every iteration of ``loop`` touches its own slice of the tensor: along one
    dimension, or along the flattened (row-major) address — what a fused loop needs."""
    from ..passes.simplify import simplify_expr
    ranges = _inner_ranges(loop)
    ndim = len(tensor_accesses[0].indices)
    for d in range(ndim):
        if _window(loop, [a.indices[d] for a in tensor_accesses], ranges):
            return True
    shape = tensor_accesses[0].tensor.shape
    flat = []
    for a in tensor_accesses:
        address: Expr = const(0, "int64")
        for index, extent in zip(a.indices, shape):
            address = address * extent + index
        flat.append(simplify_expr(address))
    return _window(loop, flat, ranges)


@primitive(loop=LOOP("the loop whose iterations run on all cores"))
def parallel(func: Function, loop: str) -> Function:
    """Run the iterations of the loop on the thread pool (OpenMP), one contiguous chunk per thread.

    Legal when: no other loop around or inside it is parallel (one level per nest); it is not a
    reduction loop, and its iterations write disjoint elements. Prefer an outer spatial loop
    with at least as many iterations as cores.
    """
    target = find_loop(func, loop)
    if target.kind != "serial":
        raise ScheduleError(f"{loop} is already {target.kind}")
    nested = [l for l in enclosing_loops(func, target) + list(loops(target.body)) if l.kind == "parallel"]
    if nested:
        raise ScheduleError(f"only one loop level runs in parallel; {nested[0].var.name}, around or inside "
                            f"{loop}, already does (fuse loops to get more parallel iterations)")
    private = {id(n.tensor) for n in walk(target.body) if isinstance(n, Alloc)}
    written = {id(w.tensor): w for w in walk(target.body)
               if isinstance(w, (Store, Accumulate)) and id(w.tensor) not in private}
    for w in written.values():
        touching = [a for a in walk(target.body) if isinstance(a, (Load, Store, Accumulate)) and a.tensor is w.tensor]
        if not _iterations_apart(target, touching):
            kind = "it is a reduction loop: its iterations accumulate into" \
                if any(isinstance(a, Accumulate) for a in touching) else "its iterations touch"
            raise ScheduleError(f"cannot run {loop} in parallel: {kind} the same elements of {w.tensor.name}; "
                                f"parallelize a spatial (output) loop instead")
    return _mark(func, target, "parallel")


@primitive(loop=LOOP("the loop that becomes SIMD lanes"))
def vectorize(func: Function, loop: str) -> Function:
    """Run the loop as one SIMD operation per statement: its extent is the number of lanes
    (loops wider than a register become register-wide pieces when lowered).

    Legal when: the extent is 2..256 (split first); it is the innermost loop (or only unrolled
    loops are inside it); every store is contiguous in it (stride 1 in the LAST index of the
    written tensor), so never a reduction loop; no where() that guards a read depends on it.
    """
    target = find_loop(func, loop)
    extent = constant_extent(target, "vectorize")
    if target.kind != "serial":
        raise ScheduleError(f"{loop} is already {target.kind}")
    if not 2 <= extent <= MAX_VECTOR:
        raise ScheduleError(f"vectorize needs 2 to {MAX_VECTOR} iterations, {loop} has {extent}; split it first")
    for inner in loops(target.body):
        if inner.kind != "unrolled":
            raise ScheduleError(f"vectorize {loop}: loop {inner.var.name} inside it must be unrolled first "
                                f"(or vectorize the innermost loop)")
    var = target.var
    for w in walk(target.body):
        if isinstance(w, (Store, Accumulate)):
            last = affine_form(w.indices[-1]) if w.indices else None
            others = [i for i in w.indices[:-1] if var in free_vars(i)]
            if last is None or last.get(var, 0) != 1 or others:
                reason = ("does not depend on it: vectorizing would need a horizontal reduction; vectorize a "
                          "spatial loop whose index is the last of the output") \
                    if not any(var in free_vars(i) for i in w.indices) else \
                    "is not contiguous in it (the loop must step through the last index with stride 1)"
                raise ScheduleError(f"cannot vectorize {loop}: the write to {w.tensor.name} {reason}")
        if isinstance(w, Select) and var in free_vars(w.cond) and any(
                isinstance(n, Load) for n in walk(w.true_value)) | any(isinstance(n, Load) for n in walk(w.false_value)):
            raise ScheduleError(f"cannot vectorize {loop}: a where() that guards a read depends on it "
                                f"(reads outside the guard are not allowed); vectorize another loop")
        if isinstance(w, BinOp) and w.op in ("floordiv", "mod") and var in free_vars(w.b):
            raise ScheduleError(f"cannot vectorize {loop}: it divides by an expression of {loop}")
    return _mark(func, target, "vectorized")


@primitive(loop=LOOP("the loop to unroll"),
           factor=COUNT("unroll by this many (omit it to unroll fully)", required=False))
def unroll(func: Function, loop: str, factor: Optional[int] = None) -> Function:
    """Unroll the loop fully, or by ``factor`` (split, then unroll the inner part).

    Legal when: the loop is serial; a full unroll only for small extents (<= 256) and small
    bodies, and the whole program, once unrolled, stays under MAX_UNROLLED_SIZE nodes of code
    (otherwise give a factor, or drop another unroll).
    """
    target = find_loop(func, loop)
    if target.kind != "serial":
        raise ScheduleError(f"{loop} is already {target.kind}")
    if factor is not None:
        func, _, inner = split_named(func, loop, factor)
        return unroll(func, inner)
    extent = constant_extent(target, "unroll")
    copies = extent * max(1, sum(1 for _ in walk(target.body)))
    if extent > MAX_UNROLL or copies > 64 * MAX_UNROLL:
        raise ScheduleError(f"unrolling {loop} ({extent} iterations) would make too much code; "
                            f"use unroll({loop!r}, factor=...)")
    marked = _mark(func, target, "unrolled")
    size = unrolled_size(marked.body)
    if size > MAX_UNROLLED_SIZE:
        others = [l.var.name for l in enclosing_loops(func, target) + list(loops(target.body))
                  if l.kind in ("unrolled", "vectorized")]
        with_others = f" with {', '.join(others)} also unrolled or vectorized" if others else ""
        raise ScheduleError(f"unrolling {loop}{with_others} would make {size} IR nodes of code "
                            f"(at most {MAX_UNROLLED_SIZE}); drop one of these unrolls, or unroll {loop} "
                            f"by a smaller factor")
    return marked
