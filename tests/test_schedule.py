"""The schedule layer: every transformation keeps the program's meaning, refuses what it cannot do,
and leaves a trace that can be stored, replayed and read.

How these tests are organised (read them top to bottom as a tour of ``mc.Schedule``):

1. **One transformation at a time.**  Each primitive (split, tile, reorder, fuse, parallel,
   vectorize, unroll, cache_write, pack, compute_at, compute_inline) is applied to a matmul
   whose extents do and do not divide the factors; the JIT-compiled kernel must agree with
   numpy.  A factor that does not divide an extent is where compilers go wrong: the split adds
   a guard, lowering partitions the loop into a guard-free main part and a tail.
2. **Realistic schedules.**  The BLIS-style matmul micro-kernel (tile, pack, register tile,
   unroll, vectorize, parallel), a padded conv2d, softmax and multi-head attention with their
   intermediate stages moved into the output's row loop.
3. **Illegal schedules.**  Each must raise ``mc.ScheduleError`` with a message that says why.
4. **Traces.**  A schedule is data (a tuple of ``mc.Step``): JSON round-trips, replay on a fresh
   copy of the program, the Python text of ``trace()``, value semantics, immutability.
5. **Printing.**  ``str(schedule)`` is the transformed loop nest after every step.

A small *reference interpreter* (``interpret`` below) runs a loop-nest ``Function`` in Python
and checks every index against its tensor's shape.  It is independent of LLVM, so it can tell
"the kernel computes the right numbers" apart from "the kernel only touches memory it owns".

The ``test_fixed_*`` tests at the end are regressions for bugs this file found.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
from typing import Callable

import numpy as np
import pytest

import minicompiler as mc
from minicompiler.dtypes import element
from minicompiler.ir.expr import BinOp, Broadcast, Call, Cast, Const, Load, Ramp, Select, Var
from minicompiler.ir.stmt import Accumulate, Alloc, For, Function, If, Let, Seq, Store
from minicompiler.ir.visitor import Mutator

# ------------------------------------------------------------------------------------------------
# Programs and helpers
# ------------------------------------------------------------------------------------------------

#: Matmul extents (M, N, K): one that every factor divides, and three that most factors do not.
SHAPES = [(64, 64, 64), (37, 53, 29), (1, 17, 3), (100, 33, 7)]


def matmul(M: int, N: int, K: int, dtype: str = "float32") -> mc.Tensor:
    """``C[i, j] = sum_k A[i, k] * B[k, j]``; its default loops are i_init, j_init, then i, j, k."""
    A = mc.placeholder((M, K), dtype, name="A")
    B = mc.placeholder((K, N), dtype, name="B")
    k = mc.reduce_axis(K, "k")
    return mc.compute((M, N), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")


def random_array(rng: np.random.Generator, shape: tuple[int, ...], dtype: str = "float32") -> np.ndarray:
    if dtype.startswith("int"):
        return rng.integers(-5, 6, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def matmul_inputs(M: int, N: int, K: int, dtype: str = "float32", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return random_array(rng, (M, K), dtype), random_array(rng, (K, N), dtype)


def assert_close(actual: np.ndarray, expected: np.ndarray, reduction: int = 1) -> None:
    """Exact for integers; for floats a tolerance that grows with the reduction length."""
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    if actual.dtype.kind in "iu":
        np.testing.assert_array_equal(actual, expected)
    elif actual.dtype == np.float32:
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * max(1, reduction))
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * max(1, reduction))


def check_matmul(s: mc.Schedule, M: int, N: int, K: int, dtype: str = "float32") -> None:
    """Build the schedule and compare the kernel with ``a @ b``."""
    a, b = matmul_inputs(M, N, K, dtype)
    assert_close(mc.build(s)(a, b), a @ b, K)


def matmul_relu(M: int, N: int, K: int) -> mc.Tensor:
    """Three stages: ``A2 = 2 * A`` (elementwise), ``C = A2 @ B`` (reduction), ``D = relu(C)``.

    Default loops: A2 → i, k;  C → i_init, j_init (init) and i1, j, k1 (update);  D → i2, j1.
    """
    A = mc.placeholder((M, K), name="A")
    B = mc.placeholder((K, N), name="B")
    A2 = mc.compute((M, K), lambda i, k: A[i, k] * 2.0, name="A2")
    k = mc.reduce_axis(K, "k")
    C = mc.compute((M, N), lambda i, j: mc.sum(A2[i, k] * B[k, j], axis=k), name="C")
    return mc.compute((M, N), lambda i, j: mc.maximum(C[i, j], 0.0), name="D")


def softmax(R: int, N: int) -> mc.Tensor:
    """Row softmax in four stages.  Row loops: mx → i, ex → i1, sm → i2, out → i3 (columns j1)."""
    X = mc.placeholder((R, N), name="X")
    k1, k2 = mc.reduce_axis(N, "k1"), mc.reduce_axis(N, "k2")
    mx = mc.compute((R,), lambda i: mc.max(X[i, k1], axis=k1), name="mx")
    ex = mc.compute((R, N), lambda i, j: mc.exp(X[i, j] - mx[i]), name="ex")
    sm = mc.compute((R,), lambda i: mc.sum(ex[i, k2], axis=k2), name="sm")
    return mc.compute((R, N), lambda i, j: ex[i, j] / sm[i], name="out")


def softmax_reference(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def attention(H: int, S: int, D: int) -> mc.Tensor:
    """softmax(Q K^T / sqrt(D)) V per head.  The output O's update loops are h5, i5, c, j31."""
    Q, K, V = (mc.placeholder((H, S, D), name=n) for n in "QKV")
    d, j1, j2, j3 = mc.reduce_axis(D, "d"), mc.reduce_axis(S, "j1"), mc.reduce_axis(S, "j2"), mc.reduce_axis(S, "j3")
    scale = 1.0 / math.sqrt(D)
    sc = mc.compute((H, S, S), lambda h, i, j: mc.sum(Q[h, i, d] * K[h, j, d] * scale, axis=d), name="sc")
    mx = mc.compute((H, S), lambda h, i: mc.max(sc[h, i, j1], axis=j1), name="mx")
    e = mc.compute((H, S, S), lambda h, i, j: mc.exp(sc[h, i, j] - mx[h, i]), name="e")
    sm = mc.compute((H, S), lambda h, i: mc.sum(e[h, i, j2], axis=j2), name="sm")
    p = mc.compute((H, S, S), lambda h, i, j: e[h, i, j] / sm[h, i], name="p")
    return mc.compute((H, S, D), lambda h, i, c: mc.sum(p[h, i, j3] * V[h, j3, c], axis=j3), name="O")


