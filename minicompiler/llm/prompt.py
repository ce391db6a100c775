"""The prompt: what the model is told about the program, the machine and the transformations.

``messages(context, n)`` returns two chat messages:

- *system*: the role, the transformation vocabulary — each primitive's signature, what it does,
  its parameters' kinds and meanings and its legality rules, all read off the primitive's one
  declaration (``minicompiler/schedule/params.py``), so the prompt cannot drift from the
  compiler — and the answer format (``answer_schema`` gives it as a JSON schema);
- *user*: the target (ISA, vector width and lanes, cores, caches, registers, peak if known),
  the current program (our IR printout) with its trace, its loops (extent, kind, role per
  nest), its tensors, its measured time against the baseline, its ancestors' programs,
  traces and times, what was already tried here, and the request for ``n`` ranked proposals.

Prompts are deterministic (no timestamps, no randomness): equal search states give equal
prompts, which is what a recording's request hash checks. Long programs are truncated with a
note, so a prompt stays bounded whatever the kernel.
"""
from __future__ import annotations

import json
from typing import Optional

from minicompiler.ir.expr import Const
from minicompiler.ir.stmt import Accumulate
from minicompiler.schedule import PRIMITIVES, Schedule
from minicompiler.schedule.loops import loops as all_loops
from minicompiler.target import Target

from minicompiler.search.nests import intermediates, nests
from minicompiler.search.machine import register_count
from minicompiler.search.proposer import Context

MAX_IR_CHARS = 6000          # the current program
MAX_ANCESTOR_IR_CHARS = 2500  # each ancestor's program
MAX_LOOPS_CHARS = 3000        # the loop-nest summary

ANSWER_FORMAT = {
    "reasoning": "one or two sentences: what limits the current program on this machine",
    "proposals": [
        {"reasoning": "why this sequence should be faster",
         "steps": [{"op": "tile", "outer_loop": "i", "inner_loop": "j", "outer_factor": 4, "inner_factor": 16,
                    "reasoning": "optional: why this step"},
                   {"op": "vectorize", "loop": "j_i"}]},
    ],
}


def signature(op: str) -> str:
    """``split(loop, factor=None, nparts=None)`` — from the primitive's declaration."""
    return PRIMITIVES[op].signature()


def vocabulary() -> str:
    """Each primitive's signature, what it does, its parameters (kind and meaning) and legality —
    all read off the one declaration of each primitive (``minicompiler/schedule/params.py``)."""
    lines = []
    for op, primitive in PRIMITIVES.items():
        meaning = "; ".join(f"{p} ({param.kind.short}{'' if param.required else ', optional'}): {param.doc}"
                            for p, param in primitive.params.items())
        lines.append(f"- {primitive.signature()} — {_plain(primitive.summary)}\n    parameters: {meaning}\n"
                     f"    legal only if: {_plain(primitive.legality)}")
    return "\n".join(lines)


def _plain(text: str) -> str:
    """Docstring markup (``name``) as the prompt's plain backquotes."""
    return text.replace("``", "`")


def answer_schema(schedule: Optional[Schedule] = None, proposals: int = 8, steps: int = 16) -> dict:
    """The JSON schema of a valid answer, from the primitives' declarations; with a schedule, its
    loop and tensor names become enums (the steps may name loops that earlier steps create, so
    enums are only a hint of the current names plus any string when ``schedule`` is None)."""
    loops = tensors = None
    if schedule is not None:
        names = [l.var.name for l in all_loops(schedule.func)]
        loops = sorted(set(names))
        tensors = sorted({t.name for t in schedule.func.params} | {n.tensor.name for n in _allocs(schedule)})
    step = {"oneOf": [p.step_schema(loops, tensors) for p in PRIMITIVES.values()]}
    proposal = {"type": "object", "properties": {"reasoning": {"type": "string"},
                                                 "steps": {"type": "array", "items": step, "minItems": 1,
                                                           "maxItems": steps}},
                "required": ["steps"]}
    return {"type": "object", "properties": {"reasoning": {"type": "string"},
                                             "proposals": {"type": "array", "items": proposal, "minItems": 1,
                                                           "maxItems": proposals}},
            "required": ["proposals"]}


def _allocs(schedule: Schedule) -> list:
    from minicompiler.ir.stmt import Alloc
    from minicompiler.ir.visitor import walk
    return [n for n in walk(schedule.func.body) if isinstance(n, Alloc)]


