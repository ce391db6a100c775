"""Fused attention O = softmax(Q Kᵀ / √d) V: numpy vs minicompiler, float32, Q, K, V of shape (H, T, D).

    python benchmarks/attention.py [--quick] [--json out.json]

Workload: 32 heads, 256 tokens, head dim 128 (--quick: 8 heads, 128 tokens, head dim 64).
GFLOP/s = 4*H*T*T*D / median time (the two matmuls; softmax not counted).

Implementations, each on 1 and 2 threads in this one run (protocol: common.py):
  numpy      the natural way: np.matmul, stable softmax (max-subtracted), np.matmul;
             in a subprocess with OPENBLAS_NUM_THREADS=n
  numpy-skx  the same with OPENBLAS_CORETYPE=SkylakeX
  default    mc.build of the compute() program below, unscheduled: every stage a whole tensor,
             serial (1 thread only); estimated from a 1-head run when it would exceed --default-budget
  hand       the same program with every intermediate stage computed inside a block of TI query
             rows of the output (compute_at, consumers first), both matmuls register-tiled
             (cache_write + unroll + vectorize), the softmax loops vectorized, heads in parallel

The program (stages; "max/sum over j" are reductions):
  KT[h,d,j] = K[h,j,d]                           K transposed, so the QKᵀ loop reads rows of KT
  S[h,i,j]  = sum_d Q[h,i,d] * KT[h,d,j]
  mp[h,i,u] = max_jo S[h,i,jo*16+u]               16 partial maxima (a vectorizable reduction) ...
  m[h,i]    = max_u mp[h,i,u]                     ... then a 16-wide one
  E[h,i,j]  = exp((S[h,i,j] - m[h,i]) / √D)
  lp, l     = the same two-step sum of E
  P[h,i,j]  = E[h,i,j] / l[h,i]
  O[h,i,e]  = sum_j P[h,i,j] * V[h,j,e]
The two-step reductions stand in for an rfactor primitive: a reduction into a scalar cannot be
vectorized, a reduction into 16 partial results can.
"""
from __future__ import annotations

import common  # noqa: I001  (first: it pins this process's OpenBLAS to one thread before numpy loads)

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

import minicompiler as mc
from minicompiler.ir.stmt import Accumulate, Store
from minicompiler.ir.visitor import walk
from minicompiler.schedule.loops import enclosing_loops

TOLERANCE = 1e-4
CASE = {"H": 32, "T": 256, "D": 128}
QUICK_CASE = {"H": 8, "T": 128, "D": 64}
LANES = 16  # float32 lanes of one AVX-512 register


@dataclass(frozen=True)
class Hand:
    """ti query rows per block (the compute_at point); S computed in ti x jb register tiles,
    O in ti x eb register tiles."""
    ti: int = 8
    jb: int = 32
    eb: int = 32

    def __str__(self) -> str:
        return f"rows/block={self.ti} S tile {self.ti}x{self.jb} O tile {self.ti}x{self.eb}"


HAND = Hand()


def make_inputs(case: dict[str, Any]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((case["H"], case["T"], case["D"]), dtype=np.float32) for _ in range(3)]


