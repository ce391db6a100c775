"""``minicompiler.einsum`` at the edges of numpy's API: keywords, ``out=``, subscript syntax,
and the interleaved operand/sublist form.

numpy 2.x's default ``np.einsum`` (``optimize=False``) is the oracle: for each call,
minicompiler must return what numpy returns (type, dtype, shape, values, memory order
where asked for) or raise an exception of numpy's class.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minicompiler as mc

Call = Callable[[Any], Any]  # gets the einsum module (numpy or minicompiler) and calls its einsum

F32 = np.arange(6, dtype=np.float32).reshape(2, 3)
F64 = np.arange(6, dtype=np.float64).reshape(2, 3) * 1.5
I32 = np.arange(6, dtype=np.int32).reshape(2, 3)
I64 = np.arange(6, dtype=np.int64).reshape(2, 3)
MAT = np.arange(12, dtype=np.float64).reshape(3, 4) - 4.0


def assert_like_numpy(call: Call) -> None:
    """``call(mc)`` returns what ``call(np)`` returns, or raises an exception of numpy's class."""
    try:
        expected = call(np)
    except Exception as error:  # noqa: BLE001 - whatever numpy raises is the contract
        with pytest.raises(type(error)):
            call(mc)
        return
    result = call(mc)
    assert type(result) is type(expected)
    assert result.dtype == expected.dtype, f"dtype {result.dtype} != numpy's {expected.dtype}"
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-6)


# ---------------------------------------------------------------------------
# dtype= and casting=
# ---------------------------------------------------------------------------

CASTING_CALLS: dict[str, Call] = {
    "f32-to-int64-safe": lambda m: m.einsum("ij->", F32, dtype="int64"),
    "f64-to-f32-safe": lambda m: m.einsum("ij->", F64, dtype="float32"),
    "i64-to-i32-safe": lambda m: m.einsum("ij->j", I64, dtype="int32"),
    "i32-to-f32-safe": lambda m: m.einsum("ij->", I32, dtype="float32"),
    "f32-to-f64-safe": lambda m: m.einsum("ij->i", F32, dtype="float64"),
    "i64-to-f64-safe": lambda m: m.einsum("ij->", I64, dtype="float64"),
    "f64-to-f32-same_kind": lambda m: m.einsum("ij->", F64, dtype="float32", casting="same_kind"),
    "f64-to-i32-same_kind": lambda m: m.einsum("ij->", F64, dtype="int32", casting="same_kind"),
    "f64-to-i32-unsafe": lambda m: m.einsum("ij->j", F64, dtype="int32", casting="unsafe"),
    "i32-to-f32-same_kind": lambda m: m.einsum("ij->", I32, dtype="float32", casting="same_kind"),
    "f32-to-f32-no": lambda m: m.einsum("ij->", F32, dtype="float32", casting="no"),
    "f32-to-f64-no": lambda m: m.einsum("ij->", F32, dtype="float64", casting="no"),
    "f32-to-f64-equiv": lambda m: m.einsum("ij->", F32, dtype="float64", casting="equiv"),
    # without dtype=, the operands are cast to their common type, under the same rule
    "mixed-no-dtype-no": lambda m: m.einsum("ij,ij->", F32, F64, casting="no"),
    "mixed-no-dtype-equiv": lambda m: m.einsum("ij,ij->", I32, F32, casting="equiv"),
    "mixed-no-dtype-safe": lambda m: m.einsum("ij,ij->", I32, F32),
    "same-no-dtype-no": lambda m: m.einsum("ij,ij->", F32, F32, casting="no"),
    "byteswapped-no": lambda m: m.einsum("ij->", F64.astype(">f8"), casting="no"),
    "byteswapped-equiv": lambda m: m.einsum("ij->", F64.astype(">f8"), casting="equiv"),
    # a Python float is a float64 operand: it does not cast safely to float32
    "python-float-to-f32": lambda m: m.einsum(",ij->ij", 2.0, F32, dtype="float32"),
    "dtype-python-float": lambda m: m.einsum("ij->", I32, dtype=float),
    "dtype-not-understood": lambda m: m.einsum("ij->", F32, dtype="bogus"),
    # casting= itself: a str (or bytes) naming a rule, exactly
    "casting-bogus": lambda m: m.einsum("ij->", F32, casting="bogus"),
    "casting-upper-case": lambda m: m.einsum("ij->", F32, casting="SAFE"),
    "casting-none": lambda m: m.einsum("ij->", F32, casting=None),
    "casting-int": lambda m: m.einsum("ij->", F32, casting=1),
    "casting-bytes": lambda m: m.einsum("ij->", F64, dtype="int64", casting=b"unsafe"),
    # numpy checks subscripts and shapes before casting
    "bad-subscripts-and-cast": lambda m: m.einsum("i$", F32, dtype="int64"),
    "bad-shapes-and-cast": lambda m: m.einsum("ij,jk", F32, F32, dtype="int64"),
    "bad-casting-and-subscripts": lambda m: m.einsum("i$", F32, casting="x"),
}


