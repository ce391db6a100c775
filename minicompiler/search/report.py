"""A tune, drawn: one self-contained HTML page (inline SVG and CSS; no script, no server).

    result = minicompiler.tune(C, budget=32)
    result.report("out/")                 # out/index.html; or: minicompiler tune ... --report out/

The page holds, top to bottom: the run in one line; the best-so-far curve over the samples
(every sample a dot, failures marked); where the best kernel's time goes (its GFLOP/s on the
roofline of this machine's measured FMA peak and copy bandwidth, with the verdict); the MCTS
tree (a node per program: size by visits, colour by measured time, the best path in red; hover
a node for its steps, time, visits, value and the proposer's reasoning, and every node is also a
row of the table below it); every sample with its status; and the best trace with its
``explain()`` view, one diff per step.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from minicompiler.dtypes import itemsize
from minicompiler.schedule.explain import explain_steps

from .session import decisions

if TYPE_CHECKING:
    from .tune import TuneResult

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { padding: 2px 8px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f8f8f8; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
.add { color: #11772d; } .del { color: #b31d28; } .hunk { color: #1b6ac9; } .title { font-weight: bold; }
.bad { color: #b31d28; } .best { background: #fff3d6; } svg text { font-size: 11px; }
.scroll { overflow-x: auto; border: 1px solid #eee; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _ms(seconds: Optional[float]) -> str:
    return f"{seconds * 1e3:.4g} ms" if seconds else "—"


# ----------------------------------------------------------------------------- the curve
def curve_svg(result: "TuneResult", width: int = 900, height: int = 300) -> str:
    """Best-so-far speedup (line) and each sample's speedup (dots; failures as red crosses)."""
    base = result.baseline_time_s
    points = [(s.index, base / s.time_s if base and s.time_s and s.status == "ok" else None,
               base / s.best_s if base and s.best_s else None) for s in result.history]
    top = max([p for _, p, _ in points if p] + [b for _, _, b in points if b] + [1.0])
    n = max(1, len(points))
    left, bottom, right, up = 55, 35, 15, 15
    x = lambda i: left + (i - 1) / max(1, n - 1) * (width - left - right)  # noqa: E731
    y = lambda v: height - bottom - v / top * (height - bottom - up)       # noqa: E731
    parts = [f'<svg id="curve" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="best-so-far speedup per sample">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for k in range(5):
        v = top * k / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3g}x</text>')
    best_line = " ".join(f"{x(i):.1f},{y(b):.1f}" for i, _, b in points if b)
    parts.append(f'<polyline points="{best_line}" fill="none" stroke="#1b6ac9" stroke-width="2"/>')
    for sample, (i, p, _) in zip(result.history, points):
        tip = _e(f"sample {i}: {sample.status} {_ms(sample.time_s)} {decisions(sample.steps)}")
        if p:
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(p):.1f}" r="3.5" fill="#f28e2b"><title>{tip}</title></circle>')
        else:
            cx, cy = x(i), height - bottom - 6
            parts.append(f'<path d="M{cx - 4:.1f},{cy - 4:.1f}l8,8m0,-8l-8,8" stroke="#b31d28" stroke-width="2">'
                         f'<title>{tip}</title></path>')
    parts.append(f'<text x="{width / 2:.0f}" y="{height - 5}" text-anchor="middle">samples (candidates measured); '
                 f'line: best so far, dots: each sample, speedup over the unscheduled program</text></svg>')
    return "".join(parts)


