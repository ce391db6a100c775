"""End-to-end tests of ``mc.compute`` programs: define, build, run, compare with numpy.

Every test writes a small tensor program with the public frontend
(``placeholder`` / ``compute`` / ``reduce_axis`` / ``sum`` / ``max`` / ...), JIT-compiles
it with ``mc.build`` and checks the result against a plain numpy reference on seeded
random data. Shapes deliberately include sizes that divide none of 2/4/8/16
(1, 7, 13, 33), so any tail handling in the generated loops is exercised.

Tolerances: integers must match exactly; float64 to 1e-10; float32 to rtol=1e-4 with
an absolute slack of 1e-5 per reduced element (summation order may differ from numpy).
References are computed in float64 and rounded to the kernel's dtype at the end.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import minicompiler as mc

# --------------------------------------------------------------------------------------- helpers


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator per test: results never depend on test order."""
    return np.random.default_rng(20240611)


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: str = "float32",
                 low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Uniform data in [low, high) (integers: small values, so products stay exact)."""
    if dtype.startswith("int"):
        return rng.integers(-9, 10, size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(dtype)


def assert_matches(got: np.ndarray, want: np.ndarray, dtype: str, reduction: int = 1) -> None:
    """``got`` has ``want``'s shape, exactly ``dtype``, and ``want``'s values within tolerance.

    ``reduction`` is the number of terms combined into each output element; the
    float32 absolute tolerance grows with it.
    """
    assert isinstance(got, np.ndarray), f"a kernel must return a numpy array, got {type(got).__name__}"
    assert got.dtype == np.dtype(dtype), f"dtype {got.dtype}, expected {dtype}"
    assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
    if np.dtype(dtype).kind == "i":
        np.testing.assert_array_equal(got, want)
    elif np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * reduction)
    else:
        np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-4, atol=1e-5 * reduction)


# ---------------------------------------------------------------------------------- tensor basics


def test_placeholder_and_compute_expose_shape_dtype_name_ndim() -> None:
    X = mc.placeholder((7, 13), "float64", name="X")
    assert X.shape == (7, 13) and isinstance(X.shape, tuple)
    assert X.dtype == "float64" and X.name == "X" and X.ndim == 2

    Y = mc.compute((13,), lambda j: X[0, j] * 2.0, name="Y")
    assert Y.shape == (13,) and Y.dtype == "float64" and Y.name == "Y" and Y.ndim == 1

    assert mc.placeholder((3,)).dtype == "float32"  # the default dtype


def test_kernel_returns_a_fresh_array_and_leaves_inputs_alone(rng: np.random.Generator) -> None:
    X = mc.placeholder((7, 13), name="X")
    Y = mc.compute((7, 13), lambda i, j: X[i, j] + 1.0, name="Y")
    kernel = mc.build(Y)
    x = random_array(rng, (7, 13))
    x_before = x.copy()

    first, second = kernel(x), kernel(x)

    assert first is not second and not np.shares_memory(first, second)
    assert not np.shares_memory(first, x)
    np.testing.assert_array_equal(x, x_before)
    assert_matches(first, x + 1, "float32")
    assert_matches(second, x + 1, "float32")


def test_inputs_default_to_creation_order_and_can_be_given_explicitly(rng: np.random.Generator) -> None:
    A = mc.placeholder((7,), name="A")
    B = mc.placeholder((7,), name="B")
    D = mc.compute((7,), lambda i: B[i] - A[i], name="D")  # reads B first, but A was created first
    a, b = random_array(rng, (7,)), random_array(rng, (7,))

    assert_matches(mc.build(D)(a, b), b - a, "float32")
    assert_matches(mc.build(D, inputs=[B, A])(b, a), b - a, "float32")


# ---------------------------------------------------------------------------- matmul & transposes

MATMUL_SHAPES = [(1, 1, 1), (7, 13, 33), (33, 7, 13), (16, 16, 16), (13, 1, 7)]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("m,n,k", MATMUL_SHAPES)
def test_matmul(rng: np.random.Generator, m: int, n: int, k: int, dtype: str) -> None:
    A = mc.placeholder((m, k), dtype, name="A")
    B = mc.placeholder((k, n), dtype, name="B")
    r = mc.reduce_axis(k, name="r")
    C = mc.compute((m, n), lambda i, j: mc.sum(A[i, r] * B[r, j], axis=r), name="C")
    a, b = random_array(rng, (m, k), dtype), random_array(rng, (k, n), dtype)

    assert_matches(mc.build(C)(a, b), a @ b, dtype, reduction=k)


@pytest.mark.parametrize("batch,m,n,k", [(1, 1, 1, 1), (3, 7, 13, 5), (2, 33, 8, 17)])
def test_batched_matmul(rng: np.random.Generator, batch: int, m: int, n: int, k: int) -> None:
    A = mc.placeholder((batch, m, k), name="A")
    B = mc.placeholder((batch, k, n), name="B")
    r = mc.reduce_axis(k, name="r")
    C = mc.compute((batch, m, n), lambda b, i, j: mc.sum(A[b, i, r] * B[b, r, j], axis=r), name="C")
    a, b = random_array(rng, (batch, m, k)), random_array(rng, (batch, k, n))

    assert_matches(mc.build(C)(a, b), np.matmul(a.astype(np.float64), b), "float32", reduction=k)


@pytest.mark.parametrize("m,n,k", [(7, 13, 33), (1, 5, 3)])
def test_matmul_with_transposed_operands(rng: np.random.Generator, m: int, n: int, k: int) -> None:
    """Aᵀ·B and A·Bᵀ are written by swapping the index order of the loads."""
    At = mc.placeholder((k, m), name="At")  # stores Aᵀ
    B = mc.placeholder((k, n), name="B")
    Bt = mc.placeholder((n, k), name="Bt")  # stores Bᵀ
    r1, r2 = mc.reduce_axis(k, name="r1"), mc.reduce_axis(k, name="r2")
    lhs_transposed = mc.compute((m, n), lambda i, j: mc.sum(At[r1, i] * B[r1, j], axis=r1), name="AtB")
    both_transposed = mc.compute((m, n), lambda i, j: mc.sum(At[r2, i] * Bt[j, r2], axis=r2), name="AtBt")
    at, b, bt = random_array(rng, (k, m)), random_array(rng, (k, n)), random_array(rng, (n, k))

    assert_matches(mc.build(lhs_transposed)(at, b), at.T @ b, "float32", reduction=k)
    assert_matches(mc.build(both_transposed, inputs=[At, Bt])(at, bt), at.T @ bt.T, "float32", reduction=k)


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (33, 5)])
def test_2d_transpose(rng: np.random.Generator, shape: tuple[int, int]) -> None:
    X = mc.placeholder(shape, name="X")
    T = mc.compute(shape[::-1], lambda i, j: X[j, i], name="T")
    x = random_array(rng, shape)
    assert_matches(mc.build(T)(x), x.T.copy(), "float32")


def test_3d_axis_permutation(rng: np.random.Generator) -> None:
    X = mc.placeholder((2, 7, 13), name="X")
    P = mc.compute((13, 2, 7), lambda a, b, c: X[b, c, a], name="P")  # numpy: transpose(2, 0, 1)
    x = random_array(rng, (2, 7, 13))
    assert_matches(mc.build(P)(x), x.transpose(2, 0, 1), "float32")


# ------------------------------------------------------------------------------ elementwise math

SHAPES_2D = [(1, 1), (1, 7), (7, 13), (13, 33)]

# name: (frontend function, numpy function, input range). log/sqrt get positive data.
UNARY_FUNCTIONS = {
    "exp": (lambda e: mc.exp(e), np.exp, (-3.0, 3.0)),
    "log": (lambda e: mc.log(e), np.log, (0.1, 10.0)),
    "sqrt": (lambda e: mc.sqrt(e), np.sqrt, (0.0, 10.0)),
    "tanh": (lambda e: mc.tanh(e), np.tanh, (-4.0, 4.0)),
    "abs": (lambda e: mc.abs(e), np.abs, (-5.0, 5.0)),
    "negate": (lambda e: -e, np.negative, (-5.0, 5.0)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES_2D)
@pytest.mark.parametrize("fn_name", sorted(UNARY_FUNCTIONS))
def test_unary_math(rng: np.random.Generator, fn_name: str, shape: tuple[int, int], dtype: str) -> None:
    frontend_fn, numpy_fn, (low, high) = UNARY_FUNCTIONS[fn_name]
    X = mc.placeholder(shape, dtype, name="X")
    Y = mc.compute(shape, lambda i, j: frontend_fn(X[i, j]), name="Y")
    x = random_array(rng, shape, dtype, low, high)

    assert_matches(mc.build(Y)(x), numpy_fn(x.astype(np.float64)), dtype)


@pytest.mark.parametrize("shape", SHAPES_2D)
def test_binary_arithmetic_with_scalars(rng: np.random.Generator, shape: tuple[int, int]) -> None:
    """+ - * / between tensors and with Python scalars on either side; all stays float32."""
    X = mc.placeholder(shape, name="X")
    Y = mc.placeholder(shape, name="Y")
    Z = mc.compute(shape, lambda i, j: (X[i, j] + Y[i, j]) * (X[i, j] - Y[i, j]) / Y[i, j]
                   + 2.5 * X[i, j] - 1.0 / Y[i, j] + X[i, j] / 4 - (3 - Y[i, j]), name="Z")
    x = random_array(rng, shape, low=-2.0, high=2.0)
    y = random_array(rng, shape, low=0.5, high=2.0)  # a divisor well away from zero
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    want = (x64 + y64) * (x64 - y64) / y64 + 2.5 * x64 - 1.0 / y64 + x64 / 4 - (3 - y64)

    assert Z.dtype == "float32"  # Python float and int scalars do not widen float32
    assert_matches(mc.build(Z)(x, y), want, "float32", reduction=8)


@pytest.mark.parametrize("shape", SHAPES_2D)
def test_maximum_minimum_and_where(rng: np.random.Generator, shape: tuple[int, int]) -> None:
    X = mc.placeholder(shape, name="X")
    Y = mc.placeholder(shape, name="Y")
    x, y = random_array(rng, shape), random_array(rng, shape)

    relu = mc.compute(shape, lambda i, j: mc.maximum(X[i, j], 0.0), name="relu")
    clip = mc.compute(shape, lambda i, j: mc.minimum(mc.maximum(X[i, j], -0.5), 0.5), name="clip")
    pairwise_max = mc.compute(shape, lambda i, j: mc.maximum(X[i, j], Y[i, j]), name="pmax")
    pairwise_min = mc.compute(shape, lambda i, j: mc.minimum(X[i, j], Y[i, j]), name="pmin")
    pick = mc.compute(shape, lambda i, j: mc.where(X[i, j] > Y[i, j], X[i, j] * 2.0, Y[i, j] - 1.0),
                      name="pick")

    assert_matches(mc.build(relu)(x), np.maximum(x, 0), "float32")
    assert_matches(mc.build(clip)(x), np.clip(x, -0.5, 0.5), "float32")
    assert_matches(mc.build(pairwise_max)(x, y), np.maximum(x, y), "float32")
    assert_matches(mc.build(pairwise_min)(x, y), np.minimum(x, y), "float32")
    assert_matches(mc.build(pick)(x, y), np.where(x > y, x * 2, y - 1), "float32")


def test_comparisons_and_logical_operators(rng: np.random.Generator) -> None:
    """< <= > >= equal not_equal combined with & | ~, each selecting with where()."""
    shape = (7, 13)
    X = mc.placeholder(shape, name="X")
    N = mc.placeholder(shape, "int32", name="N")
    x = random_array(rng, shape)
    n = rng.integers(-2, 3, size=shape).astype(np.int32)  # small range: plenty of equal values

    def select(cond_fn):  # noqa: ANN001, ANN202
        """A kernel computing where(cond, X, 2.0); x lies in [-1, 1), so 2.0 marks 'false'."""
        T = mc.compute(shape, lambda i, j: mc.where(cond_fn(X[i, j], N[i, j]), X[i, j], 2.0))
        return mc.build(T, inputs=[X, N])(x, n)

    cases = {
        "lt": (lambda a, b: a < 0.25, x < 0.25),
        "le": (lambda a, b: b <= 0, n <= 0),
        "gt": (lambda a, b: a > -0.25, x > -0.25),
        "ge": (lambda a, b: b >= 1, n >= 1),
        "equal": (lambda a, b: mc.equal(b, 0), n == 0),
        "not_equal": (lambda a, b: mc.not_equal(b, 1), n != 1),
        "and": (lambda a, b: (a > 0) & (b < 0), (x > 0) & (n < 0)),
        "or": (lambda a, b: (a > 0.5) | mc.equal(b, 2), (x > 0.5) | (n == 2)),
        "not": (lambda a, b: ~(a < 0), ~(x < 0)),
        "nested": (lambda a, b: ~((a >= 0) & (b > 0)) | mc.equal(b, -2), ~((x >= 0) & (n > 0)) | (n == -2)),
    }
    for name, (cond_fn, want_mask) in cases.items():
        got = select(cond_fn)
        assert got.dtype == np.float32, name
        np.testing.assert_array_equal(got, np.where(want_mask, x, np.float32(2.0)), err_msg=name)


def test_where_with_two_scalar_branches(rng: np.random.Generator) -> None:
    """mc.where(cond, 1.0, 0.0) turns a condition into numbers, as np.where does."""
    X = mc.placeholder((7, 13), name="X")
    indicator = mc.compute((7, 13), lambda i, j: mc.where(X[i, j] > 0, 1.0, 0.0), name="indicator")
    x = random_array(rng, (7, 13))
    got = mc.build(indicator)(x)

    assert got.dtype.kind == "f"
    np.testing.assert_array_equal(got, np.where(x > 0, 1.0, 0.0))


def test_where_on_integers_keeps_the_integer_dtype(rng: np.random.Generator) -> None:
    A = mc.placeholder((33,), "int32", name="A")
    B = mc.placeholder((33,), "int32", name="B")
    C = mc.compute((33,), lambda i: mc.where(mc.equal(A[i], B[i]), A[i], A[i] - B[i]), name="C")
    a = rng.integers(0, 3, size=33).astype(np.int32)
    b = rng.integers(0, 3, size=33).astype(np.int32)
    assert_matches(mc.build(C)(a, b), np.where(a == b, a, a - b), "int32")


def test_python_scalars_follow_the_expression_dtype(rng: np.random.Generator) -> None:
    X = mc.placeholder((13,), "float32", name="X")
    N = mc.placeholder((13,), "int32", name="N")
    f = mc.compute((13,), lambda i: X[i] * 0.1 + 1, name="f")
    k = mc.compute((13,), lambda i: N[i] * 3 + 7, name="k")
    x, n = random_array(rng, (13,)), random_array(rng, (13,), "int32")

    assert f.dtype == "float32" and k.dtype == "int32"
    assert_matches(mc.build(f)(x), x * np.float32(0.1) + np.float32(1), "float32")
    assert_matches(mc.build(k)(n), n * 3 + 7, "int32")


# ------------------------------------------------------------------------------------------ casts


def test_float_to_int_casts_truncate_toward_zero_like_numpy(rng: np.random.Generator) -> None:
    X = mc.placeholder((7, 13), "float32", name="X")
    D = mc.placeholder((7, 13), "float64", name="D")
    to_i32 = mc.compute((7, 13), lambda i, j: mc.cast(X[i, j], "int32"), name="to_i32")
    to_i64 = mc.compute((7, 13), lambda i, j: D[i, j].astype("int64"), name="to_i64")
    x = random_array(rng, (7, 13), "float32", -50.0, 50.0)  # negatives: truncation, not floor
    d = random_array(rng, (7, 13), "float64", -1e12, 1e12)  # beyond int32, inside int64

    assert_matches(mc.build(to_i32)(x), x.astype(np.int32), "int32")
    assert_matches(mc.build(to_i64)(d), d.astype(np.int64), "int64")


def test_int_to_float_and_width_casts(rng: np.random.Generator) -> None:
    N = mc.placeholder((7, 13), "int32", name="N")
    L = mc.placeholder((7, 13), "int64", name="L")
    X = mc.placeholder((7, 13), "float32", name="X")
    n = random_array(rng, (7, 13), "int32")
    big = rng.integers(-(2**40), 2**40, size=(7, 13)).astype(np.int64)
    x = random_array(rng, (7, 13))

    halves = mc.compute((7, 13), lambda i, j: N[i, j].astype("float32") * 0.5, name="halves")
    # Widen first, then multiply: the product overflows int32 but not int64.
    widened = mc.compute((7, 13), lambda i, j: mc.cast(N[i, j], "int64") * 3_000_000_000, name="widened")
    as_double = mc.compute((7, 13), lambda i, j: mc.cast(L[i, j], "float64"), name="as_double")
    exact_double = mc.compute((7, 13), lambda i, j: X[i, j].astype("float64") * 3.0, name="exact_double")
    narrowed = mc.compute((7, 13), lambda i, j: mc.cast(L[i, j] // 2**20, "int32"), name="narrowed")

    assert_matches(mc.build(halves)(n), n.astype(np.float32) * np.float32(0.5), "float32")
    assert_matches(mc.build(widened)(n), n.astype(np.int64) * 3_000_000_000, "int64")
    assert_matches(mc.build(as_double)(big), big.astype(np.float64), "float64")
    assert_matches(mc.build(exact_double)(x), x.astype(np.float64) * 3.0, "float64")
    assert_matches(mc.build(narrowed)(big), (big // 2**20).astype(np.int32), "int32")


# ---------------------------------------------------------------------------- affine index maps


def test_affine_index_expressions(rng: np.random.Generator) -> None:
    """i + r, 2*i + 1, i // 2, i % k and n - 1 - i index maps."""
    X = mc.placeholder((14,), name="X")
    x = random_array(rng, (14,))

    odd = mc.compute((7,), lambda i: X[2 * i + 1], name="odd")  # x[1::2]
    even = mc.compute((7,), lambda i: X[2 * i], name="even")  # x[0::2]
    upsampled = mc.compute((28,), lambda i: X[i // 2], name="upsampled")  # np.repeat(x, 2)
    tiled = mc.compute((3, 13), lambda i, j: X[j % 7 + 7 * (i % 2)], name="tiled")
    reversed_ = mc.compute((14,), lambda i: X[13 - i], name="reversed_")
    r = mc.reduce_axis(3, name="r")
    window = mc.compute((12,), lambda i: mc.sum(X[i + r], axis=r), name="window")  # width-3 moving sum

    assert_matches(mc.build(odd)(x), x[1::2], "float32")
    assert_matches(mc.build(even)(x), x[0::2], "float32")
    assert_matches(mc.build(upsampled)(x), np.repeat(x, 2), "float32")
    want_tiled = np.array([[x[j % 7 + 7 * (i % 2)] for j in range(13)] for i in range(3)])
    assert_matches(mc.build(tiled)(x), want_tiled, "float32")
    assert_matches(mc.build(reversed_)(x), x[::-1].copy(), "float32")
    assert_matches(mc.build(window)(x), x[:-2] + x[1:-1] + x[2:], "float32", reduction=3)


def test_where_guards_make_neighbour_reads_safe(rng: np.random.Generator) -> None:
    """Reads in the branch where() does not take are never executed: zero-padded stencils."""
    n = 13
    X = mc.placeholder((n,), name="X")
    stencil = mc.compute((n,), lambda i: mc.where(i >= 1, X[i - 1], 0.0) - 2.0 * X[i]
                         + mc.where(i + 1 < n, X[i + 1], 0.0), name="stencil")
    # Pairs (x[2i], x[2i+1]) of an odd-length array; the last pair has no partner.
    pair_max = mc.compute(((n + 1) // 2,), lambda i: mc.where(2 * i + 1 < n, mc.maximum(X[2 * i], X[2 * i + 1]),
                                                              X[2 * i]), name="pair_max")
    x = random_array(rng, (n,))
    padded = np.pad(x.astype(np.float64), 1)

    assert_matches(mc.build(stencil)(x), padded[:-2] - 2 * padded[1:-1] + padded[2:], "float32")
    want_pairs = np.maximum(x[0::2], np.append(x[1::2], -np.inf))
    assert_matches(mc.build(pair_max)(x), want_pairs, "float32")


# ------------------------------------------------------------------------------------- reductions

REDUCTIONS = {"sum": (mc.sum, np.sum), "max": (mc.max, np.max), "min": (mc.min, np.min)}


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (33, 5), (13, 1)])
@pytest.mark.parametrize("op", sorted(REDUCTIONS))
def test_reduce_over_one_axis(rng: np.random.Generator, op: str, shape: tuple[int, int]) -> None:
    frontend_reduce, numpy_reduce = REDUCTIONS[op]
    rows, cols = shape
    X = mc.placeholder(shape, name="X")
    over_cols = mc.reduce_axis(cols, name="c")
    over_rows = mc.reduce_axis(rows, name="r")
    per_row = mc.compute((rows,), lambda i: frontend_reduce(X[i, over_cols], axis=over_cols), name="per_row")
    per_col = mc.compute((cols,), lambda j: frontend_reduce(X[over_rows, j], axis=over_rows), name="per_col")
    x = random_array(rng, shape)

    assert_matches(mc.build(per_row)(x), numpy_reduce(x.astype(np.float64), axis=1), "float32", reduction=cols)
    assert_matches(mc.build(per_col)(x), numpy_reduce(x.astype(np.float64), axis=0), "float32", reduction=rows)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 7, 13), (3, 33, 5)])
