"""Apache TVM MetaSchedule on the suite's workloads: the tool minicompiler's search is modelled on, side by side.

    python benchmarks/tvm_baseline.py --workloads matmul --trials 8,16,32,64 --threads 1 --seeds 1 \\
                                      [--small] [--json out.json] [--per-iter 8] [--keep DIR]

The six programs of ``workloads.py`` are written here again in TVM's tensor expression language (TE),
stage for stage and with the same shapes: matmul, the NCHW 3x3 convolution with its zero padding as
its own stage, the SwiGLU MLP, and attention as scores / row max / exponentials / row sums / P·V /
normalisation. ``tvm.te.create_prim_func`` turns each into one TIR function, which
``tvm.s_tir.meta_schedule.tune_tir`` tunes with its defaults (post-order-apply design space,
evolutionary search, XGBoost cost model, local builder and runner) for ``trials`` measured
candidates; the target is ``{"kind": "llvm", "mcpu": <host cpu>, "num-cores": <threads>}``.

Why a fresh subprocess per tune (``tune_tvm``): TVM's kernels get their thread count from the
environment (``TVM_NUM_THREADS``) when its runtime starts, so each thread count needs its own process;
TVM also loads its own LLVM, which must not meet llvmlite's in the suite's process; and a crash of
TVM (it has segfaulted with other apache-tvm-ffi versions) then costs one record, not the suite.

What a tune returns (a dict; ``to_record`` makes it a ``common.Record`` with impl ``tvm``):
  trial_s        every trial's run time in trial order, as MetaSchedule measured it (the mean of its
                 runner's repeats, read from the JSON database in commit order; None: the candidate
                 failed to build or run)
  best_so_far_s  the running minimum of trial_s: the sample-efficiency curve
  tuning_s       wall time of the ``tune_tir`` call (search, builds, measurements, cost model); not
                 counted there: ``import_s``, the once-per-process import of TVM's tensor intrinsics
                 that MetaSchedule's first task triggers (~25 s on the 2-core machine)
  median_s       the best schedule rebuilt in the worker, checked against the float64 numpy reference
                 of workloads.py (max|err|/max|ref| <= 1e-4, as suite.py) and timed with common.py's
                 protocol (``time_fn``) on TVM tensors allocated once (output included)
MetaSchedule does not check results; only the final kernel is checked here.

The cost model learns only between batches of trials (``num_trials_per_iter``, TVM's default 64):
with budgets of 8-64 that default would pick every candidate before the model saw one measurement,
so batches here are ``--per-iter`` (default 8) trials. A result is cached in its work dir
(``result.json``): the same spec is not tuned twice.

Without TVM (``pip install apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post0 xgboost``; newer
apache-tvm-ffi releases crashed in ``save_json``) the command line says so in one line and exits 0.
"""
from __future__ import annotations

import common  # noqa: I001  (first: it pins this process's OpenBLAS to one thread before numpy loads)

import argparse
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import workloads as W  # noqa: E402

TOLERANCE = 1e-4        # the suite's (suite_report.TOLERANCE): max|err| / max|ref| against float64
INSTALL = "pip install apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post0 xgboost"
KINDS = {W._attention: "attention", W._matmul: "matmul", W._mlp: "mlp", W._conv: "conv"}
FAILED_TRIAL_S = 1e9    # MetaSchedule stores a failed candidate with a huge run time (1e10 s)


# ----------------------------------------------------------------------------- availability
@functools.lru_cache(maxsize=None)
def tvm_versions() -> Optional[dict[str, str]]:
    """Versions of apache-tvm, apache-tvm-ffi and xgboost when MetaSchedule imports, else None.
    Checked in a subprocess: importing TVM here would load a second LLVM next to llvmlite's."""
    probe = ("import json, tvm, tvm_ffi, xgboost\nfrom tvm.s_tir import meta_schedule\n"
             "print(json.dumps({'tvm': tvm.__version__, 'tvm_ffi': tvm_ffi.__version__, "
             "'xgboost': xgboost.__version__}))")
    try:
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def missing_message() -> str:
    return f"tvm: not installed or not importable ({INSTALL}); no TVM records"