# ----------------------------------------------------------------------------- the roofline
def roofline_svg(flops: float, nbytes: float, seconds: float, peak_gflops: float, bandwidth_gbs: float,
                 width: int = 520, height: int = 320) -> tuple[str, str]:
    """(svg, verdict): the kernel's GFLOP/s at its arithmetic intensity under this machine's roofs."""
    intensity = flops / nbytes
    achieved = flops / seconds / 1e9
    ridge = peak_gflops / bandwidth_gbs
    lo_x, hi_x = min(intensity, ridge) / 8, max(intensity, ridge) * 8
    lo_y, hi_y = min(achieved, bandwidth_gbs * lo_x) / 2, peak_gflops * 2
    left, bottom = 60, 40
    fx = lambda v: left + (math.log10(v) - math.log10(lo_x)) / (math.log10(hi_x) - math.log10(lo_x)) * (width - left - 15)  # noqa: E731,E501
    fy = lambda v: height - bottom - (math.log10(v) - math.log10(lo_y)) / (math.log10(hi_y) - math.log10(lo_y)) * (height - bottom - 15)  # noqa: E731,E501
    roof = f"{fx(lo_x):.1f},{fy(bandwidth_gbs * lo_x):.1f} {fx(ridge):.1f},{fy(peak_gflops):.1f} {fx(hi_x):.1f},{fy(peak_gflops):.1f}"
    bound = "memory" if intensity < ridge else "compute"
    limit = min(peak_gflops, bandwidth_gbs * intensity)
    verdict = (f"{achieved:.1f} GFLOP/s at {intensity:.2f} FLOP/byte: {bound}-bound (the ridge is at "
               f"{ridge:.1f} FLOP/byte), {100 * achieved / limit:.0f}% of the roof there "
               f"({limit:.1f} GFLOP/s: {'the measured FMA peak' if bound == 'compute' else 'the measured copy bandwidth x intensity'}).")
    svg = (f'<svg id="roofline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="roofline"><rect width="{width}" height="{height}" fill="white"/>'
           f'<polyline points="{roof}" fill="none" stroke="#444" stroke-width="2"/>'
           f'<circle cx="{fx(intensity):.1f}" cy="{fy(achieved):.1f}" r="6" fill="#e15759"><title>{_e(verdict)}</title></circle>'
           f'<text x="{fx(intensity) + 9:.1f}" y="{fy(achieved) + 4:.1f}">best kernel</text>'
           f'<text x="{fx(ridge):.1f}" y="{fy(peak_gflops) - 6:.1f}">peak {peak_gflops:.0f} GFLOP/s</text>'
           f'<text x="{left + 4}" y="{fy(bandwidth_gbs * lo_x * 1.5) - 8:.1f}">{bandwidth_gbs:.0f} GB/s</text>'
           f'<text x="{width / 2:.0f}" y="{height - 8}" text-anchor="middle">arithmetic intensity (FLOP/byte, log)</text>'
           f'<text x="14" y="{height / 2:.0f}" transform="rotate(-90 14 {height / 2:.0f})" text-anchor="middle">'
           f'GFLOP/s (log)</text></svg>')
    return svg, verdict