def numpy_impl(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    s = np.matmul(q, k.transpose(0, 2, 1)) * (1.0 / math.sqrt(q.shape[-1]))
    s -= s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    e /= e.sum(axis=-1, keepdims=True)
    return np.matmul(e, v)


def program(h: int, t: int, d: int) -> mc.Tensor:
    assert t % LANES == 0, "the two-step reductions split the key axis by 16"
    Q, K, V = (mc.placeholder((h, t, d), name=n) for n in "QKV")
    scale = 1.0 / math.sqrt(d)
    KT = mc.compute((h, d, t), lambda b, c, j: K[b, j, c], name="KT")
    rd = mc.reduce_axis(d, "rd")
    S = mc.compute((h, t, t), lambda b, i, j: mc.sum(Q[b, i, rd] * KT[b, rd, j], axis=rd), name="S")
    jm, um = mc.reduce_axis(t // LANES, "jm"), mc.reduce_axis(LANES, "um")
    mp = mc.compute((h, t, LANES), lambda b, i, u: mc.max(S[b, i, jm * LANES + u], axis=jm), name="mp")
    m = mc.compute((h, t), lambda b, i: mc.max(mp[b, i, um], axis=um), name="m")
    E = mc.compute((h, t, t), lambda b, i, j: mc.exp((S[b, i, j] - m[b, i]) * scale), name="E")
    jl, ul = mc.reduce_axis(t // LANES, "jl"), mc.reduce_axis(LANES, "ul")
    lp = mc.compute((h, t, LANES), lambda b, i, u: mc.sum(E[b, i, jl * LANES + u], axis=jl), name="lp")
    l = mc.compute((h, t), lambda b, i: mc.sum(lp[b, i, ul], axis=ul), name="l")  # noqa: E741
    P = mc.compute((h, t, t), lambda b, i, j: E[b, i, j] / l[b, i], name="P")
    rj = mc.reduce_axis(t, "rj")
    return mc.compute((h, t, d), lambda b, i, e: mc.sum(P[b, i, rj] * V[b, rj, e], axis=rj), name="O")


def loops_of(s: mc.Schedule, tensor: str) -> list[str]:
    """Names of the loops around the update of ``tensor`` (its reduction, else its store), outermost first.
    Loop names are made unique by numbering (i, i1, i2, ...), so we look them up by the stage."""
    writes = [n for n in walk(s.func.body) if isinstance(n, (Store, Accumulate)) and n.tensor.name == tensor]
    target = next((w for w in writes if isinstance(w, Accumulate)), writes[0])
    return [loop.var.name for loop in enclosing_loops(s.func, target)]


def hand_schedule(h: int, t: int, d: int, p: Hand = HAND) -> mc.Schedule:
    s = mc.Schedule(program(h, t, d))
    head, row, e, j = loops_of(s, "O")
    s = s.split(row, p.ti)
    # Intermediates into the output's row block, consumers first; KT into the head loop.
    for stage in ("P", "l", "lp", "E", "m", "mp", "S"):
        s = s.compute_at(stage, f"{row}_o")
    s = s.compute_at("KT", head)
    # O block (ti x D) += P block (ti x T) @ V: ti x eb register tiles.
    s = (s.split(e, p.eb).reorder(f"{e}_o", j, f"{row}_i", f"{e}_i").cache_write("O", f"{e}_o")
         .unroll(f"{row}_i").vectorize(f"{e}_i"))
    # S block (ti x T) = Q block @ KT: ti x jb register tiles.
    *_, i, js, rd = loops_of(s, "S")
    s = (s.split(js, p.jb).reorder(f"{js}_o", rd, i, f"{js}_i").cache_write("S", f"{js}_o")
         .unroll(i).vectorize(f"{js}_i"))
    # Softmax: the 16 partial max / sum lanes, and the elementwise stages, 16 lanes at a time.
    for stage in ("mp", "lp"):
        *_, u, jr = loops_of(s, stage)
        s = s.reorder(jr, u).vectorize(u)
    for stage in ("E", "P", "KT"):
        inner = loops_of(s, stage)[-1]
        s = s.split(inner, LANES).vectorize(f"{inner}_i")
    return s.parallel(head)


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--default-budget", type=float, default=20.0,
                   help="seconds the unscheduled default may take before it is only estimated")
    p.add_argument("--show", action="store_true", help="print the hand-scheduled loop nest")
    args = p.parse_args()
    protocol = common.protocol_from(args)
    case = QUICK_CASE if args.quick else CASE
    h, t, d = case["H"], case["T"], case["D"]
    name, flops = f"attention H={h} T={t} D={d}", 4.0 * h * t * t * d
    peak = common.header("fused attention softmax(QKᵀ/√d)V, float32, minicompiler vs numpy", protocol)

    inputs = make_inputs(case)
    ref = numpy_impl(*inputs)
    try:
        schedule = hand_schedule(h, t, d)
        if args.show:
            print(mc.lower(schedule), "\n")
        kernel, build_error = mc.build(schedule), None
    except Exception as error:  # a refused transform or a compile error is reported, not fatal
        kernel, build_error = None, error

    def default_on(heads: int) -> tuple[Any, np.ndarray]:
        kern = mc.build(program(heads, t, d))
        return (lambda: kern(*[x[:heads] for x in inputs])), ref[:heads]

    records = common.Records()
    for threads in common.thread_counts(args):
        records.add(common.numpy_record(name, "numpy", threads, __file__, case, flops, protocol))
        records.add(common.numpy_record(name, "numpy-skx", threads, __file__, case, flops, protocol, common.SKX))
        mc.set_num_threads(threads)
        if threads == 1:  # the default schedule has no parallel loop
            records.add(common.measure_or_estimate(name, "default", 1, lambda: default_on(h), lambda: default_on(1),
                                                   h, flops, protocol, TOLERANCE, args.default_budget))
        if kernel is None:
            records.add(common.failed(name, "hand", threads, build_error))  # type: ignore[arg-type]
        else:
            rec = common.measure(name, "hand", threads, lambda: kernel(*inputs), ref, flops, protocol, TOLERANCE)
            rec.note = rec.note or str(HAND)
            records.add(rec)
    common.report(records, peak, args.json)


if __name__ == "__main__":
    main()