# ----------------------------------------------------------------------------- workloads in TE
def workload_case(name: str, small: bool, shape: Optional[Sequence[int]] = None) -> tuple[str, tuple[int, ...], W.Workload]:
    """(kind, shape, workloads.py Workload) of a workload of ``workloads.SUITE``; ``shape`` replaces its
    shape (sample_efficiency.py's own sizes) while keeping its inputs and numpy reference."""
    for n, make, title, full_shape, small_shape in W.SUITE:
        if n == name:
            dims = tuple(int(x) for x in shape) if shape else (small_shape if small else full_shape)
            return KINDS[make], dims, make(name, title, *dims)
    raise KeyError(f"unknown workload {name!r}; choose from {', '.join(n for n, *_ in W.SUITE)}")


def te_program(kind: str, shape: Sequence[int]) -> list:
    """The workload as TE tensors, inputs first (in workloads.py's order) and the output last:
    the same stages as workloads.py's minicompiler program."""
    from tvm import te

    if kind == "matmul":
        m, n, k = shape
        A, B = te.placeholder((m, k), name="A"), te.placeholder((k, n), name="B")
        r = te.reduce_axis((0, k), name="k")
        return [A, B, te.compute((m, n), lambda i, j: te.sum(A[i, r] * B[r, j], axis=r), name="C")]
    if kind == "mlp":
        tokens, hidden, inter = shape
        X = te.placeholder((tokens, hidden), name="X")
        Wg, Wu = te.placeholder((hidden, inter), name="Wg"), te.placeholder((hidden, inter), name="Wu")
        Wd = te.placeholder((inter, hidden), name="Wd")
        kg, ku, kd = (te.reduce_axis((0, n), name=s) for n, s in ((hidden, "kg"), (hidden, "ku"), (inter, "kd")))
        G = te.compute((tokens, inter), lambda t, f: te.sum(X[t, kg] * Wg[kg, f], axis=kg), name="G")
        U = te.compute((tokens, inter), lambda t, f: te.sum(X[t, ku] * Wu[ku, f], axis=ku), name="U")
        one = te.const(1.0, "float32")
        H = te.compute((tokens, inter), lambda t, f: G[t, f] / (one + te.exp(-G[t, f])) * U[t, f], name="H")
        Y = te.compute((tokens, hidden), lambda t, o: te.sum(H[t, kd] * Wd[kd, o], axis=kd), name="Y")
        return [X, Wg, Wu, Wd, Y]
    if kind == "conv":
        channels, filters, height, width = shape
        kernel, pad = 3, 1
        X = te.placeholder((1, channels, height, width), name="X")
        Wt = te.placeholder((filters, channels, kernel, kernel), name="W")
        zero = te.const(0.0, "float32")
        P = te.compute((1, channels, height + 2 * pad, width + 2 * pad),
                       lambda b, c, y, x: te.if_then_else(
                           te.all(y >= pad, y < height + pad, x >= pad, x < width + pad),
                           X[b, c, y - pad, x - pad], zero), name="Xpad")
        rc, ry, rx = (te.reduce_axis((0, n), name=s) for n, s in ((channels, "rc"), (kernel, "ry"), (kernel, "rx")))
        out = te.compute((1, filters, height, width),
                         lambda b, f, y, x: te.sum(P[b, rc, y + ry, x + rx] * Wt[f, rc, ry, rx], axis=[rc, ry, rx]),
                         name="conv")
        return [X, Wt, out]
    if kind == "attention":
        heads, tokens, dim = shape
        Q, K, V = (te.placeholder((heads, tokens, dim), name=s) for s in "QKV")
        scale = te.const(1.0 / math.sqrt(dim), "float32")
        d, jm, jl, jo = (te.reduce_axis((0, n), name=s) for n, s in ((dim, "d"), (tokens, "jm"), (tokens, "jl"),
                                                                      (tokens, "jo")))
        S = te.compute((heads, tokens, tokens), lambda h, i, j: te.sum(Q[h, i, d] * K[h, j, d], axis=d), name="S")
        m = te.compute((heads, tokens), lambda h, i: te.max(S[h, i, jm], axis=jm), name="m")
        E = te.compute((heads, tokens, tokens), lambda h, i, j: te.exp((S[h, i, j] - m[h, i]) * scale), name="E")
        l = te.compute((heads, tokens), lambda h, i: te.sum(E[h, i, jl], axis=jl), name="l")  # noqa: E741
        O = te.compute((heads, tokens, dim), lambda h, i, e: te.sum(E[h, i, jo] * V[h, jo, e], axis=jo), name="O")
        return [Q, K, V, te.compute((heads, tokens, dim), lambda h, i, e: O[h, i, e] / l[h, i], name="Y")]
    raise ValueError(f"unknown kind {kind!r}")


