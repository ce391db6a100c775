"""The machine model the heuristic ranks its choices with: registers, register tiles, L1 blocks.

Every figure comes from the ``Target`` (vector width, register file, cache sizes), never from
one machine: the same rules pick a different micro-kernel on a CPU with other registers.
"""
from __future__ import annotations

from dataclasses import dataclass

from minicompiler.target import Target


@dataclass(frozen=True)
class Tiling:
    mr: int   # rows of the register tile
    nr: int   # columns (a multiple of the vector width)
    kc: int   # reduction block


def register_count(target: Target) -> int:
    if target.triple.startswith(("aarch64", "arm64")):
        return 32
    return 32 if target.vector_bits == 512 else 16


def tilings(target: Target, m: int, n: int, k: int, lanes: int) -> list[Tiling]:
    """Register tiles ranked: accumulators must fit the registers (keeping 4 for operands),
    at least ~8 independent FMA chains hide latency, and a k-block of B stays in L1."""
    regs = register_count(target) - 4
    ranked: list[tuple[float, Tiling]] = []
    for vectors in (1, 2, 3, 4):
        nr = vectors * lanes
        if nr > max(n, lanes):
            continue
        for mr in (1, 2, 3, 4, 6, 8, 12, 16):
            if mr > max(m, 1) or mr * vectors > regs:
                continue
            chains = mr * vectors
            # loads per FMA: (mr broadcasts + vectors loads) / (mr * vectors) — lower is better
            intensity = (mr + vectors) / (mr * vectors)
            waste = (-(-m // mr) * mr * -(-n // nr) * nr) / max(1, m * n)  # padding in the tails
            score = intensity * waste + (0.5 if chains < 8 else 0.0)
            kc = max(16, min(k, (target.l1_bytes * 3 // 4) // (nr * 4)))
            kc = 1 << (kc.bit_length() - 1)
            ranked.append((score, Tiling(mr, nr, min(kc, k))))
    ranked.sort(key=lambda x: x[0])
    seen, out = set(), []
    for _, t in ranked:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out
