"""Shared benchmark machinery: timing protocol, correctness check, numpy in subprocesses, FMA peak, output.

Timing protocol (``time_fn``)
  1. one warm-up call (JIT caches, page faults, thread-pool start-up are not measured);
  2. then timed calls, each with ``time.perf_counter``, until at least ``min_runs`` (default 5)
     calls AND at least ``min_time`` seconds (default 1.0) of timed calls have accumulated;
  3. the reported figure is the median of the timed calls.
Every kernel is first called once on the benchmark inputs and compared with numpy; a wrong
result is recorded as WRONG and never timed.

Threads
  Our kernels: ``mc.set_num_threads(n)`` before checking and timing (a parallel loop then runs on
  n OpenMP threads; a kernel without a parallel loop runs serially whatever n is).
  numpy: always measured in a fresh subprocess (``numpy_in_subprocess``) with
  ``OPENBLAS_NUM_THREADS=n``. ``OPENBLAS_CORETYPE`` (the "numpy-skx" variant) only takes effect
  before numpy is imported, so a subprocess is needed for it anyway; measuring plain "numpy"
  the same way keeps the two comparable and works without threadpoolctl. (suite.py runs its numba
  and torch columns through the same worker: a script's ``bench_case(case, tool, threads)``.) This process keeps
  OpenBLAS at one thread (it only computes references), so no idle BLAS pool competes with
  our kernels' threads.

Peak
  ``fma_peak_gflops`` JIT-compiles (llvmlite) a loop of 12 independent ``llvm.fma.v16f32`` chains
  and times 1e7 iterations (best of 10): the FP32 FMA throughput of one core as code generated
  by LLVM can reach it. "% of peak" is GFLOP/s / (peak per core * threads).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy is imported (see the docstring)

import argparse
import ctypes
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

THREADS = (1, 2)
SKX = "SkylakeX"


# ----------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class Protocol:
    min_runs: int = 5
    min_time: float = 1.0


@dataclass(frozen=True)
class Timing:
    median_s: float
    runs: int


def time_fn(fn: Callable[[], Any], protocol: Protocol = Protocol()) -> Timing:
    """One warm-up call, then calls until >= min_runs and >= min_time seconds; the median."""
    fn()
    times: list[float] = []
    total = 0.0   # a running sum: a microsecond kernel runs ~10^5 times in a second
    while len(times) < protocol.min_runs or total < protocol.min_time:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        total += times[-1]
    return Timing(statistics.median(times), len(times))


def max_rel_error(out: np.ndarray, ref: np.ndarray) -> float:
    """max |out - ref| / max |ref| (inf for a shape mismatch or non-finite values)."""
    if out.shape != ref.shape or not np.all(np.isfinite(out)):
        return float("inf")
    scale = float(np.max(np.abs(ref))) or 1.0
    return float(np.max(np.abs(out.astype(np.float64) - ref))) / scale


# ----------------------------------------------------------------------------- records
@dataclass
class Record:
    workload: str
    impl: str
    threads: int
    median_s: Optional[float] = None     # None: not timed (wrong, failed, skipped)
    gflops: Optional[float] = None
    correct: Optional[bool] = None       # None: not checked
    max_rel_err: Optional[float] = None
    runs: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # pct_peak, ratio_to_numpy, blas_core, ...

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


class Records(list):
    """A list of records that logs each one to stderr as it is added (progress of a long run)."""

    def add(self, rec: Record) -> None:
        self.append(rec)
        took = f"{rec.median_s * 1e3:.2f} ms" if rec.median_s is not None else rec.note
        print(f"  {rec.workload} | {rec.impl} | {rec.threads} thread(s): {took}", file=sys.stderr, flush=True)


def measure(workload: str, impl: str, threads: int, fn: Callable[[], np.ndarray], ref: np.ndarray,
            flops: float, protocol: Protocol, tolerance: float) -> Record:
    """Check ``fn()`` against ``ref``; time it only if it is right."""
    rec = Record(workload, impl, threads)
    try:
        err = max_rel_error(fn(), ref)
    except Exception as error:  # a kernel that crashes is reported, the suite goes on
        rec.note = f"ERROR: {type(error).__name__}: {error}"
        return rec
    rec.correct, rec.max_rel_err = err <= tolerance, err
    if not rec.correct:
        rec.note = f"WRONG RESULT (max rel err {err:.2e} > {tolerance:.0e}): not timed"
        return rec
    timing = time_fn(fn, protocol)
    rec.median_s, rec.runs, rec.gflops = timing.median_s, timing.runs, flops / timing.median_s / 1e9
    return rec


def failed(workload: str, impl: str, threads: int, error: BaseException) -> Record:
    return Record(workload, impl, threads, note=f"BUILD FAILED: {type(error).__name__}: {error}")


def measure_or_estimate(workload: str, impl: str, threads: int,
                        full: Callable[[], tuple[Callable[[], np.ndarray], np.ndarray]],
                        proxy: Callable[[], tuple[Callable[[], np.ndarray], np.ndarray]], scale: float,
                        flops: float, protocol: Protocol, tolerance: float, budget: float) -> Record:
    """For slow kernels (the unscheduled default). ``proxy()`` gives (fn, ref) for 1/scale of the work:
    one proxy call estimates a full call. If the whole protocol (check + warm-up + min_runs calls)
    fits in ``budget`` seconds, measure the full kernel normally; otherwise record the estimate
    (``estimated_s``; median_s stays None) and the proxy's correctness."""
    rec = Record(workload, impl, threads)
    try:
        fn, ref = proxy()
        start = time.perf_counter()
        out = fn()
        estimate = (time.perf_counter() - start) * scale
        if estimate * (protocol.min_runs + 2) <= budget:
            fn, ref = full()
            return measure(workload, impl, threads, fn, ref, flops, protocol, tolerance)
    except Exception as error:
        return failed(workload, impl, threads, error)
    err = max_rel_error(out, ref)
    rec.correct, rec.max_rel_err = err <= tolerance, err
    rec.extra["estimated_s"] = estimate
    rec.note = (f"not timed: ~{estimate:.1f} s/call (est. from a 1/{scale:g} run; full protocol > {budget:g} s)"
                if rec.correct else f"WRONG RESULT on the 1/{scale:g} run (max rel err {err:.2e}): not timed")
    return rec