def host_target(threads: int) -> Any:
    """TVM's LLVM target for this CPU (LLVM's name for it, as minicompiler's Target.host) and ``threads`` cores."""
    import tvm
    from tvm.target import codegen

    return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(), "num-cores": threads})


def compiled_kernel(func: Any, kind: str, shape: Sequence[int], threads: int,
                    inputs: list[np.ndarray]) -> tuple[Callable[[], None], Callable[[], np.ndarray]]:
    """Build a TIR function (or a scheduled IRModule); return (call, output): call() runs it on TVM
    tensors made once from ``inputs``, output() copies the result back to numpy."""
    import tvm

    kernel = tvm.compile(func, target=host_target(threads))["main"]   # looked up once, not per call
    device = tvm.cpu()
    output_shape = [int(x) for x in te_program(kind, shape)[-1].shape]
    args = [tvm.runtime.tensor(x, device) for x in inputs]
    args.append(tvm.runtime.tensor(np.zeros(output_shape, dtype=np.float32), device))
    return (lambda: kernel(*args)), (lambda: args[-1].numpy())


def untuned_kernel(name: str, small: bool, threads: int = 1,
                   shape: Optional[Sequence[int]] = None) -> Callable[..., np.ndarray]:
    """The TE program built without any schedule (for tests): a function of numpy inputs."""
    from tvm import te

    kind, dims, _ = workload_case(name, small, shape)
    func = te.create_prim_func(te_program(kind, dims))

    def run(*inputs: np.ndarray) -> np.ndarray:
        call, output = compiled_kernel(func, kind, dims, threads, list(inputs))
        call()
        return output()
    return run


# ----------------------------------------------------------------------------- the tuning worker (its own process)
def trial_times(work_dir: Path) -> list[Optional[float]]:
    """Every trial's run time (s) in the order MetaSchedule measured them: the JSON database appends one
    line per tuning record as it is committed, ``[workload, [trace, run_secs, target, args]]``."""
    path = Path(work_dir) / "database_tuning_record.json"
    times: list[Optional[float]] = []
    if not path.exists():
        return times
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        run_secs = json.loads(line)[1][1]
        secs = [float(s) for s in run_secs or []]
        mean = sum(secs) / len(secs) if secs else None
        times.append(mean if mean is not None and mean < FAILED_TRIAL_S else None)
    return times