def attention_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    scores = np.einsum("hid,hjd->hij", q, k) / np.float32(math.sqrt(q.shape[-1]))
    return softmax_reference(scores.reshape(-1, scores.shape[-1])).reshape(scores.shape) @ v


# ------------------------------------------------------------------------------------------------
# A reference interpreter with bounds checks
# ------------------------------------------------------------------------------------------------

class OutOfBounds(AssertionError):
    """An access outside its tensor: a memory-safety bug in the generated program."""


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
           "floordiv": np.floor_divide, "mod": np.mod, "max": np.maximum, "min": np.minimum,
           "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
           "eq": np.equal, "ne": np.not_equal, "and": np.logical_and, "or": np.logical_or}
_CALLS = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "abs": np.abs, "not": np.logical_not}
_ACCUMULATE = {"sum": np.add, "max": np.maximum, "min": np.minimum}


def interpret(func: Function, *arrays: np.ndarray) -> np.ndarray:
    """Run ``func`` (scheduled or fully lowered, vectors included) in Python; slow, so keep shapes tiny.

    Every Load/Store/Accumulate checks its indices; scratch tensors start as NaN (or a sentinel
    integer) so that reading an element nobody wrote shows up in the result.
    """
    def fresh(t) -> np.ndarray:  # noqa: ANN001
        return np.full(t.shape, np.nan if element(t.dtype).startswith("float") else -12345, t.dtype)

    memory = {id(t): np.array(a) for t, a in zip(func.inputs, arrays)}
    (output,) = func.outputs
    memory[id(output)] = fresh(output)
    env: dict[Var, np.ndarray] = {}

    def where(tensor, indices) -> tuple:  # noqa: ANN001
        idx = tuple(np.asarray(value(i)) for i in indices)
        for axis, (i, n) in enumerate(zip(idx, tensor.shape)):
            if np.any(i < 0) or np.any(i >= n):
                raise OutOfBounds(f"{tensor.name}: index {i.tolist()} on axis {axis} is outside [0, {n})")
        return idx

    def value(e) -> np.ndarray:  # noqa: ANN001
        if isinstance(e, Var):
            return env[e]
        if isinstance(e, Const):
            return np.array(e.value, dtype=element(e.dtype))
        if isinstance(e, BinOp):
            with np.errstate(all="ignore"):
                return np.asarray(_BINARY[e.op](value(e.a), value(e.b))).astype(element(e.dtype))
        if isinstance(e, Load):
            return memory[id(e.tensor)][where(e.tensor, e.indices)]
        if isinstance(e, Select):
            cond = value(e.cond)
            if cond.ndim == 0:  # the branch not taken is never evaluated
                return value(e.true_value) if cond else value(e.false_value)
            return np.where(cond, value(e.true_value), value(e.false_value))
        if isinstance(e, Call):
            with np.errstate(all="ignore"):
                return np.asarray(_CALLS[e.fn](*[value(a) for a in e.args])).astype(element(e.dtype))
        if isinstance(e, Cast):
            return value(e.value).astype(element(e.dtype))
        if isinstance(e, Ramp):
            return value(e.base) + e.stride * np.arange(e.lanes)
        if isinstance(e, Broadcast):
            return np.full(e.lanes, value(e.value))
        raise TypeError(f"cannot interpret {type(e).__name__}")

    def run(s) -> None:  # noqa: ANN001
        if isinstance(s, Seq):
            for child in s.stmts:
                run(child)
        elif isinstance(s, For):
            for n in range(int(value(s.extent))):
                env[s.var] = np.array(n, dtype="int64")
                run(s.body)
        elif isinstance(s, Alloc):
            memory[id(s.tensor)] = fresh(s.tensor)
            run(s.body)
        elif isinstance(s, If):
            if value(s.cond):
                run(s.then_body)
            elif s.else_body is not None:
                run(s.else_body)
        elif isinstance(s, Let):
            env[s.var] = value(s.value)
            run(s.body)
        elif isinstance(s, Store):
            memory[id(s.tensor)][where(s.tensor, s.indices)] = value(s.value)
        elif isinstance(s, Accumulate):
            idx, target = where(s.tensor, s.indices), memory[id(s.tensor)]
            target[idx] = _ACCUMULATE[s.op](target[idx], value(s.value))
        else:
            raise TypeError(f"cannot interpret {type(s).__name__}")

    run(func.body)
    return memory[id(output)]


def test_the_reference_interpreter_agrees_with_numpy_and_catches_bad_indices() -> None:
    a, b = matmul_inputs(5, 6, 3)
    assert_close(interpret(mc.Schedule(matmul(5, 6, 3)).func, a, b), a @ b, 3)
    X = mc.placeholder((4,), name="X")
    Y = mc.compute((4,), lambda i: X[i] + 1.0, name="Y")
    shifted = mc.Schedule(Y).func

    class ShiftReads(Mutator):  # X[i] → X[i + 1]: one element too far at the end
        def visit_Load(self, n: Load) -> Load:
            return Load(n.tensor, tuple(i + 1 for i in n.indices))

    with pytest.raises(OutOfBounds, match="X"):
        interpret(shifted.with_body(ShiftReads().visit(shifted.body)), np.zeros(4, np.float32))


# ------------------------------------------------------------------------------------------------
# 1. Each transformation alone keeps the program's meaning
# ------------------------------------------------------------------------------------------------