@pytest.mark.parametrize("call", CASTING_CALLS.values(), ids=CASTING_CALLS.keys())
def test_dtype_and_casting_follow_numpy(call: Call) -> None:
    assert_like_numpy(call)


def test_casting_applies_to_placeholders_too() -> None:
    A = mc.placeholder((2, 3), "float32")
    with pytest.raises(TypeError):
        mc.einsum("ij->", A, dtype="int64")  # numpy: float32 -> int64 is not 'safe'
    assert mc.einsum("ij->", A, dtype="int64", casting="unsafe").dtype == "int64"
    with pytest.raises(ValueError):
        mc.einsum("ij->", A, casting="bogus")


def test_unknown_keyword_is_a_type_error_like_numpy() -> None:
    for module in (np, mc):
        with pytest.raises(TypeError):
            module.einsum("ij->", F32, bogus=1)


# ---------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------

def read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


OUT_CALLS: dict[str, Call] = {
    "right-shape": lambda m: m.einsum("ij->i", F32, out=np.zeros(2, np.float32)),
    "wrong-length": lambda m: m.einsum("ij->i", F32, out=np.zeros(3, np.float32)),
    "broadcastable-length-1": lambda m: m.einsum("ij->i", F32, out=np.zeros(1, np.float32)),
    "extra-dimension": lambda m: m.einsum("ij->i", F32, out=np.zeros((2, 1), np.float32)),
    "broadcast-filled-rows": lambda m: m.einsum("ij->i", F32, out=np.zeros((3, 2), np.float32)),
    "broadcast-filled-scalar": lambda m: m.einsum("ij->", F32, out=np.zeros((2, 2), np.float32)),
    "1-d-for-scalar": lambda m: m.einsum("ij->", F32, out=np.zeros(1, np.float32)),
    "0-d-for-scalar": lambda m: m.einsum("ij->", F32, out=np.zeros((), np.float32)),
    "strided": lambda m: m.einsum("ij,jk->ik", F64, MAT, out=np.zeros((2, 8))[:, ::2]),
    "list": lambda m: m.einsum("ij->i", F32, out=[0.0, 0.0]),
    "read-only": lambda m: m.einsum("ij->i", F32, out=read_only(np.zeros(2, np.float32))),
    "wrong-shape-and-dtype": lambda m: m.einsum("ij->i", F32, out=np.zeros(3, np.int64)),
    # out's dtype: the result must cast to it under `casting`
    "f64-into-f32": lambda m: m.einsum("ij->i", F64, out=np.zeros(2, np.float32)),
    "f64-into-f32-same_kind": lambda m: m.einsum("ij->i", F64, out=np.zeros(2, np.float32), casting="same_kind"),
    "f64-into-i64": lambda m: m.einsum("ij->i", F64, out=np.zeros(2, np.int64)),
    "f64-into-i64-unsafe": lambda m: m.einsum("ij->i", F64, out=np.zeros(2, np.int64), casting="unsafe"),
    "i64-into-i32": lambda m: m.einsum("ij->i", I64, out=np.zeros(2, np.int32)),
    "i32-into-f64": lambda m: m.einsum("ij->i", I32, out=np.zeros(2, np.float64)),
    "i32-into-f32": lambda m: m.einsum("ij->i", I32, out=np.zeros(2, np.float32)),  # common type is float64
    "f32-into-f64-no": lambda m: m.einsum("ij->i", F32, out=np.zeros(2, np.float64), casting="no"),
    "dtype-f64-into-f32": lambda m: m.einsum("ij->i", F32, dtype="float64", out=np.zeros(2, np.float32)),
    "dtype-f32-into-f64-unsafe": lambda m: m.einsum("ij->i", F64, dtype="float32", out=np.zeros(2),
                                                    casting="unsafe"),
    "into-float16-unsafe": lambda m: m.einsum("ij->i", F32, out=np.zeros(2, np.float16), casting="unsafe"),
    "into-float16-safe": lambda m: m.einsum("ij->i", F32, out=np.zeros(2, np.float16)),
    "into-byteswapped": lambda m: m.einsum("ij->i", F32, out=np.zeros(2, ">f4")),
    "into-byteswapped-no": lambda m: m.einsum("ij->i", F32, out=np.zeros(2, ">f4"), casting="no"),
}