# ----------------------------------------------------------------------------- the tree
def tree_svg(tree: Any, width_per_leaf: int = 70, level_height: int = 80) -> tuple[str, list[int]]:
    """(svg, best path): the search tree laid out by depth, leaves left to right in search order."""
    if tree is None or tree.number_of_nodes() == 0:
        return "<p>(no search tree: this strategy keeps none)</p>", []
    times = {n: d.get("time_s", -1.0) for n, d in tree.nodes(data=True)}
    measured = [t for t in times.values() if t and t > 0]
    best_time = min(measured) if measured else None
    best_node = min((n for n in tree if times[n] and times[n] > 0), key=lambda n: times[n], default=0)
    path, node = [best_node], best_node
    while list(tree.predecessors(node)):
        node = next(iter(tree.predecessors(node)))
        path.append(node)
    on_path = set(path)
    depth, x, leaves = {0: 0}, {}, [0]
    order = []

    def place(n: int) -> float:
        order.append(n)
        children = sorted(tree.successors(n))
        for c in children:
            depth[c] = depth[n] + 1
        if not children:
            x[n] = leaves[0]
            leaves[0] += 1
        else:
            xs = [place(c) for c in children]
            x[n] = sum(xs) / len(xs)
        return x[n]

    place(0)
    width = max(400, int(leaves[0] * width_per_leaf) + 40)
    height = (max(depth.values()) + 1) * level_height + 40
    px = lambda n: 20 + (x[n] + 0.5) * (width - 40) / max(1, leaves[0])  # noqa: E731
    py = lambda n: 25 + depth[n] * level_height                         # noqa: E731
    parts = [f'<svg id="tree" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="MCTS search tree"><rect width="{width}" height="{height}" fill="white"/>']
    for a, b, data in tree.edges(data=True):
        hot = a in on_path and b in on_path
        parts.append(f'<line x1="{px(a):.1f}" y1="{py(a):.1f}" x2="{px(b):.1f}" y2="{py(b):.1f}" '
                     f'stroke="{"#d62728" if hot else "#bbb"}" stroke-width="{3 if hot else 1}"/>')
    for n in order:
        d = tree.nodes[n]
        t = times[n] if times[n] and times[n] > 0 else None
        share = best_time / t if best_time and t else 0.0          # 1 = the best, toward 0 = slow
        colour = f"hsl({int(120 * share)}, 65%, 50%)" if t else "#999"
        radius = 5 + 2.5 * math.sqrt(max(0, d.get("visits", 0)))
        tip = _e(f"node {n}: {d.get('trace') or '(unscheduled)'}\ntime {_ms(t)}, visits {d.get('visits', 0)}, "
                 f"value {d.get('value', 0):.2f}\n{d.get('reasoning', '')}")
        parts.append(f'<circle cx="{px(n):.1f}" cy="{py(n):.1f}" r="{radius:.1f}" fill="{colour}" '
                     f'stroke="{"#d62728" if n in on_path else "#333"}" stroke-width="{2 if n in on_path else 0.5}">'
                     f'<title>{tip}</title></circle><text x="{px(n):.1f}" y="{py(n) + radius + 12:.1f}" '
                     f'text-anchor="middle">{n}</text>')
    parts.append("</svg>")
    return "".join(parts), list(reversed(path))


def _tree_table(tree: Any, path: list[int]) -> str:
    if tree is None or tree.number_of_nodes() == 0:
        return ""
    rows = []
    for n, d in sorted(tree.nodes(data=True)):
        parent = next(iter(tree.predecessors(n)), None)
        edge = tree.edges[parent, n].get("steps", "") if parent is not None else "(the unscheduled program)"
        rows.append(f'<tr class="{"best" if n in path else ""}"><td class="num">{n}</td>'
                    f'<td class="num">{"" if parent is None else parent}</td><td>{_e(edge)}</td>'
                    f'<td class="num">{_ms(d.get("time_s") if d.get("time_s", -1) > 0 else None)}</td>'
                    f'<td class="num">{d.get("visits", 0)}</td><td class="num">{d.get("value", 0):.2f}</td>'
                    f'<td>{_e(d.get("reasoning", ""))}</td></tr>')
    return ("<table><tr><th>node</th><th>parent</th><th>steps on the edge</th><th>time (completed)</th>"
            "<th>visits</th><th>value</th><th>the proposer's reasoning</th></tr>" + "".join(rows) + "</table>")


# ----------------------------------------------------------------------------- the page
def _samples_table(result: "TuneResult") -> str:
    best = result.best_time_s
    rows = []
    for s in result.history:
        mark = "best" if best and s.time_s == best else ""
        status = s.status if s.status == "ok" else f'<span class="bad">{_e(s.status)}</span>'
        rows.append(f'<tr class="{mark}"><td class="num">{s.index}</td><td>{status}</td>'
                    f'<td class="num">{_ms(s.time_s)}</td><td class="num">{_ms(s.best_s)}</td>'
                    f'<td>{_e(decisions(s.steps) or "(unscheduled)")}</td><td>{_e(s.error[:200])}</td></tr>')
    return ('<table id="samples"><tr><th>sample</th><th>status</th><th>time</th><th>best so far</th>'
            '<th>decisions</th><th>error</th></tr>' + "".join(rows) + "</table>")