#: name → schedule built from the default matmul schedule.  Factors 4, 6, 8, 16, 32 divide 64 but
#: not 37, 53, 29, 17, 33 or 7, so every entry runs with and without a tail across SHAPES.
MATMUL_TRANSFORMS: dict[str, Callable[[mc.Schedule], mc.Schedule]] = {
    "split_i_factor_4": lambda s: s.split("i", 4),
    "split_i_factor_6": lambda s: s.split("i", factor=6),
    "split_j_factor_32": lambda s: s.split("j", 32),
    "split_k_factor_8": lambda s: s.split("k", 8),
    "split_i_nparts_3": lambda s: s.split("i", nparts=3),
    "split_k_nparts_4": lambda s: s.split("k", nparts=4),
    "split_twice": lambda s: s.split("j", 16).split("j_i", 6),
    "tile_8x16": lambda s: s.tile("i", "j", 8, 16),
    "tile_6x32": lambda s: s.tile("i", "j", 6, 32),
    "reorder_ikj": lambda s: s.reorder("i", "k", "j"),
    "reorder_kji": lambda s: s.reorder("k", "j", "i"),
    "fuse_i_j": lambda s: s.fuse("i", "j"),
    "fuse_init_loops": lambda s: s.fuse("i_init", "j_init"),
    "parallel_i": lambda s: s.parallel("i"),
    "parallel_split_outer": lambda s: s.split("i", 8).parallel("i_o"),
    "parallel_init": lambda s: s.parallel("i_init"),
    "vectorize_j_inner": lambda s: s.reorder("i", "k", "j").split("j", 8).vectorize("j_i"),
    "vectorize_init": lambda s: s.split("j_init", 16).vectorize("j_init_i"),
    "unroll_full": lambda s: s.split("k", 4).unroll("k_i"),
    "unroll_partial_k": lambda s: s.unroll("k", factor=4),
    "unroll_partial_j": lambda s: s.unroll("j", factor=6),
    "cache_write_at_i": lambda s: s.cache_write("C", at="i"),
    "cache_write_at_split": lambda s: s.split("i", 4).cache_write("C", at="i_o"),
    "cache_write_at_tile": lambda s: s.tile("i", "j", 4, 8).cache_write("C", at="j_o"),
    "cache_write_reduction_outside": lambda s: s.split("k", 4).reorder("k_o", "i", "j").cache_write("C", at="i"),
    "pack_B_columns": lambda s: s.pack("B", 1, 8),
    "pack_B_rows": lambda s: s.pack("B", 0, 16),
    "pack_A_rows": lambda s: s.pack("A", 0, 6),
    "pack_A_columns": lambda s: s.pack("A", 1, 32),
    "cache_read_B_at_k_block": lambda s: s.tile("i", "j", 4, 8).split("k", 5)
        .reorder("i_o", "j_o", "k_o", "k_i", "i_i", "j_i").cache_read("B", "k_o"),
    "cache_read_A_rows": lambda s: s.split("i", 3).cache_read("A", "i_o"),
    "cache_read_B_whole": lambda s: s.cache_read("B", "i"),
    "prefetch_B_two_blocks_ahead": lambda s: s.tile("i", "j", 4, 8).split("k", 5)
        .reorder("k_o", "j_o", "i_o", "k_i", "i_i", "j_i").prefetch("B", "j_o", 2).unroll("i_i").vectorize("j_i"),
    "prefetch_copied_block_ahead": lambda s: s.split("k", 4).reorder("k_o", "i", "j", "k_i")
        .cache_read("B", "k_o").prefetch("B", "k_o", 1).prefetch("A", "i", 1),
    # The skinny-product kernel: a column chunk per core, B's kc x nc block copied in panels as wide
    # as the register tile, the tile accumulated in registers; edges in every dimension.
    "cache_read_B_panels": lambda s: s.tile("i", "j", 4, 8).split("k", 6).split("j_o", 3)
        .reorder("j_o_o", "k_o", "j_o_i", "i_o", "k_i", "i_i", "j_i").cache_write("C", "i_o")
        .cache_read("B", "k_o", panel=8).vectorize("B_block_c2").unroll("i_i").vectorize("j_i")
        .parallel("j_o_o"),
}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("transform", list(MATMUL_TRANSFORMS), ids=str)
def test_matmul_transform_matches_numpy(transform: str, shape: tuple[int, int, int]) -> None:
    s = MATMUL_TRANSFORMS[transform](mc.Schedule(matmul(*shape)))
    check_matmul(s, *shape)


@pytest.mark.parametrize("dtype", ["float64", "int32"])
@pytest.mark.parametrize("transform", ["tile_6x32", "vectorize_j_inner", "unroll_partial_j", "cache_write_at_tile",
                                       "pack_B_columns", "parallel_split_outer", "fuse_i_j",
                                       "cache_read_B_panels"])
def test_matmul_transform_in_other_dtypes(transform: str, dtype: str) -> None:
    s = MATMUL_TRANSFORMS[transform](mc.Schedule(matmul(37, 53, 29, dtype)))
    check_matmul(s, 37, 53, 29, dtype)


def _matmul_relu_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * np.float32(2)) @ b, np.float32(0))


#: Schedules of the three-stage matmul_relu.  compute_at goes consumer-first: C is moved into D's
#: row loop i2 before A2 (whose only reader, C, is then inside i2 too).  Rows are split *after*
#: compute_at, so the split's guard also covers the moved stages; compute_at into a loop that
#: already has a tail reads out of bounds (see test_bug_compute_at_into_a_loop_with_a_tail_...).
STAGE_TRANSFORMS: dict[str, Callable[[mc.Schedule], mc.Schedule]] = {
    "compute_inline_A2": lambda s: s.compute_inline("A2"),
    "compute_at_C_in_row": lambda s: s.compute_at("C", at="i2"),
    "compute_at_C_and_A2_in_row": lambda s: s.compute_at("C", at="i2").compute_at("A2", at="i2"),
    "compute_at_then_split_row": lambda s: s.compute_at("C", at="i2").compute_at("A2", at="i2").split("i2", 4),
    "compute_at_then_parallel": lambda s: s.compute_at("C", at="i2").compute_inline("A2").parallel("i2"),
    "compute_at_column": lambda s: s.compute_at("C", at="j1").compute_at("A2", at="j1"),
    "inline_then_schedule": lambda s: s.compute_inline("A2").reorder("i1", "k1", "j").split("j", 8).vectorize("j_i"),
}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("transform", list(STAGE_TRANSFORMS), ids=str)
def test_stage_transform_matches_numpy(transform: str, shape: tuple[int, int, int]) -> None:
    s = STAGE_TRANSFORMS[transform](mc.Schedule(matmul_relu(*shape)))
    a, b = matmul_inputs(*shape)
    assert_close(mc.build(s)(a, b), _matmul_relu_reference(a, b), shape[2])


def test_compute_at_shrinks_the_intermediate_to_what_one_iteration_reads() -> None:
    s = mc.Schedule(matmul_relu(37, 53, 29)).compute_at("C", at="i2").compute_at("A2", at="i2")
    text = str(s)
    assert "C = empty([1, 53], float32)" in text and "A2 = empty([1, 29], float32)" in text
    assert text.index("for i2 in range(37)") < text.index("C = empty")  # allocated inside the row loop


def test_compute_inline_removes_the_stage() -> None:
    s = mc.Schedule(matmul_relu(8, 8, 8)).compute_inline("A2")
    assert "A2 = empty" not in str(s) and "A2[" not in str(s)
    assert "A[i1, k1] * 2.0 * B[k1, j]" in str(s)


# ------------------------------------------------------------------------------------------------
# 2. Realistic schedules
# ------------------------------------------------------------------------------------------------

