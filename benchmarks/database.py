"""How much a large tuning database costs einsum: the lookup of a signature's best schedule.

    python benchmarks/database.py [--records 100000] [--json out.json]

Fills a fresh SQLite database with N records of other workloads (as years of tuning would),
then times ``best_schedule`` — what ``mc.einsum`` asks on the first call of a new signature —
against the same lookup on an empty database: the difference is what the records cost.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import minicompiler as mc  # noqa: E402
from minicompiler.search.database import Database, TuningRecord  # noqa: E402
from minicompiler.search.tune import best_schedule  # noqa: E402


def fill(db: Database, n: int, target: str) -> None:
    rng = random.Random(0)
    steps = [{"op": "tile", "outer_loop": "i", "inner_loop": "j", "outer_factor": 6, "inner_factor": 32},
             {"op": "vectorize", "loop": "j_i"}]
    batch = [TuningRecord(run_id=f"run{i // 64}", sample=i % 64 + 1, workload=f"{rng.getrandbits(64):016x}",
                          target=target, threads=rng.choice((1, 2, 4, 16)), steps=steps,
                          status=rng.choice(("ok", "ok", "ok", "error")), time_s=rng.random(),
                          timestamp=time.time(), strategy="mcts", proposer="heuristic", seed=i // 64)
             for i in range(n)]
    db.extend(batch)


def lookup_ms(db: Database, tensor: mc.Tensor, repeats: int = 50) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        best_schedule(tensor, database=db, threads=1)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    A, B = mc.placeholder((96, 80), name="A"), mc.placeholder((80, 112), name="B")
    k = mc.reduce_axis(80, "k")
    C = mc.compute((96, 112), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = Database(Path(tmp) / "empty.sqlite"), Database(Path(tmp) / "full.sqlite")
        empty.extend([])
        start = time.perf_counter()
        fill(full, args.records, mc.Target.host().key())
        fill_s = time.perf_counter() - start
        base, big = lookup_ms(empty, C), lookup_ms(full, C)
    result = {"records": args.records, "fill_s": round(fill_s, 2), "lookup_empty_ms": round(base, 3),
              "lookup_full_ms": round(big, 3), "added_ms": round(big - base, 3), "cpu": mc.Target.host().cpu}
    print(f"{args.records} records written in {fill_s:.1f} s; best_schedule lookup (median of 50): "
          f"empty database {base:.3f} ms, {args.records} records {big:.3f} ms -> added {big - base:.3f} ms "
          f"(on {result['cpu']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