def best_so_far(times: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Running minimum of the trial times (None until the first candidate that ran)."""
    best: Optional[float] = None
    out: list[Optional[float]] = []
    for t in times:
        if t is not None and (best is None or t < best):
            best = t
        out.append(best)
    return out


def _tune_in_this_process(spec: dict[str, Any], result: dict[str, Any]) -> None:
    """Tune, rebuild the best schedule, check it and time it, filling ``result`` as it goes (so a
    failure late keeps the trials). Runs in the worker process, whose TVM_NUM_THREADS is the spec's
    thread count."""
    import tvm
    import tvm_ffi
    import xgboost
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    work_dir = Path(spec["work_dir"])
    kind, shape, workload = workload_case(spec["workload"], spec["small"], spec.get("shape"))
    func = te.create_prim_func(te_program(kind, shape))
    target = host_target(spec["threads"])
    cores = spec["tuning_cores"]
    result.update({"versions": {"tvm": tvm.__version__, "tvm_ffi": tvm_ffi.__version__,
                                "xgboost": xgboost.__version__},
                   "target": str(target), "kind": kind, "shape": list(shape), "flops": workload.flops})
    # MetaSchedule's first TuneContext imports tvm.s_tir.tensor_intrin, which parses a few hundred
    # TVMScript intrinsics (~25 s here): a once-per-process cost, timed apart from the tune.
    start = time.perf_counter()
    import tvm.s_tir.tensor_intrin  # noqa: F401
    result["import_s"] = time.perf_counter() - start
    start = time.perf_counter()
    database = ms.tune_tir(
        func, target, str(work_dir), max_trials_global=spec["trials"],
        num_trials_per_iter=min(spec["per_iter"], spec["trials"]),
        builder=ms.builder.LocalBuilder(max_workers=cores, timeout_sec=spec["timeout_s"]),
        runner=ms.runner.LocalRunner(timeout_sec=spec["timeout_s"]),
        num_tuning_cores=cores, seed=spec["seed"])
    result["tuning_s"] = time.perf_counter() - start
    after_tune = time.perf_counter()
    result["trial_s"] = trial_times(work_dir)
    result["best_so_far_s"] = best_so_far(result["trial_s"])
    result["search_best_s"] = result["best_so_far_s"][-1] if result["best_so_far_s"] else None
    schedule = ms.tir_integration.compile_tir(database, func, target)
    if schedule is None:
        result["note"] = "TVM FAILED: no trial ran, nothing to build"
        return
    inputs = workload.inputs()
    ref = workload.numpy(*[x.astype(np.float64) for x in inputs])
    call, output = compiled_kernel(schedule.mod, kind, shape, spec["threads"], inputs)
    call()
    err = common.max_rel_error(output(), ref)
    result["correct"], result["max_rel_err"] = err <= TOLERANCE, err
    if not result["correct"]:
        result["note"] = f"WRONG RESULT (max rel err {err:.2e} > {TOLERANCE:.0e}): not timed"
        return
    timing = common.time_fn(call, common.Protocol(spec["min_runs"], spec["min_time"]))
    result["median_s"], result["runs"] = timing.median_s, timing.runs
    result["gflops"] = workload.flops / timing.median_s / 1e9
    result["check_and_time_s"] = time.perf_counter() - after_tune


def _worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    result: dict[str, Any] = {}
    try:
        _tune_in_this_process(spec, result)
    except Exception as error:  # reported in the record; a crash (signal) is caught by the parent instead
        last_line = (str(error).strip().splitlines() or [""])[-1]
        result["note"] = f"TVM FAILED: {type(error).__name__}: {last_line}"
    result["spec"] = spec
    (Path(spec["work_dir"]) / "result.json").write_text(json.dumps(result, indent=1))


# ----------------------------------------------------------------------------- the public entry point
def _count_lines(path: Path) -> int:
    try:
        with open(path) as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def tune_tvm(workload_name: str, small: bool, trials: int, threads: int, seed: int, work_dir: str | Path, *,
             shape: Optional[Sequence[int]] = None, per_iter: int = 8, tuning_cores: Optional[int] = None,
             timeout_s: float = 60.0, protocol: common.Protocol = common.Protocol(), reuse: bool = True,
             progress: bool = True, keep_logs: bool = False) -> dict[str, Any]:
    """Tune one workload with MetaSchedule in a fresh process (TVM_NUM_THREADS=threads) and return its
    result dict (see the module docstring; ``note`` says what went wrong, if anything). ``work_dir``
    keeps MetaSchedule's JSON database and ``result.json``; a result there for the same spec is
    returned without tuning again (``reuse``). ``tuning_cores``: TVM's parallel builds and cost model
    (default: every core). The search's own logs are deleted unless ``keep_logs``."""
    work_dir = Path(work_dir)
    spec = {"workload": workload_name, "small": bool(small), "shape": list(shape) if shape else None,
            "trials": int(trials), "threads": int(threads), "seed": int(seed), "per_iter": int(per_iter),
            "tuning_cores": int(tuning_cores or os.cpu_count() or 1), "timeout_s": float(timeout_s),
            "min_runs": protocol.min_runs, "min_time": protocol.min_time, "work_dir": str(work_dir.resolve())}
    result_path = work_dir / "result.json"
    if reuse and result_path.exists():
        earlier = json.loads(result_path.read_text())
        same = {k: v for k, v in earlier.get("spec", {}).items() if k != "work_dir"} == \
            {k: v for k, v in spec.items() if k != "work_dir"}       # the folder may have moved
        if same and earlier.get("median_s") is not None:
            return dict(earlier, reused=True)
    if work_dir.exists():   # a different or failed spec: MetaSchedule would continue its database
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS="1")
    log_path = work_dir / "worker.log"
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        shown = 0
        while True:
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                done = _count_lines(work_dir / "database_tuning_record.json")
                if progress and done != shown:
                    shown = done
                    print(f"  tvm {workload_name}: {done}/{trials} trials, {time.perf_counter() - started:.0f} s",
                          file=sys.stderr, flush=True)
    worker_s = time.perf_counter() - started
    if result_path.exists():
        result = json.loads(result_path.read_text())
    else:
        tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()][-3:]
        result = {"spec": spec, "note": f"TVM CRASHED (exit code {proc.returncode}): {' | '.join(tail)[-300:]}"}
        result["trial_s"] = trial_times(work_dir)
        result["best_so_far_s"] = best_so_far(result["trial_s"])
    result["worker_s"] = worker_s
    result_path.write_text(json.dumps(result, indent=1))
    if not keep_logs:
        shutil.rmtree(work_dir / "logs", ignore_errors=True)
    return result


