"""The hot loop of a kernel's assembly, and what its vector instructions do.

    loop = hot_loop(kernel.assembly)
    print(loop.summary())     # "12 FMAs, 4 vector loads (3.0 FMAs per load), ... 256-bit (ymm) registers"
    print(loop.text)

A loop is the code between a label and a later branch back to it (LLVM's ``.LBB0_5:`` ...
``jne .LBB0_5`` on x86, ``b.ne .LBB0_5`` on AArch64). The hot loop is the one with the most
fused multiply-adds among the innermost loops (an outer loop holds its inner loops' FMAs too),
else the one with the most vector instructions. Text analysis only: nothing is run.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Optional

_LABEL = re.compile(r"^([.\w$]+):")
_BRANCH = re.compile(r"^(j[a-z]+|b(?:\.[a-z]+)?|cbn?z|tbn?z)\s+(?:[^,]*,\s*)*([.\w$]+)\s*(?:#.*)?$")
_FMA = re.compile(r"^(v?fn?m(?:add|sub)\w*|fml[as])\b")
_ARM_LOAD, _ARM_STORE = re.compile(r"^ld[1-4rp]"), re.compile(r"^st[1-4rp]")


@dataclass(frozen=True)
class HotLoop:
    text: str                 # the loop's instructions, label to back-branch
    instructions: int
    fmas: int
    loads: int                # vector loads and broadcasts from memory (memory operands of FMAs included)
    stores: int
    stack: int                # vector loads and stores of the stack: registers spilled
    widths: dict[int, int]    # register width in bits -> instructions using such registers

    def summary(self) -> str:
        per_load = f" ({self.fmas / self.loads:.1f} FMAs per load)" if self.loads else ""
        widths = ", ".join(f"{bits}-bit x{count}" for bits, count in sorted(self.widths.items(), reverse=True))
        spills = (f"; {self.stack} of these on the stack (spilled registers: the tile needs more than the "
                  f"register file)") if self.stack else ""
        return (f"{self.instructions} instructions: {self.fmas} FMAs, {self.loads} vector loads{per_load}, "
                f"{self.stores} vector stores{spills}; vector registers used: {widths or 'none (scalar code)'}")


def _width(line: str) -> int:
    if re.search(r"%zmm\d", line):
        return 512
    if re.search(r"%ymm\d", line):
        return 256
    if re.search(r"%xmm\d|\bv\d+\.(?:4s|2d|8h|16b|s\[)|\bq\d+\b", line):
        return 128
    if re.search(r"\bz\d+\.[sdhb]\b", line):
        return -1             # SVE: scalable
    return 0


def _analyse(lines: list[str]) -> HotLoop:
    fmas = loads = stores = stack = 0
    widths: Counter = Counter()
    count = 0
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith((".", "#", "//")) or _LABEL.match(line):
            continue
        count += 1
        mnemonic, operands = (line.split(None, 1) + [""])[:2]
        width = _width(line)
        if width:
            widths[width] += 1
        fmas += bool(_FMA.match(mnemonic))
        floating = width or re.search(r"\b[sdq]\d+\b", operands)      # AArch64 s/d/q registers: FP loads
        if not floating:
            continue
        stack += bool(re.search(r"\(%rsp\)|\[sp\b", operands)) and (
            bool(_ARM_LOAD.match(mnemonic) or _ARM_STORE.match(mnemonic)) or "(" in operands)
        if _ARM_LOAD.match(mnemonic):
            loads += 1
        elif _ARM_STORE.match(mnemonic):
            stores += 1
        elif "(" in operands:         # AT&T: a memory operand last is a store, elsewhere a load
            last = operands.rsplit(",", 1)[-1]
            stores += "(" in last
            loads += "(" not in last
    return HotLoop("\n".join(lines), count, fmas, loads, stores, stack, dict(widths))


def hot_loop(assembly: str) -> Optional[HotLoop]:
    """The hottest loop of ``assembly`` (see the module's docstring), or None without loops."""
    lines = assembly.splitlines()
    labels: dict[str, int] = {}
    spans: list[tuple[int, int]] = []
    for index, raw in enumerate(lines):
        line = raw.strip()
        label = _LABEL.match(line)
        if label:
            labels[label.group(1)] = index
            continue
        branch = _BRANCH.match(line)
        if branch and branch.group(2) in labels:
            spans.append((labels[branch.group(2)], index))
    # Innermost loops only (an outer loop holds its inner loops' FMAs too); of those, the most FMAs.
    inner = [(a, b) for a, b in spans if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in spans)]
    if not inner:
        return None
    loops = [_analyse(lines[a:b + 1]) for a, b in inner]
    return max(loops, key=lambda l: (l.fmas, sum(l.widths.values()), -l.instructions))
