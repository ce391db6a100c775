"""The element types minicompiler knows, and numpy's promotion rules over them.

A dtype is a plain string (``"float32"``), so IR nodes stay printable and hashable.
``bool`` exists only for conditions; tensors hold the four numeric types.
"""
from __future__ import annotations

import numpy as np

TENSOR_DTYPES: tuple[str, ...] = ("float32", "float64", "int32", "int64")
ALL_DTYPES: tuple[str, ...] = TENSOR_DTYPES + ("bool",)
INDEX_DTYPE = "int64"


def check_tensor_dtype(dtype: object) -> str:
    """Return the canonical name of a tensor dtype, or raise TypeError naming the supported ones."""
    try:
        name = np.dtype(dtype).name  # type: ignore[arg-type]
    except TypeError:
        name = str(dtype)
    if name not in TENSOR_DTYPES:
        raise TypeError(f"unsupported dtype {dtype!r}: minicompiler supports {', '.join(TENSOR_DTYPES)}")
    return name


def element(dtype: str) -> str:
    """The element type of a (possibly vector) dtype: ``"float32x16"`` → ``"float32"``."""
    return dtype.partition("x")[0]


def lanes(dtype: str) -> int:
    """How many lanes a dtype has: 1 for scalars, 16 for ``"float32x16"``."""
    _, _, n = dtype.partition("x")
    return int(n) if n else 1


def with_lanes(dtype: str, n: int) -> str:
    return element(dtype) if n == 1 else f"{element(dtype)}x{n}"


def is_float(dtype: str) -> bool:
    return element(dtype) in ("float32", "float64")


def is_int(dtype: str) -> bool:
    return element(dtype) in ("int32", "int64")


def promote(a: str, b: str) -> str:
    """numpy's result type for two operands (``bool`` combines only with ``bool``)."""
    if a == b:
        return a
    if "bool" in (a, b):
        raise TypeError(f"cannot combine a condition (bool) with {b if a == 'bool' else a}; use mc.where")
    return np.result_type(a, b).name


def itemsize(dtype: str) -> int:
    """Bytes of one element (of one lane, for a vector dtype)."""
    dtype = element(dtype)
    return 1 if dtype == "bool" else np.dtype(dtype).itemsize
