"""Every user mistake the frontend and compiled kernels must refuse with a Python exception.

Mistakes fall into three groups:

* definitions: reads that may leave a tensor (ValueError when the tensor is defined or
  built, before any machine code runs), misplaced reductions and reduction axes
  (ValueError), index functions of the wrong arity, unsupported dtypes (TypeError) and
  bad shapes (ValueError);
* kernel calls: the wrong number of arguments or non-arrays (TypeError), wrong shapes
  (ValueError), wrong dtypes (TypeError), non-C-contiguous arrays (ValueError that
  suggests ``np.ascontiguousarray``);
* type mixing: float32 + float64 either follows numpy's promotion or is a TypeError.

All checks run in-process, so a segfault instead of an exception fails the whole run.
Each "refused" case has an accepted twin nearby to show the check is not over-eager.
"""
from __future__ import annotations

import numpy as np
import pytest

import minicompiler as mc

N = 8  # extent of the 1-D tensors below


def define_and_build(shape: tuple[int, ...], fn, name: str = "out") -> mc.Kernel:  # noqa: ANN001
    """compute() then build(): a bad definition may be refused by either step."""
    return mc.build(mc.compute(shape, fn, name=name))


# ---------------------------------------------------------------------- out-of-bounds index maps

A = mc.placeholder((N,), name="A")
M = mc.placeholder((N, 5), name="M")
R_FULL = mc.reduce_axis(N, name="r_full")
R3 = mc.reduce_axis(3, name="r3")