@pytest.mark.parametrize("op", sorted(REDUCTIONS))
def test_reduce_over_two_axes(rng: np.random.Generator, op: str, shape: tuple[int, int, int]) -> None:
    frontend_reduce, numpy_reduce = REDUCTIONS[op]
    b, m, n = shape
    X = mc.placeholder(shape, name="X")
    rm, rn = mc.reduce_axis(m, name="rm"), mc.reduce_axis(n, name="rn")
    rb = mc.reduce_axis(b, name="rb")
    inner = mc.compute((b,), lambda i: frontend_reduce(X[i, rm, rn], axis=(rm, rn)), name="inner")
    outer = mc.compute((m,), lambda j: frontend_reduce(X[rb, j, rn], axis=(rb, rn)), name="outer")
    x = random_array(rng, shape)
    x64 = x.astype(np.float64)

    assert_matches(mc.build(inner)(x), numpy_reduce(x64, axis=(1, 2)), "float32", reduction=m * n)
    assert_matches(mc.build(outer)(x), numpy_reduce(x64, axis=(0, 2)), "float32", reduction=b * n)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_max_and_min_start_from_the_right_identity(rng: np.random.Generator, dtype: str) -> None:
    """max of all-negative data is negative and min of all-positive data is positive (not 0)."""
    X = mc.placeholder((7, 13), dtype, name="X")
    r = mc.reduce_axis(13, name="r")
    row_max = mc.compute((7,), lambda i: mc.max(X[i, r], axis=r), name="row_max")
    row_min = mc.compute((7,), lambda i: mc.min(X[i, r], axis=r), name="row_min")
    if dtype.startswith("int"):
        info = np.iinfo(dtype)
        negative = rng.integers(info.min, -1, size=(7, 13), endpoint=True).astype(dtype)
        positive = rng.integers(1, info.max, size=(7, 13), endpoint=True).astype(dtype)
        negative[0, 3] = info.min  # the extreme values themselves must survive
        positive[0, 3] = info.max
    else:
        negative = random_array(rng, (7, 13), dtype, -1e6, -1.0)
        positive = random_array(rng, (7, 13), dtype, 1.0, 1e6)

    assert_matches(mc.build(row_max)(negative), negative.max(axis=1), dtype)
    assert_matches(mc.build(row_min)(positive), positive.min(axis=1), dtype)


