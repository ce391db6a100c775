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


@primitive(loop=LOOP("the loop to split"),
           factor=COUNT("iterations of the new inner loop", required=False),
           nparts=COUNT("iterations of the new outer loop (give factor OR nparts, not both)", required=False))
def split(func: Function, loop: str, factor: Optional[int] = None, nparts: Optional[int] = None) -> Function:
    """Loop L becomes L_o (outer) x L_i (inner, ``factor`` iterations, or ``nparts`` outer
    iterations: the factor is then ``ceil(extent / nparts)``); a factor that does not divide the
    extent is fine (a guard handles the tail), one larger than the extent means the whole loop.
    If a name is taken a digit is appended (L_o1).

    Legal when: L is a plain serial loop of constant extent (split BEFORE parallel / vectorize /
    unroll); exactly one of factor / nparts is given.
    """
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


@primitive(outer_loop=LOOP("the outer of two perfectly nested loops"),
           inner_loop=LOOP("the inner of the two loops"),
           outer_factor=COUNT("tile size along outer_loop"), inner_factor=COUNT("tile size along inner_loop"))
def tile(func: Function, outer_loop: str, inner_loop: str, outer_factor: int, inner_factor: int) -> Function:
    """Split both loops and order them outer_loop_o, inner_loop_o, outer_loop_i, inner_loop_i:
    a 2-D block of outer_factor x inner_factor iterations (a register or cache tile).

    Legal when: the two loops are perfectly nested in one nest and still serial.
    """
    func, xo, xi = split_named(func, outer_loop, outer_factor)
    func, yo, yi = split_named(func, inner_loop, inner_factor)
    return reorder(func, (xo, yo, xi, yi))
