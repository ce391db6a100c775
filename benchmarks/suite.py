"""The benchmark report: the six served-model kernels of workloads.py, every tool, 1 and 2 threads.

    python benchmarks/suite.py [--quick] [--budget 64] [--seeds 3] [--db benchmarks/results/tuning.jsonl]
                               [--proposer heuristic|llm] [--out benchmarks/results] [--json FILE]

For each workload of ``workloads.suite()`` and each thread count (protocol: common.py):
  default    mc.build of the unscheduled program: serial, so 1 thread only; when check + warm-up +
             min_runs calls would take more than --default-budget seconds, not timed: one call is
             estimated from a run on a slice (1 head, 1 token, M/16 rows or F/16 filters)
  tuned      the best kernel of ``minicompiler.tune`` (MCTS + the heuristic proposer, or
             --proposer llm) with --budget samples, tuned separately per thread count; every
             sample goes to the persistent tuning database --db, and a run already there is
             reused (``resume=True``: with a larger budget it continues without re-measuring)
  numpy      workloads.py's numpy function; numpy-skx (--skx) with OPENBLAS_CORETYPE=SkylakeX
  numba      numba_kernels.py: explicit loops, @njit(parallel=True, fastmath=True), prange outside
  torch      torch.from_numpy inputs, natural ops (scaled_dot_product_attention, conv2d, matmul,
             silu), torch.set_num_threads(n); only when torch is installed
  tvm        only with --impls ...,tvm: Apache TVM's MetaSchedule tunes the same program (written in
             TE, tvm_baseline.py) with --budget trials, TVM_NUM_THREADS=n, seed 0, in its own process;
             its best kernel is checked and timed here too, its tune_tir wall time recorded. Results
             are kept in --out/tvm/ and reused. Without TVM: a note ("n/a"), the suite goes on
numpy, numba and torch each run in a fresh subprocess (OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = n),
so no other runtime's idle thread pool competes with our kernels. Every kernel is checked
against a float64 numpy reference on the benchmark inputs (max|err|/max|ref| <= 1e-4) before it
is timed; a wrong one is reported WRONG and never timed.

Then sample-efficiency curves (best-so-far speedup vs samples, MCTS vs evolutionary vs random,
sample_efficiency.py's machinery) on the same workloads, --seeds seeds, --budget samples,
all cores; they also go to the tuning database, so a re-run reuses them. With tvm among --impls,
MetaSchedule's best-so-far curve (its trials, in the order it measured them) is drawn beside them.

--quick: budget 8, timing --min-time 0.2, default budget 10 s; curves on the small shapes
(``workloads.suite(small=True)``), 1 seed. --small: the table on the small shapes too (tests).
--curves-small: the curves on the small shapes without --quick (random search on the full
shapes meets candidates that take seconds per call: hours for six workloads).

Outputs in --out: REPORT.md, suite.json (every record, rewritten after each one),
gflops.png, sample_efficiency.png, sample_efficiency.csv, sample_efficiency.json. The report and the
plot are written by suite_report.py; this file measures.
"""
from __future__ import annotations

import common  # noqa: I001  (first: it pins this process's OpenBLAS to one thread before numpy loads)

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

import minicompiler as mc  # noqa: E402
import workloads as W  # noqa: E402

KINDS = {W._attention: "attention", W._matmul: "matmul", W._mlp: "mlp", W._conv: "conv"}
RESULTS = HERE / "results"


def entry(name: str, small: bool) -> tuple[str, tuple[int, ...]]:
    """(kind, shape) of a workload of workloads.SUITE."""
    for n, make, _title, shape, small_shape in W.SUITE:
        if n == name:
            return KINDS[make], (small_shape if small else shape)
    raise KeyError(name)


