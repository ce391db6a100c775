"""The suite's report: REPORT.md (tables, geomeans, a measured verdict wherever tuned loses) and
the GFLOP/s plot, from the records ``suite.py`` measured. Nothing here measures anything.
"""
from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any, Optional

import common
import workloads as W

TOLERANCE = 1e-4   # relative error (against a float64 reference) beyond which a result is WRONG
IMPLS = ("default", "tuned", "numpy", "numba", "torch")
# Measured only when asked for (--impls ...,tvm): a MetaSchedule tune takes minutes per workload and
# thread count (tvm_baseline.py). Their columns appear in the report only when there are records.
OPTIONAL_IMPLS = ("tvm",)


def impls_in(records: list[common.Record]) -> tuple[str, ...]:
    """The columns of the report and the plot: IMPLS, plus an optional one that has records."""
    return IMPLS + tuple(i for i in OPTIONAL_IMPLS if any(r.impl == i for r in records))


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
    impls = impls_in(records)
    fig, axes = plt.subplots(len(panels), 1, figsize=(13, 4.2 * len(panels)), squeeze=False)
    width = 0.8 / len(impls)
    for ax, t in zip(axes[:, 0], panels):
        for index, impl in enumerate(impls):
            xs, ys, hatched = [], [], []
            for k, name in enumerate(names):
                r = find(records, name, impl, t if impl != "default" else 1)
                value = None if r is None else (r.gflops or r.extra.get("estimated_gflops"))
                if value:
                    xs.append(k + (index - (len(impls) - 1) / 2) * width)
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
        ax.legend(ncol=len(impls), fontsize=8)
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
    impls = impls_in(records)
    has_tvm = "tvm" in impls
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
           *([f"- tvm: Apache TVM MetaSchedule ({meta['tvm']}), `tune_tir` with {meta['budget']} trials per "
              "thread count, batches of up to 8 trials, seed 0, target llvm with the host CPU and num-cores = threads "
              "(tvm_baseline.py); its best kernel checked and timed as the others"] if has_tvm and meta.get("tvm")
             else []),
           ""]
    out += ["GFLOP/s (higher is better). `default` is the unscheduled program, serial (measured on 1 thread; "
            "`~x` = estimated from one call on a slice, too slow to time fully). `n/a`: not installed. "
            "`samples`: samples in the tuning run; `tuning`: its wall time."
            + (" `tvm trials` / `tvm tuning`: MetaSchedule's measured trials and the wall time of its "
               "`tune_tir` call (not counting a once-per-process import of TVM's tensor intrinsics, ~25 s)."
               if has_tvm else ""), ""]
    for t in sorted(threads, reverse=True):
        extra = ["tvm trials", "tvm tuning"] if has_tvm else []
        columns = [*impls, "tuned/numpy", "samples", "tuning", *extra]
        out += [f"## {t} thread{'s' if t > 1 else ''}", "",
                "| workload | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        ratios, tvm_ratios = [], []
        for w in suite:
            cells = [_cell(find(records, w.name, impl, 1 if impl == "default" else t)) for impl in impls]
            if t != 1 and cells[0] != "—":
                cells[0] += " (1t)"
            tuned, numpy = find(records, w.name, "tuned", t), find(records, w.name, "numpy", t)
            ratio = "—"
            if tuned and numpy and tuned.gflops and numpy.gflops:
                ratios.append(tuned.gflops / numpy.gflops)
                ratio = f"{ratios[-1]:.2f}x"
            samples = str(tuned.extra.get("samples", "—")) if tuned else "—"
            tuning = f"{tuned.extra['tuning_s']:.0f} s" if tuned and "tuning_s" in tuned.extra else "—"
            row = [*cells, ratio, samples, tuning]
            if has_tvm:
                tvm = find(records, w.name, "tvm", t)
                row += [str(tvm.extra.get("trials_measured", "—")) if tvm else "—",
                        f"{tvm.extra['tuning_s']:.0f} s" if tvm and tvm.extra.get("tuning_s") is not None else "—"]
                if tvm and tuned and tvm.gflops and tuned.gflops:
                    tvm_ratios.append(tuned.gflops / tvm.gflops)
            out.append(f"| {w.name} | " + " | ".join(row) + " |")
        g = geomean(ratios)
        out += ["", f"Geomean of tuned/numpy over {len(ratios)} workload(s) at {t} thread{'s' if t > 1 else ''}: "
                + (f"**{g:.2f}x**" if g else "—"), ""]
        if has_tvm:
            g = geomean(tvm_ratios)
            out += [f"Geomean of tuned/tvm over {len(tvm_ratios)} workload(s) at {t} thread{'s' if t > 1 else ''}: "
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
    wrong = [r for r in records if r.correct is False or r.note.startswith(("ERROR", "BUILD FAILED", "TUNING FAILED",
                                                                           "TVM FAILED", "TVM CRASHED"))]
    if wrong:
        out += ["## Not timed", ""] + [f"- {r.workload} / {r.impl} / {r.threads}t: {r.note}" for r in wrong] + [""]
    if curves:
        out += ["## Sample efficiency", "",
                f"Best-so-far speedup over the unscheduled program vs samples measured; {curves['desc']}.", "",
                "![sample efficiency](sample_efficiency.png)", "", "```"] + curves["summary"] + ["```", ""]
    out += ["![GFLOP/s](gflops.png)", ""]
    path.write_text("\n".join(out))


# ----------------------------------------------------------------------------- main
