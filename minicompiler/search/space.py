"""The decision space: from a schedule, the legal next Steps with concrete parameters.

Candidates are generated per loop and per tensor, then kept only if the transform
accepts them (legality is the transform's own check, so the space can never disagree
with the compiler). Parameters come from the program and the target: tile factors
from divisors and near-divisors of extents and from multiples of the vector width.
"""
from __future__ import annotations

import random
from typing import Iterable, Optional

from minicompiler.ir.expr import Const
from minicompiler.ir.stmt import Accumulate
from minicompiler.schedule import Schedule, Step
from minicompiler.schedule.loops import loops
from minicompiler.target import Target

from .legality import try_steps
from .nests import intermediates, nests


def factor_candidates(extent: int, lanes: int, limit: int = 8) -> list[int]:
    """Split factors worth trying for a loop of ``extent``: vector multiples, divisors, powers of two."""
    wanted = [lanes, 2 * lanes, 4 * lanes, lanes // 2, 4, 6, 8, 12, 16, 32, 64, 128, 256]
    wanted += [d for d in range(2, min(extent, 512) + 1) if extent % d == 0]
    out: list[int] = []
    for f in wanted:
        if 1 < f < extent and f not in out:
            out.append(f)
    return out[:limit]


class Space:
    def __init__(self, target: Target) -> None:
        self.target = target

    def candidates(self, schedule: Schedule) -> Iterable[Step]:
        """Every step worth considering, legal or not."""
        func = schedule.func
        lanes = self.target.vector_lanes(func.outputs[0].dtype)
        has_parallel = any(l.kind == "parallel" for l in loops(func))
        for loop in loops(func):
            if loop.kind != "serial" or not isinstance(loop.extent, Const):
                continue
            name, extent = loop.var.name, int(loop.extent.value)
            for f in factor_candidates(extent, lanes):
                yield Step.make("split", loop=name, factor=f)
            if 2 <= extent <= 64:
                yield Step.make("vectorize", loop=name)
            if 2 <= extent <= 16:
                yield Step.make("unroll", loop=name)
            if not has_parallel and extent >= 2:
                yield Step.make("parallel", loop=name)
            if isinstance(loop.body, type(loop)):
                inner = loop.body.var.name
                yield Step.make("reorder", order=(inner, name))
                yield Step.make("fuse", outer=name, inner=inner)
        for nest in nests(func):
            if isinstance(nest.write, Accumulate) and not nest.write.tensor.name.endswith("_local"):
                for loop in nest.loops:
                    yield Step.make("cache_write", tensor=nest.write.tensor.name, at=loop.var.name)
        for t in func.inputs:
            for loop in loops(func):   # a block of an input copied per iteration of a block loop
                if loop.kind == "serial" and loop.var.name.endswith("_o"):
                    yield Step.make("cache_read", tensor=t.name, at=loop.var.name)
                    for distance in (1, 2):
                        yield Step.make("prefetch", tensor=t.name, at=loop.var.name, distance=distance)
            for dim in range(t.ndim):
                for f in (lanes, 2 * lanes):
                    if t.shape[dim] > f:
                        yield Step.make("pack", tensor=t.name, dim=dim, factor=f)
        scratch = intermediates(func)
        for name in scratch:
            yield Step.make("compute_inline", tensor=name)
            for loop in loops(func):
                yield Step.make("compute_at", tensor=name, at=loop.var.name)

    def actions(self, schedule: Schedule) -> list[Step]:
        """The legal next steps."""
        legal = []
        for step in self.candidates(schedule):
            if self.apply(schedule, step) is not None:
                legal.append(step)
        return legal

    @staticmethod
    def apply(schedule: Schedule, step: Step) -> Optional[Schedule]:
        return try_steps(schedule, (step,))

    def sample(self, schedule: Schedule, rng: random.Random) -> Optional[tuple[Step, Schedule]]:
        """One legal step at random (candidates tried in random order), or None at a dead end."""
        options = list(self.candidates(schedule))
        rng.shuffle(options)
        for step in options:
            result = self.apply(schedule, step)
            if result is not None:
                return step, result
        return None
