"""The IR layer: typed expression construction, immutability, traversal, printing, analyses."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import minicompiler as mc
from minicompiler.analysis import affine_form, facts_of, index_range, value_range
from minicompiler.ir import BinOp, Cast, Const, Load, Var, For, Store, substitute, walk
from minicompiler.passes.simplify import simplify


def test_matmul_prints_as_readable_loop_nest() -> None:
    A = mc.placeholder((64, 32), name="A")
    B = mc.placeholder((32, 48), name="B")
    k = mc.reduce_axis(32, "k")
    C = mc.compute((64, 48), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")
    assert str(mc.lower(C)) == (
        "def C(A: float32[64, 32], B: float32[32, 48], C: float32[64, 48]):\n"
        "  for i_init in range(64):\n"
        "    for j_init in range(48):\n"
        "      C[i_init, j_init] = 0.0\n"
        "  for i in range(64):\n"
        "    for j in range(48):\n"
        "      for k in range(32):\n"
        "        C[i, j] += A[i, k] * B[k, j]")


def test_operators_follow_numpy_promotion() -> None:
    x32 = mc.placeholder((4,), "float32")[0]
    x64 = mc.placeholder((4,), "float64")[0]
    n32 = mc.placeholder((4,), "int32")[0]
    assert (x32 + 1.5).dtype == "float32"          # a Python float does not widen float32
    assert (x32 + x64).dtype == "float64"
    assert (n32 + 1).dtype == "int32"
    assert (n32 / 2).dtype == "float64"             # true division of ints, as numpy
    assert (n32 + x32).dtype == "float64"           # numpy: int32 with float32 gives float64
    assert mc.exp(n32).dtype == "float64"
    assert mc.abs(n32).dtype == "int32"
    assert (x32 < 0).dtype == "bool"
    sum_ = x32 + x64
    assert isinstance(sum_, BinOp) and isinstance(sum_.a, Cast)


def test_conditions_are_not_python_booleans() -> None:
    x = mc.placeholder((4,))[0]
    with pytest.raises(TypeError, match="truth value"):
        bool(x > 0)
    with pytest.raises(TypeError):
        (x > 0) + 1
    with pytest.raises(TypeError):
        mc.where(x, 1.0, 0.0)


def test_nodes_are_immutable_and_vars_compare_by_identity() -> None:
    i, j = Var("i"), Var("i")
    assert i != j and i == i
    c = Const(1, "int64")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.value = 2  # type: ignore[misc]
    assert (i + 1) == (i + 1)  # structural equality for everything but Var


def test_walk_and_substitute() -> None:
    A = mc.placeholder((10,), name="A")
    i = Var("i")
    e = A[i + 1] * 2.0
    assert sum(isinstance(n, Load) for n in walk(e)) == 1
    replaced = substitute(e, {i: Const(3, "int64")})
    load = next(n for n in walk(replaced) if isinstance(n, Load))
    assert str(load.indices[0]) == "3 + 1"
    assert str(simplify(Store(A, (Const(3, "int64") + 1,), Const(0.0, "float32")))) == "A[4] = 0.0"


def test_simplify_folds_index_arithmetic_only() -> None:
    i = Var("i")
    A = mc.placeholder((100,), name="A")
    s = For(i, Const(10, "int64"), Store(A, (i * 1 + 0 * 5,), A[i] * 1.0))
    assert str(simplify(s)) == "for i in range(10):\n  A[i] = A[i] * 1.0"


def test_value_range_and_affine_forms() -> None:
    i, r = Var("i"), Var("r")
    ranges = {i: (0, 9), r: (0, 2)}
    assert value_range(2 * i + r - 1, ranges) == (-1, 19)
    assert value_range((i + 3) // 4, ranges) == (0, 3)
    assert value_range(i % 4, ranges) == (0, 3)
    assert affine_form(2 * i + r - 1) == {i: 2, r: 1, None: -1}
    assert affine_form(i * r) is None
    facts = facts_of((i + r >= 1) & (i + r < 11))
    assert index_range(i + r - 1, ranges, facts) == (0, 9)
    assert index_range(i + r - 1, ranges, facts_of(i + r >= 1, negated=True)) == (-1, -1)
    assert value_range(mc.maximum(i - 5, 0), ranges) == (0, 4)
    assert value_range(i * Var("unknown"), ranges) == (-math.inf, math.inf)


def test_guarded_reads_pass_the_bounds_check_and_unguarded_ones_fail() -> None:
    X = mc.placeholder((8,), name="X")
    r = mc.reduce_axis(3, "r")
    padded = mc.compute((8,), lambda i: mc.sum(mc.where((i + r >= 1) & (i + r < 9), X[i + r - 1], 0.0), axis=r))
    assert padded.shape == (8,)
    with pytest.raises(ValueError, match="X"):
        mc.compute((8,), lambda i: mc.sum(mc.where(i + r >= 1, X[i + r - 1], 0.0), axis=r))
    with pytest.raises(ValueError):
        mc.compute((8,), lambda i: mc.sum(mc.where(i + r < 1, X[i + r - 1], 0.0), axis=r))


def test_kernel_exposes_ir_llvm_and_assembly() -> None:
    A = mc.placeholder((16,), name="A")
    B = mc.compute((16,), lambda i: mc.exp(A[i]) + 1.0, name="B")
    kernel = mc.build(B)
    assert "for i in range(16)" in kernel.ir
    assert "define i32 @\"mc_B\"" in kernel.llvm_ir
    assert "mc_B" in kernel.assembly
    a = np.linspace(-1, 1, 16, dtype=np.float32)
    np.testing.assert_allclose(kernel(a), np.exp(a) + 1, rtol=1e-6)


def test_compiled_code_is_cached_by_program_text() -> None:
    A = mc.placeholder((5,), name="A")
    B1 = mc.compute((5,), lambda i: A[i] * 2.0, name="B")
    B2 = mc.compute((5,), lambda i: A[i] * 2.0, name="B")
    assert mc.build(B1).compiled is mc.build(B2).compiled


def test_target_describes_the_host() -> None:
    target = mc.Target.host()
    assert target.cores >= 1 and target.vector_bits in (128, 256, 512)
    assert target.vector_lanes("float32") == target.vector_bits // 32
    assert target.l1_bytes > 0 and target.cpu in target.describe()


def test_visitor_reads_every_node_and_the_loop_visitor_knows_the_loops_around_it() -> None:
    from minicompiler.ir.visitor import LoopVisitor, Visitor, walk
    A, B = mc.placeholder((6, 5), name="A"), mc.placeholder((5, 7), name="B")
    k = mc.reduce_axis(5, "k")
    s = mc.Schedule(mc.compute((6, 7), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")).split("j", 4)

    class Count(Visitor):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def generic_visit(self, node) -> None:  # noqa: ANN001
            self.n += 1
            super().generic_visit(node)

    count = Count()
    count.visit(s.func.body)
    assert count.n == sum(1 for _ in walk(s.func.body))

    class Writes(LoopVisitor):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, list[str]]] = []

        def visit_Store(self, node) -> None:  # noqa: ANN001
            self.seen.append(("=", [l.var.name for l in self.loops]))

        def visit_Accumulate(self, node) -> None:  # noqa: ANN001
            self.seen.append(("+=", [l.var.name for l in self.loops]))

    writes = Writes()
    writes.visit(s.func.body)
    assert writes.seen == [("=", ["i_init", "j_init"]), ("+=", ["i", "j_o", "j_i", "k"])]
    assert writes.loops == []
