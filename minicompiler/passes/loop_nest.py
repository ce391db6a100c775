"""From tensor definitions to the default loop nest: one loop per axis, stages in dependency order.

    C = compute((M, N), lambda i, j: sum(A[i, k] * B[k, j], axis=k))
becomes
    for i_init in range(M):
      for j_init in range(N):
        C[i_init, j_init] = 0.0
    for i in range(M):
      for j in range(N):
        for k in range(K):
          C[i, j] += A[i, k] * B[k, j]

Intermediate tensors get an ``Alloc``; every loop variable and tensor gets a name that
is unique in the function, so a schedule can point at a loop by its name.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..dtypes import is_float
from ..ir.expr import Const, Expr, Load, Reduce, Var, const
from ..ir.stmt import Accumulate, Alloc, For, Function, Stmt, Store, seq
from ..ir.tensor import Tensor, topological_order
from ..ir.visitor import Mutator, substitute


def reduction_identity(op: str, dtype: str) -> Const:
    """The value a reduction starts from: 0 for sum, -inf / +inf (or the integer limits) for max / min."""
    if op == "sum":
        return const(0, dtype)
    if is_float(dtype):
        return const(float("-inf") if op == "max" else float("inf"), dtype)
    info = np.iinfo(dtype)
    return const(int(info.min) if op == "max" else int(info.max), dtype)


class _Names:
    """Hands out names unique within one function: ``i``, then ``i1``, ``i2``..."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def fresh(self, base: str) -> str:
        name, n = base, 0
        while name in self.used:
            n += 1
            name = f"{base}{n}"
        self.used.add(name)
        return name


class _RetargetLoads(Mutator):
    """Point loads of definition tensors at their storage tensors."""

    def __init__(self, storage: dict[int, Tensor]) -> None:
        super().__init__()
        self.storage = storage

    def visit_Load(self, node: Load) -> Expr:
        indices = tuple(self.visit(i) for i in node.indices)
        return Load(self.storage[id(node.tensor)], indices)


def _nest(loop_vars: list[Var], extents: tuple[int, ...], body: Stmt) -> Stmt:
    for var, extent in zip(reversed(loop_vars), reversed(extents)):
        body = For(var, const(extent, "int64"), body)
    return body


def _stage(tensor: Tensor, out: Tensor, storage: dict[int, Tensor], names: _Names) -> Stmt:
    """The loop nests that compute one tensor.

    A reduction becomes two perfect nests, the initialisation and then the update,
    so that the update's loops (spatial and reduction alike) can be reordered freely.
    """
    assert tensor.op is not None
    loop_vars = [Var(names.fresh(a.name)) for a in tensor.op.axes]
    mapping: dict[Var, Expr] = dict(zip(tensor.op.axes, loop_vars))
    body = tensor.op.body
    if not isinstance(body, Reduce):
        value = _RetargetLoads(storage).visit(substitute(body, mapping))
        return _nest(loop_vars, tensor.shape, Store(out, tuple(loop_vars), value))
    reduce_vars = [Var(names.fresh(r.name)) for r in body.axes]
    mapping.update(zip(body.axes, reduce_vars))
    value = _RetargetLoads(storage).visit(substitute(body.value, mapping))
    update = _nest(loop_vars + reduce_vars, tensor.shape + tuple(r.extent for r in body.axes),  # type: ignore[attr-defined]
                   Accumulate(out, tuple(loop_vars), body.op, value))
    init_vars = [Var(names.fresh(f"{a.name}_init")) for a in tensor.op.axes]
    init = _nest(init_vars, tensor.shape, Store(out, tuple(init_vars), reduction_identity(body.op, out.dtype)))
    return seq(init, update)


def default_loop_nest(output: Tensor, inputs: Optional[Sequence[Tensor]] = None,
                      name: Optional[str] = None) -> Function:
    """The unscheduled program computing ``output`` from its placeholders."""
    if output.op is None:
        raise ValueError(f"{output.name} is a placeholder: there is nothing to compute")
    stages = topological_order(output)
    placeholders = [t for t in stages if t.op is None]
    if inputs is None:
        inputs = sorted(placeholders, key=lambda t: t.order)
    else:
        inputs = list(inputs)
        missing = [t.name for t in placeholders if not any(t is i for i in inputs)]
        if missing:
            raise ValueError(f"inputs= lacks placeholder(s) {', '.join(missing)} that {output.name} reads")
        if len({id(t) for t in inputs}) != len(inputs):
            raise ValueError("inputs= lists a tensor twice")
        bad = [t.name for t in inputs if not isinstance(t, Tensor) or t.op is not None]
        if bad:
            raise ValueError(f"inputs= must list placeholders only, got {', '.join(bad)}")

    names = _Names()
    storage: dict[int, Tensor] = {}
    for t in list(inputs) + [t for t in stages if t.op is not None]:
        storage[id(t)] = Tensor(names.fresh(t.name), t.shape, t.dtype)  # loop names come after these
    body = seq(*[_stage(t, storage[id(t)], storage, names) for t in stages if t.op is not None])
    for t in reversed([t for t in stages if t.op is not None and t is not output]):
        body = Alloc(storage[id(t)], body)
    return Function(name or storage[id(output)].name, tuple(storage[id(t)] for t in inputs),
                    (storage[id(output)],), body,
                    tuple(storage[id(t)].name for t in stages if t.op is not None and t is not output))
