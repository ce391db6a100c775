"""What the search reads off a loop nest: its statements, their loops, which loops are
spatial (they index the output) or reductions, and which loop walks memory contiguously.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from minicompiler.analysis import affine_form
from minicompiler.ir.expr import Const, Load
from minicompiler.ir.stmt import Accumulate, Alloc, For, Function, Store
from minicompiler.ir.visitor import LoopVisitor, walk
from minicompiler.schedule.loops import enclosing_loops, free_vars


@dataclass(frozen=True)
class Nest:
    """One statement and the loops around it (outermost first)."""

    loops: tuple[For, ...]
    write: Store | Accumulate

    @property
    def names(self) -> list[str]:
        return [l.var.name for l in self.loops]

    @property
    def spatial(self) -> list[str]:
        used = set().union(*(free_vars(i) for i in self.write.indices)) if self.write.indices else set()
        return [l.var.name for l in self.loops if l.var in used]

    @property
    def reduction(self) -> list[str]:
        spatial = set(self.spatial)
        return [n for n in self.names if n not in spatial] if isinstance(self.write, Accumulate) else []

    @property
    def contiguous(self) -> Optional[str]:
        """The loop that steps through the output's last index with stride 1."""
        if not self.write.indices:
            return None
        form = affine_form(self.write.indices[-1]) or {}
        for loop in reversed(self.loops):
            if form.get(loop.var) == 1:
                return loop.var.name
        return None

    def extent(self, name: str) -> int:
        for l in self.loops:
            if l.var.name == name and isinstance(l.extent, Const):
                return int(l.extent.value)
        return 0

    def loop_of_output_dim(self, dim: int) -> Optional[str]:
        if not -len(self.write.indices) <= dim < len(self.write.indices):
            return None
        form = affine_form(self.write.indices[dim]) or {}
        for loop in reversed(self.loops):
            if form.get(loop.var, 0) != 0:
                return loop.var.name
        return None

    def reads(self) -> list[Load]:
        return [n for n in walk(self.write) if isinstance(n, Load)]

    @property
    def kinds(self) -> dict[str, str]:
        return {l.var.name: l.kind for l in self.loops}


def nests(func: Function) -> list[Nest]:
    """Every Store / Accumulate with its loops, in program order.

    Loops outside the Alloc of the written tensor are left out: each of their iterations
    computes a fresh copy of the tensor, so for this statement they are neither spatial
    nor a reduction.
    """
    class Collect(LoopVisitor):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[Nest] = []
            self.alloc_depth: dict[int, int] = {}

        def visit_Store(self, s: Store | Accumulate) -> None:   # expressions hold no statements
            self.found.append(Nest(tuple(self.loops[self.alloc_depth.get(id(s.tensor), 0):]), s))

        visit_Accumulate = visit_Store

        def visit_Alloc(self, s: Alloc) -> None:
            self.alloc_depth[id(s.tensor)] = len(self.loops)
            self.generic_visit(s)

    collect = Collect()
    collect.visit(func.body)
    return collect.found


def trip_count(loop: For) -> int:
    """A loop's number of iterations (1 when it is not a constant)."""
    return int(loop.extent.value) if isinstance(loop.extent, Const) else 1


def main_nest(func: Function) -> Optional[Nest]:
    """The statement doing the most work (reductions first on ties) with every loop around it:
    also the loops outside a local accumulator's Alloc, which ``nests`` leaves out, since here
    they count as repeating the work."""
    best, best_work = None, -1
    for nest in nests(func):
        around = enclosing_loops(func, nest.write)
        work = 2 if isinstance(nest.write, Accumulate) else 1
        for l in around:
            work *= trip_count(l)
        if work > best_work:
            best, best_work = Nest(tuple(around), nest.write), work
    return best


def intermediates(func: Function) -> list[str]:
    """Names of the scratch tensors (Allocs at the top level of the function), in program order."""
    return [n.tensor.name for n in walk(func.body) if isinstance(n, Alloc)]