# (description, output shape, index function): each may read outside A (length 8) or M (8x5).
OUT_OF_BOUNDS = [
    ("i + 1 over the full extent", (N,), lambda i: A[i + 1]),
    ("i - 1 unguarded", (N,), lambda i: A[i - 1]),
    ("2 * i too big", (N,), lambda i: A[2 * i]),
    ("2 * i + 1 with one element too few", (N // 2 + 1,), lambda i: A[2 * i + 1]),
    ("i // 2 + 5", (N,), lambda i: A[i // 2 + 5]),
    ("i % 3 + 6", (N,), lambda i: A[i % 3 + 6]),
    ("n - i (off by one)", (N,), lambda i: A[N - i]),
    ("constant index == extent", (3,), lambda i: A[N]),
    ("output longer than the input", (N + 1,), lambda i: A[i]),
    ("i + r with a window too long", (N - 1,), lambda i: mc.sum(A[i + R3], axis=R3)),
    ("reduce axis shifted past the end", (1,), lambda i: mc.sum(A[R_FULL + 1], axis=R_FULL)),
    ("second dimension j + 1", (N, 5), lambda i, j: M[i, j + 1]),
    ("dimensions swapped", (5, N), lambda i, j: M[j, i] + M[i, j]),
    ("guard on the wrong side", (N,), lambda i: mc.where(i < N - 1, A[i - 1], 0.0)),
    ("guard that is always true", (N,), lambda i: mc.where(i >= 0, A[i + 1], 0.0)),
    ("read in the taken branch of a guard", (N,), lambda i: mc.where(i + 1 < N, 0.0, A[i + 1])),
]


@pytest.mark.parametrize("shape,fn", [(s, f) for _, s, f in OUT_OF_BOUNDS],
                         ids=[d for d, _, _ in OUT_OF_BOUNDS])
def test_reads_that_may_leave_the_tensor_are_refused(shape: tuple[int, ...], fn) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        define_and_build(shape, fn)


def test_out_of_bounds_read_of_a_computed_stage_is_refused() -> None:
    doubled = mc.compute((N,), lambda i: A[i] * 2.0, name="doubled")
    with pytest.raises(ValueError):
        define_and_build((N,), lambda i: doubled[i + 1] - doubled[i])


def test_in_bounds_neighbour_reads_are_accepted() -> None:
    """The twins of the refused cases: same reads, with ranges or guards that keep them inside."""
    a = np.arange(N, dtype=np.float32)
    np.testing.assert_array_equal(define_and_build((N - 1,), lambda i: A[i + 1])(a), a[1:])
    np.testing.assert_array_equal(define_and_build((N // 2,), lambda i: A[2 * i + 1])(a), a[1::2])
    np.testing.assert_array_equal(define_and_build((N,), lambda i: A[N - 1 - i])(a), a[::-1])
    np.testing.assert_array_equal(define_and_build((N,), lambda i: mc.where(i >= 1, A[i - 1], 0.0))(a),
                                  np.concatenate([[0.0], a[:-1]]).astype(np.float32))
    np.testing.assert_array_equal(define_and_build((N,), lambda i: mc.where(i + 1 < N, A[i + 1], -1.0))(a),
                                  np.concatenate([a[1:], [-1.0]]).astype(np.float32))


# -------------------------------------------------------------------------- misplaced reductions

X = mc.placeholder((4, 6), name="X")
R = mc.reduce_axis(6, name="r")
R2 = mc.reduce_axis(4, name="r2")

REDUCTION_NOT_AT_TOP = [
    ("scaled", lambda i: mc.sum(X[i, R], axis=R) * 2),
    ("offset", lambda i: 1.0 + mc.sum(X[i, R], axis=R)),
    ("inside a function", lambda i: mc.exp(mc.max(X[i, R], axis=R))),
    ("inside where", lambda i: mc.where(X[i, 0] > 0, mc.sum(X[i, R], axis=R), 0.0)),
    ("two reductions combined", lambda i: mc.sum(X[i, R], axis=R) / mc.max(X[i, R], axis=R)),
    ("cast of a reduction", lambda i: mc.cast(mc.min(X[i, R], axis=R), "float64")),
    ("nested reductions", lambda i: mc.sum(mc.max(X[R2, R], axis=R2), axis=R)),
]


@pytest.mark.parametrize("fn", [f for _, f in REDUCTION_NOT_AT_TOP], ids=[d for d, _ in REDUCTION_NOT_AT_TOP])
def test_reduction_must_be_the_whole_body(fn) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        define_and_build((4,), fn)


REDUCE_AXIS_OUTSIDE_REDUCTION = [
    ("plain read", (4,), lambda i: X[i, R]),
    ("in a condition", (4,), lambda i: mc.where(R > 2, X[i, 0], 0.0)),
    ("axis not listed in its reduction", (1,), lambda i: mc.sum(X[R2, 0] + X[0, R], axis=R2)),
    ("next to the output axes", (4, 6), lambda i, j: X[i, j] + X[i, R]),
]


@pytest.mark.parametrize("shape,fn", [(s, f) for _, s, f in REDUCE_AXIS_OUTSIDE_REDUCTION],
                         ids=[d for d, _, _ in REDUCE_AXIS_OUTSIDE_REDUCTION])
def test_reduce_axis_outside_its_reduction_is_refused(shape: tuple[int, ...], fn) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        define_and_build(shape, fn)


def test_well_placed_reductions_are_accepted() -> None:
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    row_sum = define_and_build((4,), lambda i: mc.sum(X[i, R] * 2.0 + 1.0, axis=R))
    np.testing.assert_array_equal(row_sum(x), (x * 2 + 1).sum(axis=1))
    total = define_and_build((1,), lambda i: mc.sum(X[R2, R], axis=(R2, R)))
    np.testing.assert_array_equal(total(x), [x.sum()])


# --------------------------------------------------------------------------- compute() arity


@pytest.mark.parametrize("shape,fn", [
    ((4, 6), lambda i: X[i, 0]),
    ((4, 6), lambda i, j, k: X[i, j]),
    ((4,), lambda: X[0, 0]),
    ((4,), lambda i, j: X[i, j]),
], ids=["too few for 2-d", "too many for 2-d", "none for 1-d", "two for 1-d"])
def test_index_function_with_the_wrong_number_of_parameters(shape: tuple[int, ...], fn) -> None:  # noqa: ANN001
    with pytest.raises((TypeError, ValueError)):
        mc.compute(shape, fn)


# --------------------------------------------------------------------------- dtypes and shapes


@pytest.mark.parametrize("dtype", ["float16", "bool", "complex64", "complex128", "int8", "uint8", "uint32",
                                   np.float16, np.bool_, "not_a_dtype"])
def test_unsupported_placeholder_dtype(dtype: object) -> None:
    with pytest.raises(TypeError):
        mc.placeholder((3,), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_supported_placeholder_dtypes(dtype: str) -> None:
    assert mc.placeholder((3,), dtype).dtype == dtype


@pytest.mark.parametrize("shape,fn", [
    ((-1,), lambda i: A[0]),
    ((3, -2), lambda i, j: A[0]),
    ((-5, 4, 2), lambda i, j, k: A[0]),
], ids=["1-d", "2-d", "3-d"])
def test_negative_extents_are_refused(shape: tuple[int, ...], fn) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        mc.placeholder(shape)
    with pytest.raises(ValueError):
        mc.compute(shape, fn)


def test_negative_reduce_axis_extent_is_refused() -> None:
    with pytest.raises(ValueError):
        mc.reduce_axis(-3)


@pytest.mark.parametrize("shape", [(2.5,), ("3",), (None,)])
def test_non_integer_extents_are_refused(shape: tuple) -> None:
    with pytest.raises((TypeError, ValueError)):
        mc.placeholder(shape)


def test_zero_extent_is_refused_or_gives_an_empty_result() -> None:
    """The contract calls non-positive extents errors; an empty result (numpy's answer) is tolerated."""
    try:
        Z = mc.placeholder((0, 3), name="Z")
        kernel = define_and_build((0, 3), lambda i, j: Z[i, j] * 2.0)
    except ValueError:
        return
    out = kernel(np.zeros((0, 3), np.float32))
    assert out.shape == (0, 3) and out.dtype == np.float32


# ---------------------------------------------------------------------------- kernel arguments


@pytest.fixture(scope="module")
def add_kernel() -> mc.Kernel:
    """out[i, j] = P[i, j] + Q[j] for P: float32[3, 4], Q: float32[4]."""
    P = mc.placeholder((3, 4), name="P")
    Q = mc.placeholder((4,), name="Q")
    return mc.build(mc.compute((3, 4), lambda i, j: P[i, j] + Q[j], name="out"))


P_OK = np.arange(12, dtype=np.float32).reshape(3, 4)
Q_OK = np.arange(4, dtype=np.float32) * 10


@pytest.mark.parametrize("args", [(), (P_OK,), (P_OK, Q_OK, Q_OK)], ids=["none", "one", "three"])
def test_wrong_number_of_arguments(add_kernel: mc.Kernel, args: tuple) -> None:
    with pytest.raises(TypeError):
        add_kernel(*args)


@pytest.mark.parametrize("bad", ["not an array", None, object(), 3.5, {"a": 1}],
                         ids=["str", "None", "object", "float", "dict"])
def test_non_array_arguments(add_kernel: mc.Kernel, bad: object) -> None:
    with pytest.raises(TypeError):
        add_kernel(bad, Q_OK)
    with pytest.raises(TypeError):
        add_kernel(P_OK, bad)


@pytest.mark.parametrize("p,q", [
    (np.zeros((4, 3), np.float32), Q_OK),
    (np.zeros((3, 5), np.float32), Q_OK),
    (np.zeros((12,), np.float32), Q_OK),
    (np.zeros((1, 3, 4), np.float32), Q_OK),
    (np.zeros((), np.float32), Q_OK),
    (P_OK, np.zeros((3,), np.float32)),
    (P_OK, np.zeros((1, 4), np.float32)),
], ids=["transposed", "too wide", "flattened", "extra leading axis", "scalar", "short vector", "row matrix"])
def test_wrong_shape(add_kernel: mc.Kernel, p: np.ndarray, q: np.ndarray) -> None:
    with pytest.raises(ValueError):
        add_kernel(p, q)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.bool_, np.complex64])
def test_wrong_dtype(add_kernel: mc.Kernel, dtype: type) -> None:
    with pytest.raises(TypeError):
        add_kernel(P_OK.astype(dtype), Q_OK)
    with pytest.raises(TypeError):
        add_kernel(P_OK, Q_OK.astype(dtype))


@pytest.mark.parametrize("make_view", [
    lambda: np.asfortranarray(P_OK),
    lambda: np.ascontiguousarray(P_OK.T).T,
    lambda: np.repeat(P_OK, 2, axis=1)[:, ::2],
    lambda: np.repeat(P_OK, 2, axis=0)[::2],
], ids=["fortran order", "transposed view", "column stride 2", "row stride 2"])
def test_non_contiguous_arrays_are_refused_with_a_hint(add_kernel: mc.Kernel, make_view) -> None:  # noqa: ANN001
    view = make_view()
    assert view.shape == (3, 4) and view.dtype == np.float32 and not view.flags.c_contiguous
    np.testing.assert_array_equal(view, P_OK)  # same values: only the layout is wrong
    with pytest.raises(ValueError, match="ascontiguousarray"):
        add_kernel(view, Q_OK)
    strided_q = np.repeat(Q_OK, 2)[::2]
    with pytest.raises(ValueError, match="ascontiguousarray"):
        add_kernel(P_OK, strided_q)


def test_kernel_still_works_after_refused_calls(add_kernel: mc.Kernel) -> None:
    for bad_args in [(P_OK,), (P_OK.astype(np.float64), Q_OK), (P_OK[:2], Q_OK), (np.asfortranarray(P_OK), Q_OK)]:
        with pytest.raises((TypeError, ValueError)):
            add_kernel(*bad_args)
    np.testing.assert_array_equal(add_kernel(P_OK, Q_OK), P_OK + Q_OK)
    np.testing.assert_array_equal(add_kernel(np.ascontiguousarray(np.asfortranarray(P_OK)), Q_OK), P_OK + Q_OK)


# ------------------------------------------------------------------------------------ type mixing


def test_float32_plus_float64_promotes_like_numpy_or_is_refused() -> None:
    F = mc.placeholder((7,), "float32", name="F")
    D = mc.placeholder((7,), "float64", name="D")
    f = np.linspace(-1, 1, 7).astype(np.float32) / 3
    d = np.linspace(2, 3, 7) / 7
    try:
        kernel = define_and_build((7,), lambda i: F[i] + D[i])
    except TypeError:
        return  # refusing to mix is allowed
    got = kernel(f, d)
    want = f + d  # numpy: float32 + float64 -> float64
    assert got.dtype == want.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=0)
