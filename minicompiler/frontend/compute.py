"""The tensor-expression frontend, in the TVM style: placeholders, compute(), reductions, math.

    A = placeholder((M, K)); B = placeholder((K, N))
    k = reduce_axis(K, "k")
    C = compute((M, N), lambda i, j: sum(A[i, k] * B[k, j], axis=k), name="C")

Every definition is checked when it is made: types, that reductions sit at the top
of a body, and that every read stays inside its tensor (see ``analysis.check_bounds``).
"""
from __future__ import annotations

import builtins
import inspect
import itertools
from typing import Callable, Optional, Sequence, Union

from ..analysis import Interval, check_bounds
from ..dtypes import check_tensor_dtype
from ..ir.expr import (REDUCE_OPS, Expr, ExprLike, Reduce, ReduceVar, Var, as_expr, binop, call, cast,
                       select)
from ..ir.tensor import ComputeOp, Tensor
from ..ir.visitor import walk

_names = itertools.count()
Shape = Union[int, Sequence[int]]


def _check_shape(shape: Shape) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int) and not hasattr(d, "__index__"):
            raise TypeError(f"shape entries must be integers, got {d!r} in {shape!r}")
        if int(d) < 0:
            raise ValueError(f"shape entries must be >= 0, got {d!r} in {shape!r}")
    return tuple(int(d) for d in dims)


def _check_name(name: Optional[str], prefix: str) -> str:
    if name is None:
        return f"{prefix}{next(_names)}"
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"tensor name must be a Python identifier, got {name!r}")
    return name


def placeholder(shape: Shape, dtype: str = "float32", name: Optional[str] = None) -> Tensor:
    """A symbolic input tensor of the given shape and dtype."""
    return Tensor(_check_name(name, "in"), _check_shape(shape), check_tensor_dtype(dtype))


def reduce_axis(extent: int, name: Optional[str] = None) -> ReduceVar:
    """A reduction variable over ``range(extent)``, for ``sum`` / ``max`` / ``min``."""
    (extent,) = _check_shape((extent,))
    return ReduceVar(_check_name(name, "r"), extent=extent)


def _reduce(op: str, value: ExprLike, axis: Union[ReduceVar, Sequence[ReduceVar]]) -> Reduce:
    axes = (axis,) if isinstance(axis, Var) else tuple(axis)
    if not axes or not all(isinstance(a, ReduceVar) for a in axes):
        raise TypeError(f"{op}() needs axis=<reduce_axis> or a tuple of them (made with mc.reduce_axis)")
    value = as_expr(value)
    if value.dtype == "bool":
        raise TypeError(f"cannot {op} conditions; use mc.where(cond, 1, 0)")
    return Reduce(op, value, axes)


def sum(value: ExprLike, axis: Union[ReduceVar, Sequence[ReduceVar]]) -> Reduce:  # noqa: A001
    return _reduce("sum", value, axis)


def max(value: ExprLike, axis: Union[ReduceVar, Sequence[ReduceVar]]) -> Reduce:  # noqa: A001
    return _reduce("max", value, axis)


def min(value: ExprLike, axis: Union[ReduceVar, Sequence[ReduceVar]]) -> Reduce:  # noqa: A001
    return _reduce("min", value, axis)


def exp(x: ExprLike) -> Expr: return call("exp", x)
def log(x: ExprLike) -> Expr: return call("log", x)
def sqrt(x: ExprLike) -> Expr: return call("sqrt", x)
def tanh(x: ExprLike) -> Expr: return call("tanh", x)
def abs(x: ExprLike) -> Expr: return call("abs", x)  # noqa: A001
def maximum(a: ExprLike, b: ExprLike) -> Expr: return binop("max", a, b)
def minimum(a: ExprLike, b: ExprLike) -> Expr: return binop("min", a, b)
def equal(a: ExprLike, b: ExprLike) -> Expr: return binop("eq", a, b)
def not_equal(a: ExprLike, b: ExprLike) -> Expr: return binop("ne", a, b)
def where(cond: ExprLike, a: ExprLike, b: ExprLike) -> Expr: return select(cond, a, b)


def _axis_names(fn: Callable[..., ExprLike], ndim: int) -> list[str]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return [f"i{d}" for d in range(ndim)]
    if builtins.any(p.kind is p.VAR_POSITIONAL for p in params):
        return [f"i{d}" for d in range(ndim)]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) != ndim:
        raise TypeError(f"compute() of a {ndim}-d shape needs a function of {ndim} index variable(s), "
                        f"got one of {len(positional)}")
    return [p.name for p in positional]


def compute(shape: Shape, fn: Callable[..., ExprLike], name: Optional[str] = None,
            axis_names: Optional[Sequence[str]] = None) -> Tensor:
    """A tensor whose element at index ``(i, j, ...)`` is ``fn(i, j, ...)``."""
    dims = _check_shape(shape)
    if not callable(fn):
        raise TypeError("compute() needs a function of the index variables, e.g. lambda i, j: A[j, i]")
    names = list(axis_names) if axis_names is not None else _axis_names(fn, len(dims))
    axes = tuple(Var(n) for n in names)
    body = as_expr(fn(*axes))
    name = _check_name(name, "t")
    _check_body(body, axes, name)
    ranges: dict[Var, Interval] = {a: (0, d - 1) for a, d in zip(axes, dims)}
    if isinstance(body, Reduce):
        ranges.update({r: (0, r.extent - 1) for r in body.axes})
    check_bounds(body, ranges, where=f"the definition of {name}")
    return Tensor(name, dims, body.dtype if body.dtype != "bool" else _bool_body(name), ComputeOp(axes, body))


def _bool_body(name: str) -> str:
    raise TypeError(f"{name} would hold conditions; use mc.where(cond, 1.0, 0.0) to store numbers")


def _check_body(body: Expr, axes: tuple[Var, ...], name: str) -> None:
    top_axes = body.axes if isinstance(body, Reduce) else ()
    allowed = set(axes) | set(top_axes)
    for node in walk(body.value if isinstance(body, Reduce) else body):
        if isinstance(node, Reduce):
            raise ValueError(f"in {name}: a reduction must be the whole body of a compute(); compute "
                             f"'{node.op}(...)' as its own tensor and use that tensor here")
        if isinstance(node, Var) and node not in allowed:
            kind = "reduction axis" if isinstance(node, ReduceVar) else "index variable"
            raise ValueError(f"in {name}: {kind} '{node.name}' is used outside its "
                             f"{'reduction' if isinstance(node, ReduceVar) else 'compute()'}")
    if len(set(map(id, top_axes))) != len(top_axes):
        raise ValueError(f"in {name}: a reduction axis is listed twice")
    if isinstance(body, Reduce) and body.op not in REDUCE_OPS:
        raise ValueError(f"unknown reduction {body.op!r}")


def as_dtype(x: ExprLike, dtype: str) -> Expr:
    """``x`` converted to ``dtype`` (numpy's astype)."""
    return cast(x, dtype)
