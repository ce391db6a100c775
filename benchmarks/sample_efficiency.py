"""Sample efficiency: best-so-far speedup against the number of measured samples, per strategy.

For each workload, each strategy (MCTS with the heuristic proposer, evolutionary, random)
runs with the same budget for several seeds, in this one process, one after another. Every
strategy counts samples the same way (``search.session``): one sample = one candidate built,
checked and timed in the measuring worker; the unscheduled program is sample 1. Speedups of
all runs on a workload are over one common time, the median of the runs' unscheduled samples
(each run times the slow unscheduled program once; its noise must not rescale one curve).

Outputs: a CSV of every curve point (and ``--json`` records), a PNG plot of the median curve
per strategy (min-max band over seeds), and per workload how many samples MCTS needs to
reach the evolutionary search's final result. For matmul the hand schedule of
``benchmarks/matmul.py`` is measured through the same harness, for reference.

With ``--tvm`` (or suite.py's ``--impls ...,tvm``) Apache TVM's MetaSchedule is one more curve, "tvm":
the same program in TE (tvm_baseline.py) tuned with the same budget in trials, per seed, in its own
process; its curve is the best-so-far of the trial times MetaSchedule measured, in its order, over
the same common baseline. Its sample k is its k-th candidate: MetaSchedule never measures the
unscheduled program, which is minicompiler's sample 1. Without TVM the curve is left out, with a line saying so.

    python benchmarks/sample_efficiency.py [--quick] [--budget 64] [--seeds 3] [--json out.json] [--tvm]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import minicompiler as mc  # noqa: E402
from minicompiler.search.measure import Measurer  # noqa: E402
from minicompiler.search.tune import tune  # noqa: E402
from minicompiler.search.workload import Workload  # noqa: E402

STRATEGIES = ("mcts", "evolutionary", "random")


def matmul(n: int) -> tuple[mc.Tensor, list]:
    A = mc.placeholder((n, n), name="A")
    B = mc.placeholder((n, n), name="B")
    k = mc.reduce_axis(n, "k")
    C = mc.compute((n, n), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")
    hand = (mc.Schedule(C).tile("i", "j", 6, 32).split("k", 256)
            .reorder("j_o", "k_o", "i_o", "k_i", "i_i", "j_i")
            .cache_write("C", "i_o").pack("B", 1, 32).unroll("i_i").vectorize("j_i").parallel("j_o"))
    return C, list(hand.steps)


def attention(heads: int, tokens: int, dim: int) -> mc.Tensor:
    """softmax(Q Kᵀ / √d) V, stage by stage."""
    Q, K, V = (mc.placeholder((heads, tokens, dim), name=n) for n in "QKV")
    d = mc.reduce_axis(dim, "d")
    scale = float(1 / np.sqrt(dim))
    S = mc.compute((heads, tokens, tokens), lambda h, i, j: mc.sum(Q[h, i, d] * K[h, j, d], axis=d), name="S")
    j1 = mc.reduce_axis(tokens, "j")
    m = mc.compute((heads, tokens), lambda h, i: mc.max(S[h, i, j1], axis=j1), name="m")
    E = mc.compute((heads, tokens, tokens), lambda h, i, j: mc.exp((S[h, i, j] - m[h, i]) * scale), name="E")
    j2 = mc.reduce_axis(tokens, "j")
    l = mc.compute((heads, tokens), lambda h, i: mc.sum(E[h, i, j2], axis=j2), name="l")
    j3 = mc.reduce_axis(tokens, "j")
    O = mc.compute((heads, tokens, dim), lambda h, i, e: mc.sum(E[h, i, j3] * V[h, j3, e], axis=j3), name="O")
    return mc.compute((heads, tokens, dim), lambda h, i, e: O[h, i, e] / l[h, i], name="Y")


def first_reaching(curve: list[float], target: float) -> Optional[int]:
    for index, value in enumerate(curve, start=1):
        if value >= target * (1 - 1e-9):
            return index
    return None


def median_curve(curves: list[list[float]]) -> list[float]:
    length = max(len(c) for c in curves)
    padded = [c + [c[-1]] * (length - len(c)) for c in curves]
    return [statistics.median(values) for values in zip(*padded)]


def plot(results: dict, path: Path, columns: int = 3) -> None:
    """One panel per workload (``columns`` per row): the median best-so-far speedup per strategy,
    with the min-max band over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    columns = max(1, min(columns, len(results)))
    rows = -(-len(results) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(results):]:
        ax.set_visible(False)
    for ax, (workload, per_strategy) in zip(axes.flat, results.items()):
        for strategy, curves in per_strategy.items():
            med = median_curve(curves)
            xs = range(1, len(med) + 1)
            ax.plot(xs, med, label=strategy, linewidth=2)
            length = len(med)
            padded = [c + [c[-1]] * (length - len(c)) for c in curves]
            ax.fill_between(xs, np.min(padded, axis=0), np.max(padded, axis=0), alpha=0.15)
        ax.set_title(workload)
        ax.set_xlabel("samples (candidates measured)")
        ax.set_ylabel("best speedup over unscheduled (x, common baseline)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def hand_time(tensor: mc.Tensor, steps: list, threads: int) -> Optional[float]:
    """A hand schedule measured through the tuner's harness (the same check and timing)."""
    with Measurer(Workload(tensor), threads=threads) as measurer:
        hand = measurer.measure(steps)
    print(f"hand schedule: {hand.status} {hand.time_s * 1e3 if hand.time_s else float('nan'):.3f} ms", flush=True)
    return hand.time_s


def run_curves(programs: dict[str, mc.Tensor], budget: int, seeds: int, threads: int,
               database: Optional[Path] = None, hand_s: Optional[dict[str, Optional[float]]] = None,
               strategies: tuple[str, ...] = STRATEGIES, progress: bool = False,
               tvm_cases: Optional[dict[str, dict[str, Any]]] = None, tvm_dir: Optional[Path] = None,
               tvm_timeout_s: float = 60.0,
               ) -> tuple[dict[str, dict[str, list[list[float]]]], list[dict], list[list]]:
    """Every strategy x seed on every program, ``budget`` samples each.

    ``database=None``: each run in a fresh temporary database (always searched from scratch);
    a path: the runs go to that database with ``resume=True`` and seed = 0..seeds-1, so a run
    already there is reused (and continued if it has fewer than ``budget`` samples) and an
    interrupted one carries on. Curves are cut to ``budget`` samples.
    ``tvm_cases``: for the programs named there, also the "tvm" curve: ``tvm_baseline.tune_tvm`` with
    these arguments (workload_name, small, optionally shape) per seed, ``budget`` trials; its work dirs
    under ``tvm_dir`` (kept, and reused for the same spec) or, without one, temporary.
    Returns (curves per workload and strategy, one record per run, CSV rows)."""
    hand_s = hand_s or {}
    results: dict[str, dict[str, list[list[float]]]] = {}
    records: list[dict] = []
    rows: list[list] = []
    for workload_name, tensor in programs.items():
        print(f"\n== sample efficiency, {workload_name}: budget {budget}, {seeds} seed(s), {threads} thread(s)",
              file=sys.stderr, flush=True)
        runs: list[tuple[str, int, Any]] = []
        for strategy in strategies:
            for seed in range(seeds):
                with tempfile.TemporaryDirectory() as tmp:
                    result = tune(tensor, budget=budget, strategy=strategy, seed=seed, threads=threads,
                                  database=database or Path(tmp) / "db.jsonl", resume=database is not None,
                                  progress=progress, name=workload_name)
                runs.append((strategy, seed, result))
        # One baseline for every curve of this workload: the median of the runs' unscheduled times.
        baselines = [r.baseline_time_s for _, _, r in runs if r.baseline_time_s]
        baseline_s = statistics.median(baselines) if baselines else None
        hand = hand_s.get(workload_name)
        results[workload_name] = {}
        for strategy, seed, result in runs:
            history = result.history[:budget]
            curve = [x for _, x in result.best_so_far(baseline_s)][:budget]
            results[workload_name].setdefault(strategy, []).append(curve)
            for index, speedup in enumerate(curve, start=1):
                rows.append([workload_name, strategy, seed, index, speedup, history[index - 1].best_s])
            best_s = history[-1].best_s if history else None
            vs_hand = f"  {hand / best_s:.2f}x of hand" if hand and best_s else ""
            print(f"  {strategy:13s} seed {seed}: {len(history)} samples, best "
                  f"{best_s * 1e3 if best_s else float('nan'):.3f} ms, speedup {curve[-1] if curve else 0:.1f}x"
                  f"{vs_hand}", file=sys.stderr, flush=True)
            records.append({"workload": workload_name, "impl": strategy, "threads": threads, "seed": seed,
                            "median_s": best_s, "samples": len(history), "baseline_s": baseline_s,
                            "speedup": curve[-1] if curve else 0.0,
                            "gflops": result.workload.flops / best_s / 1e9 if best_s else None,
                            "fraction_of_hand": (hand / best_s) if hand and best_s else None})
        if tvm_cases and workload_name in tvm_cases:
            if baseline_s is None:  # only the tvm curve: time the unscheduled program through the same harness
                with Measurer(Workload(tensor), threads=threads) as measurer:
                    baseline_s = measurer.measure([]).time_s
            tvm_records, tvm_rows = tvm_curves(workload_name, tensor, tvm_cases[workload_name], budget, seeds,
                                               threads, baseline_s, tvm_dir, tvm_timeout_s, hand, progress)
            for record in tvm_records:
                results[workload_name].setdefault("tvm", []).append(record.pop("curve"))
            records += tvm_records
            rows += tvm_rows
    return results, records, rows


def tvm_curves(workload_name: str, tensor: mc.Tensor, case: dict[str, Any], budget: int, seeds: int, threads: int,
               baseline_s: Optional[float], tvm_dir: Optional[Path], timeout_s: float, hand: Optional[float],
               progress: bool) -> tuple[list[dict], list[list]]:
    """MetaSchedule's runs (seeds 0..seeds-1, ``budget`` trials) of one workload: a record per run
    (its best-so-far speedup curve under "curve") and the CSV rows. Empty, with a line on stderr,
    when TVM cannot be imported."""
    import tvm_baseline

    if tvm_baseline.tvm_versions() is None:
        print("  " + tvm_baseline.missing_message(), file=sys.stderr, flush=True)
        return [], []
    flops = Workload(tensor).flops
    records: list[dict] = []
    rows: list[list] = []
    for seed in range(seeds):
        name = tvm_baseline.work_dir_name(case["workload_name"], case["small"], budget, threads, seed, case.get("shape"))
        with tempfile.TemporaryDirectory() as tmp:
            result = tvm_baseline.tune_tvm(trials=budget, threads=threads, seed=seed,
                                           work_dir=(tvm_dir or Path(tmp)) / name, timeout_s=timeout_s,
                                           progress=progress, **case)
        best = result.get("best_so_far_s") or []
        curve = [(baseline_s / b) if b and baseline_s else 0.0 for b in best][:budget]
        for index, (speedup, best_s) in enumerate(zip(curve, best), start=1):
            rows.append([workload_name, "tvm", seed, index, speedup, best_s])
        best_s = result.get("search_best_s")
        vs_hand = f"  {hand / best_s:.2f}x of hand" if hand and best_s else ""
        print(f"  {'tvm':13s} seed {seed}: {len(best)} trials in {result.get('tuning_s', float('nan')):.0f} s, best "
              f"{best_s * 1e3 if best_s else float('nan'):.3f} ms, speedup {curve[-1] if curve else 0:.1f}x{vs_hand}"
              + (f"  ({result['note']})" if result.get("note") else ""), file=sys.stderr, flush=True)
        records.append({"workload": workload_name, "impl": "tvm", "threads": threads, "seed": seed,
                        "median_s": best_s, "samples": len(best), "baseline_s": baseline_s,
                        "speedup": curve[-1] if curve else 0.0, "gflops": flops / best_s / 1e9 if best_s else None,
                        "fraction_of_hand": (hand / best_s) if hand and best_s else None,
                        "tuning_s": result.get("tuning_s"), "checked_median_s": result.get("median_s"),
                        "correct": result.get("correct"), "note": result.get("note", ""), "curve": curve})
    return records, rows


def summary(results: dict[str, dict[str, list[list[float]]]], budget: int) -> list[str]:
    """Per workload: how many samples MCTS needs to reach each other strategy's final result
    (evolutionary, random, TVM's MetaSchedule), and each strategy's median best speedup at
    8/16/32/64 samples."""
    lines = []
    for workload_name, per_strategy in results.items():
        lines.append(f"{workload_name}:")
        for other in (s for s in per_strategy if s != "mcts" and "mcts" in per_strategy):
            final = statistics.median(c[-1] for c in per_strategy[other] if c)
            needed = first_reaching(median_curve(per_strategy["mcts"]), final)
            lines.append(f"  {other} final (median of seeds): {final:.1f}x; MCTS reaches it after "
                         f"{needed if needed else 'more than ' + str(budget)} samples (median curve)")
        for strategy, curves in per_strategy.items():
            med = median_curve(curves)
            marks = [(i, med[i - 1]) for i in sorted({8, 16, 32, 64, len(med)}) if i <= len(med)]
            lines.append(f"  {strategy:13s} median best speedup at " + "/".join(str(i) for i, _ in marks)
                         + " samples: " + " / ".join(f"{m:.1f}x" for _, m in marks))
    return lines


def write_csv(rows: list[list], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["workload", "strategy", "seed", "sample", "best_speedup", "best_time_s"])
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small workloads, budget 16, 2 seeds")
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--workloads", default="matmul,attention")
    parser.add_argument("--out", default="results", help="folder for the CSV and the PNG")
    parser.add_argument("--json", default=None, help="write records to this JSON file")
    parser.add_argument("--tvm", action="store_true", help="also Apache TVM MetaSchedule's curve (tvm_baseline.py)")
    args = parser.parse_args()
    budget = args.budget or (16 if args.quick else 64)
    seeds = args.seeds or (2 if args.quick else 3)
    threads = args.threads or mc.get_num_threads()
    n = 256 if args.quick else 1024
    programs: dict[str, mc.Tensor] = {}
    hand_s: dict[str, Optional[float]] = {}
    tvm_cases: dict[str, dict[str, Any]] = {}   # the same programs in workloads.py's terms, for TVM
    if "matmul" in args.workloads:
        name = f"matmul {n}^3"
        programs[name], hand_steps = matmul(n)
        hand_s[name] = hand_time(programs[name], hand_steps, threads)
        tvm_cases[name] = {"workload_name": "matmul", "small": False, "shape": (n, n, n)}
    if "attention" in args.workloads:
        shape = (4, 128, 64) if args.quick else (32, 256, 128)
        name = f"attention {shape[0]}h x {shape[1]} x {shape[2]}"
        programs[name] = attention(*shape)
        tvm_cases[name] = {"workload_name": "llama3_attention", "small": False, "shape": shape}

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, records, rows = run_curves(programs, budget, seeds, threads, hand_s=hand_s,
                                        tvm_cases=tvm_cases if args.tvm else None)
    print("\n" + "\n".join(summary(results, budget)))
    csv_path = out_dir / "sample_efficiency.csv"
    write_csv(rows, csv_path)
    png_path = out_dir / "sample_efficiency.png"
    plot(results, png_path)
    print(f"\nwrote {csv_path} and {png_path}")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