# ----------------------------------------------------------------------------- numpy (and other tools) in a subprocess
def numpy_in_subprocess(script: str, case: dict[str, Any], threads: int, protocol: Protocol,
                        coretype: Optional[str] = None, tool: Optional[str] = None,
                        ref_path: Optional[str] = None) -> dict[str, Any]:
    """Check and time one implementation of ``script`` in a fresh Python with
    OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=threads (and OPENBLAS_CORETYPE=coretype). Returns the worker's JSON.

    What runs: ``numpy_impl(*make_inputs(case))`` checked against ``numpy_impl`` on float64 copies
    (``TOLERANCE``) — the protocol of matmul.py and attention.py; or, when the script defines
    ``bench_case(case, tool, threads) -> (fn, tolerance, note)``, ``fn()`` checked against the
    reference array saved in ``ref_path`` (.npy) — how suite.py runs numpy, numba and torch."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.pop("OPENBLAS_CORETYPE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    spec = json.dumps({"script": os.path.abspath(script), "case": case, "tool": tool, "threads": threads,
                       "ref_path": ref_path, "min_runs": protocol.min_runs, "min_time": protocol.min_time})
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--numpy-worker", spec],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{tool or 'numpy'} worker failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def numpy_record(workload: str, impl: str, threads: int, script: str, case: dict[str, Any],
                 flops: float, protocol: Protocol, coretype: Optional[str] = None,
                 tool: Optional[str] = None, ref_path: Optional[str] = None) -> Record:
    """A record of ``numpy_in_subprocess`` (``tool``/``ref_path``: see there)."""
    rec = Record(workload, impl, threads)
    try:
        r = numpy_in_subprocess(script, case, threads, protocol, coretype, tool, ref_path)
    except RuntimeError as error:
        rec.note = str(error)
        return rec
    rec.correct, rec.max_rel_err = r["correct"], r["max_rel_err"]
    rec.note = r.get("note") or f"OpenBLAS kernels: {r['blas_core']}"
    if r.get("blas_core") and (tool is None or tool.startswith("numpy")):
        rec.extra["blas_core"] = r["blas_core"]
    if r["median_s"] is None:
        rec.note = f"WRONG RESULT (max rel err {r['max_rel_err']:.2e}): not timed"
    else:
        rec.median_s, rec.runs, rec.gflops = r["median_s"], r["runs"], flops / r["median_s"] / 1e9
    return rec


def _openblas_core() -> str:
    """The OpenBLAS kernel family picked at run time (e.g. 'Zen', 'SkylakeX'), if it can be read."""
    try:
        with open("/proc/self/maps") as f:
            path = next(line.split()[-1] for line in f if "openblas" in line.lower())
        lib = ctypes.CDLL(path)
        for name in ("openblas_get_corename", "scipy_openblas_get_corename64_", "openblas_get_corename64_"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                return fn().decode()
    except (OSError, StopIteration):
        pass
    return "?"


def _numpy_worker(spec_json: str) -> None:
    spec = json.loads(spec_json)
    sys.path.insert(0, os.path.dirname(spec["script"]))  # the script's own imports (common, workloads, ...)
    module_spec = importlib.util.spec_from_file_location("bench_script", spec["script"])
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    sys.modules["bench_script"] = module  # dataclasses look their module up here
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    note = ""
    if hasattr(module, "bench_case"):
        run, tolerance, note = module.bench_case(spec["case"], spec["tool"], spec["threads"])
        ref = np.load(spec["ref_path"])
    else:
        inputs = module.make_inputs(spec["case"])
        run = lambda: module.numpy_impl(*inputs)  # noqa: E731
        ref, tolerance = module.numpy_impl(*[x.astype(np.float64) for x in inputs]), module.TOLERANCE
    err = max_rel_error(run(), ref)
    correct = err <= tolerance
    timing = time_fn(run, Protocol(spec["min_runs"], spec["min_time"])) if correct else None
    print(json.dumps({"median_s": timing.median_s if timing else None, "runs": timing.runs if timing else 0,
                      "correct": correct, "max_rel_err": err, "blas_core": _openblas_core(), "note": note}))


# ----------------------------------------------------------------------------- FMA peak
def fma_peak_gflops(iterations: int = 10_000_000, chains: int = 12, lanes: int = 16, repeats: int = 10) -> float:
    """Measured FP32 FMA GFLOP/s of one core: a JIT-compiled loop of ``chains`` independent
    ``llvm.fma.v{lanes}f32`` accumulators (phi nodes), best of ``repeats`` timings."""
    import llvmlite.binding as llvm
    import llvmlite.ir as ir

    import minicompiler as mc

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


# ----------------------------------------------------------------------------- command line and output
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fast smoke run: fewer/smaller workloads, shorter timing")
    p.add_argument("--json", metavar="FILE", help="write the records as a JSON list to FILE")
    p.add_argument("--min-runs", type=int, default=5, help="timed calls at least (default 5)")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds of timed calls at least (default 1.0; 0.2 with --quick)")
    p.add_argument("--threads", type=_thread_list, default=",".join(map(str, THREADS)),
                   help="thread counts (default 1,2)")
    return p


def _thread_list(text: str) -> str:
    """``--threads``: comma-separated positive integers (kept as text; ``thread_counts`` splits it)."""
    try:
        valid = all(int(t) >= 1 for t in text.split(","))
    except ValueError:
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive thread counts such as 1,2; got {text!r}")
    return text


def protocol_from(args: argparse.Namespace) -> Protocol:
    return Protocol(args.min_runs, args.min_time if args.min_time is not None else (0.2 if args.quick else 1.0))


def thread_counts(args: argparse.Namespace) -> list[int]:
    return [int(t) for t in args.threads.split(",")]


def header(title: str, protocol: Protocol) -> float:
    """Print the machine, the protocol and the measured peak; return the peak (GFLOP/s per core)."""
    import minicompiler as mc

    peak = fma_peak_gflops()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{title}\nhost: {mc.Target.host().describe()}\n"
          f"timing: 1 warm-up, then >= {protocol.min_runs} runs and >= {protocol.min_time:g} s, median\n"
          f"measured FP32 FMA peak: {peak:.1f} GFLOP/s per core (12 x llvm.fma.v16f32 chains)\n"
          f"load average before the run: {load:.2f}" + ("  (WARNING: machine busy, figures are noisy)"
                                                       if load > 0.5 else "") + "\n", flush=True)
    return peak


def finish(records: list[Record], peak: float) -> None:
    """Fill in % of peak and ratio to numpy (same workload and threads)."""
    numpy = {(r.workload, r.threads): r.gflops for r in records if r.impl == "numpy"}
    for r in records:
        if r.gflops is None:
            continue
        r.extra["pct_peak"] = round(100 * r.gflops / (peak * r.threads), 1)
        ref = numpy.get((r.workload, r.threads))
        if ref:
            r.extra["ratio_to_numpy"] = round(r.gflops / ref, 3)
        r.extra["peak_gflops_per_core"] = round(peak, 1)


def row(r: Record) -> str:
    if r.median_s is None:
        t = gf = pct = ratio = "-"
    else:
        t = f"{r.median_s * 1e3:10.2f}"
        gf, pct = f"{r.gflops:8.1f}", f"{r.extra.get('pct_peak', 0):5.1f}%"
        ratio = f"{r.extra['ratio_to_numpy']:5.2f}x" if "ratio_to_numpy" in r.extra else "-"
    check = {True: "ok", False: "WRONG", None: "-"}[r.correct]
    return f"{r.workload:<26} {r.impl:<10} {r.threads:>3} {t:>10} {gf:>8} {pct:>7} {ratio:>8} {check:>6}  {r.note}"


def table_header() -> str:
    line = f"{'workload':<26} {'impl':<10} {'thr':>3} {'median ms':>10} {'GFLOP/s':>8} {'% peak':>7} {'vs numpy':>8} {'check':>6}  note"
    return line + "\n" + "-" * len(line)


def print_table(records: Sequence[Record]) -> None:
    print(table_header())
    last = None
    for r in records:
        if last is not None and r.workload != last:
            print()
        print(row(r))
        last = r.workload
    print()


def report(records: list[Record], peak: float, json_path: Optional[str]) -> None:
    """Annotate, print the table, write the JSON file if asked."""
    finish(records, peak)
    if hasattr(os, "getloadavg"):
        print(f"load average after the run: {os.getloadavg()[0]:.2f}")
    print("% peak = GFLOP/s / (measured peak per core x threads); vs numpy = GFLOP/s / numpy's, same threads\n")
    print_table(records)
    if json_path:
        with open(json_path, "w") as f:
            json.dump([r.to_json() for r in records], f, indent=1)
        print(f"wrote {len(records)} records to {json_path}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--numpy-worker":
        _numpy_worker(sys.argv[2])
    else:
        print(f"{fma_peak_gflops():.1f} GFLOP/s FP32 FMA peak per core (measured)")
