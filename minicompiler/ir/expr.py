"""Expressions: the value language shared by tensor definitions and the loop-nest IR.

Every node is a small frozen dataclass. ``Var`` is compared by identity (two loops
may both be called ``i``); every other node compares structurally. Python operators
build nodes, so ``A[i, k] * B[k, j] + 1`` is an expression tree, never a number.
Constructors (``binop``, ``call``, ``cast``, ``select``) type-check and insert the
casts numpy's promotion rules call for, so every node carries a correct ``dtype``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from ..dtypes import ALL_DTYPES, INDEX_DTYPE, is_float, is_int, lanes, promote, with_lanes

if TYPE_CHECKING:
    from .tensor import Tensor

ExprLike = Union["Expr", int, float, bool]

ARITH_OPS = ("add", "sub", "mul", "div", "floordiv", "mod", "max", "min")
COMPARE_OPS = ("lt", "le", "gt", "ge", "eq", "ne")
LOGIC_OPS = ("and", "or")
MATH_FUNCS = ("exp", "log", "sqrt", "tanh", "abs", "not")
REDUCE_OPS = ("sum", "max", "min")


class Expr:
    """Base of all expression nodes; carries the operator sugar."""

    dtype: str

    def __add__(self, other: ExprLike) -> Expr: return binop("add", self, other)
    def __radd__(self, other: ExprLike) -> Expr: return binop("add", other, self)
    def __sub__(self, other: ExprLike) -> Expr: return binop("sub", self, other)
    def __rsub__(self, other: ExprLike) -> Expr: return binop("sub", other, self)
    def __mul__(self, other: ExprLike) -> Expr: return binop("mul", self, other)
    def __rmul__(self, other: ExprLike) -> Expr: return binop("mul", other, self)
    def __truediv__(self, other: ExprLike) -> Expr: return binop("div", self, other)
    def __rtruediv__(self, other: ExprLike) -> Expr: return binop("div", other, self)
    def __floordiv__(self, other: ExprLike) -> Expr: return binop("floordiv", self, other)
    def __rfloordiv__(self, other: ExprLike) -> Expr: return binop("floordiv", other, self)
    def __mod__(self, other: ExprLike) -> Expr: return binop("mod", self, other)
    def __rmod__(self, other: ExprLike) -> Expr: return binop("mod", other, self)
    def __neg__(self) -> Expr: return binop("sub", const(0, self.dtype), self)
    def __lt__(self, other: ExprLike) -> Expr: return binop("lt", self, other)
    def __le__(self, other: ExprLike) -> Expr: return binop("le", self, other)
    def __gt__(self, other: ExprLike) -> Expr: return binop("gt", self, other)
    def __ge__(self, other: ExprLike) -> Expr: return binop("ge", self, other)
    def __and__(self, other: ExprLike) -> Expr: return binop("and", self, other)
    def __rand__(self, other: ExprLike) -> Expr: return binop("and", other, self)
    def __or__(self, other: ExprLike) -> Expr: return binop("or", self, other)
    def __ror__(self, other: ExprLike) -> Expr: return binop("or", other, self)
    def __invert__(self) -> Expr: return call("not", self)

    def astype(self, dtype: str) -> Expr:
        return cast(self, dtype)

    def __bool__(self) -> bool:
        raise TypeError("a symbolic expression has no truth value: use mc.where(cond, a, b), & and | instead "
                        "of if/and/or, and mc.equal(a, b) instead of ==")

    def __str__(self) -> str:
        from .printer import format_expr
        return format_expr(self)


@dataclass(frozen=True, eq=False)
class Var(Expr):
    """A named integer variable: a loop index or a tensor-definition axis. Compared by identity."""

    name: str
    dtype: str = INDEX_DTYPE

    def __repr__(self) -> str:
        return f"Var({self.name})"


@dataclass(frozen=True, eq=False)
class ReduceVar(Var):
    """A reduction axis of a tensor definition: it ranges over ``range(extent)``."""

    extent: int = 0

    def __repr__(self) -> str:
        return f"ReduceVar({self.name}, {self.extent})"


@dataclass(frozen=True)
class Const(Expr):
    value: Union[int, float, bool]
    dtype: str


@dataclass(frozen=True)
class BinOp(Expr):
    op: str
    a: Expr
    b: Expr
    dtype: str


@dataclass(frozen=True)
class Call(Expr):
    """An elementwise math function (``exp``, ``log``, ``sqrt``, ``tanh``, ``abs``, ``not``)."""

    fn: str
    args: tuple[Expr, ...]
    dtype: str


@dataclass(frozen=True)
class Select(Expr):
    """``true_value if cond else false_value``; the branch not taken is never evaluated."""

    cond: Expr
    true_value: Expr
    false_value: Expr
    dtype: str


@dataclass(frozen=True)
class Cast(Expr):
    dtype: str
    value: Expr


@dataclass(frozen=True)
class Load(Expr):
    """``tensor[indices]``; vector indices (after vectorization) make it a vector load or a gather."""

    tensor: "Tensor"
    indices: tuple[Expr, ...]

    @property
    def dtype(self) -> str:  # type: ignore[override]
        n = max((lanes(i.dtype) for i in self.indices), default=1)
        return with_lanes(self.tensor.dtype, n)


@dataclass(frozen=True)
class Ramp(Expr):
    """The vector ``base, base + stride, ..., base + (lanes - 1) * stride``: a vectorized loop index."""

    base: Expr
    stride: int
    lanes: int

    @property
    def dtype(self) -> str:  # type: ignore[override]
        return with_lanes(self.base.dtype, self.lanes)


@dataclass(frozen=True)
class Broadcast(Expr):
    """The scalar ``value`` in every lane of a vector."""

    value: Expr
    lanes: int

    @property
    def dtype(self) -> str:  # type: ignore[override]
        return with_lanes(self.value.dtype, self.lanes)


@dataclass(frozen=True)
class Reduce(Expr):
    """``op`` of ``value`` over every point of ``axes``; only the whole body of a tensor definition."""

    op: str
    value: Expr
    axes: tuple[ReduceVar, ...]

    @property
    def dtype(self) -> str:  # type: ignore[override]
        return self.value.dtype


# ----------------------------------------------------------------------------------------------
# Constructors: they check types and apply numpy's promotion, so nodes are always well-typed.
# ----------------------------------------------------------------------------------------------

def const(value: Union[int, float, bool], dtype: str) -> Const:
    if dtype not in ALL_DTYPES:
        raise TypeError(f"unsupported dtype {dtype!r}")
    if dtype == "bool":
        return Const(bool(value), dtype)
    if is_int(dtype):
        if isinstance(value, float) and not value.is_integer():
            raise TypeError(f"{value!r} is not an integer constant of type {dtype}")
        return Const(int(value), dtype)
    return Const(float(value), dtype)


def as_expr(value: ExprLike, like: str | None = None) -> Expr:
    """Wrap a Python scalar as a constant; its type follows ``like`` the way numpy treats scalars."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool):
        return const(value, "bool")
    if isinstance(value, int):
        return const(value, like if like is not None and like != "bool" else INDEX_DTYPE)
    if isinstance(value, float):
        return const(value, like if like is not None and is_float(like) else "float64")
    if hasattr(value, "dtype") and getattr(value, "shape", None) == ():  # a numpy scalar
        from ..dtypes import check_tensor_dtype
        return const(value.item(), check_tensor_dtype(value.dtype))  # type: ignore[union-attr]
    raise TypeError(f"cannot use {type(value).__name__} {value!r} in a tensor expression")


