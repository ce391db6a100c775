"""float32 matmul C = A @ B: numpy (OpenBLAS), numpy-skx, minicompiler default and hand schedules.

    python benchmarks/matmul.py [--quick] [--json out.json]

Implementations, each on 1 and 2 threads in this one run (see common.py for the protocol):
  numpy      a @ b in a subprocess with OPENBLAS_NUM_THREADS=n
  numpy-skx  the same with OPENBLAS_CORETYPE=SkylakeX (the AVX-512 kernels)
  default    mc.build of the unscheduled compute(): a plain loop nest, serial, so 1 thread only;
             when check + warm-up + 5 calls would exceed --default-budget seconds it is not
             timed: the time of one call is estimated from a run on M/16 rows
  hand       the schedule in HAND for that shape (tile, k split, reorder, register cache,
             B packing, unroll, vectorize, parallel), picked by a small sweep on this machine
GFLOP/s = 2*M*N*K / median time. Every kernel is checked against numpy (max|err|/max|ref| <= 1e-4)
before it is timed.
"""
from __future__ import annotations

import common  # noqa: I001  (first: it pins this process's OpenBLAS to one thread before numpy loads)

from dataclasses import dataclass
from typing import Any

import numpy as np

import minicompiler as mc

TOLERANCE = 1e-4
SHAPES = [(1024, 1024, 1024), (128, 4096, 4096), (16, 2048, 7168), (1000, 1000, 1000)]  # (M, N, K)
QUICK_SHAPES = [(1024, 1024, 1024), (1000, 1000, 1000)]


@dataclass(frozen=True)
class Hand:
    """C tile mr x nr kept in registers (cache_write), k split by kc, loop order of the three outer loops
    (the register cache sits in the last of them), which outer loop runs in parallel, whether B is packed
    into nr-wide panels."""
    mr: int
    nr: int
    kc: int
    order: tuple[str, str, str] = ("j_o", "k_o", "i_o")
    parallel: str = "j_o"
    pack: bool = True

    def __str__(self) -> str:
        loops = "".join(x[0] for x in self.order)
        return f"{self.mr}x{self.nr} kc={self.kc} {loops} par={self.parallel}{' pack' if self.pack else ''}"


# BRIEF: the schedule of the task description (6x32 tiles, k by 256, jki, pack B, parallel j_o), for other shapes.
# HAND: the best of a sweep per shape on this machine (mr 2..16, nr 16..128, kc 64..K, loop orders ijk / jki / kji,
# pack B or not, parallel i_o or j_o); differences under ~5% are within the noise. What the sweep showed:
#  - nr must be a power of two: nr = 48 (or a 40-wide tail, as 1000 % 64 gives) is 10-20x slower, so 1000^3 uses 32;
#  - for M <= 128 packing B (a serial copy of all of B before the parallel loop) costs more than it saves;
#  - for M = 16, B (58 MB) streams from memory: kji order with 4x64 tiles reads it in long row runs;
#    taller tiles (8 or 16 rows) were 2x slower, with or without a packed A.
BRIEF = Hand(6, 32, 256)
HAND: dict[tuple[int, int, int], Hand] = {
    (1024, 1024, 1024): Hand(6, 64, 256, ("i_o", "j_o", "k_o"), "i_o"),
    (128, 4096, 4096): Hand(6, 64, 256, pack=False),
    (16, 2048, 7168): Hand(4, 64, 256, ("k_o", "j_o", "i_o"), "j_o", pack=False),
    (1000, 1000, 1000): Hand(8, 32, 250, ("i_o", "j_o", "k_o"), "i_o"),
}


def make_inputs(case: dict[str, Any]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    m, n, k = case["M"], case["N"], case["K"]
    return [rng.uniform(-1, 1, (m, k)).astype(np.float32), rng.uniform(-1, 1, (k, n)).astype(np.float32)]


def numpy_impl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b


def program(m: int, n: int, k: int) -> mc.Tensor:
    A = mc.placeholder((m, k), name="A")
    B = mc.placeholder((k, n), name="B")
    r = mc.reduce_axis(k, "k")
    return mc.compute((m, n), lambda i, j: mc.sum(A[i, r] * B[r, j], axis=r), name="C")


def hand_schedule(m: int, n: int, k: int, h: Hand) -> mc.Schedule:
    s = (mc.Schedule(program(m, n, k)).tile("i", "j", h.mr, h.nr).split("k", h.kc)
         .reorder(*h.order, "k_i", "i_i", "j_i").cache_write("C", h.order[-1]))
    if h.pack:
        s = s.pack("B", 1, h.nr)
    return s.unroll("i_i").vectorize("j_i").parallel(h.parallel)


def run_shape(m: int, n: int, k: int, threads: list[int], protocol: common.Protocol,
              budget: float) -> list[common.Record]:
    name, case, flops = f"matmul {m}x{n}x{k}", {"M": m, "N": n, "K": k}, 2.0 * m * n * k
    a, b = make_inputs(case)
    ref = numpy_impl(a, b)
    hand = HAND.get((m, n, k), BRIEF)
    try:
        kernel, build_error = mc.build(hand_schedule(m, n, k, hand)), None
    except Exception as error:  # a schedule the implementation refuses is reported, not fatal
        kernel, build_error = None, error

    def default_on(rows: int) -> tuple[Any, np.ndarray]:
        kern = mc.build(program(rows, n, k))
        return (lambda: kern(a[:rows], b)), ref[:rows]

    records = common.Records()
    for t in threads:
        records.add(common.numpy_record(name, "numpy", t, __file__, case, flops, protocol))
        records.add(common.numpy_record(name, "numpy-skx", t, __file__, case, flops, protocol, common.SKX))
        mc.set_num_threads(t)
        if t == 1:  # the default schedule has no parallel loop
            rows = max(1, m // 16)
            records.add(common.measure_or_estimate(name, "default", t, lambda: default_on(m), lambda: default_on(rows),
                                                   m / rows, flops, protocol, TOLERANCE, budget))
        if kernel is None:
            records.add(common.failed(name, "hand", t, build_error))  # type: ignore[arg-type]
        else:
            rec = common.measure(name, "hand", t, lambda: kernel(a, b), ref, flops, protocol, TOLERANCE)
            rec.note = rec.note or str(hand)
            records.add(rec)
    return records


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--default-budget", type=float, default=20.0,
                   help="seconds the unscheduled default may take per shape before it is only estimated")
    args = p.parse_args()
    protocol = common.protocol_from(args)
    peak = common.header("float32 matmul, minicompiler vs numpy", protocol)
    records: list[common.Record] = []
    for m, n, k in QUICK_SHAPES if args.quick else SHAPES:
        records += run_shape(m, n, k, common.thread_counts(args), protocol, args.default_budget)
    common.report(records, peak, args.json)


if __name__ == "__main__":
    main()
