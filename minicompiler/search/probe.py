"""Measured machine limits: the FP32 FMA peak of one core and the memory copy bandwidth.

    fma_peak_gflops()      # GFLOP/s of one core: a JIT-compiled loop of independent vector FMAs
    copy_bandwidth_gbs()   # GB/s of one thread copying an array far larger than the caches

Figures a roofline needs (the tune report's verdict, the benchmark suite): measured on this
machine, in this run, since the CPU under a project changes from session to session.
"""
from __future__ import annotations

import ctypes
import time

import numpy as np


def fma_peak_gflops(iterations: int = 10_000_000, chains: int | None = None, lanes: int | None = None,
                    repeats: int = 10) -> float:
    """Measured FP32 FMA GFLOP/s of one core: a JIT-compiled loop of ``chains`` independent
    ``llvm.fma.v{lanes}f32`` accumulators (phi nodes), best of ``repeats`` timings. By default the
    host's vector width and as many chains as its registers hold (two kept for the operands)."""
    import llvmlite.binding as llvm
    import llvmlite.ir as ir

    import minicompiler as mc
    from minicompiler.search.machine import fma_chains, register_count

    host = mc.Target.host()
    lanes = lanes or host.vector_lanes("float32")
    chains = chains or max(fma_chains(host), min(12, register_count(host) - 2))

    f32, i64 = ir.FloatType(), ir.IntType(64)
    vec = ir.VectorType(f32, lanes)
    module = ir.Module(name="fma_peak")
    fma = ir.Function(module, ir.FunctionType(vec, [vec, vec, vec]), name=f"llvm.fma.v{lanes}f32")
    fn = ir.Function(module, ir.FunctionType(f32, [i64]), name="fma_peak")
    entry, loop, done = (fn.append_basic_block(n) for n in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(i64)
    accs = [b.phi(vec) for _ in range(chains)]
    x, y = ir.Constant(vec, [0.999999] * lanes), ir.Constant(vec, [1e-7] * lanes)
    new = [b.call(fma, [a, x, y]) for a in accs]
    i_next = b.add(i, ir.Constant(i64, 1))
    i.add_incoming(ir.Constant(i64, 0), entry)
    i.add_incoming(i_next, loop)
    for c, (acc, nxt) in enumerate(zip(accs, new)):
        acc.add_incoming(ir.Constant(vec, [float(c)] * lanes), entry)
        acc.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", i_next, fn.args[0]), loop, done)
    b.position_at_end(done)
    total = new[0]
    for v in new[1:]:
        total = b.fadd(total, v)  # every chain is live: nothing can be optimised away
    b.ret(b.extract_element(total, ir.Constant(ir.IntType(32), 0)))

    parsed = llvm.parse_assembly(str(module))
    parsed.verify()
    engine = llvm.create_mcjit_compiler(parsed, mc.Target.host().create_target_machine())
    engine.finalize_object()
    run = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_int64)(engine.get_function_address("fma_peak"))
    run(iterations // 10)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(iterations)
        best = min(best, time.perf_counter() - start)
    return 2 * chains * lanes * iterations / best / 1e9


def copy_bandwidth_gbs(megabytes: int = 128, repeats: int = 5) -> float:
    """GB/s (read + write) of one thread copying ``megabytes`` with numpy, best of ``repeats``."""
    source = np.ones(megabytes * (1 << 20) // 4, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best / 1e9
