"""What each step of a trace did to the loop nest: one sentence and a unified diff per step.

    for change in explain_steps(schedule):
        print(change.render())

A ``Change`` holds a title (the step as pasteable Python: ``s = s.tile(...)``), a sentence read
off the two loop nests (which loops replaced which, which were reordered or marked, which
buffers appeared) and the printed nest before and after. The changes chain: the "after" of step
n is the "before" of step n+1, and the last "after" is ``str(schedule)``. The lowering passes
are explained the same way (``minicompiler.lower.explain_lowering``).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..ir.expr import Const
from ..ir.stmt import Alloc, For, Function
from ..ir.visitor import walk

if TYPE_CHECKING:
    from . import Schedule

_COLORS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m"}
_RESET = "\033[0m"


@dataclass(frozen=True)
class Change:
    title: str        # "step 2: s = s.reorder('j_o', 'i_o', 'k', 'i_i', 'j_i')", or a lowering pass
    summary: str      # what it did, in one sentence
    before: str       # the printed program before ...
    after: str        # ... and after

    def diff(self, color: bool = False, context: int = 2) -> str:
        """The unified diff from ``before`` to ``after`` (ANSI-coloured with ``color``)."""
        lines = list(difflib.unified_diff(self.before.splitlines(), self.after.splitlines(), "before", "after",
                                          lineterm="", n=context))
        if color:
            lines = [f"{_COLORS[line[0]]}{line}{_RESET}" if line[:1] in _COLORS and not line.startswith(("+++", "---"))
                     else line for line in lines]
        return "\n".join(lines)

    def render(self, color: bool = False) -> str:
        diff = self.diff(color) or "  (the printed program is unchanged)"
        title = f"\033[1m{self.title}\033[0m" if color else self.title
        return f"{title}\n  {self.summary}\n{diff}"


def _loops(func: Function) -> dict[str, tuple[str, str]]:
    """name -> (extent as printed, kind), outermost first."""
    out: dict[str, tuple[str, str]] = {}
    for node in walk(func.body):
        if isinstance(node, For):
            extent = str(int(node.extent.value)) if isinstance(node.extent, Const) else "?"
            out[node.var.name] = (extent, node.kind)
    return out


def _buffers(func: Function) -> dict[str, str]:
    return {n.tensor.name: f"{n.tensor.name}{list(n.tensor.shape)}" for n in walk(func.body) if isinstance(n, Alloc)}


def summarize(before: Function, after: Function) -> str:
    """One sentence: what changed between two loop nests."""
    old, new = _loops(before), _loops(after)
    shown = lambda loops, n: f"{n}[{loops[n][0]}]"  # noqa: E731
    parts = []
    gone, came = [n for n in old if n not in new], [n for n in new if n not in old]
    if gone and came:
        parts.append(f"{' x '.join(shown(old, n) for n in gone)} became {' x '.join(shown(new, n) for n in came)}")
    elif came:
        parts.append(f"new loops {', '.join(shown(new, n) for n in came)}")
    elif gone:
        parts.append(f"loops {', '.join(shown(old, n) for n in gone)} are gone")
    common_old = [n for n in old if n in new]
    common_new = [n for n in new if n in old]
    if common_old != common_new:
        moved = [n for a, n in zip(common_old, common_new) if a != n]
        parts.append(f"loop order now {', '.join(common_new)} ({', '.join(moved)} moved)")
    marked = [f"{n} {new[n][1]}" for n in common_new if old[n][1] != new[n][1]]
    if marked:
        parts.append("marked " + ", ".join(marked))
    resized = [f"{n} {old[n][0]} -> {new[n][0]}" for n in common_new if old[n][0] != new[n][0]]
    if resized:
        parts.append("extents " + ", ".join(resized))
    old_buffers, new_buffers = _buffers(before), _buffers(after)
    added = [shape for name, shape in new_buffers.items() if name not in old_buffers]
    if added:
        parts.append("new buffer " + ", ".join(added))
    dropped = [name for name in old_buffers if name not in new_buffers]
    if dropped:
        parts.append("buffer " + ", ".join(dropped) + " gone")
    if not parts:
        return "the loops are the same; the statements inside them changed"
    return "; ".join(parts) + "."        # (not capitalised: it may start with a loop's name)


def explain_steps(schedule: "Schedule") -> list[Change]:
    """One Change per step of ``schedule``'s trace, from the unscheduled program to ``schedule``."""
    from . import apply_step, call_text
    changes, current = [], schedule.initial
    for number, step in enumerate(schedule.steps, start=1):
        following = apply_step(current, step)
        changes.append(Change(f"step {number}: s = s.{call_text(step)}", summarize(current, following),
                              str(current), str(following)))
        current = following
    return changes