def to_record(result: dict[str, Any], workload_name: str, threads: int, flops: float) -> common.Record:
    """A suite record (impl ``tvm``) of a ``tune_tvm`` result: the checked and timed best kernel, and
    the tuning facts in ``extra`` (trials, tuning_s, the curve)."""
    rec = common.Record(workload_name, "tvm", threads, median_s=result.get("median_s"), gflops=result.get("gflops"),
                        correct=result.get("correct"), max_rel_err=result.get("max_rel_err"),
                        runs=result.get("runs", 0), note=result.get("note", ""))
    spec = result.get("spec", {})
    measured = [t for t in result.get("trial_s", []) if t is not None]
    rec.extra.update({"trials": spec.get("trials"), "trials_measured": len(result.get("trial_s", [])),
                      "trials_failed": len(result.get("trial_s", [])) - len(measured), "seed": spec.get("seed"),
                      "per_iter": spec.get("per_iter"), "import_s": round(result.get("import_s", 0.0), 1),
                      "tuning_s": round(result["tuning_s"], 1)
                      if "tuning_s" in result else None, "worker_s": round(result.get("worker_s", 0.0), 1),
                      "search_best_s": result.get("search_best_s"), "best_so_far_s": result.get("best_so_far_s"),
                      "trial_s": result.get("trial_s"), "reused": bool(result.get("reused")),
                      **({"tvm_versions": result["versions"]} if "versions" in result else {})})
    if not rec.note and rec.gflops is not None:
        best = result.get("search_best_s")
        rec.note = (f"MetaSchedule, {rec.extra['trials_measured']} trials in {rec.extra['tuning_s']:.0f} s"
                    + (f", search best {flops / best / 1e9:.1f} GFLOP/s" if best else "")
                    + (" (reused)" if rec.extra["reused"] else ""))
    return rec


def work_dir_name(workload_name: str, small: bool, trials: int, threads: int, seed: int,
                  shape: Optional[Sequence[int]] = None) -> str:
    """A work-dir name that differs wherever the spec does (the cache key in suite.py's output folder)."""
    size = "x".join(map(str, shape)) if shape else ("small" if small else "full")
    return f"{workload_name}-{size}-{threads}t-{trials}trials-seed{seed}"