def micro_kernel(C: mc.Tensor, kc: int, parallel: bool) -> mc.Schedule:
    """The BLIS-style schedule: 6x32 register tile of C, packed B panels, k blocked by ``kc``."""
    s = (mc.Schedule(C).tile("i", "j", 6, 32).split("k", kc)
         .reorder("j_o", "k_o", "i_o", "k_i", "i_i", "j_i")
         .cache_write("C", "i_o").pack("B", 1, 32).unroll("i_i").vectorize("j_i"))
    return s.parallel("j_o") if parallel else s


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_micro_kernel(shape: tuple[int, int, int], parallel: bool) -> None:
    kc = 256 if shape[2] == 64 else 16  # kc=16 < K=29: the k blocks then have a tail too
    check_matmul(micro_kernel(matmul(*shape), kc, parallel), *shape)


def test_micro_kernel_lowers_to_vector_fmas_on_a_register_tile() -> None:
    lowered = str(mc.lower(micro_kernel(matmul(64, 64, 64), 16, parallel=True)))
    assert "C_local = empty([6, 32], float32)" in lowered
    assert "B_packed = empty([2, 64, 32], float32)" in lowered
    assert "for j_o in parallel(2):" in lowered
    # i_i unrolled six times; j_i (32 wide) as register-wide vector operations per row of the tile
    lanes = min(32, mc.Target.host().vector_lanes("float32"))
    for row in range(1, 6):
        for start in range(0, 32, lanes):
            assert f"C_local[{row}, ramp({start}, 1, {lanes})] +=" in lowered


@pytest.mark.parametrize("dtype", ["float64", "int32"])
def test_micro_kernel_in_other_dtypes(dtype: str) -> None:
    check_matmul(micro_kernel(matmul(37, 53, 29, dtype), 16, parallel=True), 37, 53, 29, dtype)


def test_micro_kernel_stays_in_bounds_before_and_after_lowering() -> None:
    """The interpreter checks every index of the scheduled and of the fully lowered program."""
    s = (mc.Schedule(matmul(7, 11, 5)).tile("i", "j", 3, 4).split("k", 2)
         .reorder("j_o", "k_o", "i_o", "k_i", "i_i", "j_i")
         .cache_write("C", "i_o").pack("B", 1, 4).unroll("i_i").vectorize("j_i").parallel("j_o"))
    a, b = matmul_inputs(7, 11, 5)
    assert_close(interpret(s.func, a, b), a @ b, 5)
    assert_close(interpret(mc.lower(s), a, b), a @ b, 5)


def test_parallel_matmul_gives_the_same_result_on_one_and_two_threads() -> None:
    kernel = mc.build(micro_kernel(matmul(100, 75, 40), 16, parallel=True))
    a, b = matmul_inputs(100, 75, 40, seed=3)
    before = mc.get_num_threads()
    try:
        mc.set_num_threads(2)
        two = kernel(a, b)
        mc.set_num_threads(1)
        one = kernel(a, b)
    finally:
        mc.set_num_threads(before)
    np.testing.assert_allclose(two, one, rtol=1e-6, atol=1e-6)
    assert_close(two, a @ b, 40)


# conv2d, NCHW, 3x3, stride 1, "same" padding --------------------------------------------------

CONV = dict(batch=2, cin=3, height=10, width=11, cout=4)  # width 11: splits by 4 leave a tail


def conv2d_padded_in_body() -> mc.Tensor:
    """Padding as a where() inside the reduction.  Update loops: n, f, y, x, c, r, q."""
    n_, ci, h, w, co = CONV.values()
    X = mc.placeholder((n_, ci, h, w), name="X")
    W = mc.placeholder((co, ci, 3, 3), name="W")
    c, r, q = mc.reduce_axis(ci, "c"), mc.reduce_axis(3, "r"), mc.reduce_axis(3, "q")
    inside = lambda y, x: (y + r >= 1) & (y + r < h + 1) & (x + q >= 1) & (x + q < w + 1)  # noqa: E731
    return mc.compute((n_, co, h, w), lambda n, f, y, x: mc.sum(
        mc.where(inside(y, x), X[n, c, y + r - 1, x + q - 1], 0.0) * W[f, c, r, q], axis=(c, r, q)), name="O")


def conv2d_padded_stage() -> mc.Tensor:
    """Padding as its own stage Xp.  Xp loops: n, ch, y, x; O update loops: n1, f, y1, x1, c, r, q."""
    n_, ci, h, w, co = CONV.values()
    X = mc.placeholder((n_, ci, h, w), name="X")
    W = mc.placeholder((co, ci, 3, 3), name="W")
    Xp = mc.compute((n_, ci, h + 2, w + 2), lambda n, ch, y, x: mc.where(
        (y >= 1) & (y < h + 1) & (x >= 1) & (x < w + 1), X[n, ch, y - 1, x - 1], 0.0), name="Xp")
    c, r, q = mc.reduce_axis(ci, "c"), mc.reduce_axis(3, "r"), mc.reduce_axis(3, "q")
    return mc.compute((n_, co, h, w), lambda n, f, y, x: mc.sum(Xp[n, c, y + r, x + q] * W[f, c, r, q],
                                                                axis=(c, r, q)), name="O")


def conv_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_, ci, h, w, co = CONV.values()
    rng = np.random.default_rng(7)
    x, wt = random_array(rng, (n_, ci, h, w)), random_array(rng, (co, ci, 3, 3))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((n_, co, h, w), np.float32)
    for r in range(3):
        for q in range(3):
            ref += np.einsum("ncyx,fc->nfyx", xp[:, :, r:r + h, q:q + w], wt[:, :, r, q])
    return x, wt, ref


@pytest.mark.parametrize("schedule", [
    lambda s: s,
    lambda s: s.split("x", 4).reorder("x_o", "c", "r", "q", "x_i"),
    lambda s: s.split("x", 4).reorder("x_o", "c", "r", "q", "x_i").unroll("x_i").parallel("f"),
    lambda s: s.split("y", 3).parallel("y_o").unroll("q"),
    # The rows a block of output rows reads start one row above it (and beyond the image's edges):
    # the copy covers them, guarded, and the where() in the body still decides what is read.
    lambda s: s.split("y", 3).cache_read("X", "y_o").parallel("f"),
    lambda s: s.cache_read("X", "x").cache_read("W", "f"),
], ids=["default", "split_reorder_x", "unroll_x_parallel_f", "split_y_parallel", "cache_read_rows_of_x",
        "cache_read_window_and_filter"])
def test_conv2d_with_padding_in_the_body(schedule: Callable[[mc.Schedule], mc.Schedule]) -> None:
    x, w, ref = conv_inputs()
    assert_close(mc.build(schedule(mc.Schedule(conv2d_padded_in_body())))(x, w), ref, 27)


