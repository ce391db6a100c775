"""Statements of the loop-nest IR, and the Function that holds them.

A loop always starts at 0 and runs ``extent`` times; ``kind`` tells code generation
how to run it. Transforms never mutate a node: they build a new tree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .expr import Expr, Var
from .tensor import Tensor

LOOP_KINDS = ("serial", "parallel", "vectorized", "unrolled")


class Stmt:
    def __str__(self) -> str:
        from .printer import format_stmt
        return format_stmt(self)


@dataclass(frozen=True)
class Store(Stmt):
    """``tensor[indices] = value``."""

    tensor: Tensor
    indices: tuple[Expr, ...]
    value: Expr


@dataclass(frozen=True)
class Accumulate(Stmt):
    """``tensor[indices] = op(tensor[indices], value)`` with op in sum / max / min."""

    tensor: Tensor
    indices: tuple[Expr, ...]
    op: str
    value: Expr


@dataclass(frozen=True)
class Prefetch(Stmt):
    """A hint: start bringing the cache line of ``tensor[indices]`` towards the core (read, keep in
    all cache levels). Changes no value and never faults, even past the tensor's end."""

    tensor: Tensor
    indices: tuple[Expr, ...]


@dataclass(frozen=True)
class For(Stmt):
    var: Var
    extent: Expr
    body: Stmt
    kind: str = "serial"


@dataclass(frozen=True)
class Seq(Stmt):
    stmts: tuple[Stmt, ...]


@dataclass(frozen=True)
class Alloc(Stmt):
    """Scratch storage for ``tensor``, live for the duration of ``body``."""

    tensor: Tensor
    body: Stmt


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    then_body: Stmt
    else_body: Optional[Stmt] = None


@dataclass(frozen=True)
class Let(Stmt):
    var: Var
    value: Expr
    body: Stmt


@dataclass(frozen=True)
class Function:
    """A kernel: reads ``inputs``, writes ``outputs``; parameters are inputs then outputs."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    body: Stmt
    # Names of the intermediate tensors defined by compute(): the stages compute_at and
    # compute_inline may move (never the buffers that cache_write or pack add).
    stages: tuple[str, ...] = ()

    @property
    def params(self) -> tuple[Tensor, ...]:
        return self.inputs + self.outputs

    def with_body(self, body: Stmt) -> "Function":
        return Function(self.name, self.inputs, self.outputs, body, self.stages)

    def __str__(self) -> str:
        from .printer import format_function
        return format_function(self)


def seq(*stmts: Stmt) -> Stmt:
    """A sequence, flattened; a single statement stays itself."""
    flat: list[Stmt] = []
    for s in stmts:
        flat.extend(s.stmts if isinstance(s, Seq) else (s,))
    return flat[0] if len(flat) == 1 else Seq(tuple(flat))