# ----------------------------------------------------------------------------- command line
def _positive_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 8,16; got {text!r}")
    return values


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [n for n, *_ in W.SUITE]
    p.add_argument("--workloads", default="matmul", help=f"comma-separated, from {', '.join(names)} (default matmul)")
    p.add_argument("--trials", type=_positive_list, default=[8, 16, 32, 64], help="trial budgets (default 8,16,32,64)")
    p.add_argument("--threads", type=_positive_list, default=[1], help="thread counts (default 1)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per budget (default 1)")
    p.add_argument("--small", action="store_true", help="workloads.py's small shapes")
    p.add_argument("--per-iter", type=int, default=8, help="trials per MetaSchedule batch (default 8)")
    p.add_argument("--tuning-cores", type=int, default=None, help="cores for TVM's builds (default: all)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per build / run of a candidate (default 60)")
    p.add_argument("--min-runs", type=int, default=5)
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--keep", metavar="DIR", default=None, help="keep the work dirs (databases, logs) under DIR; "
                   "a result already there for the same spec is reused")
    p.add_argument("--json", metavar="FILE", help="write the records as a JSON list to FILE")
    args = p.parse_args(argv)
    unknown = [n for n in args.workloads.split(",") if n not in names]
    if unknown:
        p.error(f"--workloads: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(names)}")
    for flag, value in (("--seeds", args.seeds), ("--per-iter", args.per_iter), ("--min-runs", args.min_runs),
                        ("--timeout", args.timeout), ("--tuning-cores", args.tuning_cores)):
        if value is not None and value <= 0:
            p.error(f"{flag} must be positive, got {value:g}")
    versions = tvm_versions()
    if versions is None:
        print(missing_message())
        if args.json:
            Path(args.json).write_text("[]\n")
        return 0
    protocol = common.Protocol(args.min_runs, args.min_time)
    peak = common.header(f"TVM MetaSchedule ({', '.join(f'{k} {v}' for k, v in versions.items())}): "
                         f"{args.workloads}, trials {','.join(map(str, args.trials))}", protocol)
    records = common.Records()   # logs each record to stderr as it comes
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tvm_baseline_"))
    try:
        for name in args.workloads.split(","):
            flops = workload_case(name, args.small)[2].flops
            for threads in args.threads:
                for trials in args.trials:
                    for seed in range(args.seeds):
                        work_dir = root / work_dir_name(name, args.small, trials, threads, seed)
                        result = tune_tvm(name, args.small, trials, threads, seed, work_dir, per_iter=args.per_iter,
                                          tuning_cores=args.tuning_cores, timeout_s=args.timeout,
                                          protocol=protocol, keep_logs=bool(args.keep))
                        records.add(to_record(result, name, threads, flops))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    common.finish(records, peak)
    print(f"{'workload':<18} {'thr':>3} {'trials':>6} {'seed':>4} {'ran':>4} {'best ms':>9} {'GFLOP/s':>8} "
          f"{'% peak':>7} {'search GF/s':>11} {'tuning s':>9} {'check':>6}  note")
    for r in records:
        best = r.extra.get("search_best_s")
        flops = workload_case(r.workload, args.small)[2].flops
        print(f"{r.workload:<18} {r.threads:>3} {r.extra['trials']:>6} {r.extra['seed']:>4} "
              f"{r.extra['trials_measured']:>4} {r.median_s * 1e3 if r.median_s else float('nan'):>9.3f} "
              f"{r.gflops or float('nan'):>8.1f} {r.extra.get('pct_peak', float('nan')):>6.1f}% "
              f"{flops / best / 1e9 if best else float('nan'):>11.1f} "
              f"{r.extra['tuning_s'] if r.extra['tuning_s'] is not None else float('nan'):>9.1f} "
              f"{ {True: 'ok', False: 'WRONG', None: '-'}[r.correct]:>6}  {r.note}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_json() for r in records], indent=1))
        print(f"wrote {len(records)} records to {args.json}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2])
    else:
        sys.exit(main())
