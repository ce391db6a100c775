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

The heuristic's ranked variants for this node are listed as numbered *candidates*: the model
may choose among them (``choice``, best first) as well as propose sequences of its own; the
proposer merges both, so a weak model costs samples at most, never the heuristic's ideas.

Prompts come in four sizes (``LEVELS``): ``full``; ``short`` (shorter IR, one ancestor);
``compact`` (one-line vocabulary, no IR printout: the loop summary says what the IR would);
``minimal`` (the compact one without the target's details and the history). ``fitting``
picks the largest that leaves room for the answer in the model's context window (estimated at
``CHARS_PER_TOKEN``, fewer characters a token than any tokenizer we tried gives on these
prompts, so an estimate that fits does fit). Models whose chat template has no system role
(Gemma's) get one user message holding both parts (``system_role=False``).

Prompts are deterministic (no timestamps, no randomness): equal search states give equal
prompts, which is what a recording's request hash checks. Long programs are truncated with a
note, so a prompt stays bounded whatever the kernel.
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

from minicompiler.ir.expr import Const
from minicompiler.ir.stmt import Accumulate
from minicompiler.schedule import PRIMITIVES, Schedule, Step
from minicompiler.schedule.loops import loops as all_loops
from minicompiler.target import Target

from minicompiler.search.nests import intermediates, nests
from minicompiler.search.machine import register_count
from minicompiler.search.proposer import Context

MAX_IR_CHARS = 6000          # the current program
MAX_ANCESTOR_IR_CHARS = 2500  # each ancestor's program
MAX_LOOPS_CHARS = 3000        # the loop-nest summary

LEVELS = ("full", "short", "compact", "minimal")
CHARS_PER_TOKEN = 2.5         # conservative: SmolLM2's tokenizer gives 4.0 on the vocabulary, 2.6 on IR and JSON
REASONING_CHARS = 120         # the schema's cap on each reasoning string: answers stay short

# The answer's shape. Its values are descriptions in angle brackets, so copying the example
# verbatim is never a valid answer for any program (no loop is named "<loop name>").
ANSWER_FORMAT = {
    "reasoning": "<one sentence: what limits this program on this machine>",
    "choice": ["<numbers of the listed candidates worth measuring, best first>"],
    "proposals": [
        {"reasoning": "<why these steps should be faster>",
         "steps": [{"op": "<transformation>", "<parameter>": "<loop name, tensor name or integer>"}]},
    ],
}


def signature(op: str) -> str:
    """``split(loop, factor=None, nparts=None)`` — from the primitive's declaration."""
    return PRIMITIVES[op].signature()


def vocabulary(compact: bool = False) -> str:
    """Each primitive's signature, what it does, its parameters (kind and meaning) and legality —
    all read off the one declaration of each primitive (``minicompiler/schedule/params.py``).
    Compact: the signature and the first sentence of what it does."""
    if compact:
        return "\n".join(f"- {p.signature()} — {_plain(p.summary).split('. ')[0].rstrip('.')}."
                         for p in PRIMITIVES.values())
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


def loop_names(schedule: Schedule) -> list[str]:
    """The loop names a proposal may use: this program's loops and the ones splitting them twice
    creates (split("i") makes i_o and i_i; splitting i_o makes i_o_o and i_o_i)."""
    names = {l.var.name for l in all_loops(schedule.func)}
    for _ in range(2):
        names |= {f"{name}_{part}" for name in names for part in "oi"}
    return sorted(names)


def answer_schema(schedule: Optional[Schedule] = None, proposals: int = 8, steps: int = 16,
                  candidates: int = 0) -> dict:
    """The JSON schema of a valid answer, from the primitives' declarations. With a schedule, op,
    loop and tensor names are enums of this program's (loops: ``loop_names``); with candidates,
    ``choice`` is a ranked list of their numbers. Reasoning strings are capped, so a constrained
    answer stays short."""
    loops = tensors = None
    if schedule is not None:
        loops = loop_names(schedule)
        tensors = sorted({t.name for t in schedule.func.params} | {n.tensor.name for n in _allocs(schedule)})
    reasoning = {"type": "string", "maxLength": REASONING_CHARS}
    step = {"oneOf": [p.step_schema(loops, tensors) for p in PRIMITIVES.values()]}
    proposal = {"type": "object", "properties": {"reasoning": reasoning,
                                                 "steps": {"type": "array", "items": step, "minItems": 1,
                                                           "maxItems": steps}},
                "required": ["reasoning", "steps"], "additionalProperties": False}
    properties: dict = {"reasoning": reasoning}
    if candidates:
        properties["choice"] = {"type": "array", "items": {"type": "integer", "enum": list(range(1, candidates + 1))},
                                "maxItems": candidates}
    properties["proposals"] = {"type": "array", "items": proposal, "minItems": 0 if candidates else 1,
                               "maxItems": proposals}
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


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

Answer with ONE JSON object in this format (the <...> are descriptions: replace them):
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


def _candidates(candidates: Sequence[tuple[Step, ...]]) -> list[str]:
    if not candidates:
        return []
    lines = ["", "## Candidates (the compiler's own ideas for this program, numbered)"]
    lines += [f"{i}. {json.dumps([s.to_json() for s in steps])}" for i, steps in enumerate(candidates, 1)]
    return lines


def messages(context: Context, n: int, ancestor_depth: int = 2, peak_gflops: Optional[float] = None,
             flops: Optional[int] = None, candidates: Sequence[tuple[Step, ...]] = (), level: str = "full",
             system_role: bool = True) -> list[dict[str, str]]:
    """The chat messages asking for up to ``n`` ranked proposals for ``context`` (and a ranked
    choice among ``candidates``), at one of the ``LEVELS`` of detail."""
    if level not in LEVELS:
        raise ValueError(f"prompt level is one of {', '.join(LEVELS)}, got {level!r}")
    depth = LEVELS.index(level)
    schedule = context.schedule
    dtype = schedule.func.outputs[0].dtype
    system = SYSTEM.format(vocabulary=vocabulary(compact=depth >= 2), answer_format=json.dumps(ANSWER_FORMAT))
    target = describe_target(context.target, dtype, peak_gflops) if depth < 3 else context.target.describe()
    parts = ["## Target machine", target, "", "## Current program"]
    if depth <= 1:
        parts.append(_truncate(str(schedule), (MAX_IR_CHARS, MAX_ANCESTOR_IR_CHARS)[depth]))
    parts += [
        "",
        f"Trace so far (JSON steps): {trace_json(schedule)}",
        "Loop nests (outermost loop first):",
        _truncate(describe_loops(schedule), MAX_LOOPS_CHARS // (1, 1, 2, 4)[depth]),
        f"Tensors: {describe_tensors(schedule)}",
        f"Measured time: {_time(context.time_s, context.baseline_s, flops)}; unscheduled program: "
        f"{_time(context.baseline_s, None, flops)}" + (f"; {flops} floating-point operations" if flops else ""),
    ]
    if depth == 0:
        parts.append("(a measured time is of the program completed by a default policy: tile, vectorize, "
                     "parallelize)")
    for number, ancestor in enumerate(list(context.ancestors)[:(ancestor_depth, 1, 0, 0)[depth]], start=1):
        who = "Parent" if number == 1 else "Grandparent" if number == 2 else f"Ancestor {number}"
        parts += ["", f"## {who} program (measured {_time(ancestor.time_s, context.baseline_s, flops)})",
                  f"Trace: {trace_json(ancestor.schedule)}"]
        if depth == 0:
            parts.append(_truncate(str(ancestor.schedule), MAX_ANCESTOR_IR_CHARS))
    tried = [] if level == "minimal" else list(context.tried)[-(1000, 8, 4)[depth]:]
    if tried:
        parts += ["", "## Already tried from this program (do not repeat)"]
        parts += [f"- {json.dumps([s.to_json() for s in steps])}" for steps in tried]
    parts += _candidates(candidates)
    choose = (f"In \"choice\", rank the numbered candidates worth measuring, best first (may be empty). "
              if candidates else "")
    parts += ["", "## Task",
              f"Think briefly about what limits this program on this machine (registers, vector lanes, cache "
              f"sizes, cores). {choose}In \"proposals\", give up to {n} different step sequences of your own "
              f"to apply next, best first, each of 1 to 6 steps with concrete parameters (loop names exactly "
              f"as listed above, integer factors). Answer with ONE JSON object in the format given."]
    user = "\n".join(parts)
    if not system_role:
        return [{"role": "user", "content": system + "\n" + user}]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def estimate_tokens(chat: Sequence[dict[str, str]]) -> int:
    """A conservative token count of a prompt (``CHARS_PER_TOKEN``), with each message's framing."""
    return sum(int(len(m["content"]) / CHARS_PER_TOKEN) + 8 for m in chat)


def fitting(context: Context, n: int, budget_tokens: Optional[int], start: int = 0,
            **options: object) -> tuple[str, list[dict[str, str]]]:
    """(level, messages): the most detailed prompt from ``LEVELS[start]`` on whose estimate fits
    ``budget_tokens`` (no budget: the first); the minimal one when none fits (the server then
    says whether it does)."""
    chat: list[dict[str, str]] = []
    for level in LEVELS[min(start, len(LEVELS) - 1):]:
        chat = messages(context, n, level=level, **options)  # type: ignore[arg-type]
        if budget_tokens is None or estimate_tokens(chat) <= budget_tokens:
            return level, chat
    return LEVELS[-1], chat
