"""Tensors: named n-dimensional arrays, either inputs (placeholders) or defined by a ComputeOp.

The same class names storage in the loop-nest IR (there ``op`` is always None):
``Load(tensor, indices)`` reads it, ``Store``/``Accumulate`` write it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

from ..dtypes import INDEX_DTYPE, is_int
from .expr import Expr, ExprLike, Load, Reduce, Var, as_expr

_creation_counter = itertools.count()


@dataclass(frozen=True)
class ComputeOp:
    """``tensor[axes] = body``: ``body`` is an expression of ``axes`` (a Reduce at the top, or none)."""

    axes: tuple[Var, ...]
    body: Expr


@dataclass(frozen=True, eq=False)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    op: Optional[ComputeOp] = None
    order: int = field(default_factory=lambda: next(_creation_counter), repr=False)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for extent in self.shape:
            n *= extent
        return n

    @property
    def is_placeholder(self) -> bool:
        return self.op is None

    def __getitem__(self, index: ExprLike | tuple[ExprLike, ...]) -> Load:
        indices = index if isinstance(index, tuple) else (index,)
        if len(indices) != self.ndim:
            raise ValueError(f"{self.name} has {self.ndim} dimension(s) but was indexed with {len(indices)}")
        exprs = tuple(as_expr(i, INDEX_DTYPE) for i in indices)
        for position, e in enumerate(exprs):
            if not is_int(e.dtype):
                raise TypeError(f"index {position} of {self.name} must be an integer expression, got {e.dtype}")
        return Load(self, exprs)

    def __repr__(self) -> str:
        kind = "placeholder" if self.op is None else "compute"
        return f"Tensor({self.name!r}, shape={self.shape}, dtype={self.dtype!r}, {kind})"

    @property
    def inputs(self) -> tuple["Tensor", ...]:
        """The tensors this one's definition reads, in first-read order."""
        if self.op is None:
            return ()
        from .visitor import walk
        seen: dict[int, Tensor] = {}
        for node in walk(self.op.body):
            if isinstance(node, Load):
                seen.setdefault(id(node.tensor), node.tensor)
        return tuple(seen.values())


def reduce_axes_of(body: Expr) -> tuple[Var, ...]:
    return body.axes if isinstance(body, Reduce) else ()


def topological_order(output: Tensor) -> list[Tensor]:
    """Every tensor ``output`` depends on (itself included), producers before consumers."""
    order: list[Tensor] = []
    state: dict[int, str] = {}

    def visit(t: Tensor) -> None:
        if state.get(id(t)) == "done":
            return
        state[id(t)] = "open"
        for producer in t.inputs:
            if state.get(id(producer)) == "open":
                raise ValueError(f"{t.name} depends on itself through {producer.name}")
            visit(producer)
        state[id(t)] = "done"
        order.append(t)

    visit(output)
    return order
