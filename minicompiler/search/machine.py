"""The machine model the heuristic ranks its choices with: registers, register tiles, cache blocks.

Every figure comes from the ``Target`` (vector width, register file, cache sizes), never from
one machine: the same rules pick a different micro-kernel on a CPU with other registers.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from minicompiler.target import Target


@dataclass(frozen=True)
class Tiling:
    mr: int   # rows of the register tile
    nr: int   # columns (a multiple of the vector width)


def register_count(target: Target) -> int:
    if target.triple.startswith(("aarch64", "arm64")):
        return 32
    return 32 if target.vector_bits == 512 else 16


def fma_chains(target: Target) -> int:
    """Independent accumulators that keep every FMA unit busy: units x latency."""
    return target.fma_units * target.fma_latency


def tilings(target: Target, m: int, n: int, lanes: int) -> list[Tiling]:
    """Register tiles ranked: the accumulators, one row of B's vectors and a broadcast of A must
    fit the registers, enough independent FMA chains to hide the latency on every unit, few loads
    per FMA, little padding. (How the reduction is blocked around the tile: ``blockings``.)"""
    regs = register_count(target)
    needed = fma_chains(target)
    ranked: list[tuple[float, Tiling]] = []
    for vectors in (1, 2, 3, 4):
        nr = vectors * lanes
        if nr > max(n, lanes):
            continue
        for mr in (1, 2, 3, 4, 6, 8, 12, 16):
            # mr x vectors accumulators + the vectors of B + A's broadcast: one more spills in
            # the inner loop (AVX2's 16 registers: 3x32 spilled, 40 GFLOP/s; 4x24 fits, 88 on Zen 3).
            if mr > max(m, 1) or mr * vectors + vectors + 1 > regs:
                continue
            chains = mr * vectors
            # loads per FMA: (mr broadcasts + vectors loads) / (mr * vectors) — lower is better
            intensity = (mr + vectors) / (mr * vectors)
            waste = (-(-m // mr) * mr * -(-n // nr) * nr) / max(1, m * n)  # padding in the tails
            score = intensity * waste + (0.5 if chains < needed else 0.0)
            if n % nr:
                score += 0.03   # the last column block runs masked
            if target.cores > 1 and -(-m // mr) < target.cores:
                # Too few row blocks to share: the cores split the column blocks, evenly or not.
                blocks = -(-n // nr)
                score *= -(-blocks // target.cores) * target.cores / blocks
            ranked.append((score, Tiling(mr, nr)))
    ranked.sort(key=lambda x: x[0])
    return [t for _, t in ranked]


# A tile sweeping a slab of B touches one page per row of it: more rows than the first-level data
# TLB holds (64 entries of 4 KiB pages on the x86 and Arm cores we know) and every row costs a
# page walk. Measured on Emerald Rapids, 16 x 7168 x 2048: 64-row slabs 78 GFLOP/s, 256-row 25.
PAGE_BYTES = 4096
TLB_PAGES = 64
COPY_KC = 64   # rows of a block of B copied as it is reached (the "chunk" blocking)


@dataclass(frozen=True)
class Blocking:
    """Where the reduction goes relative to the register tile's block loops (C = A.B, i x j x k).

    resident  j_o, i_o, k      the tile stays in registers for the whole reduction; B's panel
                               (k x nr) is re-read from L2 by every row block
    panel     j_o, k_o, i_o, k_i  a kc x nr block of B is reused by every row block from L1/L2;
                               the tile is reloaded k / kc times
    slab      k_o, j_o, i_o, k_i  a kc x n slab of B (every column) stays in L2 while all tiles
                               sweep it: B streams from memory once, contiguously, whatever m is
    core_slab j_o_o, k_o, j_o_i, i_o, k_i  the column blocks in one chunk per core (j_o_o, run in
                               parallel), each core sweeping slabs of its own columns
    chunk     j_o_o, k_o, j_o_i, i_o, k_i  as core_slab, with chunks narrow enough that a kc x chunk
                               block of B fits half of L2: the block the micro-kernel phase may
                               copy as it is reached (cache_read), for few rows on any core count
    """
    order: str
    kc: int | None     # reduction block (None: not split)
    why: str
    name: str = ""     # which rule made it: resident, panel_l2, panel_l1, slab, slab_half, core_slab, chunk
    chunks: int | None = None   # column chunks of the core_slab order (None: one per core)


def _pow2_floor(x: float) -> int:
    return 1 << max(0, int(x).bit_length() - 1)


def _slab_rows(target: Target, slab_row_bytes: int, matrix_row_bytes: int) -> int:
    """Rows of a slab whose rows of ``slab_row_bytes`` fill half of L2 (at least 16); no more than
    the data TLB has pages when every row of the matrix is a page or more apart."""
    rows = max(16, _pow2_floor(target.l2_bytes / 2 / max(1, slab_row_bytes)))
    return min(rows, TLB_PAGES) if matrix_row_bytes >= PAGE_BYTES else rows


def blockings(target: Target, m: int, n: int, k: int, tile: Tiling, itemsize: int) -> list[Blocking]:
    """Ranked ways to block the reduction around an mr x nr register tile.

    Large m: B is reused by many row blocks, so keep its panel in cache (resident first). Few
    rows (a decode-time product, weights streamed once): one core streams B fastest as whole-row
    slabs; several cores split the columns, each streaming its panel."""
    panel_l1 = max(16, _pow2_floor(target.l1_bytes * 3 / 4 / (tile.nr * itemsize)))
    panel_l2 = max(16, _pow2_floor(target.l2_bytes / 4 / (tile.nr * itemsize)))
    slab = _slab_rows(target, n * itemsize, n * itemsize)
    options: dict[str, Blocking] = {}
    if k * tile.nr * itemsize <= target.l2_bytes // 2 or m <= tile.mr:
        options["resident"] = Blocking("resident", None, "the tile stays in registers for the whole "
                                       "reduction; B's panel stays in L2")
    for name, kc in (("panel_l2", min(4 * panel_l1, panel_l2)), ("panel_l1", panel_l1)):
        if kc < k and all(o.kc != kc or o.order != "panel" for o in options.values()):
            options[name] = Blocking("panel", kc, f"a {kc} x {tile.nr} block of B stays in "
                                     f"{'L1' if kc == panel_l1 else 'L2'} for every row block")
    for name, kc in (("slab", slab), ("slab_half", slab // 2)):
        if 16 <= kc < k and m > 1:
            options[name] = Blocking("slab", kc, f"a {kc}-row slab of B ({kc * n * itemsize // 1024} KiB) "
                                     f"stays in L2 while every tile sweeps it: B streams once")
    blocks = -(-n // tile.nr)
    if target.cores > 1 and blocks >= 2 * target.cores:
        # A core's chunk of columns is narrower than a page per row: a slab of its rows fits a
        # core's L2 with more rows, but every row still starts on a page of its own.
        chunk = -(-blocks // target.cores) * tile.nr
        kc = _slab_rows(target, chunk * itemsize, n * itemsize)
        if kc < k and m > 1:
            options["core_slab"] = Blocking("core_slab", kc, f"each of {target.cores} cores sweeps {kc}-row slabs "
                                            f"of its own {chunk} columns: every core streams B once")
    few_rows = -(-m // tile.mr) <= 4
    # Few rows: blocks of COPY_KC rows of B and as many columns as fill half of L2, at least one
    # chunk per core. Measured on one Zen 3 core, 16 x 7168 x 2048 with the blocks copied: 64 x 960
    # and 32 x 2064 blocks 10.4-11.2 ms; 256 x 240 13.4; 16 x 2064 12.6.
    chunk_blocks = max(1, target.l2_bytes // 2 // (COPY_KC * tile.nr * itemsize))
    chunks = max(target.cores, -(-blocks // chunk_blocks))
    if few_rows and COPY_KC < k and m > 1 and chunks > 1:
        options["chunk"] = Blocking("core_slab", COPY_KC, f"{chunks} chunks of columns, {COPY_KC} x "
                                    f"{-(-blocks // chunks) * tile.nr} blocks of B (half of L2) for the "
                                    f"micro-kernel to copy as it reaches them", chunks=chunks)
    if few_rows and target.cores == 1:
        rank = ("slab", "slab_half", "resident", "panel_l2", "panel_l1")
    elif few_rows:
        # Measured (2-core Zen 4, MLP: core slabs 81, slabs 88, L2 panels 64 GFLOP/s; 16-core Xeon, MoE:
        # core slabs 0.89-1.04 ms, L2 panels 1.38 ms): each core streaming its own columns first.
        rank = ("core_slab", "panel_l2", "slab", "resident", "panel_l1", "slab_half")
    else:
        rank = ("resident", "panel_l2", "panel_l1", "slab", "core_slab", "slab_half")
    ranked = [replace(options[name], name=name) for name in rank if name in options]
    if "chunk" in options:   # a variant for the search to measure: second, after the first choice
        ranked.insert(1, replace(options["chunk"], name="chunk"))
    return ranked