def test_reduction_of_an_elementwise_expression(rng: np.random.Generator) -> None:
    """The reduced value may be any expression: a sum of squares, a max of |x|."""
    X = mc.placeholder((7, 33), name="X")
    r1, r2 = mc.reduce_axis(33, name="r1"), mc.reduce_axis(33, name="r2")
    sum_sq = mc.compute((7,), lambda i: mc.sum(X[i, r1] * X[i, r1], axis=r1), name="sum_sq")
    max_abs = mc.compute((7,), lambda i: mc.max(mc.abs(X[i, r2]), axis=r2), name="max_abs")
    x = random_array(rng, (7, 33))
    x64 = x.astype(np.float64)

    assert_matches(mc.build(sum_sq)(x), (x64 * x64).sum(axis=1), "float32", reduction=33)
    assert_matches(mc.build(max_abs)(x), np.abs(x64).max(axis=1), "float32")


# ------------------------------------------------------------------------------- convolutions


def conv1d_reference(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Valid 1-D convolution (cross-correlation, as in deep learning) of x[C, L] with w[F, C, K]."""
    channels, length = x.shape
    filters, _, width = w.shape
    out_len = (length - width) // stride + 1
    out = np.zeros((filters, out_len))
    for t in range(out_len):
        window = x[:, t * stride:t * stride + width].astype(np.float64)  # [C, K]
        out[:, t] = np.einsum("ck,fck->f", window, w.astype(np.float64))
    return out


@pytest.mark.parametrize("channels,filters,length,width,stride",
                         [(1, 1, 7, 3, 1), (3, 4, 13, 3, 2), (2, 5, 33, 5, 3), (1, 2, 7, 7, 1), (2, 3, 16, 4, 4)])
def test_conv1d_with_stride(rng: np.random.Generator, channels: int, filters: int, length: int, width: int,
                            stride: int) -> None:
    out_len = (length - width) // stride + 1
    X = mc.placeholder((channels, length), name="X")
    W = mc.placeholder((filters, channels, width), name="W")
    rc, rk = mc.reduce_axis(channels, name="rc"), mc.reduce_axis(width, name="rk")
    Y = mc.compute((filters, out_len),
                   lambda f, t: mc.sum(X[rc, t * stride + rk] * W[f, rc, rk], axis=(rc, rk)), name="Y")
    x, w = random_array(rng, (channels, length)), random_array(rng, (filters, channels, width))

    assert_matches(mc.build(Y)(x, w), conv1d_reference(x, w, stride), "float32", reduction=channels * width)


def conv2d_reference(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """NCHW conv2d with zero padding: for every kernel offset, add a strided slice times the weights."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    out_h, out_w = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, f, out_h, out_w))
    for dy in range(kh):
        for dx in range(kw):
            patch = xp[:, :, dy:dy + stride * (out_h - 1) + 1:stride, dx:dx + stride * (out_w - 1) + 1:stride]
            out += np.einsum("nchw,fc->nfhw", patch, w[:, :, dy, dx].astype(np.float64))
    return out


def conv2d_nchw(X: mc.Tensor, W: mc.Tensor, stride: int, pad: int) -> mc.Tensor:
    """conv2d written with the frontend; the zero padding is a where() guarding the input read."""
    n, c, h, w = X.shape
    f, _, kh, kw = W.shape
    out_h, out_w = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    rc, ry, rx = mc.reduce_axis(c, name="rc"), mc.reduce_axis(kh, name="ry"), mc.reduce_axis(kw, name="rx")

    def body(b, o, y, x):  # noqa: ANN001, ANN202
        iy, ix = y * stride + ry, x * stride + rx  # coordinates in the padded image
        inside = (iy >= pad) & (iy < h + pad) & (ix >= pad) & (ix < w + pad)
        value = mc.where(inside, X[b, rc, iy - pad, ix - pad], 0.0)
        return mc.sum(value * W[o, rc, ry, rx], axis=(rc, ry, rx))

    return mc.compute((n, f, out_h, out_w), body, name="conv")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("n,c,h,w,f,k", [(1, 1, 1, 1, 1, 3), (2, 3, 7, 13, 4, 3), (1, 2, 8, 8, 3, 3),
                                         (1, 4, 5, 33, 2, 3), (2, 1, 6, 7, 2, 1)])
def test_conv2d_nchw_padding_1(rng: np.random.Generator, n: int, c: int, h: int, w: int, f: int, k: int,
                               stride: int) -> None:
    X = mc.placeholder((n, c, h, w), name="X")
    W = mc.placeholder((f, c, k, k), name="W")
    Y = conv2d_nchw(X, W, stride=stride, pad=1)
    x, wt = random_array(rng, (n, c, h, w)), random_array(rng, (f, c, k, k))

    want = conv2d_reference(x, wt, stride=stride, pad=1)
    assert Y.shape == want.shape
    assert_matches(mc.build(Y)(x, wt), want, "float32", reduction=c * k * k)


def test_conv2d_without_padding_and_with_padding_2(rng: np.random.Generator) -> None:
    X = mc.placeholder((2, 3, 9, 7), name="X")
    W = mc.placeholder((4, 3, 3, 3), name="W")
    x, wt = random_array(rng, (2, 3, 9, 7)), random_array(rng, (4, 3, 3, 3))
    for stride, pad in [(1, 0), (2, 0), (1, 2), (2, 2)]:
        Y = conv2d_nchw(X, W, stride=stride, pad=pad)
        assert_matches(mc.build(Y)(x, wt), conv2d_reference(x, wt, stride, pad), "float32", reduction=27)


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 3, 8, 6), (1, 2, 7, 13), (1, 1, 33, 4)])
def test_max_pool_2x2_stride_2(rng: np.random.Generator, shape: tuple[int, int, int, int]) -> None:
    """Odd heights/widths drop the last row/column, as floor-mode pooling does."""
    n, c, h, w = shape
    X = mc.placeholder(shape, name="X")
    ry, rx = mc.reduce_axis(2, name="ry"), mc.reduce_axis(2, name="rx")
    pooled = mc.compute((n, c, h // 2, w // 2),
                        lambda b, ch, y, x: mc.max(X[b, ch, 2 * y + ry, 2 * x + rx], axis=(ry, rx)), name="pool")
    x = random_array(rng, shape)
    cropped = x[:, :, :h // 2 * 2, :w // 2 * 2]
    want = cropped.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))

    assert_matches(mc.build(pooled)(x), want, "float32")