@pytest.mark.parametrize("call", OUT_CALLS.values(), ids=OUT_CALLS.keys())
def test_out_follows_numpy(call: Call) -> None:
    assert_like_numpy(call)


def test_out_is_filled_and_returned() -> None:
    out = np.full((2, 4), -1.0)
    assert mc.einsum("ij,jk->ik", F64, MAT, out=out) is out
    np.testing.assert_allclose(out, F64 @ MAT)
    scalar_out = np.zeros(())
    assert mc.einsum("ij->", F64, out=scalar_out) is scalar_out  # a 0-d out is returned, not a scalar
    assert scalar_out == F64.sum()


def test_wrong_out_shape_is_caught_on_the_cached_path_too() -> None:
    """The plan is cached per signature, out's dtype included but not its shape."""
    mc.einsum("ij->i", F32, out=np.zeros(2, np.float32))
    with pytest.raises(ValueError):
        mc.einsum("ij->i", F32, out=np.zeros(3, np.float32))


def test_float64_out_makes_float32_operands_sum_in_float64() -> None:
    """numpy computes in the common type of operands and out: here 1e8 + 1 - 1e8 + 1 is 2, not float32's 1."""
    a = np.array([1e8, 1.0, -1e8, 1.0], np.float32)
    expected = np.einsum("i->", a, out=np.zeros(()))
    assert expected == 2.0
    assert mc.einsum("i->", a, out=np.zeros(())) == expected


def test_out_with_placeholders_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        mc.einsum("ij->i", mc.placeholder((2, 3)), out=np.zeros(2, np.float32))


# ---------------------------------------------------------------------------
# Subscript syntax: spaces, bytes
# ---------------------------------------------------------------------------

SPACED = ["ij , jk -> ik", "i j,jk->ik", " ij,jk->ik ", "ij,jk-> ik", "ij,jk ->ik", "ij,jk->i k",
          "ij,jk-> ", "... ij,jk", " ...ij, jk->... ik",
          "ij,jk- >ik", "ij,jk-\t>ik", ". . .ij,jk", ".. .ij,jk", "ij,jk->. ..ik", "ij,\tjk->ik", "ij,jk->ik\n"]


@pytest.mark.parametrize("subscripts", SPACED)
def test_spaces_in_subscripts_like_numpy(subscripts: str) -> None:
    """numpy skips spaces between labels but not inside '->' or '...' (and no other whitespace)."""
    assert_like_numpy(lambda m: m.einsum(subscripts, F64, MAT))