def test_conv2d_width_cannot_be_vectorized_through_a_padding_guard() -> None:
    s = mc.Schedule(conv2d_padded_in_body()).split("x", 4).reorder("x_o", "c", "r", "q", "x_i")
    with pytest.raises(mc.ScheduleError, match="where"):
        s.vectorize("x_i")


@pytest.mark.parametrize("schedule", [
    lambda s: s.split("x1", 4).reorder("x1_o", "c", "r", "q", "x1_i").vectorize("x1_i"),
    lambda s: s.compute_at("Xp", at="y1"),
    lambda s: s.compute_at("Xp", at="y1").split("x1", 4).reorder("x1_o", "c", "r", "q", "x1_i")
               .vectorize("x1_i").parallel("f"),
], ids=["vectorize_width", "compute_at_padding_per_row", "compute_at_vectorize_parallel"])
def test_conv2d_with_a_padding_stage(schedule: Callable[[mc.Schedule], mc.Schedule]) -> None:
    x, w, ref = conv_inputs()
    assert_close(mc.build(schedule(mc.Schedule(conv2d_padded_stage())))(x, w), ref, 27)


def test_conv2d_inlining_the_padding_stage_makes_the_width_unvectorizable() -> None:
    s = mc.Schedule(conv2d_padded_stage())
    vectorizable = s.split("x1", 4).reorder("x1_o", "c", "r", "q", "x1_i")
    vectorizable.vectorize("x1_i")  # fine: Xp is read without a guard
    inlined = s.compute_inline("Xp").split("x1", 4).reorder("x1_o", "c", "r", "q", "x1_i")
    with pytest.raises(mc.ScheduleError, match="where"):
        inlined.vectorize("x1_i")  # the where() of the padding is now in the loop body


# softmax ---------------------------------------------------------------------------------------

SOFTMAX_SCHEDULES: dict[str, Callable[[mc.Schedule], mc.Schedule]] = {
    "default": lambda s: s,
    # reverse topological order: sm (read by out), then ex (read by sm and out), then mx
    "compute_at_all": lambda s: s.compute_at("sm", "i3").compute_at("ex", "i3").compute_at("mx", "i3"),
    "inline_exp": lambda s: s.compute_inline("ex"),
    "inline_exp_compute_at": lambda s: s.compute_inline("ex").compute_at("sm", "i3").compute_at("mx", "i3"),
    "compute_at_vectorize_parallel": lambda s: s.compute_at("sm", "i3").compute_at("ex", "i3")
    .compute_at("mx", "i3").split("j1", 8).vectorize("j1_i").split("j", 8).vectorize("j_i").parallel("i3"),
    "compute_at_split_rows_parallel": lambda s: s.compute_at("sm", "i3").compute_at("ex", "i3").compute_at("mx", "i3")
    .split("i3", 4).parallel("i3_o"),
}