# ----------------------------------------------------------------------------- multi-stage nets


def softmax_rows(X: mc.Tensor, prefix: str = "") -> mc.Tensor:
    """Numerically stable softmax over the last axis of a 2-D tensor, in four stages."""
    rows, cols = X.shape
    r_max, r_sum = mc.reduce_axis(cols, name="r_max"), mc.reduce_axis(cols, name="r_sum")
    row_max = mc.compute((rows,), lambda i: mc.max(X[i, r_max], axis=r_max), name=prefix + "row_max")
    shifted_exp = mc.compute((rows, cols), lambda i, j: mc.exp(X[i, j] - row_max[i]), name=prefix + "shifted_exp")
    row_sum = mc.compute((rows,), lambda i: mc.sum(shifted_exp[i, r_sum], axis=r_sum), name=prefix + "row_sum")
    return mc.compute((rows, cols), lambda i, j: shifted_exp[i, j] / row_sum[i], name=prefix + "softmax")


def softmax_reference(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 13), (4, 33), (13, 1), (2, 257)])
def test_softmax(rng: np.random.Generator, shape: tuple[int, int]) -> None:
    X = mc.placeholder(shape, name="X")
    x = random_array(rng, shape, low=-5.0, high=5.0)
    probs = mc.build(softmax_rows(X))(x)

    assert_matches(probs, softmax_reference(x), "float32")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_softmax_of_huge_logits_does_not_overflow(rng: np.random.Generator) -> None:
    """exp(1000) overflows float32; subtracting the row maximum first keeps it finite."""
    X = mc.placeholder((7, 13), name="X")
    x = random_array(rng, (7, 13), low=990.0, high=1000.0)
    x[3] = -1000.0 + random_array(rng, (13,))  # a row of very negative logits: exp underflows to 0 naively
    probs = mc.build(softmax_rows(X))(x)

    assert np.all(np.isfinite(probs))
    assert_matches(probs, softmax_reference(x), "float32")


