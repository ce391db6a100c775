"""Readable Python-like text for expressions, statements and functions.

The aim is a listing a student can follow line by line::

    def matmul(A: float32[64, 32], B: float32[32, 48], C: float32[64, 48]):
      for i in range(64):
        for j in range(48):
          C[i, j] = 0.0
          for k in range(32):
            C[i, j] += A[i, k] * B[k, j]
"""
from __future__ import annotations

from .expr import BinOp, Broadcast, Call, Cast, Const, Expr, Load, Ramp, Reduce, Select, Var
from .stmt import Accumulate, Alloc, For, Function, If, Let, Prefetch, Seq, Stmt, Store

_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%",
          "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "and": "and", "or": "or"}
# Python's precedence, higher binds tighter.
_PRECEDENCE = {"or": 1, "and": 2, "lt": 4, "le": 4, "gt": 4, "ge": 4, "eq": 4, "ne": 4,
               "add": 6, "sub": 6, "mul": 7, "div": 7, "floordiv": 7, "mod": 7}
_ATOM = 10


def _const(c: Const) -> str:
    if c.dtype == "bool":
        return "True" if c.value else "False"
    if isinstance(c.value, float):
        return repr(c.value)
    return str(c.value)


def _expr(e: Expr) -> tuple[str, int]:
    """Text of ``e`` and the precedence of its outermost operator."""
    if isinstance(e, Var):
        return e.name, _ATOM
    if isinstance(e, Const):
        text = _const(e)
        return text, (_ATOM if not text.startswith("-") else 8)
    if isinstance(e, Load):
        return f"{e.tensor.name}[{', '.join(format_expr(i) for i in e.indices)}]" if e.indices \
            else f"{e.tensor.name}[()]", _ATOM
    if isinstance(e, BinOp):
        if e.op in ("max", "min"):
            return f"{e.op}({format_expr(e.a)}, {format_expr(e.b)})", _ATOM
        p = _PRECEDENCE[e.op]
        a, pa = _expr(e.a)
        b, pb = _expr(e.b)
        if pa < p:
            a = f"({a})"
        same_associative = e.op in ("add", "mul") and isinstance(e.b, BinOp) and e.b.op == e.op
        if pb < p or (pb == p and not same_associative):
            b = f"({b})"
        return f"{a} {_INFIX[e.op]} {b}", p
    if isinstance(e, Call):
        if e.fn == "not":
            inner, p = _expr(e.args[0])
            return f"not {inner if p >= _ATOM else '(' + inner + ')'}", 3
        return f"{e.fn}({', '.join(format_expr(a) for a in e.args)})", _ATOM
    if isinstance(e, Select):
        return (f"where({format_expr(e.cond)}, {format_expr(e.true_value)}, "
                f"{format_expr(e.false_value)})"), _ATOM
    if isinstance(e, Cast):
        return f"{e.dtype}({format_expr(e.value)})", _ATOM
    if isinstance(e, Ramp):
        return f"ramp({format_expr(e.base)}, {e.stride}, {e.lanes})", _ATOM
    if isinstance(e, Broadcast):
        return f"broadcast({format_expr(e.value)}, {e.lanes})", _ATOM
    if isinstance(e, Reduce):
        axes = ", ".join(f"{a.name}<{a.extent}>" for a in e.axes)  # type: ignore[attr-defined]
        return f"{e.op}({format_expr(e.value)}, over=[{axes}])", _ATOM
    raise TypeError(f"cannot print {type(e).__name__}")


def format_expr(e: Expr) -> str:
    return _expr(e)[0]


def _target(tensor_name: str, indices: tuple[Expr, ...]) -> str:
    return f"{tensor_name}[{', '.join(format_expr(i) for i in indices)}]" if indices else f"{tensor_name}[()]"


def _lines(s: Stmt, depth: int, out: list[str]) -> None:
    pad = "  " * depth
    if isinstance(s, Seq):
        for child in s.stmts:
            _lines(child, depth, out)
    elif isinstance(s, For):
        loop = "range" if s.kind == "serial" else s.kind
        out.append(f"{pad}for {s.var.name} in {loop}({format_expr(s.extent)}):")
        _lines(s.body, depth + 1, out)
    elif isinstance(s, Store):
        out.append(f"{pad}{_target(s.tensor.name, s.indices)} = {format_expr(s.value)}")
    elif isinstance(s, Prefetch):
        out.append(f"{pad}prefetch({_target(s.tensor.name, s.indices)})")
    elif isinstance(s, Accumulate):
        target = _target(s.tensor.name, s.indices)
        if s.op == "sum":
            out.append(f"{pad}{target} += {format_expr(s.value)}")
        else:
            out.append(f"{pad}{target} = {s.op}({target}, {format_expr(s.value)})")
    elif isinstance(s, Alloc):
        t = s.tensor
        out.append(f"{pad}{t.name} = empty({list(t.shape)}, {t.dtype})")
        _lines(s.body, depth, out)
    elif isinstance(s, If):
        out.append(f"{pad}if {format_expr(s.cond)}:")
        _lines(s.then_body, depth + 1, out)
        if s.else_body is not None:
            out.append(f"{pad}else:")
            _lines(s.else_body, depth + 1, out)
    elif isinstance(s, Let):
        out.append(f"{pad}{s.var.name} = {format_expr(s.value)}")
        _lines(s.body, depth, out)
    else:
        raise TypeError(f"cannot print {type(s).__name__}")


def format_stmt(s: Stmt, depth: int = 0) -> str:
    out: list[str] = []
    _lines(s, depth, out)
    return "\n".join(out)


def format_function(f: Function) -> str:
    params = ", ".join(f"{t.name}: {t.dtype}[{', '.join(map(str, t.shape))}]" for t in f.params)
    return f"def {f.name}({params}):\n{format_stmt(f.body, 1)}"
