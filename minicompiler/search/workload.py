"""A Workload: the program being tuned, with what measuring it needs.

The key is a structural hash of the unscheduled loop nest (its printed text), so the
same computation on the same shapes finds the same database records in any process.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from minicompiler.ir.expr import BinOp, Call, Const
from minicompiler.ir.stmt import Accumulate, Function, Store
from minicompiler.ir.tensor import Tensor
from minicompiler.ir.visitor import LoopVisitor, walk
from minicompiler.schedule import Schedule


@dataclass
class Workload:
    tensor: Tensor
    inputs: Optional[tuple[Tensor, ...]] = None
    name: str = ""
    _initial: Optional[Function] = field(default=None, repr=False)

    @property
    def initial(self) -> Function:
        if self._initial is None:
            self._initial = Schedule(self.tensor, self.inputs).func
        return self._initial

    @property
    def key(self) -> str:
        return hashlib.sha256(str(self.initial).encode()).hexdigest()[:16]

    def schedule(self, steps: Sequence = ()) -> Schedule:
        return Schedule(self.tensor, self.inputs, steps)

    @property
    def flops(self) -> int:
        """Arithmetic operations of the unscheduled program (a multiply-add counts 2), for GFLOP/s."""
        return _count_flops(self.initial) or 1

    def random_inputs(self, seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        arrays = []
        for t in self.initial.inputs:
            if t.dtype.startswith("int"):
                arrays.append(rng.integers(-3, 4, size=t.shape).astype(t.dtype))
            else:
                arrays.append(rng.standard_normal(t.shape).astype(t.dtype))
        return arrays


def _count_flops(func: Function) -> int:
    """Operations per statement times its trip count (loops of non-constant extent count once)."""
    class Count(LoopVisitor):
        total = 0

        def trips(self) -> int:
            n = 1
            for loop in self.loops:
                n *= int(loop.extent.value) if isinstance(loop.extent, Const) else 1
            return n

        def visit_Store(self, s: Store) -> None:
            self.total += self.trips() * _ops(s.value)

        def visit_Accumulate(self, s: Accumulate) -> None:
            self.total += self.trips() * (_ops(s.value) + 1)

    count = Count()
    count.visit(func.body)
    return count.total


def _ops(expr) -> int:  # noqa: ANN001
    return sum(1 for n in walk(expr) if isinstance(n, (BinOp, Call)))