@pytest.mark.parametrize("shape", [(1, 16), (7, 13), (4, 33), (3, 1)])
def test_layernorm_in_stages(rng: np.random.Generator, shape: tuple[int, int]) -> None:
    """mean → centred → variance → normalised·γ + β, every reduction its own stage."""
    rows, cols = shape
    eps = 1e-5
    X = mc.placeholder(shape, name="X")
    gamma, beta = mc.placeholder((cols,), name="gamma"), mc.placeholder((cols,), name="beta")
    r_mean, r_var = mc.reduce_axis(cols, name="r_mean"), mc.reduce_axis(cols, name="r_var")
    total = mc.compute((rows,), lambda i: mc.sum(X[i, r_mean], axis=r_mean), name="total")
    mean = mc.compute((rows,), lambda i: total[i] / float(cols), name="mean")
    centred = mc.compute(shape, lambda i, j: X[i, j] - mean[i], name="centred")
    var = mc.compute((rows,), lambda i: mc.sum(centred[i, r_var] * centred[i, r_var] / float(cols), axis=r_var),
                     name="var")
    out = mc.compute(shape, lambda i, j: centred[i, j] / mc.sqrt(var[i] + eps) * gamma[j] + beta[j],
                     name="layernorm")
    x = random_array(rng, shape, low=-3.0, high=5.0)
    g, b = random_array(rng, (cols,), low=0.5, high=1.5), random_array(rng, (cols,))

    x64 = x.astype(np.float64)
    c = x64 - x64.mean(axis=1, keepdims=True)
    want = c / np.sqrt((c * c).mean(axis=1, keepdims=True) + eps) * g + b
    assert_matches(mc.build(out)(x, g, b), want, "float32", reduction=cols)


