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
numpy, numba and torch each run in a fresh subprocess (OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = n),
so no other runtime's idle thread pool competes with our kernels. Every kernel is checked
against a float64 numpy reference on the benchmark inputs (max|err|/max|ref| <= 1e-4) before it
is timed; a wrong one is reported WRONG and never timed.

Then sample-efficiency curves (best-so-far speedup vs samples, MCTS vs evolutionary vs random,
sample_efficiency.py's machinery) on the same workloads, --seeds seeds, --budget samples,
all cores; they also go to the tuning database, so a re-run reuses them.

--quick: budget 8, timing --min-time 0.2, default budget 10 s; curves on the small shapes
(``workloads.suite(small=True)``), 1 seed. --small: the table on the small shapes too (tests).
--curves-small: the curves on the small shapes without --quick (random search on the full
shapes meets candidates that take seconds per call: hours for six workloads).

Outputs in --out: REPORT.md, suite.json (every record, rewritten after each one),
gflops.png, sample_efficiency.png, sample_efficiency.csv, sample_efficiency.json.
"""
from __future__ import annotations

import common  # noqa: I001  (first: it pins this process's OpenBLAS to one thread before numpy loads)

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
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

TOLERANCE = 1e-4
IMPLS = ("default", "tuned", "numpy", "numba", "torch")
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


def _cell(r: Optional[common.Record]) -> str:
    if r is None:
        return "—"
    if r.gflops is not None:
        return f"{r.gflops:.1f}"
    if r.correct is False:
        return "WRONG"
    if "estimated_gflops" in r.extra:
        return f"~{r.extra['estimated_gflops']:.2f}"
    if "not installed" in r.note:
        return "n/a"
    return "failed"


def geomean(values: list[float]) -> Optional[float]:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else None


def plot_gflops(records: list[common.Record], names: list[str], threads: list[int], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted(threads, reverse=True)
    fig, axes = plt.subplots(len(panels), 1, figsize=(13, 4.2 * len(panels)), squeeze=False)
    width = 0.8 / len(IMPLS)
    for ax, t in zip(axes[:, 0], panels):
        for index, impl in enumerate(IMPLS):
            xs, ys, hatched = [], [], []
            for k, name in enumerate(names):
                r = find(records, name, impl, t if impl != "default" else 1)
                value = None if r is None else (r.gflops or r.extra.get("estimated_gflops"))
                if value:
                    xs.append(k + (index - (len(IMPLS) - 1) / 2) * width)
                    ys.append(value)
                    hatched.append(r.gflops is None or (impl == "default" and t != 1))
            bars = ax.bar(xs, ys, width, label=impl)
            for bar, h in zip(bars, hatched):
                if h:
                    bar.set_hatch("//")
                    bar.set_alpha(0.5)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_yscale("log")
        ax.set_ylabel("GFLOP/s (log)")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''} (hatched: default is serial / estimated)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(ncol=len(IMPLS), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def find(records: list[common.Record], workload: str, impl: str, threads: int) -> Optional[common.Record]:
    return next((r for r in records if r.workload == workload and r.impl == impl and r.threads == threads), None)


def why(w: W.Workload, t: int, tuned: common.Record, numpy: common.Record, nbytes: int, peak: float,
        bandwidth: dict[str, float]) -> str:
    """Measured reasons tuned < numpy: arithmetic intensity vs the machine's ridge point, bandwidth
    achieved vs measured copy bandwidth, % of the measured FMA peak; and the tuned trace."""
    bw = bandwidth.get(f"copy_{t}t") or bandwidth["numpy_copy_1t"]
    ai, ridge = w.flops / nbytes, peak * t / bw
    lines = [f"**{w.name}, {t} thread{'s' if t > 1 else ''}: tuned {tuned.gflops:.1f} vs numpy "
             f"{numpy.gflops:.1f} GFLOP/s ({tuned.gflops / numpy.gflops:.2f}x).** "
             f"Compulsory traffic (inputs + output) {nbytes / 1e6:.1f} MB, {w.flops / 1e9:.2f} GFLOP: "
             f"arithmetic intensity {ai:.1f} flop/byte; ridge point of this machine at {t} thread(s) "
             f"{peak * t:.0f} GFLOP/s / {bw:.1f} GB/s (measured copy) = {ridge:.1f} flop/byte."]
    for label, r in (("tuned", tuned), ("numpy", numpy)):
        lines.append(f"{label}: {nbytes / r.median_s / 1e9:.1f} GB/s of compulsory traffic "
                     f"({100 * nbytes / r.median_s / 1e9 / bw:.0f}% of the measured copy bandwidth), "
                     f"{100 * r.gflops / (peak * t):.0f}% of the measured FMA peak.")
    roof = min(ai * bw, peak * t)
    bound = "memory" if ai < ridge else "compute"
    lines.append(f"Verdict: {bound}-bound by the roofline (intensity {ai:.1f} {'<' if ai < ridge else '>='} ridge "
                 f"{ridge:.1f}); the roof is {roof:.0f} GFLOP/s: tuned reaches {100 * tuned.gflops / roof:.0f}% of "
                 f"it, numpy {100 * numpy.gflops / roof:.0f}%.")
    tuned_bw = nbytes / tuned.median_s / 1e9 / bw
    if bound == "memory" and tuned_bw >= 0.7:
        lines.append("Tuned already streams its compulsory traffic at >= 70% of the measured copy bandwidth: "
                     "only less traffic (fusion, reuse) could make it faster.")
    elif nbytes < 1 << 20:
        lines.append(f"(The whole working set, {nbytes / 1e3:.0f} kB, fits in L2: DRAM bandwidth is not the limit "
                     "here; fixed per-call costs weigh.)")
    else:
        lines.append("Tuned is below its roof: the loss is in the generated loop nest (the trace below: tiling, "
                     "packing, parallel grain), not at a hardware limit.")
    trace = tuned.extra.get("trace")
    text = " ".join(lines)
    if trace is not None:
        text += "\n\nTuned trace" + ("" if tuned.extra.get("samples") and len(trace.splitlines()) > 1 else
                                      " (no step: the unscheduled program was the fastest found)") + ":\n\n```python\n" + trace.strip() + "\n```"
    return text


def write_report(path: Path, records: list[common.Record], suite: list[W.Workload], threads: list[int],
                 meta: dict[str, Any], nbytes: dict[str, int], curves: Optional[dict[str, Any]]) -> None:
    peak, bandwidth = meta["peak"], meta.get("bandwidth") or {}
    out = ["# minicompiler benchmark report", "",
           f"- host: {meta['host']}",
           f"- measured FP32 FMA peak: {peak:.1f} GFLOP/s per core (common.fma_peak_gflops)",
           "- measured copy bandwidth: " + (", ".join(f"{k} {v:.1f} GB/s" for k, v in bandwidth.items())
                                            or "not measured"),
           f"- date: {meta['date']}; load average before/after: {meta['load_before']:.2f} / "
           f"{os.getloadavg()[0]:.2f}",
           f"- command: `{meta['command']}`",
           *([f"- **WARNING: the machine was busy (load average {meta['load_before']:.1f} on {os.cpu_count()} cores "
              "before the run): the figures, the 2-thread ones above all, are noisy; re-run on an idle machine.**"]
             if meta["load_before"] > 0.5 else []),
           f"- timing: 1 warm-up, then >= {meta['protocol'].min_runs} runs and >= {meta['protocol'].min_time:g} s, "
           f"median; every kernel checked against a float64 numpy reference (max rel err <= {TOLERANCE:g}) first",
           f"- tuned: `minicompiler.tune`, MCTS + {meta['proposer']} proposer, budget {meta['budget']} samples per "
           f"thread count, database `{meta['db']}` (runs already there are reused/continued)",
           ""]
    out += ["GFLOP/s (higher is better). `default` is the unscheduled program, serial (measured on 1 thread; "
            "`~x` = estimated from one call on a slice, too slow to time fully). `n/a`: not installed. "
            "`samples`: samples in the tuning run; `tuning`: its wall time.", ""]
    names = [w.name for w in suite]
    for t in sorted(threads, reverse=True):
        out += [f"## {t} thread{'s' if t > 1 else ''}", "",
                "| workload | default | tuned | numpy | numba | torch | tuned/numpy | samples | tuning |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ratios = []
        for w in suite:
            cells = [_cell(find(records, w.name, impl, 1 if impl == "default" else t)) for impl in IMPLS]
            if t != 1 and cells[0] != "—":
                cells[0] += " (1t)"
            tuned, numpy = find(records, w.name, "tuned", t), find(records, w.name, "numpy", t)
            ratio = "—"
            if tuned and numpy and tuned.gflops and numpy.gflops:
                ratios.append(tuned.gflops / numpy.gflops)
                ratio = f"{ratios[-1]:.2f}x"
            samples = str(tuned.extra.get("samples", "—")) if tuned else "—"
            tuning = f"{tuned.extra['tuning_s']:.0f} s" if tuned and "tuning_s" in tuned.extra else "—"
            out.append(f"| {w.name} | " + " | ".join(cells) + f" | {ratio} | {samples} | {tuning} |")
        g = geomean(ratios)
        out += ["", f"Geomean of tuned/numpy over {len(ratios)} workload(s) at {t} thread{'s' if t > 1 else ''}: "
                + (f"**{g:.2f}x**" if g else "—"), ""]
    out += ["## Workloads", ""] + [f"- `{w.name}`: {w.title}, {w.flops / 1e9:.2f} GFLOP, "
                                   f"{nbytes.get(w.name, 0) / 1e6:.1f} MB in+out" for w in suite] + [""]
    whys = []
    for w in suite:
        for t in sorted(threads, reverse=True):
            tuned, numpy = find(records, w.name, "tuned", t), find(records, w.name, "numpy", t)
            if tuned and numpy and tuned.gflops and numpy.gflops and tuned.gflops < numpy.gflops and bandwidth:
                whys.append(why(w, t, tuned, numpy, nbytes[w.name], peak, bandwidth))
    if whys:
        out += ["## Where tuned is slower than numpy, and why (measured)", ""]
        for text in whys:
            out += [text, ""]
    wrong = [r for r in records if r.correct is False or r.note.startswith(("ERROR", "BUILD FAILED", "TUNING FAILED"))]
    if wrong:
        out += ["## Not timed", ""] + [f"- {r.workload} / {r.impl} / {r.threads}t: {r.note}" for r in wrong] + [""]
    if curves:
        out += ["## Sample efficiency", "",
                f"Best-so-far speedup over the unscheduled program vs samples measured; {curves['desc']}.", "",
                "![sample efficiency](sample_efficiency.png)", "", "```"] + curves["summary"] + ["```", ""]
    out += ["![GFLOP/s](gflops.png)", ""]
    path.write_text("\n".join(out))


# ----------------------------------------------------------------------------- main
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
    p.add_argument("--impls", default=",".join(IMPLS), help="which columns to measure (default: all)")
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
                os.remove(ref_path)
                del inputs, ref
            common.finish(records, peak)
            records.save()
            if not args.no_curves:
                curves = run_curves(args, seeds, out)
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
    for flag, given, choices in (("--workloads", args.workloads, known), ("--impls", args.impls, IMPLS)):
        unknown = [x for x in (given.split(",") if given else []) if x not in choices]
        if unknown:
            p.error(f"{flag}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}")


def run_curves(args: argparse.Namespace, seeds: int, out: Path) -> dict[str, Any]:
    """Sample-efficiency curves (sample_efficiency.py's machinery), written to ``out``."""
    import sample_efficiency as se

    small = args.small or args.quick or args.curves_small
    wanted = args.workloads.split(",") if args.workloads else None
    programs = {w.name: w.program() for w in W.suite(small) if wanted is None or w.name in wanted}
    threads = max(common.thread_counts(args))
    budget = args.curves_budget or args.budget
    results, runs, rows = se.run_curves(programs, budget, seeds, threads, database=Path(args.db),
                                        progress=not args.no_progress)
    se.write_csv(rows, out / "sample_efficiency.csv")
    (out / "sample_efficiency.json").write_text(json.dumps(runs, indent=1))
    se.plot(results, out / "sample_efficiency.png")
    desc = (f"{'small shapes (workloads.suite(small=True))' if small else 'full shapes'}, budget {budget}, "
            f"{seeds} seed(s), {threads} thread(s); median over seeds (band: min-max); "
            f"heuristic proposer for MCTS; runs stored in the tuning database")
    return {"desc": desc, "summary": se.summary(results, budget)}


if __name__ == "__main__":
    main()