SYSTEM = """You are an expert CPU performance engineer scheduling one tensor kernel with minicompiler, a
compiler whose programs are loop nests transformed by a sequence of schedule steps (a trace).
You propose the NEXT steps to apply to the current program; every proposal is compiled, checked
against a reference and timed on the real machine, and the search keeps what is fastest.

Transformations (parameters, meaning, legality):
{vocabulary}

General rules:
- Steps of a proposal apply in order to the CURRENT program; a step may use loop names created by
  the earlier steps of the same proposal (split("i") creates i_o and i_i).
- Restructure first (split/tile/reorder/fuse, cache_write, pack, compute_at), then mark loops
  (unroll, vectorize, parallel): marked loops cannot be split, reordered or fused any more.
- Loop names are strings exactly as printed; factors, dims and sizes are integers.
- An illegal step is dropped (with the compiler's reason) and costs nothing but a wasted idea.

Answer: first think briefly, then give ONE JSON object, exactly in this format (no comments):
{answer_format}
"""


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit * 2 // 3]
    tail = text[-(limit // 3):]
    skipped = text[len(head): len(text) - len(tail)].count("\n")
    return f"{head}\n    ... [{skipped} lines omitted to keep the prompt short] ...\n{tail}"


def trace_json(schedule: Schedule) -> str:
    return json.dumps([s.to_json() for s in schedule.steps]) if schedule.steps else "[] (unscheduled)"


def describe_target(target: Target, dtype: str, peak_gflops: Optional[float] = None) -> str:
    lanes = target.vector_lanes(dtype)
    peak = (f"measured peak ~{peak_gflops:.1f} GFLOP/s" if peak_gflops
            else "peak FLOP/s not measured")
    return (f"{target.describe()}\n"
            f"ISA features: {_isa(target)}; {lanes} {dtype} lanes per vector register, "
            f"{register_count(target)} vector registers; {peak}.")


def _isa(target: Target) -> str:
    enabled = [f[1:] for f in target.features.split(",") if f.startswith("+")]
    interesting = [f for f in enabled if f.startswith(("avx", "fma", "sse4", "neon", "sve", "fp-armv8", "amx"))]
    return ", ".join(sorted(interesting)[:12]) or "baseline"


def describe_loops(schedule: Schedule) -> str:
    """One line per loop nest: its loops with extent, kind and role (spatial / reduction / contiguous)."""
    lines = []
    for nest in nests(schedule.func):
        reduction, contiguous = set(nest.reduction), nest.contiguous
        parts = []
        for loop in nest.loops:
            name = loop.var.name
            extent = int(loop.extent.value) if isinstance(loop.extent, Const) else "?"
            role = "reduction" if name in reduction else "spatial"
            if name == contiguous:
                role += ", stride-1 in the output"
            kind = "" if loop.kind == "serial" else f", {loop.kind}"
            parts.append(f"{name}[{extent}{kind}; {role}]")
        kind = "+=" if isinstance(nest.write, Accumulate) else "="
        lines.append(f"- writes {nest.write.tensor.name} ({kind}): " + (", ".join(parts) or "no loops"))
    names = [l.var.name for l in all_loops(schedule.func)]
    lines.append(f"All loop names: {', '.join(names)}")
    return "\n".join(lines)


def describe_tensors(schedule: Schedule) -> str:
    func = schedule.func
    inputs = ", ".join(f"{t.name}{list(t.shape)} {t.dtype}" for t in func.inputs)
    outputs = ", ".join(f"{t.name}{list(t.shape)} {t.dtype}" for t in func.outputs)
    scratch = ", ".join(intermediates(func)) or "none"
    return f"inputs: {inputs}; outputs: {outputs}; intermediates / local buffers: {scratch}"


def _time(t: Optional[float], baseline: Optional[float], flops: Optional[int] = None) -> str:
    if t is None:
        return "not measured (or it failed)"
    text = f"{t * 1e3:.4f} ms"
    if flops:
        text += f", {flops / t / 1e9:.1f} GFLOP/s"
    if baseline:
        text += f" ({baseline / t:.2f}x the unscheduled program)"
    return text


def messages(context: Context, n: int, ancestor_depth: int = 2, peak_gflops: Optional[float] = None,
             flops: Optional[int] = None) -> list[dict[str, str]]:
    """The chat messages asking for ``n`` ranked proposals for ``context``."""
    schedule = context.schedule
    dtype = schedule.func.outputs[0].dtype
    system = SYSTEM.format(vocabulary=vocabulary(), answer_format=json.dumps(ANSWER_FORMAT))
    parts = [
        "## Target machine",
        describe_target(context.target, dtype, peak_gflops),
        "",
        "## Current program",
        _truncate(str(schedule), MAX_IR_CHARS),
        "",
        f"Trace so far (JSON steps): {trace_json(schedule)}",
        "Loop nests (outermost loop first):",
        _truncate(describe_loops(schedule), MAX_LOOPS_CHARS),
        f"Tensors: {describe_tensors(schedule)}",
        f"Measured time: {_time(context.time_s, context.baseline_s, flops)}; unscheduled program: "
        f"{_time(context.baseline_s, None, flops)}" + (f"; {flops} floating-point operations" if flops else ""),
        "(a measured time is of the program completed by a default policy: tile, vectorize, parallelize)",
    ]
    for depth, ancestor in enumerate(list(context.ancestors)[:ancestor_depth], start=1):
        who = "Parent" if depth == 1 else "Grandparent" if depth == 2 else f"Ancestor {depth}"
        parts += ["", f"## {who} program (measured {_time(ancestor.time_s, context.baseline_s, flops)})",
                  f"Trace: {trace_json(ancestor.schedule)}",
                  _truncate(str(ancestor.schedule), MAX_ANCESTOR_IR_CHARS)]
    if context.tried:
        parts += ["", "## Already tried from this program (do not repeat)"]
        parts += [f"- {json.dumps([s.to_json() for s in steps])}" for steps in context.tried]
    parts += ["", "## Task",
              f"Propose {n} different step sequences to apply next, best first, each of 1 to 6 steps with "
              f"concrete parameters (which loop, which factor). Think briefly about what limits this program "
              f"on this machine (registers, vector lanes, cache sizes, cores), then answer with the JSON object "
              f"in the format given, with exactly {n} proposals."]
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(parts)}]