def attention(Q: mc.Tensor, K: mc.Tensor, V: mc.Tensor) -> mc.Tensor:
    """softmax(Q Kᵀ / √d) V per head, for Q, K, V of shape (heads, tokens, d)."""
    heads, tokens, dim = Q.shape
    r_d = mc.reduce_axis(dim, name="r_d")
    r_max, r_sum, r_tok = (mc.reduce_axis(tokens, name=n) for n in ("r_max", "r_sum", "r_tok"))
    scale = 1.0 / math.sqrt(dim)
    scores = mc.compute((heads, tokens, tokens),
                        lambda h, i, j: mc.sum(Q[h, i, r_d] * K[h, j, r_d], axis=r_d), name="scores")
    logits = mc.compute((heads, tokens, tokens), lambda h, i, j: scores[h, i, j] * scale, name="logits")
    row_max = mc.compute((heads, tokens), lambda h, i: mc.max(logits[h, i, r_max], axis=r_max), name="row_max")
    weights = mc.compute((heads, tokens, tokens), lambda h, i, j: mc.exp(logits[h, i, j] - row_max[h, i]),
                         name="weights")
    row_sum = mc.compute((heads, tokens), lambda h, i: mc.sum(weights[h, i, r_sum], axis=r_sum), name="row_sum")
    probs = mc.compute((heads, tokens, tokens), lambda h, i, j: weights[h, i, j] / row_sum[h, i], name="probs")
    return mc.compute((heads, tokens, dim),
                      lambda h, i, e: mc.sum(probs[h, i, r_tok] * V[h, r_tok, e], axis=r_tok), name="attention")