@pytest.mark.parametrize("shape", [(13, 37), (16, 64), (1, 5)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("schedule", list(SOFTMAX_SCHEDULES), ids=str)
def test_softmax(schedule: str, shape: tuple[int, int]) -> None:
    x = random_array(np.random.default_rng(5), shape) * np.float32(3)
    kernel = mc.build(SOFTMAX_SCHEDULES[schedule](mc.Schedule(softmax(*shape))))
    np.testing.assert_allclose(kernel(x), softmax_reference(x), rtol=1e-5, atol=1e-6)


def test_softmax_compute_at_keeps_one_row_of_each_intermediate() -> None:
    s = SOFTMAX_SCHEDULES["compute_at_all"](mc.Schedule(softmax(13, 37)))
    text = str(s)
    for line in ("mx = empty([1], float32)", "ex = empty([1, 37], float32)", "sm = empty([1], float32)"):
        assert line in text
    assert text.splitlines()[1] == "  for i3 in range(13):"  # everything now lives in the row loop


# attention -------------------------------------------------------------------------------------

ATTENTION_STAGES_IN_ROW_LOOP = ("p", "sm", "e", "mx", "sc")  # consumers before producers

def _compute_all_at(s: mc.Schedule, stages: tuple[str, ...], loop: str) -> mc.Schedule:
    for stage in stages:
        s = s.compute_at(stage, at=loop)
    return s


def _attention_row_kernel(s: mc.Schedule) -> mc.Schedule:
    """p inlined, every other stage per (head, row); the head loop in parallel, the head dim c in vectors."""
    s = _compute_all_at(s.compute_inline("p"), ATTENTION_STAGES_IN_ROW_LOOP[1:], "i5")
    return s.reorder("j31", "c").vectorize("c").parallel("h5")


ATTENTION_SCHEDULES: dict[str, Callable[[mc.Schedule], mc.Schedule]] = {
    "default": lambda s: s,
    "compute_at_all": lambda s: _compute_all_at(s, ATTENTION_STAGES_IN_ROW_LOOP, "i5"),
    "inline_p_compute_at_rest": lambda s: _compute_all_at(s.compute_inline("p"), ATTENTION_STAGES_IN_ROW_LOOP[1:],
                                                          "i5"),
    "inline_p_and_e": lambda s: s.compute_inline("p").compute_inline("e"),
    "row_kernel_vectorized_parallel_heads": _attention_row_kernel,
}


@pytest.mark.parametrize("shape", [(2, 19, 8), (4, 16, 16)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("schedule", list(ATTENTION_SCHEDULES), ids=str)
def test_attention(schedule: str, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(11)
    q, k, v = (random_array(rng, shape) for _ in range(3))
    kernel = mc.build(ATTENTION_SCHEDULES[schedule](mc.Schedule(attention(*shape))))
    np.testing.assert_allclose(kernel(q, k, v), attention_reference(q, k, v), rtol=1e-4, atol=1e-5)


def test_attention_compute_at_needs_consumers_moved_first() -> None:
    s = mc.Schedule(attention(2, 19, 8))
    with pytest.raises(mc.ScheduleError, match="also read outside"):
        s.compute_at("sm", at="i5")  # p, which reads sm, is still computed outside i5
    moved = _compute_all_at(s, ATTENTION_STAGES_IN_ROW_LOOP, "i5")
    assert "sc = empty([1, 1, 19], float32)" in str(moved)


# ------------------------------------------------------------------------------------------------
# 3. Illegal schedules raise ScheduleError, saying why
# ------------------------------------------------------------------------------------------------

def _mm() -> mc.Schedule:
    return mc.Schedule(matmul(37, 53, 29))


def _wide() -> mc.Schedule:
    return mc.Schedule(matmul(4, 300, 4))


ILLEGAL: dict[str, tuple[Callable[[], object], str]] = {
    "unknown_loop": (lambda: _mm().split("zz", 4), "no loop named 'zz'"),
    "unknown_loop_in_reorder": (lambda: _mm().reorder("i", "zz"), "no loop named 'zz'"),
    "loop_name_not_a_string": (lambda: _mm().split(3, 4), "must be a loop name"),  # type: ignore[arg-type]
    "split_factor_zero": (lambda: _mm().split("i", 0), "positive integer"),
    "split_factor_negative": (lambda: _mm().split("i", -2), "positive integer"),
    "split_factor_string": (lambda: _mm().split("i", "4"), "positive integer"),  # type: ignore[arg-type]
    "split_factor_bool": (lambda: _mm().split("i", True), "positive integer"),
    "split_nparts_zero": (lambda: _mm().split("i", nparts=0), "positive integer"),
    "split_without_factor_or_nparts": (lambda: _mm().split("i"), "exactly one of factor= or nparts="),
    "split_with_factor_and_nparts": (lambda: _mm().apply(mc.Step.make("split", loop="i", factor=2, nparts=3)),
                                     "exactly one of factor= or nparts="),
    "tile_factor_zero": (lambda: _mm().tile("i", "j", 0, 4), "positive integer"),
    "reorder_not_nested": (lambda: _mm().reorder("i_init", "k"), "not in one nest"),
    "reorder_across_statements": (lambda: _mm().cache_write("C", "i").reorder("i", "j"), "not perfectly nested"),
    "reorder_single_loop": (lambda: _mm().reorder("i"), "two or more distinct"),
    "reorder_repeated_loop": (lambda: _mm().reorder("i", "i"), "two or more distinct"),
    "reorder_marked_loop": (lambda: _mm().parallel("i").reorder("j", "i"), "before marking"),
    "fuse_not_adjacent": (lambda: _mm().fuse("i", "k"), "directly inside"),
    "fuse_different_nests": (lambda: _mm().fuse("i_init", "i"), "not inside"),
    "parallel_reduction_loop": (lambda: _mm().parallel("k"), "reduction"),
    "parallel_reduction_block": (lambda: _mm().split("k", 8).reorder("k_o", "i").parallel("k_o"), "reduction"),
    "parallel_nested_inside_parallel": (lambda: _mm().parallel("i").parallel("j"), "only one loop level"),
    "parallel_outside_parallel": (lambda: _mm().split("i", 4).parallel("j").parallel("i_o"), "only one loop level"),
    "parallel_twice_same_loop": (lambda: _mm().parallel("i").parallel("i"), "already parallel"),
    "vectorize_reduction_loop": (lambda: _mm().vectorize("k"), "does not depend on it"),
    "vectorize_split_reduction": (lambda: _mm().split("k", 8).vectorize("k_i"), "does not depend on it"),
    "vectorize_extent_one": (lambda: _mm().split("j", 1).vectorize("j_i"), "2 to 256"),
    "vectorize_extent_over_256": (lambda: _wide().reorder("i", "k", "j").vectorize("j"), "2 to 256"),
    "vectorize_with_serial_loop_inside": (lambda: _mm().vectorize("j"), "loop k inside it must be unrolled"),
    "vectorize_non_contiguous_store": (lambda: _mm().reorder("j", "k", "i").vectorize("i"), "not contiguous"),
    "vectorize_divisor_depends_on_lane": (lambda: mc.Schedule(mc.compute(
        (8, 16), lambda i, j: mc.placeholder((8, 16), "int32", name="X")[i, j] // (j + 1), name="Y")).vectorize("j"),
        "divides by"),
    "unroll_huge_loop_without_factor": (lambda: _wide().unroll("j"), "too much code"),
    "unroll_marked_loop": (lambda: _mm().parallel("i").unroll("i"), "already parallel"),
    "cache_write_where_not_written": (lambda: _mm().cache_write("A", at="i"), "not written inside i"),
    "cache_write_other_stage_loop": (lambda: mc.Schedule(softmax(4, 8)).cache_write("out", at="i"),
                                     "not written inside i"),
    "cache_write_unknown_tensor": (lambda: _mm().cache_write("Z", at="i"), "no tensor named 'Z'"),
    "cache_write_marked_loop": (lambda: _mm().parallel("i").cache_write("C", at="i"), "mark loops after"),
    "cache_read_written_tensor": (lambda: _mm().cache_read("C", "i"), "written inside i"),
    "cache_read_marked_loop": (lambda: _mm().parallel("i").cache_read("B", "i"), "mark loops after caching"),
    "cache_read_unused_tensor": (lambda: _mm().cache_read("A", "i_init"), "not used inside"),
    "cache_read_panel_zero": (lambda: _mm().cache_read("B", "i", panel=0), "positive integer"),
    "prefetch_computed_tensor": (lambda: _mm().prefetch("C", "i", 1), "applies to an input"),
    "prefetch_unread_tensor": (lambda: _mm().prefetch("A", "i_init", 1), "not read inside"),
    "prefetch_marked_loop": (lambda: _mm().parallel("i").prefetch("A", "i", 1), "mark loops after"),
    "pack_computed_tensor": (lambda: _mm().pack("C", 0, 4), "applies to an input"),
    "pack_dim_too_large": (lambda: _mm().pack("B", 2, 4), "dim must be 0..1"),
    "pack_dim_negative": (lambda: _mm().pack("B", -1, 4), "dim must be a non-negative integer"),
    "pack_factor_zero": (lambda: _mm().pack("B", 1, 0), "positive integer"),
    "compute_inline_reduction": (lambda: mc.Schedule(softmax(4, 8)).compute_inline("sm"), "reduction"),
    "compute_inline_input": (lambda: _mm().compute_inline("A"), "not an intermediate"),
    "compute_inline_after_scheduling_it": (lambda: mc.Schedule(softmax(4, 8)).split("j", 2).compute_inline("ex"),
                                           "already transformed"),
    "compute_at_read_outside": (lambda: mc.Schedule(softmax(4, 8)).compute_at("ex", at="i3"), "also read outside"),
    "compute_at_own_loop": (lambda: mc.Schedule(softmax(4, 8)).compute_at("ex", at="j"), "own loops"),
    "compute_at_output": (lambda: _mm().compute_at("C", at="i"), "not an intermediate"),
    "compute_at_marked_loop": (lambda: mc.Schedule(softmax(4, 8)).parallel("i3").compute_at("sm", at="i3"),
                               "mark loops after"),
    "split_vectorized_loop": (lambda: _mm().reorder("i", "k", "j").vectorize("j").split("j", 4),
                              "before marking it vectorized"),
    "split_parallel_loop": (lambda: _mm().parallel("i").split("i", 4), "before marking it parallel"),
    "unknown_step_op": (lambda: _mm().apply(mc.Step.make("bogus")), "unknown transformation 'bogus'"),
    "unknown_step_argument": (lambda: _mm().apply(mc.Step.make("split", loop="i", fctor=2)), "not fctor"),
    "missing_step_argument": (lambda: _mm().apply(mc.Step.make("split")), "loop"),
}


@pytest.mark.parametrize("case", list(ILLEGAL), ids=str)
def test_illegal_schedule_raises_schedule_error(case: str) -> None:
    make, message = ILLEGAL[case]
    with pytest.raises(mc.ScheduleError, match=message) as info:
        make()
    assert isinstance(info.value, ValueError)  # ScheduleError is a ValueError


def test_a_refused_step_leaves_the_schedule_usable() -> None:
    s = _mm().split("i", 4)
    with pytest.raises(mc.ScheduleError):
        s.parallel("k")
    assert len(s.steps) == 1
    check_matmul(s.parallel("i_o"), 37, 53, 29)


# ------------------------------------------------------------------------------------------------
# 4. Traces: schedules are data
# ------------------------------------------------------------------------------------------------

def _every_kind_of_step(C: mc.Tensor) -> mc.Schedule:
    return (mc.Schedule(C).tile("i", "j", 6, 32).split("k", nparts=2).reorder("j_o", "k_o", "i_o", "k_i", "i_i", "j_i")
            .cache_write("C", "i_o").pack("B", 1, 32).unroll("i_i").unroll("k_i", factor=2).vectorize("j_i")
            .fuse("i_init", "j_init").parallel("j_o"))


def _stage_steps(D: mc.Tensor) -> mc.Schedule:
    return mc.Schedule(D).compute_at("C", at="i2").compute_inline("A2").split("j1", 8).vectorize("j1_i")


def test_json_round_trip_gives_the_same_schedule() -> None:
    for make, program in ((_every_kind_of_step, matmul(37, 53, 29)), (_stage_steps, matmul_relu(9, 10, 11))):
        s = make(program)
        text = s.to_json()
        assert isinstance(json.loads(text), list)
        again = mc.Schedule.from_json(program, text)
        assert again.steps == s.steps
        assert str(again) == str(s)
        assert again.to_json() == text


def test_replay_on_a_fresh_copy_of_the_program_prints_the_same() -> None:
    s = _every_kind_of_step(matmul(37, 53, 29))
    fresh = matmul(37, 53, 29)  # new placeholders, new compute
    assert str(mc.Schedule(fresh).replay(s.steps)) == str(s)
    assert str(mc.Schedule.from_json(fresh, s.to_json())) == str(s)
    assert str(mc.Schedule(fresh, steps=s.steps)) == str(s)
    assert str(mc.lower(mc.Schedule(fresh).replay(s.steps))) == str(mc.lower(s))
    staged = _stage_steps(matmul_relu(9, 10, 11))
    assert str(mc.Schedule(matmul_relu(9, 10, 11)).replay(staged.steps)) == str(staged)


def test_trace_is_python_that_rebuilds_the_schedule() -> None:
    C = matmul(37, 53, 29)
    s = _every_kind_of_step(C)
    text = s.trace()
    tree = ast.parse(text)
    calls = {node.func.attr for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
    assert {step.op for step in s.steps} <= calls
    assert len(text.splitlines()) == len(s.steps) + 1
    namespace: dict[str, object] = {"Schedule": mc.Schedule, "tensor": C}
    exec(compile(tree, "<trace>", "exec"), namespace)  # noqa: S102 -- our own generated text
    rebuilt = namespace["s"]
    assert isinstance(rebuilt, mc.Schedule)
    assert rebuilt.steps == s.steps and str(rebuilt) == str(s)


def test_steps_are_frozen_hashable_values() -> None:
    a = mc.Step.make("split", loop="i", factor=4)
    b = mc.Step.make("split", loop="i", factor=4)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != mc.Step.make("split", loop="i", factor=8)
    assert mc.Step.make("reorder", order=["i", "k", "j"]) == mc.Step.make("reorder", order=("i", "k", "j"))
    assert mc.Step.make("split", loop="i", factor=np.int64(4)) == a  # numpy integers become ints
    assert mc.Step.from_json(a.to_json()) == a
    assert str(a) == "split(loop='i', factor=4)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.op = "tile"  # type: ignore[misc]
    s = _mm().split("i", 4)
    assert s.steps == (a,)
    steps = _every_kind_of_step(matmul(37, 53, 29)).steps
    assert len(set(steps)) == len(steps)  # every kind of step hashes; distinct steps stay distinct


def test_deriving_a_schedule_leaves_the_original_unchanged() -> None:
    base = _mm().split("i", 4)
    text, steps, func = str(base), base.steps, base.func
    derived = [base.parallel("i_o"), base.reorder("i_i", "j"), base.cache_write("C", "i_o"), base.pack("A", 0, 4),
               base.unroll("i_i"), base.fuse("i_o", "i_i")]
    assert str(base) == text and base.steps == steps and base.func is func
    assert len({str(d) for d in derived}) == len(derived)  # independent branches from one point
    for d in derived:
        assert d.steps[:1] == steps and len(d.steps) == 2
    with pytest.raises(mc.ScheduleError):
        base.parallel("k")
    assert str(base) == text


def test_schedule_repr_and_loops() -> None:
    s = _mm().tile("i", "j", 4, 8)
    assert repr(s) == "<Schedule of C: 1 step(s)>"
    assert s.loops == ["i_init", "j_init", "i_o", "j_o", "i_i", "j_i", "k"]


# ------------------------------------------------------------------------------------------------
# 5. The printed loop nest follows every step
# ------------------------------------------------------------------------------------------------

def test_printing_after_each_step_shows_the_new_loops() -> None:
    steps: list[tuple[Callable[[mc.Schedule], mc.Schedule], list[str]]] = [
        (lambda s: s.tile("i", "j", 6, 32), ["for i_o in range(7):", "for j_o in range(2):", "for i_i in range(6):",
                                             "for j_i in range(32):", "if i_o * 6 + i_i < 37"]),
        (lambda s: s.split("k", 16), ["for k_o in range(2):", "for k_i in range(16):"]),
        (lambda s: s.reorder("j_o", "k_o", "i_o", "k_i", "i_i", "j_i"), ["for k_i in range(16):\n          for i_i"]),
        (lambda s: s.cache_write("C", "i_o"), ["C_local = empty([6, 32], float32)", "C_local[i_i, j_i] +="]),
        (lambda s: s.pack("B", 1, 32), ["B_packed = empty([2, 29, 32], float32)", "B_packed[(j_o * 32 + j_i) // 32"]),
        (lambda s: s.unroll("i_i"), ["for i_i in unrolled(6):"]),
        (lambda s: s.vectorize("j_i"), ["for j_i in vectorized(32):"]),
        (lambda s: s.fuse("i_init", "j_init"), ["for i_init_j_init in range(1961):"]),
        (lambda s: s.parallel("j_o"), ["for j_o in parallel(2):"]),
        (lambda s: s.unroll("k_i", factor=4), ["for k_i_o in range(4):", "for k_i_i in unrolled(4):"]),
    ]
    s = _mm()
    previous = str(s)
    assert previous.startswith("def C(A: float32[37, 29], B: float32[29, 53], C: float32[37, 53]):")
    for apply, expected in steps:
        s = apply(s)
        text = str(s)
        assert text != previous, s.steps[-1]
        for fragment in expected:
            assert fragment in text, (s.steps[-1], fragment, text)
        previous = text


def test_printing_stage_steps() -> None:
    s = mc.Schedule(softmax(4, 8))
    assert "ex = empty([4, 8], float32)" in str(s)
    inlined = s.compute_inline("ex")
    assert "ex = empty" not in str(inlined) and "ex[" not in str(inlined)
    assert "out[i3, j1] = exp(X[i3, j1] - mx[i3]) / sm[i3]" in str(inlined)
    moved = inlined.compute_at("sm", "i3")
    assert "sm = empty([1], float32)" in str(moved) and str(moved) != str(inlined)


# Regressions: a parallel loop that lowering copies (into a partition's main part and tail, or by
# unrolling an enclosing loop) must give each copy its own outlined function.  This raised
# llvmlite's DuplicatedNameError until codegen/llvm.py numbered the outlined functions.

def test_parallel_loop_copied_by_a_tail_builds() -> None:
    s = _mm().split("i", 4).parallel("j")
    assert str(mc.lower(s)).count("for j in parallel(53):") == 2  # main part and tail row
    check_matmul(s, 37, 53, 29)


def test_parallel_loop_inside_an_unrolled_loop_builds() -> None:
    check_matmul(mc.Schedule(matmul(5, 8, 3)).parallel("j").unroll("i"), 5, 8, 3)


# ------------------------------------------------------------------------------------------------
# Regression tests for bugs found while writing these tests (all fixed)
# ------------------------------------------------------------------------------------------------

def test_fixed_compute_at_into_a_loop_with_a_tail_stays_in_bounds() -> None:
    A = mc.placeholder((37,), name="A")
    B = mc.compute((37,), lambda i: A[i] * 2.0, name="B")
    C = mc.compute((37,), lambda i: B[i] + 1.0, name="C")
    s = mc.Schedule(C).split("i1", 8).compute_at("B", at="i1_o")
    a = np.arange(37, dtype=np.float32)
    np.testing.assert_array_equal(interpret(s.func, a), a * 2 + 1)  # the tail reads A[37], A[38], A[39]


def test_fixed_compute_at_of_a_stencil_producer() -> None:
    A = mc.placeholder((37,), name="A")
    B = mc.compute((37,), lambda i: A[i] * 2.0, name="B")
    C = mc.compute((36,), lambda i: B[i] + B[i + 1], name="C")
    s = mc.Schedule(C).split("i1", 4).compute_at("B", at="i1_o")
    a = np.arange(37, dtype=np.float32)
    np.testing.assert_allclose(mc.build(s)(a), 2 * a[:-1] + 2 * a[1:])


def test_fixed_parallel_of_fused_spatial_loops() -> None:
    check_matmul(_mm().fuse("i", "j").parallel("i_j"), 37, 53, 29)


def test_fixed_parallel_of_inner_split_loop() -> None:
    check_matmul(_mm().split("i", 4).parallel("i_i"), 37, 53, 29)


def test_fixed_parallel_loops_in_sibling_nests() -> None:
    check_matmul(_mm().parallel("i").parallel("i_init"), 37, 53, 29)


def test_fixed_unroll_factor_zero_is_refused() -> None:
    with pytest.raises(mc.ScheduleError, match="positive integer"):
        _mm().unroll("j", factor=0)


def test_fixed_float_split_factor_raises_schedule_error() -> None:
    with pytest.raises(mc.ScheduleError):
        _mm().split("i", 2.5)  # type: ignore[arg-type]


def test_fixed_steps_are_equal_whatever_the_keyword_order() -> None:
    a = mc.Step.make("split", loop="i", factor=4)
    assert a == mc.Step.make("split", factor=4, loop="i")
    assert a == mc.Step.from_json({"factor": 4, "op": "split", "loop": "i"})


def test_split_nparts_gives_at_most_nparts_outer_iterations() -> None:
    # As in TVM: the factor is ceil(extent / nparts), so 9 in 4 parts is 3 parts of 3.
    s = mc.Schedule(matmul(9, 8, 3)).split("i", nparts=4)
    assert "for i_o in range(3):" in str(s) and "for i_i in range(3):" in str(s)
    check_matmul(s, 9, 8, 3)


def test_prefetch_is_one_hint_per_vector_and_reaches_the_machine_code() -> None:
    """A prefetch changes no value (the transforms above check results); here: where it lands. In
    the vectorized loop one hint per vector (its first lane), ahead by the distance; in the
    assembly a prefetch instruction; past the end of B it is still only a hint (the runs above
    prefetch rows beyond the last block)."""
    s = (mc.Schedule(matmul(16, 64, 40)).tile("i", "j", 4, 16).split("k", 8)
         .reorder("k_o", "j_o", "i_o", "k_i", "i_i", "j_i").prefetch("B", "k_o", 1).unroll("i_i").vectorize("j_i"))
    lowered = str(mc.lower(s))
    hints = [line.strip() for line in lowered.splitlines() if "prefetch(" in line]
    assert hints and all("(k_o + 1) * 8" in h for h in hints), hints
    assert all("ramp" not in h for h in hints)                        # one address per vector
    assert "prefetch" in mc.assembly(s, mc.Target.host()) or "prfm" in mc.assembly(s, mc.Target.host())
    assert "prfm" in mc.assembly(s, mc.Target.aarch64())              # NEON targets too
    check_matmul(s, 16, 64, 40)
    # A distance beyond the loop means the whole loop, as every count does.
    far = mc.Schedule(matmul(16, 64, 40)).prefetch("A", "i", 10**6)
    assert "prefetch(A[i + 16, k])" in str(mc.lower(far))
    check_matmul(far, 16, 64, 40)
