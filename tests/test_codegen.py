"""Code generation: vector instructions, cross-compilation to aarch64, the thread runtime."""
from __future__ import annotations

import numpy as np
import pytest

import minicompiler as mc


def _matmul(n: int = 64):
    A = mc.placeholder((n, n), name="A")
    B = mc.placeholder((n, n), name="B")
    k = mc.reduce_axis(n, "k")
    return A, B, mc.compute((n, n), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")


def test_aarch64_assembly_has_neon_vector_fmas() -> None:
    *_, C = _matmul()
    target = mc.Target.aarch64()
    assert target.vector_lanes("float32") == 4
    s = mc.Schedule(C).reorder("i", "k", "j").split("j", 4).vectorize("j_i")
    asm = mc.assembly(s, target)
    assert any("fmla" in line and ".4s" in line for line in asm.splitlines()), asm[:2000]
    with pytest.raises(ValueError, match="cannot run"):
        mc.build(s, target=target)


def test_vectorized_loop_emits_llvm_vector_types_and_fma() -> None:
    A, B, C = _matmul()
    lanes = mc.Target.host().vector_lanes("float32")
    kernel = mc.build(mc.Schedule(C).reorder("i", "k", "j").split("j", lanes).vectorize("j_i"))
    assert f"<{lanes} x float>" in kernel.llvm_ir
    if mc.Target.host().triple.startswith("x86_64"):
        register = {16: "zmm", 8: "ymm", 4: "xmm"}[lanes]
        assert any("vfmadd" in l and register in l for l in kernel.assembly.splitlines())
    a, b = np.random.default_rng(0).random((2, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(kernel(a, b), a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_loop_gives_the_same_result_for_any_thread_count(threads: int) -> None:
    A, B, C = _matmul(37)
    kernel = mc.build(mc.Schedule(C).split("i", 4).parallel("i_o"))
    a, b = np.random.default_rng(1).random((2, 37, 37), dtype=np.float32)
    before = mc.get_num_threads()
    mc.set_num_threads(threads)
    try:
        np.testing.assert_allclose(kernel(a, b), a @ b, rtol=1e-4, atol=1e-4)
    finally:
        mc.set_num_threads(before)


def test_thread_count_must_be_positive() -> None:
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError):
            mc.set_num_threads(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lanes", [1, 7, 16])
def test_inline_exp_is_accurate_everywhere_including_edges(dtype: str, lanes: int) -> None:
    X = mc.placeholder((1010,), dtype, name="X")
    Y = mc.compute((1010,), lambda i: mc.exp(X[i]), name="Y")
    program = mc.Schedule(Y).split("i", lanes).vectorize("i_i") if lanes > 1 else Y
    edges = [np.nan, np.inf, -np.inf, 0.0, 1e-30, -1e-30, 88.72, -87.3, 709.0, -745.0]
    x = np.concatenate([np.linspace(-120, 100, 1000), edges]).astype(dtype)
    got = mc.build(program)(x)
    with np.errstate(over="ignore", under="ignore"):
        exact = np.exp(x.astype(np.float64)).astype(dtype)
    normal = np.isfinite(exact) & (exact > np.finfo(dtype).tiny)
    rel = np.abs(got[normal] - exact[normal]) / exact[normal]
    assert rel.max() < 4 * np.finfo(dtype).eps
    np.testing.assert_array_equal(np.isnan(got), np.isnan(exact))
    np.testing.assert_array_equal(got[np.isinf(exact)], exact[np.isinf(exact)])
    subnormal = ~normal & np.isfinite(exact)
    assert np.abs(got[subnormal] - exact[subnormal]).max() <= 4 * np.finfo(dtype).smallest_subnormal