@pytest.mark.parametrize("heads,tokens,dim", [(2, 7, 16), (4, 33, 8), (1, 1, 1), (3, 13, 5)])
def test_attention(rng: np.random.Generator, heads: int, tokens: int, dim: int) -> None:
    Q, K, V = (mc.placeholder((heads, tokens, dim), name=n) for n in ("Q", "K", "V"))
    out = attention(Q, K, V)
    q, k, v = (random_array(rng, (heads, tokens, dim), low=-2.0, high=2.0) for _ in range(3))

    q64, k64, v64 = q.astype(np.float64), k.astype(np.float64), v.astype(np.float64)
    probs = softmax_reference(q64 @ k64.transpose(0, 2, 1) / math.sqrt(dim))
    assert_matches(mc.build(out)(q, k, v), probs @ v64, "float32", reduction=tokens + dim)


@pytest.mark.parametrize("batch,d_in,hidden,d_out", [(1, 1, 1, 1), (7, 13, 33, 5), (16, 33, 7, 3)])
def test_relu_mlp_two_layers(rng: np.random.Generator, batch: int, d_in: int, hidden: int, d_out: int) -> None:
    """y = relu(x W1 + b1) W2 + b2: each matmul is a reduction stage, bias/relu an elementwise one."""
    X = mc.placeholder((batch, d_in), name="X")
    W1, b1 = mc.placeholder((d_in, hidden), name="W1"), mc.placeholder((hidden,), name="b1")
    W2, b2 = mc.placeholder((hidden, d_out), name="W2"), mc.placeholder((d_out,), name="b2")
    r1, r2 = mc.reduce_axis(d_in, name="r1"), mc.reduce_axis(hidden, name="r2")
    xw1 = mc.compute((batch, hidden), lambda i, j: mc.sum(X[i, r1] * W1[r1, j], axis=r1), name="xw1")
    h = mc.compute((batch, hidden), lambda i, j: mc.maximum(xw1[i, j] + b1[j], 0.0), name="h")
    hw2 = mc.compute((batch, d_out), lambda i, j: mc.sum(h[i, r2] * W2[r2, j], axis=r2), name="hw2")
    y = mc.compute((batch, d_out), lambda i, j: hw2[i, j] + b2[j], name="y")
    arrays = [random_array(rng, t.shape) for t in (X, W1, b1, W2, b2)]

    x, w1, bias1, w2, bias2 = (a.astype(np.float64) for a in arrays)
    want = np.maximum(x @ w1 + bias1, 0) @ w2 + bias2
    assert_matches(mc.build(y)(*arrays), want, "float32", reduction=d_in + hidden)