#: Pieces of subscripts strings, sized so that most random strings reach numpy's parser.
PIECES = ["i", "j", "k", " ", "...", ".", "-", ">", "->", ",", "- >", ". . ."]
LABEL_SIZES = {"i": 2, "j": 3, "k": 5}


def operand_shapes(text: str) -> list[tuple[int, ...]]:
    """Shapes that fit each operand term of ``text``: a label's size, and (4, 4) for '...'."""
    shapes = []
    for term in text.split("->")[0].split(","):
        term = term.replace("...", "\0")
        shapes.append(((4, 4) if "\0" in term else ()) + tuple(LABEL_SIZES[c] for c in term if c in LABEL_SIZES))
    return shapes


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=9).map("".join))
def test_random_subscripts_parse_like_numpy(subscripts: str) -> None:
    """Symbolic einsum (no compiling) gives numpy's output shape, or a ValueError where numpy does."""
    shapes = operand_shapes(subscripts)
    try:
        expected = np.einsum(subscripts, *[np.ones(s) for s in shapes]).shape
    except ValueError:
        with pytest.raises(ValueError):
            mc.einsum(subscripts, *[mc.placeholder(s) for s in shapes])
        return
    assert tuple(mc.einsum(subscripts, *[mc.placeholder(s) for s in shapes]).shape) == expected


@pytest.mark.parametrize("subscripts", [b"ij,jk->ik", np.bytes_(b"ij,jk"), b"ij , jk", b"ij,jk- >ik"])
def test_bytes_subscripts_like_numpy(subscripts: bytes) -> None:
    assert_like_numpy(lambda m: m.einsum(subscripts, F64, MAT))


def test_bytes_subscripts_on_placeholders() -> None:
    out = mc.einsum(b"ij,jk->ik", mc.placeholder((2, 3)), mc.placeholder((3, 4)))
    assert tuple(out.shape) == (2, 4)


# ---------------------------------------------------------------------------
# The interleaved form: einsum(op0, sublist0, op1, sublist1, ..., [output sublist])
# ---------------------------------------------------------------------------

BATCH = np.arange(24, dtype=np.float64).reshape(2, 3, 4)

SUBLIST_CALLS: dict[str, Call] = {
    "matmul": lambda m: m.einsum(F64, [0, 1], MAT, [1, 2], [0, 2]),
    "implicit-output": lambda m: m.einsum(F64, [0, 1], MAT, [1, 2]),
    "implicit-output-upper-before-lower": lambda m: m.einsum(F64, [26, 1], MAT, [1, 0]),
    "labels-0-and-51": lambda m: m.einsum(F64, [51, 0], [0, 51]),
    "ellipsis": lambda m: m.einsum(BATCH, [Ellipsis, 1, 2], MAT.T, [2, 3], [Ellipsis, 1, 3]),
    "ellipsis-implicit-output": lambda m: m.einsum(BATCH, [..., 2], MAT, [1, 3]),
    "tuples": lambda m: m.einsum(F64, (0, 1), MAT, (1, 2), (0, 2)),
    "numpy-ints": lambda m: m.einsum(F64, [np.int64(0), np.int8(1)], MAT, np.array([1, 2])),
    "scalar-output": lambda m: m.einsum(F64, [0, 1], []),
    "0-d-operand": lambda m: m.einsum(3.0, [], F64, [0, 1], [1, 0]),
    "list-operand": lambda m: m.einsum([[1, 2], [3, 4]], [0, 1], [1]),
    "with-keywords": lambda m: m.einsum(F64, [0, 1], [1], dtype="float32", casting="same_kind"),
    "with-out": lambda m: m.einsum(F64, [0, 1], [1], out=np.zeros(3)),
    "trace": lambda m: m.einsum(MAT[:3, :3], [7, 7]),
    # errors, numpy's classes
    "label-52": lambda m: m.einsum(F64, [0, 52]),
    "label-negative": lambda m: m.einsum(F64, [0, -1]),
    "bool-label": lambda m: m.einsum(F64, [True, False]),
    "float-label": lambda m: m.einsum(F64, [0.0, 1]),
    "str-labels": lambda m: m.einsum(F64, ["i", "j"]),
    "str-sublist": lambda m: m.einsum(F64, "ij"),
    "int-sublist": lambda m: m.einsum(F64, 0),
    "no-sublist": lambda m: m.einsum(F64),
    "no-arguments": lambda m: m.einsum(),
    "two-ellipses": lambda m: m.einsum(F64, [..., ...]),
    "output-label-not-in-inputs": lambda m: m.einsum(F64, [0, 1], [5]),
    "output-label-repeated": lambda m: m.einsum(F64, [0, 1], [0, 0]),
    "label-size-mismatch": lambda m: m.einsum(F64, [0, 1], MAT, [0, 1]),
}