def cast(value: ExprLike, dtype: str) -> Expr:
    from ..dtypes import check_tensor_dtype
    dtype = dtype if dtype == "bool" else check_tensor_dtype(dtype)
    value = as_expr(value)
    if value.dtype == dtype:
        return value
    if isinstance(value, Const):
        return const(value.value, dtype) if not (is_int(dtype) and isinstance(value.value, float)) \
            else const(math.trunc(value.value), dtype)
    return Cast(dtype, value)


def _unify(a: ExprLike, b: ExprLike) -> tuple[Expr, Expr]:
    """Wrap scalars after the other operand's type, then cast both to numpy's common type."""
    if not isinstance(a, Expr) and not isinstance(b, Expr):  # two Python numbers: numpy's defaults
        a, b = as_expr(a), as_expr(b)
    if isinstance(a, Expr):
        b = as_expr(b, a.dtype)
    a = as_expr(a, b.dtype)  # type: ignore[union-attr]
    assert isinstance(b, Expr)
    common = promote(a.dtype, b.dtype)
    return cast(a, common), cast(b, common)


def binop(op: str, a: ExprLike, b: ExprLike) -> Expr:
    a, b = _unify(a, b)
    if op in LOGIC_OPS:
        if a.dtype != "bool":
            raise TypeError(f"'{op}' combines conditions, got {a.dtype}: compare values first (x > 0)")
        return BinOp(op, a, b, "bool")
    if a.dtype == "bool":
        raise TypeError(f"cannot apply '{op}' to conditions; use mc.where(cond, 1, 0) to get numbers")
    if op in COMPARE_OPS:
        return BinOp(op, a, b, "bool")
    if op == "div" and is_int(a.dtype):  # true division of integers gives float64, as in numpy
        a, b = cast(a, "float64"), cast(b, "float64")
    if op not in ARITH_OPS:
        raise ValueError(f"unknown operator {op!r}")
    return BinOp(op, a, b, a.dtype)


def call(fn: str, *args: ExprLike) -> Expr:
    exprs = [as_expr(x) for x in args]
    if fn == "not":
        if exprs[0].dtype != "bool":
            raise TypeError("~ negates a condition; got a " + exprs[0].dtype + " value")
        return Call(fn, tuple(exprs), "bool")
    if fn not in MATH_FUNCS:
        raise ValueError(f"unknown function {fn!r}")
    (x,) = exprs
    if x.dtype == "bool":
        raise TypeError(f"{fn} takes a number, not a condition")
    if fn != "abs" and is_int(x.dtype):  # numpy: exp/log/sqrt/tanh of ints give float64
        x = cast(x, "float64")
    return Call(fn, (x,), x.dtype)


def select(cond: ExprLike, true_value: ExprLike, false_value: ExprLike) -> Expr:
    cond = as_expr(cond)
    if cond.dtype != "bool":
        raise TypeError(f"the condition of where() must be a comparison, got a {cond.dtype} value")
    t, f = _unify(true_value, false_value)
    return Select(cond, t, f, t.dtype)