# ----------------------------------------------------------------------------- numpy / numba / torch (subprocess)
def _torch_fn(kind: str) -> Callable:
    import torch
    import torch.nn.functional as F

    if kind == "attention":
        return F.scaled_dot_product_attention
    if kind == "matmul":
        return torch.matmul
    if kind == "mlp":
        return lambda x, wg, wu, wd: (F.silu(x @ wg) * (x @ wu)) @ wd
    return lambda x, w: F.conv2d(x, w, padding=w.shape[-1] // 2)


def bench_case(case: dict[str, Any], tool: str, threads: int) -> tuple[Callable[[], np.ndarray], float, str]:
    """Run in common.py's subprocess worker: (call, tolerance, note) for ``tool`` on this workload."""
    w = W.by_name(case["small"])[case["workload"]]
    inputs = w.inputs()
    if tool in ("numpy", "numpy-skx"):
        return (lambda: w.numpy(*inputs)), TOLERANCE, ""
    if tool == "numba":
        import numba

        import numba_kernels
        numba.set_num_threads(threads)
        kernel = numba_kernels.KERNELS[w.name]
        return (lambda: kernel(*inputs)), TOLERANCE, f"numba {numba.__version__}"
    if tool == "torch":
        import torch
        torch.set_num_threads(threads)
        fn, tensors = _torch_fn(entry(w.name, case["small"])[0]), [torch.from_numpy(x) for x in inputs]

        def run() -> np.ndarray:
            with torch.inference_mode():
                return fn(*tensors).numpy()
        return run, TOLERANCE, f"torch {torch.__version__}"
    raise ValueError(f"unknown tool {tool!r}")


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


# ----------------------------------------------------------------------------- default (unscheduled)
def default_record(w: W.Workload, small: bool, inputs: list[np.ndarray], ref: np.ndarray,
                   protocol: common.Protocol, budget: float) -> common.Record:
    """The unscheduled program, timed in full when that fits ``budget`` seconds, else estimated
    from one call on a slice of the work (heads, tokens, rows and filters are independent)."""
    kind, shape = entry(w.name, small)
    if kind == "attention":
        heads, tokens, dim = shape
        part, scale = W.attention_program(1, tokens, dim), heads
        part_inputs, part_ref = [x[:1] for x in inputs], ref[:1]
    elif kind == "matmul":
        m, n, k = shape
        rows = max(1, m // 16)
        part, scale = W.matmul_program(rows, n, k), m / rows
        part_inputs, part_ref = [inputs[0][:rows], inputs[1]], ref[:rows]
    elif kind == "mlp":
        tokens, hidden, inter = shape
        part, scale = W.mlp_program(1, hidden, inter), tokens
        part_inputs, part_ref = [inputs[0][:1], *inputs[1:]], ref[:1]
    else:
        channels, filters, height, width = shape
        f = max(1, filters // 16)
        part, scale = W.conv_program(channels, f, height, width), filters / f
        part_inputs, part_ref = [inputs[0], np.ascontiguousarray(inputs[1][:f])], ref[:, :f]

    def full() -> tuple[Callable[[], np.ndarray], np.ndarray]:
        kernel = mc.build(w.program())
        return (lambda: kernel(*inputs)), ref

    def proxy() -> tuple[Callable[[], np.ndarray], np.ndarray]:
        kernel = mc.build(part)
        return (lambda: kernel(*part_inputs)), part_ref

    rec = common.measure_or_estimate(w.name, "default", 1, full, proxy, scale, w.flops, protocol, TOLERANCE, budget)
    if rec.median_s is None and "estimated_s" in rec.extra and rec.correct:
        rec.extra["estimated_gflops"] = w.flops / rec.extra["estimated_s"] / 1e9
    return rec


# ----------------------------------------------------------------------------- tuned
def _tuning_seconds(timestamps: list[float], max_gap: float = 600.0) -> float:
    """Wall time covered by a run's samples: consecutive gaps, except pauses longer than ``max_gap``
    (a run interrupted and resumed later)."""
    timestamps = sorted(timestamps)
    return sum(b - a for a, b in zip(timestamps, timestamps[1:]) if b - a <= max_gap)


def tuned_record(w: W.Workload, threads: int, inputs: list[np.ndarray], ref: np.ndarray,
                 protocol: common.Protocol, args: argparse.Namespace) -> common.Record:
    """Tune (or reuse the database's run), then check and time the best kernel in this process."""
    from minicompiler.search.database import Database
    from minicompiler.search.tune import tune
    from minicompiler.search.workload import Workload

    db = Database(args.db)
    tensor = w.program()
    run = (Workload(tensor).key, mc.Target.host().key(), threads, "mcts", args.proposer)
    earlier = db.latest_run(*run) is not None
    # seed 0 (the run the 2-thread curves share) when it exists or nothing does, else the latest run
    seed = 0 if db.latest_run(*run, seed=0) is not None or not earlier else None
    llm = {"llm": {k: v for k, v in (("model", args.llm_model), ("base_url", args.llm_base_url)) if v}} \
        if args.proposer == "llm" else {}
    print(f"-- tuning {w.name}, {threads} thread(s), budget {args.budget} "
          f"({'continuing the run in ' if earlier else 'new run, database '}{args.db})", file=sys.stderr, flush=True)
    started, start = time.time(), time.perf_counter()
    try:
        result = tune(tensor, budget=args.budget, strategy="mcts", proposer=args.proposer, database=db,
                      seed=seed, threads=threads, name=w.name, resume=True,
                      progress=not args.no_progress, timeout_s=args.timeout, **llm)
    except Exception as error:  # e.g. the LLM endpoint is not configured: reported, the suite goes on
        return common.Record(w.name, "tuned", threads, note=f"TUNING FAILED: {type(error).__name__}: {error}")
    wall = time.perf_counter() - start
    stamps = [r["timestamp"] for r in db.records(run_id=result.run_id) if "timestamp" in r]
    new = sum(1 for s in stamps if s >= started)
    tuning_s = _tuning_seconds([s for s in stamps if s < started]) + (wall if new else 0.0)
    extra = {"samples": result.samples, "new_samples": new, "tuning_s": round(tuning_s, 1),
             "search_speedup": round(result.speedup, 2), "search_best_s": result.best_time_s,
             "run_id": result.run_id, "trace": result.trace(), "proposer": args.proposer}
    mc.set_num_threads(threads)
    try:
        kernel = result.kernel
    except Exception as error:
        rec = common.failed(w.name, "tuned", threads, error)
    else:
        rec = common.measure(w.name, "tuned", threads, lambda: kernel(*inputs), ref, w.flops, protocol, TOLERANCE)
    rec.extra.update(extra)
    if not rec.note:
        rec.note = f"{result.samples} samples ({new} new), best of run x{result.speedup:.1f} over unscheduled"
    return rec


# ----------------------------------------------------------------------------- tvm (optional)
def tvm_record(w: W.Workload, small: bool, threads: int, protocol: common.Protocol,
               args: argparse.Namespace) -> common.Record:
    """MetaSchedule's tune of this workload (tvm_baseline.py, its own process), or a note without TVM.
    The work dir under --out/tvm/ keeps the result: the same spec is not tuned again."""
    import tvm_baseline

    if tvm_baseline.tvm_versions() is None:
        return common.Record(w.name, "tvm", threads, note=f"tvm not installed ({tvm_baseline.INSTALL})")
    print(f"-- tvm MetaSchedule {w.name}, {threads} thread(s), {args.budget} trials", file=sys.stderr, flush=True)
    work_dir = Path(args.out) / "tvm" / tvm_baseline.work_dir_name(w.name, small, args.budget, threads, 0)
    result = tvm_baseline.tune_tvm(w.name, small, args.budget, threads, 0, work_dir, protocol=protocol,
                                   timeout_s=args.timeout, progress=not args.no_progress)
    return tvm_baseline.to_record(result, w.name, threads, w.flops)


# ----------------------------------------------------------------------------- bandwidth
def stream_bandwidth(threads: list[int], protocol: common.Protocol, n: int = 1 << 25) -> dict[str, float]:
    """Copy GB/s (bytes read + bytes written, as STREAM counts) of a 128 MB float32 array:
    numpy (one thread) and our own vectorized, parallel copy kernel at each thread count."""
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    y = np.empty_like(x)
    out = {"numpy_copy_1t": 2 * x.nbytes / common.time_fn(lambda: np.copyto(y, x), protocol).median_s / 1e9}
    X = mc.placeholder((n,), name="X")
    Y = mc.compute((n,), lambda i: X[i], name="Y")
    kernel = mc.build(mc.Schedule(Y).split("i", 64).vectorize("i_i").parallel("i_o"))
    for t in threads:
        mc.set_num_threads(t)
        out[f"copy_{t}t"] = 2 * x.nbytes / common.time_fn(lambda: kernel(x, out=y), protocol).median_s / 1e9
    return out


# ----------------------------------------------------------------------------- output
class Progress(common.Records):
    """Records that log each one to stderr and rewrite suite.json (and --json) after each."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self.paths = paths

    def add(self, rec: common.Record) -> None:
        super().add(rec)
        self.save()

    def save(self) -> None:
        text = json.dumps([r.to_json() for r in self], indent=1, default=str)
        for path in self.paths:
            path.write_text(text)


from suite_report import IMPLS, OPTIONAL_IMPLS, TOLERANCE, plot_gflops, write_report  # noqa: E402


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--budget", type=int, default=None, help="tuning samples per workload and thread count "
                   "(default 64; 8 with --quick); also the curves' budget")
    p.add_argument("--seeds", type=int, default=None, help="seeds per strategy for the curves (default 3; 1 with --quick)")
    p.add_argument("--db", default=str(RESULTS / "tuning.jsonl"), help="tuning database (default %(default)s)")
    p.add_argument("--out", default=str(RESULTS), help="output folder (default %(default)s)")
    p.add_argument("--proposer", choices=("heuristic", "llm"), default="heuristic")
    p.add_argument("--llm-model", default=None)
    p.add_argument("--llm-base-url", default=None)
    p.add_argument("--workloads", default=None, help="comma-separated names (default: all six)")
    p.add_argument("--impls", default=",".join(IMPLS),
                   help=f"which columns to measure (default: {','.join(IMPLS)}; also: {','.join(OPTIONAL_IMPLS)})")
    p.add_argument("--small", action="store_true", help="the table on the small shapes (for tests)")
    p.add_argument("--no-curves", action="store_true", help="skip the sample-efficiency curves")
    p.add_argument("--curves-small", action="store_true", help="the curves on the small shapes")
    p.add_argument("--curves-budget", type=int, default=None,
                   help="samples per curve (default: --budget)")
    p.add_argument("--skx", action="store_true", help="also numpy-skx (OPENBLAS_CORETYPE=SkylakeX)")
    p.add_argument("--default-budget", type=float, default=None,
                   help="seconds the unscheduled default may take before it is only estimated (30; 10 with --quick)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per tuning candidate (default 120)")
    p.add_argument("--no-progress", action="store_true", help="no per-sample tuning lines on stderr")
    args = p.parse_args()
    check_arguments(p, args)
    args.budget = args.budget or (8 if args.quick else 64)
    seeds = args.seeds or (1 if args.quick else 3)
    default_budget = args.default_budget or (10.0 if args.quick else 30.0)
    protocol = common.protocol_from(args)
    threads = common.thread_counts(args)
    impls = set(args.impls.split(","))
    wanted = args.workloads.split(",") if args.workloads else None
    suite = [w for w in W.suite(args.small) if wanted is None or w.name in wanted]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "suite.json"] + ([Path(args.json)] if args.json else [])

    load_before = os.getloadavg()[0]
    peak = common.header("minicompiler benchmark suite: " + ", ".join(w.name for w in suite), protocol)
    meta: dict[str, Any] = {
        "host": f"{mc.Target.host().describe()}; {platform.python_implementation()} {platform.python_version()}, "
                f"numpy {np.__version__}", "peak": peak, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]), "protocol": protocol,
        "proposer": args.proposer, "budget": args.budget, "db": os.path.relpath(args.db), "load_before": load_before}
    if "tvm" in impls:
        import tvm_baseline
        versions = tvm_baseline.tvm_versions()
        meta["tvm"] = ", ".join(f"{k} {v}" for k, v in versions.items()) if versions else None
        if versions is None:
            print(tvm_baseline.missing_message(), file=sys.stderr, flush=True)
    records = Progress(paths)
    nbytes: dict[str, int] = {}
    curves: Optional[dict[str, Any]] = None
    has_torch = torch_available()
    started = time.perf_counter()
    interrupted = False
    with tempfile.TemporaryDirectory() as tmp:
        try:
            meta["bandwidth"] = stream_bandwidth(threads, protocol)
            print("copy bandwidth: " + ", ".join(f"{k} {v:.1f} GB/s" for k, v in meta["bandwidth"].items()),
                  file=sys.stderr, flush=True)
            for w in suite:
                print(f"\n== {w.name}: {w.title}", file=sys.stderr, flush=True)
                inputs = w.inputs()
                ref = w.numpy(*[x.astype(np.float64) for x in inputs])
                nbytes[w.name] = sum(x.nbytes for x in inputs) + ref.size * 4
                ref_path = os.path.join(tmp, f"{w.name}.npy")
                np.save(ref_path, ref)
                case = {"workload": w.name, "small": args.small}
                for t in threads:
                    mc.set_num_threads(t)
                    if "default" in impls and t == min(threads):
                        records.add(default_record(w, args.small, inputs, ref, protocol, default_budget))
                    if "tuned" in impls:
                        records.add(tuned_record(w, t, inputs, ref, protocol, args))
                    tools = [("numpy", None)] + ([("numpy-skx", common.SKX)] if args.skx else [])
                    tools += [("numba", None), ("torch", None)]
                    for tool, coretype in tools:
                        if tool.split("-")[0] not in impls:
                            continue
                        if tool == "torch" and not has_torch:
                            records.add(common.Record(w.name, tool, t, note="torch not installed "
                                                                            "(pip install torch==2.13.0)"))
                            continue
                        records.add(common.numpy_record(w.name, tool, t, __file__, case, w.flops, protocol,
                                                        coretype, tool=tool, ref_path=ref_path))
                    if "tvm" in impls:
                        records.add(tvm_record(w, args.small, t, protocol, args))
                os.remove(ref_path)
                del inputs, ref
            common.finish(records, peak)
            records.save()
            if not args.no_curves:
                curves = run_curves(args, seeds, out, tvm="tvm" in impls and meta.get("tvm") is not None)
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: writing what was measured", file=sys.stderr, flush=True)
    common.finish(records, peak)
    records.save()
    write_report(out / "REPORT.md", records, suite, threads, meta, nbytes, curves)
    plot_gflops(records, [w.name for w in suite], threads, out / "gflops.png")
    print(f"\nload average after the run: {os.getloadavg()[0]:.2f}")
    common.print_table(records)
    print(f"wrote {out / 'REPORT.md'}, {paths[0]}, {out / 'gflops.png'}"
          + (f", {out / 'sample_efficiency.png'}" if curves else "")
          + f" in {time.perf_counter() - started:.0f} s")
    if interrupted:
        sys.exit(130)


def check_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad options before anything is measured (argparse's error: usage, message, exit 2)."""
    for flag, value in (("--budget", args.budget), ("--seeds", args.seeds), ("--curves-budget", args.curves_budget),
                        ("--default-budget", args.default_budget), ("--timeout", args.timeout),
                        ("--min-runs", args.min_runs)):
        if value is not None and value <= 0:
            p.error(f"{flag} must be positive, got {value:g}")
    if args.min_time is not None and args.min_time < 0:
        p.error(f"--min-time must be >= 0 (0: just --min-runs calls), got {args.min_time:g}")
    known = [name for name, *_ in W.SUITE]
    for flag, given, choices in (("--workloads", args.workloads, known),
                                 ("--impls", args.impls, IMPLS + OPTIONAL_IMPLS)):
        unknown = [x for x in (given.split(",") if given else []) if x not in choices]
        if unknown:
            p.error(f"{flag}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}")


def run_curves(args: argparse.Namespace, seeds: int, out: Path, tvm: bool = False) -> dict[str, Any]:
    """Sample-efficiency curves (sample_efficiency.py's machinery), written to ``out``; ``tvm``: with
    MetaSchedule's curves (work dirs in ``out``/tvm, shared with the tvm column where the spec matches)."""
    import sample_efficiency as se

    small = args.small or args.quick or args.curves_small
    wanted = args.workloads.split(",") if args.workloads else None
    programs = {w.name: w.program() for w in W.suite(small) if wanted is None or w.name in wanted}
    threads = max(common.thread_counts(args))
    budget = args.curves_budget or args.budget
    tvm_cases = {name: {"workload_name": name, "small": small} for name in programs} if tvm else None
    results, runs, rows = se.run_curves(programs, budget, seeds, threads, database=Path(args.db),
                                        progress=not args.no_progress, tvm_cases=tvm_cases,
                                        tvm_dir=out / "tvm", tvm_timeout_s=args.timeout)
    se.write_csv(rows, out / "sample_efficiency.csv")
    (out / "sample_efficiency.json").write_text(json.dumps(runs, indent=1))
    se.plot(results, out / "sample_efficiency.png")
    desc = (f"{'small shapes (workloads.suite(small=True))' if small else 'full shapes'}, budget {budget}, "
            f"{seeds} seed(s), {threads} thread(s); median over seeds (band: min-max); "
            f"heuristic proposer for MCTS; runs stored in the tuning database"
            + ("; tvm: MetaSchedule's trials in the order it measured them (it never measures the unscheduled "
               "program, minicompiler's sample 1), over the same baseline" if tvm else ""))
    return {"desc": desc, "summary": se.summary(results, budget)}


if __name__ == "__main__":
    main()