@pytest.mark.parametrize("call", SUBLIST_CALLS.values(), ids=SUBLIST_CALLS.keys())
def test_interleaved_sublist_form_like_numpy(call: Call) -> None:
    assert_like_numpy(call)


def test_interleaved_sublist_form_on_placeholders() -> None:
    A, B = mc.placeholder((2, 3), "float64"), mc.placeholder((3, 4), "float64")
    explicit = mc.einsum(A, [0, 1], B, [1, 2], [0, 2])
    implicit = mc.einsum(A, [..., 1], B, [1, 2])
    for tensor in (explicit, implicit):
        assert tuple(tensor.shape) == (2, 4)
        np.testing.assert_allclose(mc.build(tensor, inputs=[A, B])(F64, MAT), F64 @ MAT)


# ---------------------------------------------------------------------------
# order=
# ---------------------------------------------------------------------------

ORDER_CALLS: dict[str, tuple[Call, ...]] = {
    "F": (lambda m: m.einsum("ij,jk->ik", F64, MAT, order="F"),),
    "f": (lambda m: m.einsum("ij,jk->ik", F64, MAT, order="f"),),
    "bytes-F": (lambda m: m.einsum("ij,jk->ik", F64, MAT, order=b"F"),),
    "C-on-fortran-operands": (lambda m: m.einsum("ij,jk->ik", np.asfortranarray(F64), np.asfortranarray(MAT),
                                                 order="C"),),
    "A-on-C-operands": (lambda m: m.einsum("ij,jk->ik", F64, MAT, order="A"),),
    "A-on-fortran-operands": (lambda m: m.einsum("ij,jk->ik", np.asfortranarray(F64), np.asfortranarray(MAT),
                                                 order="A"),),
    "A-on-mixed-operands": (lambda m: m.einsum("ij,jk->ik", np.asfortranarray(F64), MAT, order="A"),),
}


@pytest.mark.parametrize("call", [c for (c,) in ORDER_CALLS.values()], ids=ORDER_CALLS.keys())
def test_order_gives_numpys_memory_order(call: Call) -> None:
    expected, result = call(np), call(mc)
    np.testing.assert_allclose(result, expected)
    assert result.flags.c_contiguous == expected.flags.c_contiguous
    assert result.flags.f_contiguous == expected.flags.f_contiguous


@pytest.mark.parametrize("order", ["X", "FORTRAN", "", 1, None])
def test_order_values_are_checked_like_numpy(order: Any) -> None:
    assert_like_numpy(lambda m: m.einsum("ij,jk->ik", F64, MAT, order=order))


def test_calls_after_keyword_errors_still_work() -> None:
    """A rejected call caches nothing: the same signature with valid keywords still runs."""
    for _ in range(2):
        with pytest.raises(TypeError):
            mc.einsum("ij->j", I64, dtype="int32")
    np.testing.assert_array_equal(mc.einsum("ij->j", I64, dtype="int32", casting="same_kind"),
                                  np.einsum("ij->j", I64, dtype="int32", casting="same_kind"))
