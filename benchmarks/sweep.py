"""Schedule sweep: time hand-written variants of one workload side by side, to learn what a CPU rewards.

    python benchmarks/sweep.py matmul --threads 1 [--variants tiles] [--jsonl out.jsonl] [--min-time 0.3]

Each variant is a list of schedule steps built from a few parameters (register tile mr x nr,
reduction block kc, loop order, packing); every kernel is checked against numpy on the
workload's inputs before it is timed (common.py's protocol, median). numpy (OpenBLAS) at the
same thread count is timed in a subprocess for reference. One JSON line per variant is
appended to --jsonl as soon as it is measured, so an interrupted sweep keeps its results.
This is a development tool for the heuristic and the search space; the report is suite.py.
"""
from __future__ import annotations

import common  # noqa: I001  (first: pins OpenBLAS to one thread in this process)

import argparse
import itertools
import json
import sys
import time
from typing import Iterator

import numpy as np

import minicompiler as mc
import workloads as W
from minicompiler.search.heuristic import greedy_schedule
from minicompiler.search.machine import tilings


def gemm_variant(schedule: mc.Schedule, mr: int, nr: int, kc: int, order: str = "jki",
                 pack_b: bool = True, pack_a: bool = False, k_unroll: int = 1,
                 parallel: str = "j_o") -> mc.Schedule:
    """C[i, j] = sum_k A[i, k] B[k, j] as a BLIS-like nest: an mr x nr register tile, the reduction
    blocked by kc, ``order`` the order of the block loops (j_o, k_o, i_o as letters)."""
    s = schedule.tile("i", "j", mr, nr).split("k", kc)
    blocks = {"j": "j_o", "k": "k_o", "i": "i_o"}
    inner = ["k_i", "i_i", "j_i"]
    s = s.reorder(*[blocks[c] for c in order], *inner)
    # The tile is cached inside the innermost block loop over the output (i_o or j_o).
    s = s.cache_write("C", f"{[c for c in order if c != 'k'][-1]}_o")
    if pack_b:
        s = s.pack("B", 1, nr)
    if pack_a:
        s = s.pack("A", 0, mr)
    if k_unroll > 1:
        s = s.unroll("k_i", k_unroll)
    s = s.unroll("i_i").vectorize("j_i")
    return s if not parallel else s.parallel(parallel)


def matmul_variants(base: mc.Schedule, family: str, threads: int) -> Iterator[tuple[str, mc.Schedule]]:
    par = "j_o"
    if family in ("tiles", "all"):
        # The machine model's twelve best register tiles for this host, each blocked two ways.
        host = mc.Target.host()
        for t in tilings(host.with_(cores=threads), 1024, 1024, host.vector_lanes("float32"))[:12]:
            yield f"tile {t.mr}x{t.nr} kc256", gemm_variant(base, t.mr, t.nr, 256, parallel=par)
            yield f"tile {t.mr}x{t.nr} resident", resident_variant(base, t.mr, t.nr).parallel(par)
    if family in ("kc", "all"):
        for kc in (64, 128, 256, 384, 512, 1024):
            yield f"tile 6x64 kc{kc}", gemm_variant(base, 6, 64, kc, parallel=par)
            yield f"tile 12x32 kc{kc}", gemm_variant(base, 12, 32, kc, parallel=par)
    if family in ("pack", "all"):
        for mr, nr in [(6, 64), (12, 32), (14, 32)]:
            for kc in (256, 512):
                yield f"tile {mr}x{nr} kc{kc} packA", gemm_variant(base, mr, nr, kc, pack_a=True, parallel=par)
                yield f"tile {mr}x{nr} kc{kc} unrollk4", gemm_variant(base, mr, nr, kc, k_unroll=4, parallel=par)
    if family == "par":
        yield from parallel_variants(base, family, threads)
    if family in ("order", "all"):
        for order in ("jki", "kji", "jik"):
            for mr, nr in [(6, 64), (12, 32)]:
                try:
                    yield f"tile {mr}x{nr} kc256 order {order}", gemm_variant(base, mr, nr, 256, order=order, parallel=par)
                except mc.ScheduleError as error:
                    print(f"  order {order}: {error}", file=sys.stderr)


def resident_variant(base: mc.Schedule, mr: int, nr: int, pack: bool = True) -> mc.Schedule:
    """The register tile stays in registers for the whole reduction (block order j_o, i_o, k)."""
    s = base.tile("i", "j", mr, nr).reorder("j_o", "i_o", "k", "i_i", "j_i").cache_write("C", "i_o")
    if pack:
        s = s.pack("B", 1, nr).parallel("B_packed0")
    return s.unroll("i_i").vectorize("j_i")


