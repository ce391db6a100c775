"""The heuristic proposer's rules on multi-stage programs: where stages go (no recomputation, no
re-streaming of large inputs, blocks of rows), which loop the register tile's rows take, when to pack,
which loops run in parallel. Every greedy schedule is also built and checked against numpy."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import minicompiler as mc
from minicompiler.schedule.loops import loops
from minicompiler.search.heuristic import HeuristicProposer, greedy_schedule

RNG = np.random.default_rng(0)


def _greedy(tensor: mc.Tensor, target: mc.Target | None = None) -> mc.Schedule:
    return greedy_schedule(mc.Schedule(tensor), target or mc.Target.host())


def _ops(s: mc.Schedule, op: str) -> list[dict]:
    return [step.kwargs for step in s.steps if step.op == op]


def _check(s: mc.Schedule, args: list[np.ndarray], ref: np.ndarray) -> None:
    out = mc.build(s)(*args)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- convolution
def _conv(c: int, f: int, h: int, w: int) -> mc.Tensor:
    X = mc.placeholder((1, c, h, w), name="X")
    W = mc.placeholder((f, c, 3, 3), name="W")
    P = mc.compute((1, c, h + 2, w + 2), lambda b, ch, y, x: mc.where(
        (y >= 1) & (y < h + 1) & (x >= 1) & (x < w + 1), X[b, ch, y - 1, x - 1], 0.0), name="Xpad")
    rc, ry, rx = mc.reduce_axis(c, "rc"), mc.reduce_axis(3, "ry"), mc.reduce_axis(3, "rx")
    return mc.compute((1, f, h, w), lambda b, f, y, x: mc.sum(P[b, rc, y + ry, x + rx] * W[f, rc, ry, rx],
                                                               axis=(rc, ry, rx)), name="conv")


def _conv_numpy(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    return np.tensordot(w, win, axes=([1, 2, 3], [1, 4, 5])).transpose(1, 0, 2, 3)


@pytest.mark.parametrize("shape", [(8, 12, 10, 13), (16, 32, 16, 32)])
def test_conv_tiles_output_channels_and_never_recomputes_the_padding_per_channel(shape: tuple) -> None:
    c, f, h, w = shape
    s = _greedy(_conv(c, f, h, w))
    tile = _ops(s, "tile")[0]
    assert tile["outer_loop"] == "f"          # rows of the tile: channels, which the image loads do not use
    for placed in _ops(s, "compute_at"):     # never inside the output-channel loops
        assert not placed["at"].startswith("f")
    parallel = [l for l in loops(s.func) if l.kind == "parallel"]
    assert parallel                          # ... and outside every reduction loop (one fork per call)
    inside = {l.var.name for l in loops(parallel[0].body)}
    assert all(l.var.name in inside for l in loops(s.func) if l.var.name.startswith(("rc", "ry", "rx")))
    x = RNG.standard_normal((1, c, h, w), dtype=np.float32)
    wt = RNG.standard_normal((f, c, 3, 3), dtype=np.float32)
    _check(s, [x, wt], _conv_numpy(x, wt))


# ----------------------------------------------------------------------------- SwiGLU MLP
def _mlp(t: int, hidden: int, inter: int) -> mc.Tensor:
    X = mc.placeholder((t, hidden), name="X")
    Wg, Wu = mc.placeholder((hidden, inter), name="Wg"), mc.placeholder((hidden, inter), name="Wu")
    Wd = mc.placeholder((inter, hidden), name="Wd")
    kg, ku, kd = mc.reduce_axis(hidden, "kg"), mc.reduce_axis(hidden, "ku"), mc.reduce_axis(inter, "kd")
    G = mc.compute((t, inter), lambda a, f: mc.sum(X[a, kg] * Wg[kg, f], axis=kg), name="G")
    U = mc.compute((t, inter), lambda a, f: mc.sum(X[a, ku] * Wu[ku, f], axis=ku), name="U")
    H = mc.compute((t, inter), lambda a, f: G[a, f] / (1.0 + mc.exp(-G[a, f])) * U[a, f], name="H")
    return mc.compute((t, hidden), lambda a, o: mc.sum(H[a, kd] * Wd[kd, o], axis=kd), name="Y")


def test_mlp_stages_are_not_recomputed_per_output_column_nor_weights_restreamed_per_token() -> None:
    t, hidden, inter = 16, 80, 112
    # A target whose L2 is smaller than one weight matrix: computing G, U per token would re-read them.
    target = dataclasses.replace(mc.Target.host(), l2_bytes=16 * 1024)
    s = _greedy(_mlp(t, hidden, inter), target)
    assert not _ops(s, "compute_at")
    assert not _ops(s, "pack")               # 16 rows reuse a panel too little to pay for the copy
    parallel = {l.var.name for l in loops(s.func) if l.kind == "parallel"}
    # G, U and Y each split their weights' columns (the column-block loop, or its outer part when
    # the blocks are first grouped into one slab per core).
    assert all(any(p == c or p.startswith(c + "_") for p in parallel) for c in ("f_o", "f1_o", "o_o")), parallel
    x = RNG.standard_normal((t, hidden), dtype=np.float32)
    wg, wu = (RNG.standard_normal((hidden, inter), dtype=np.float32) / np.float32(math.sqrt(hidden))
              for _ in range(2))
    wd = RNG.standard_normal((inter, hidden), dtype=np.float32) / np.float32(math.sqrt(inter))
    g = x @ wg
    _check(s, [x, wg, wu, wd], (g / (1.0 + np.exp(-g)) * (x @ wu)) @ wd)


# ----------------------------------------------------------------------------- attention
def _attention(h: int, n: int, d: int) -> mc.Tensor:
    Q, K, V = (mc.placeholder((h, n, d), name=x) for x in "QKV")
    rd = mc.reduce_axis(d, "d")
    S = mc.compute((h, n, n), lambda b, i, j: mc.sum(Q[b, i, rd] * K[b, j, rd], axis=rd), name="S")
    jm = mc.reduce_axis(n, "jm")
    m = mc.compute((h, n), lambda b, i: mc.max(S[b, i, jm], axis=jm), name="m")
    E = mc.compute((h, n, n), lambda b, i, j: mc.exp((S[b, i, j] - m[b, i]) * (1.0 / math.sqrt(d))), name="E")
    jl = mc.reduce_axis(n, "jl")
    l = mc.compute((h, n), lambda b, i: mc.sum(E[b, i, jl], axis=jl), name="l")  # noqa: E741
    jo = mc.reduce_axis(n, "jo")
    O = mc.compute((h, n, d), lambda b, i, e: mc.sum(E[b, i, jo] * V[b, jo, e], axis=jo), name="O")
    return mc.compute((h, n, d), lambda b, i, e: O[b, i, e] / l[b, i], name="Y")


@pytest.mark.parametrize("shape", [(2, 64, 32), (2, 80, 32)])
def test_attention_stages_go_into_a_block_of_query_rows_and_k_is_packed(shape: tuple) -> None:
    h, n, d = shape
    s = _greedy(_attention(h, n, d))
    split = _ops(s, "split")[0]
    placed = _ops(s, "compute_at")
    assert len(placed) == 5 and all(p["at"] == f"{split['loop']}_o" for p in placed)
    assert split["factor"] > 1                     # several query rows: a register tile with rows
    assert any(p["tensor"] == "K" for p in _ops(s, "pack"))  # Kᵀ walked along j: packed, not gathered
    assert any(l.kind == "parallel" for l in loops(s.func))
    q, k, v = (RNG.standard_normal((h, n, d), dtype=np.float32) for _ in range(3))
    sc = q @ k.transpose(0, 2, 1) / np.float32(math.sqrt(d))
    e = np.exp(sc - sc.max(-1, keepdims=True))
    _check(s, [q, k, v], (e / e.sum(-1, keepdims=True)) @ v)


def test_few_row_matmul_streams_its_weights_unpacked_in_parallel_over_columns() -> None:
    A = mc.placeholder((16, 200), name="A")
    B = mc.placeholder((200, 96), name="B")
    r = mc.reduce_axis(200, "k")
    s = _greedy(mc.compute((16, 96), lambda i, j: mc.sum(A[i, r] * B[r, j], axis=r), name="C"))
    assert not _ops(s, "pack")
    assert [p["loop"] for p in _ops(s, "parallel")] == ["j_o"]
    a = RNG.standard_normal((16, 200), dtype=np.float32)
    b = RNG.standard_normal((200, 96), dtype=np.float32)
    _check(s, [a, b], a @ b)


# ----------------------------------------------------------------------------- cache blocking
from minicompiler.search.machine import TLB_PAGES, Tiling, blockings, fma_chains, tilings  # noqa: E402

_ZEN4 = mc.Target("x86_64-unknown-linux-gnu", "znver4", "+avx512f", 512, 1, l1_bytes=32 << 10,
                  l2_bytes=1 << 20, l3_bytes=32 << 20, fma_units=1)
_EMR = dataclasses.replace(_ZEN4, cpu="emeraldrapids", l1_bytes=48 << 10, l2_bytes=2 << 20, fma_units=2)


def test_blockings_follow_the_shape_the_cores_and_the_caches() -> None:
    tile = Tiling(6, 64)
    # A large product keeps the register tile for the whole reduction while B's panel fits L2.
    assert blockings(_ZEN4, 1024, 1024, 1024, tile, 4)[0].order == "resident"
    # A panel too large for L2: blocked, and never a block as long as the reduction.
    big = blockings(_ZEN4, 4096, 4096, 8192, tile, 4)
    assert big[0].order == "panel" and all(b.kc is None or b.kc < 8192 for b in big)
    # Sixteen rows on one core: B streams as slabs of whole rows that fit L2 ...
    skinny = blockings(_ZEN4, 16, 2048, 7168, Tiling(8, 32), 4)
    assert skinny[0].order == "slab" and skinny[0].kc * 2048 * 4 <= _ZEN4.l2_bytes // 2
    # ... no more rows than the data TLB has pages when every row is a page of its own; narrower
    # rows: twice as many with twice the L2. On 16 cores each core streams its own columns.
    assert skinny[0].kc <= TLB_PAGES
    narrow = [blockings(t, 16, 512, 7168, Tiling(8, 32), 4)[0] for t in (_ZEN4, _EMR)]
    assert narrow[0].order == "slab" and narrow[1].kc == 2 * narrow[0].kc > TLB_PAGES
    many = blockings(_EMR.with_(cores=16), 16, 2048, 7168, Tiling(8, 32), 4)
    assert many[0].order == "core_slab" and many[0].kc <= TLB_PAGES and "panel" in [b.order for b in many]


def test_register_tiles_need_more_accumulators_with_more_fma_units() -> None:
    assert (fma_chains(_ZEN4), fma_chains(_EMR)) == (4, 8)
    for target in (_ZEN4, _EMR):
        best = tilings(target, 1024, 1024, 16)[0]
        assert best.mr * best.nr // 16 >= fma_chains(target)
        assert best.mr * best.nr // 16 <= 28   # and the tile fits 32 registers with operands


@pytest.mark.parametrize("target", [_ZEN4, _EMR, _EMR.with_(cores=16)], ids=["zen4", "emr", "emr16"])
@pytest.mark.parametrize("shape", [(16, 96, 200), (67, 45, 33), (40, 300, 130)])
def test_every_ranked_tiling_and_blocking_is_legal_and_correct(target: mc.Target, shape: tuple) -> None:
    """The tile phase offers tiles x blockings x loop orders; each, completed greedily, computes A.B."""
    from minicompiler.search.heuristic import HeuristicProposer
    from minicompiler.search.proposer import Context
    m, n, k = shape
    A, B = mc.placeholder((m, k), name="A"), mc.placeholder((k, n), name="B")
    r = mc.reduce_axis(k, "k")
    C = mc.compute((m, n), lambda i, j: mc.sum(A[i, r] * B[r, j], axis=r), name="C")
    proposals = HeuristicProposer().propose(Context(mc.Schedule(C), target), 100)
    orders = {tuple(p.steps[-1].kwargs["order"]) for p in proposals}
    assert len(proposals) >= 4                         # variants, not one choice
    assert len(orders) >= (2 if k >= 128 else 1)      # a short reduction has nothing to block
    a = RNG.standard_normal((m, k), dtype=np.float32)
    b = RNG.standard_normal((k, n), dtype=np.float32)
    for p in proposals[:: max(1, len(proposals) // 5)]:
        _check(greedy_schedule(mc.Schedule(C).replay(p.steps), target),
               [a, b], a @ b)


def test_contractions_of_one_program_can_share_one_blocking_decision() -> None:
    """An MLP's three products: one proposal tiles them all with the same blocking rule (each with
    its own best tile), so the search decides once; the greedy schedule is still correct."""
    X = mc.placeholder((16, 96), name="X")
    Wg, Wu = mc.placeholder((96, 200), name="Wg"), mc.placeholder((96, 200), name="Wu")
    Wd = mc.placeholder((200, 96), name="Wd")
    kg, ku, kd = mc.reduce_axis(96, "kg"), mc.reduce_axis(96, "ku"), mc.reduce_axis(200, "kd")
    G = mc.compute((16, 200), lambda t, f: mc.sum(X[t, kg] * Wg[kg, f], axis=kg), name="G")
    U = mc.compute((16, 200), lambda t, f: mc.sum(X[t, ku] * Wu[ku, f], axis=ku), name="U")
    H = mc.compute((16, 200), lambda t, f: G[t, f] * U[t, f], name="H")
    Y = mc.compute((16, 96), lambda t, o: mc.sum(H[t, kd] * Wd[kd, o], axis=kd), name="Y")
    from minicompiler.search.heuristic import HeuristicProposer
    from minicompiler.search.proposer import Context
    s = mc.Schedule(Y)
    for _ in range(4):   # past the stage-placement phase, to the tile phase
        proposals = HeuristicProposer().propose(Context(s, _ZEN4), 100)
        if "register tile" in proposals[0].reasoning:
            break
        s = s.replay(proposals[0].steps)
    together = [p for p in proposals if p.reasoning.startswith("every contraction")]
    assert together and proposals[0] is together[0]
    assert all(sum(s.op == "reorder" for s in p.steps) >= 2 for p in together)
    x = RNG.standard_normal((16, 96), dtype=np.float32)
    wg, wu = RNG.standard_normal((2, 96, 200), dtype=np.float32) * np.float32(96 ** -0.5)  # as trained
    wd = RNG.standard_normal((200, 96), dtype=np.float32) * np.float32(200 ** -0.5)         # layers are
    for p in together:
        _check(greedy_schedule(s.replay(p.steps), _ZEN4), [x, wg, wu, wd], ((x @ wg) * (x @ wu)) @ wd)


# ----------------------------------------------------------------------------- few-row products
@pytest.mark.parametrize("target", [
    mc.Target("x86_64-unknown-linux-gnu", "znver3", "+avx2,+fma", 256, 1),       # AVX2, 16 registers
    mc.Target("x86_64-unknown-linux-gnu", "emeraldrapids", "+avx512f", 512, 4, l2_bytes=2 << 20),
], ids=["avx2_1core", "avx512_4cores"])
@pytest.mark.parametrize("shape", [(16, 200, 1300), (5, 97, 2101)], ids=["16x200x1300", "5x97x2101"])
def test_a_few_row_product_is_offered_its_weight_blocks_copied_as_they_are_reached(target: mc.Target,
                                                                                  shape: tuple) -> None:
    """16 tokens reuse B too little to pack all of it first; the micro-kernel phase offers to copy
    each reduction block of B in panels (cache_read at the blocked reduction loop) beside the plain
    kernel: a variant for the search to measure. Its kernel is correct on shapes the tiles do not divide."""
    m, n, k = shape
    A, B = mc.placeholder((m, k), name="A"), mc.placeholder((k, n), name="B")
    C = mc.einsum("ik,kj->ij", A, B)
    proposer = HeuristicProposer()
    greedy = _greedy(C, target)
    assert not _ops(greedy, "pack") and not _ops(greedy, "cache_read")
    blocked = greedy.steps[:[st.op for st in greedy.steps].index("reorder") + 1]   # tile, blocks, order
    tiled = mc.Schedule(C).replay(blocked)
    proposals = proposer._microkernel(tiled, target)
    copies = [p for p in proposals if any(st.op == "cache_read" for st in p.steps)]
    assert copies, [p.steps for p in proposals]
    copy = next(st for st in copies[0].steps if st.op == "cache_read")
    assert copy.kwargs["tensor"] == "B" and copy.kwargs["at"].endswith("_o") and copy.kwargs["panel"] >= 8
    a = RNG.standard_normal((m, k), dtype=np.float32)
    b = RNG.standard_normal((k, n), dtype=np.float32)
    _check(tiled.replay(copies[0].steps), [a, b], a @ b)


def test_few_rows_get_a_chunked_blocking_second_whose_blocks_fit_half_of_l2() -> None:
    from minicompiler.search.machine import COPY_KC
    for target in (_ZEN4, _EMR.with_(cores=16), mc.Target("x86_64-unknown-linux-gnu", "znver3", "+avx2", 256, 2,
                                                          l2_bytes=512 << 10)):
        tile = tilings(target, 16, 8192, target.vector_lanes("float32"))[0]
        ranked = blockings(target, 16, 8192, 5120, tile, 4)      # the MLP's gate and up products
        chunk = next(b for b in ranked if b.name == "chunk")
        assert ranked.index(chunk) == 1 and chunk.kc == COPY_KC and chunk.chunks >= target.cores
        columns = -(-(-(-8192 // tile.nr)) // chunk.chunks) * tile.nr
        assert COPY_KC * columns * 4 <= target.l2_bytes // 2 or columns == tile.nr
    # Many rows: no chunks (the whole-B pack pays there).
    assert all(b.name != "chunk" for b in blockings(_ZEN4, 1024, 1024, 1024, Tiling(6, 64), 4))