# ---------------------------------------------------------------------- integer and double kernels


def test_int32_kernel(rng: np.random.Generator) -> None:
    A, B = mc.placeholder((7, 13), "int32", name="A"), mc.placeholder((7, 13), "int32", name="B")
    r = mc.reduce_axis(13, name="r")
    poly = mc.compute((7, 13), lambda i, j: A[i, j] * B[i, j] - 3 * A[i, j] + 7, name="poly")
    clamp = mc.compute((7, 13), lambda i, j: mc.minimum(mc.maximum(A[i, j], -4), 4) + mc.abs(B[i, j]), name="clamp")
    dot = mc.compute((7,), lambda i: mc.sum(A[i, r] * B[i, r], axis=r), name="dot")
    a, b = random_array(rng, (7, 13), "int32"), random_array(rng, (7, 13), "int32")

    assert_matches(mc.build(poly)(a, b), a * b - 3 * a + 7, "int32")
    assert_matches(mc.build(clamp)(a, b), np.clip(a, -4, 4) + np.abs(b), "int32")
    assert_matches(mc.build(dot)(a, b), (a * b).sum(axis=1).astype(np.int32), "int32")


def test_int64_kernel_keeps_values_beyond_32_bits(rng: np.random.Generator) -> None:
    A = mc.placeholder((33,), "int64", name="A")
    B = mc.placeholder((33,), "int64", name="B")
    r = mc.reduce_axis(33, name="r")
    combo = mc.compute((33,), lambda i: A[i] * B[i] + A[i] - 5_000_000_000, name="combo")
    total = mc.compute((1,), lambda i: mc.sum(A[r] * B[r], axis=r), name="total")
    a = rng.integers(-(2**24), 2**24, size=33).astype(np.int64)
    b = rng.integers(-(2**24), 2**24, size=33).astype(np.int64)

    assert_matches(mc.build(combo)(a, b), a * b + a - 5_000_000_000, "int64")
    assert_matches(mc.build(total)(a, b), np.array([np.dot(a, b)]), "int64")


def test_float64_kernel_is_double_precision(rng: np.random.Generator) -> None:
    """1 + 1e-12 is lost in float32 but not in float64: the kernel must compute in double."""
    X = mc.placeholder((7, 13), "float64", name="X")
    r = mc.reduce_axis(13, name="r")
    tiny = mc.compute((7, 13), lambda i, j: (X[i, j] + 1e-12) - X[i, j], name="tiny")
    mix = mc.compute((7, 13), lambda i, j: mc.exp(X[i, j]) * mc.tanh(X[i, j]) + mc.sqrt(mc.abs(X[i, j]))
                     - mc.log(X[i, j] * X[i, j] + 1.0), name="mix")
    norms = mc.compute((7,), lambda i: mc.sum(X[i, r] * X[i, r], axis=r), name="norms")
    x = random_array(rng, (7, 13), "float64", 0.5, 2.0)

    # In float32, x + 1e-12 == x and this would be 0; in float64 it is 1e-12 up to one ulp of x.
    np.testing.assert_allclose(mc.build(tiny)(x), np.full((7, 13), 1e-12), rtol=0, atol=1e-15)
    want = np.exp(x) * np.tanh(x) + np.sqrt(np.abs(x)) - np.log(x * x + 1.0)
    assert_matches(mc.build(mix)(x), want, "float64")
    assert_matches(mc.build(norms)(x), (x * x).sum(axis=1), "float64", reduction=13)


# ------------------------------------------------------------------------ printed IR, LLVM, asm


def test_lowered_ir_names_the_tensors_and_has_loops() -> None:
    lhs = mc.placeholder((7, 13), name="lhs")
    rhs = mc.placeholder((13, 5), name="rhs")
    r = mc.reduce_axis(13, name="r")
    product = mc.compute((7, 5), lambda i, j: mc.sum(lhs[i, r] * rhs[r, j], axis=r), name="product")

    text = str(mc.lower(product))
    assert "for" in text
    for name in ("lhs", "rhs", "product"):
        assert name in text, f"{name!r} missing from the lowered IR:\n{text}"

    kernel = mc.build(product)
    assert isinstance(kernel.ir, str) and "for" in kernel.ir and "product" in kernel.ir
    assert isinstance(kernel.llvm_ir, str) and "define" in kernel.llvm_ir
    assert isinstance(kernel.assembly, str) and kernel.assembly.strip()


def test_lowered_ir_of_a_multi_stage_program_names_every_stage() -> None:
    X = mc.placeholder((4, 33), name="logits_in")
    text = str(mc.lower(softmax_rows(X, prefix="sm_")))
    assert text.count("for") >= 4  # at least one loop per stage
    for name in ("logits_in", "sm_row_max", "sm_shifted_exp", "sm_row_sum", "sm_softmax"):
        assert name in text, f"{name!r} missing from the lowered IR:\n{text}"