def parallel_variants(base: mc.Schedule, family: str, threads: int) -> Iterator[tuple[str, mc.Schedule]]:
    """Many cores on a large product: which loop to split, with or without packing."""
    def resident(mr: int, nr: int, pack: bool = True) -> mc.Schedule:
        return resident_variant(base, mr, nr, pack)
    for mr, nr in [(6, 64), (12, 32), (8, 32), (4, 64), (6, 32)]:
        yield f"resident {mr}x{nr} par j_o", resident(mr, nr).parallel("j_o")
        yield f"resident {mr}x{nr} par i_o", resident(mr, nr).parallel("i_o")
    yield "resident 6x64 fuse(j_o,i_o)", resident(6, 64).fuse("j_o", "i_o").parallel("j_o_i_o")
    yield "resident 6x64 nopack par j_o", resident(6, 64, pack=False).parallel("j_o")
    yield "resident 6x64 nopack par i_o", resident(6, 64, pack=False).parallel("i_o")


def skinny_variants(base: mc.Schedule, family: str, threads: int) -> Iterator[tuple[str, mc.Schedule]]:
    """C = A.B with few rows (decode-phase weights): what streams B fastest."""
    if family == "wide":   # few rows, wide register tiles: long contiguous runs of each row of B
        for mr, nr in [(1, 256), (2, 128), (2, 256), (4, 128), (6, 64), (8, 48)]:
            for kc in (16, 32, 64):
                for order in ("kji", "jki"):
                    yield (f"tile {mr}x{nr} kc{kc} {order}",
                           gemm_variant(base, mr, nr, kc, order=order, pack_b=False, parallel="j_o"))
        return
    for mr, nr in [(8, 48), (16, 16), (8, 32), (8, 64), (4, 64), (16, 32)]:
        for kc in (64, 256, 1024):
            for order in ("jki", "kji"):
                try:
                    yield (f"tile {mr}x{nr} kc{kc} {order}",
                           gemm_variant(base, mr, nr, kc, order=order, pack_b=False, parallel="j_o"))
                except mc.ScheduleError as error:
                    print(f"  {mr}x{nr} {order}: {error}", file=sys.stderr)


FAMILIES = {"matmul": matmul_variants, "deepseek_moe": skinny_variants}   # others: greedy only


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=[w.name for w in W.suite()])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", default="all")
    p.add_argument("--jsonl", default=None)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--no-numpy", action="store_true")
    args = p.parse_args()
    protocol = common.Protocol(min_runs=5, min_time=args.min_time)
    w = W.by_name()[args.workload]
    inputs = w.inputs()
    ref = w.numpy(*[x.astype(np.float64) for x in inputs])
    target = mc.Target.host()
    target = target.with_(cores=args.threads)
    print(f"{w.title}; {target.describe()}; {args.threads} thread(s)", flush=True)
    out = open(args.jsonl, "a") if args.jsonl else None
    mc.set_num_threads(args.threads)

    def emit(name: str, seconds: float | None, note: str = "") -> None:
        gflops = w.flops / seconds / 1e9 if seconds else None
        print(f"{name:40s} {gflops if gflops else float('nan'):8.1f} GFLOP/s {note}", flush=True)
        if out:
            out.write(json.dumps({"workload": w.name, "threads": args.threads, "variant": name,
                                  "seconds": seconds, "gflops": gflops, "cpu": target.cpu, "note": note}) + "\n")
            out.flush()

    if not args.no_numpy:
        # The libraries, each in a fresh process at this thread count (suite.py's bench_case).
        import os
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            ref_path = os.path.join(tmp, "ref.npy")
            np.save(ref_path, ref)
            for tool in ("numpy", "torch"):
                try:
                    r = common.numpy_in_subprocess(os.path.join(os.path.dirname(__file__), "suite.py"),
                                                   {"workload": w.name, "small": False}, args.threads,
                                                   protocol, tool=tool, ref_path=ref_path)
                    emit(tool, r["median_s"], r.get("note") or r.get("blas_core", ""))
                except RuntimeError as error:
                    emit(tool, None, str(error))
    base = mc.Schedule(w.program())
    variants = itertools.chain([("greedy", greedy_schedule(base, target))],
                               FAMILIES[args.workload](base, args.variants, args.threads)
                               if args.workload in FAMILIES and args.variants != "none" else [])
    for name, schedule in variants:
        try:
            kernel = mc.build(schedule)
            error = common.max_rel_error(kernel(*inputs), ref)
            if error > 1e-4:
                emit(name, None, f"WRONG {error:.2e}")
                continue
            emit(name, common.time_fn(lambda: kernel(*inputs), protocol).median_s)
        except mc.ScheduleError as error:
            emit(name, None, f"refused: {error}")


if __name__ == "__main__":
    main()
