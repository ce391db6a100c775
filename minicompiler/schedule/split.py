"""split and tile: one loop becomes two (or two become four).

    for i in range(10):          split("i", factor=4)       for i_o in range(3):
      S(i)                       ─────────────────────►       for i_i in range(4):
                                                                if i_o * 4 + i_i < 10:
                                                                  S(i_o * 4 + i_i)
The guard appears only when the factor does not divide the extent; lowering later
splits the outer loop into a guard-free main part and a tail (passes/partition.py).
"""
from __future__ import annotations

from typing import Optional

from ..ir.expr import Var, const
from ..ir.stmt import For, Function, If
from ..ir.visitor import substitute
from .loops import ScheduleError, constant_extent, find_loop, fresh_name, replace_stmt, used_names
from .params import COUNT, LOOP, primitive
from .reorder import reorder


@primitive(loop=LOOP, factor=COUNT.optional(), nparts=COUNT.optional())
def split(func: Function, loop: str, factor: Optional[int] = None, nparts: Optional[int] = None) -> Function:
    """Split ``loop`` into ``loop_o`` × ``loop_i`` with ``loop_i`` running ``factor`` times
    (or into at most ``nparts`` outer iterations: the factor is ``ceil(extent / nparts)``).
    A factor larger than the extent is the extent: the inner loop is then the whole loop."""
    return split_named(func, loop, factor, nparts)[0]


def split_named(func: Function, loop: str, factor: Optional[int] = None,
                nparts: Optional[int] = None) -> tuple[Function, str, str]:
    """split, also returning the names of the outer and inner loops it made."""
    target = find_loop(func, loop)
    extent = constant_extent(target, "split")
    if target.kind != "serial":
        raise ScheduleError(f"split {loop} before marking it {target.kind}")
    if (factor is None) == (nparts is None):
        raise ScheduleError("split takes exactly one of factor= or nparts=")
    for name, value in (("factor", factor), ("nparts", nparts)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ScheduleError(f"split {name} must be a positive integer, got {value!r}")
    if nparts is not None:
        factor = -(-extent // nparts)
    # A factor beyond the extent means the whole loop (the outer loop then runs once).
    factor = max(1, min(int(factor), extent))  # type: ignore[arg-type]
    taken = used_names(func)
    outer, inner = Var(fresh_name(taken, f"{loop}_o")), Var(fresh_name(taken, f"{loop}_i"))
    index = outer * factor + inner
    outer_extent = -(-extent // factor)

    def rebuild(old: For) -> For:  # type: ignore[override]
        body = substitute(old.body, {old.var: index})
        if extent % factor:
            body = If(index < const(extent, "int64"), body)
        return For(outer, const(outer_extent, "int64"), For(inner, const(factor, "int64"), body))

    return replace_stmt(func, target, rebuild), outer.name, inner.name  # type: ignore[arg-type]


@primitive(outer_loop=LOOP, inner_loop=LOOP, outer_factor=COUNT, inner_factor=COUNT)
def tile(func: Function, outer_loop: str, inner_loop: str, outer_factor: int, inner_factor: int) -> Function:
    """2-D tiling: split both loops and order them ``outer_o, inner_o, outer_i, inner_i``."""
    func, xo, xi = split_named(func, outer_loop, outer_factor)
    func, yo, yi = split_named(func, inner_loop, inner_factor)
    return reorder(func, (xo, yo, xi, yi))