def _diff_html(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        kind = "hunk" if line.startswith("@@") else "add" if line.startswith("+") and not line.startswith("+++") \
            else "del" if line.startswith("-") and not line.startswith("---") else ""
        lines.append(f'<span class="{kind}">{_e(line)}</span>' if kind else _e(line))
    return "\n".join(lines)


def _explain_html(result: "TuneResult") -> str:
    changes = explain_steps(result.schedule)
    if not changes:
        return "<p>The best program is the unscheduled one.</p>"
    return "".join(f'<p class="title">{_e(c.title)}</p><p>{_e(c.summary)}</p><pre>{_diff_html(c.diff())}</pre>'
                   for c in changes)


def _bytes(result: "TuneResult") -> float:
    func = result.schedule.initial
    return float(sum(math.prod(t.shape) * itemsize(t.dtype) for t in func.params))


def render(result: "TuneResult", peak_gflops: Optional[float] = None,
           bandwidth_gbs: Optional[float] = None) -> str:
    """The page as a string (``write_report`` writes it)."""
    workload = result.workload
    flops = workload.flops
    title = f"Tuning {workload.name or 'a kernel'}"
    best = result.best_time_s
    head = (f"{len(result.history)} samples; unscheduled {_ms(result.baseline_time_s)}, best {_ms(best)}"
            + (f" ({flops / best / 1e9:.1f} GFLOP/s), {result.speedup:.2f}x" if best else "")
            + f"; run {result.run_id}")
    sections = [f"<h1>{_e(title)}</h1><p>{_e(head)}</p>",
                "<h2>Best so far</h2>", curve_svg(result)]
    if best and peak_gflops and bandwidth_gbs:
        svg, verdict = roofline_svg(flops, _bytes(result), best, peak_gflops, bandwidth_gbs)
        sections += ["<h2>Where the time goes</h2>", f"<p>{_e(verdict)}</p>", svg,
                     f"<p>Roofs measured on this machine in this run: FMA peak {peak_gflops:.1f} GFLOP/s "
                     f"(one core's, times {result.threads} thread(s)), copy bandwidth {bandwidth_gbs:.1f} GB/s "
                     f"(one thread's: with more threads the memory roof is higher).</p>"]
    svg, path = tree_svg(result.tree)
    sections += ["<h2>The search tree</h2>",
                 "<p>A node per program (the root is unscheduled); size: visits; colour: its completed "
                 "program's time (green: the best, red: slow, grey: not measured); red: the path to the "
                 "best. Hover a node for its steps and the proposer's reasoning; the table has them all.</p>",
                 f'<div class="scroll">{svg}</div>', _tree_table(result.tree, path),
                 "<h2>Every sample</h2>", _samples_table(result),
                 "<h2>The best schedule, step by step</h2>", f"<pre>{_e(result.trace())}</pre>",
                 _explain_html(result)]
    if result.llm_stats is not None:
        sections += ["<h2>The LLM</h2>", f"<pre>{_e(result.llm_stats.summary())}</pre>"]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_STYLE}</style></head><body>" + "\n".join(sections) + "</body></html>\n")


def write_report(result: "TuneResult", directory: str | Path, peak_gflops: Optional[float] = None,
                 bandwidth_gbs: Optional[float] = None, measure: bool = True) -> Path:
    """Write ``directory``/index.html; the roofs are measured here unless given (or ``measure=False``).
    Returns the page's path."""
    if measure and (peak_gflops is None or bandwidth_gbs is None):
        from .probe import copy_bandwidth_gbs, fma_peak_gflops
        peak_gflops = peak_gflops or fma_peak_gflops(iterations=2_000_000, repeats=5) * result.threads
        bandwidth_gbs = bandwidth_gbs or copy_bandwidth_gbs()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    page = directory / "index.html"
    page.write_text(render(result, peak_gflops, bandwidth_gbs), encoding="utf-8")
    return page
