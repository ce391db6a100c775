"""The prompt: what the model is told about the program, the machine and the transformations.

``messages(context, n)`` returns two chat messages:

- *system*: the role, the transformation vocabulary — each primitive's parameters (read off
  ``PRIMITIVES``' signatures, so the prompt cannot drift from the compiler), what they mean,
  the names of the loops it creates and its legality rules — and the answer format;
- *user*: the target (ISA, vector width and lanes, cores, caches, registers, peak if known),
  the current program (our IR printout) with its trace, its loops (extent, kind, role per
  nest), its tensors, its measured time against the baseline, its ancestors' programs,
  traces and times, what was already tried here, and the request for ``n`` ranked proposals.

Prompts are deterministic (no timestamps, no randomness): equal search states give equal
prompts, which is what a recording's request hash checks. Long programs are truncated with a
note, so a prompt stays bounded whatever the kernel.
"""
from __future__ import annotations

import inspect
import json
from typing import Optional

from minicompiler.ir.expr import Const
from minicompiler.ir.stmt import Accumulate
from minicompiler.schedule import PRIMITIVES, Schedule
from minicompiler.schedule.loops import loops as all_loops
from minicompiler.target import Target

from search.nests import intermediates, nests
from search.proposer import Context, register_count

MAX_IR_CHARS = 6000          # the current program
MAX_ANCESTOR_IR_CHARS = 2500  # each ancestor's program
MAX_LOOPS_CHARS = 3000        # the loop-nest summary

# What each parameter means; the parameter *names* come from the primitives' signatures.
PARAMETERS: dict[str, str] = {
    "loop": "name of an existing loop (a string from the loop list)",
    "factor": "positive int: iterations of the new inner loop",
    "nparts": "positive int: iterations of the new outer loop (give factor OR nparts, not both)",
    "outer_loop": "the outer of two perfectly nested loops",
    "inner_loop": "the inner of the two loops",
    "outer_factor": "positive int: tile size along outer_loop",
    "inner_factor": "positive int: tile size along inner_loop",
    "order": "list of two or more loop names of ONE perfect nest, outermost first",
    "outer": "the outer loop",
    "inner": "the loop directly inside it",
    "tensor": "name of a tensor (from the tensor list)",
    "at": "name of the loop inside which it happens",
    "dim": "int: the tensor dimension to split into panels (0-based)",
}

# Where a parameter means something else for one primitive.
PARAMETER_OVERRIDES: dict[tuple[str, str], str] = {
    ("unroll", "factor"): "optional positive int: unroll by this many (omit it to unroll fully)",
    ("pack", "factor"): "positive int: panel width (elements of `dim` per panel; a vector-width multiple)",
    ("cache_write", "tensor"): "name of the tensor being accumulated (the output, or an intermediate)",
    ("pack", "tensor"): "name of a program input",
    ("compute_at", "tensor"): "name of an intermediate tensor",
    ("compute_inline", "tensor"): "name of an intermediate tensor",
}

# What each primitive does, what it creates, and when it is refused (the transforms' own checks).
PRIMITIVE_NOTES: dict[str, tuple[str, str]] = {
    "split": ("loop L becomes L_o (outer) x L_i (inner, `factor` iterations); a factor that does not divide "
              "the extent is fine (a guard handles the tail).",
              "L must be a plain serial loop of constant extent (split BEFORE parallel/vectorize/unroll); "
              "exactly one of factor / nparts; if the name is taken a digit is appended (L_o1)."),
    "tile": ("split both loops and order them outer_loop_o, inner_loop_o, outer_loop_i, inner_loop_i: a 2-D "
             "block of outer_factor x inner_factor iterations (register or cache tile).",
             "the two loops must be perfectly nested in the same nest and still serial."),
    "reorder": ("put the named loops in this order (other loops keep their places).",
                "all loops in one perfect nest (no statement between them), all still serial, constant extents."),
    "fuse": ("merge `inner` (directly inside `outer`) into one loop named outer_inner.",
             "inner must be directly inside outer; both serial with constant extents."),
    "parallel": ("run the iterations of the loop on all cores (OpenMP).",
                 "only ONE loop level per nest runs in parallel; never a reduction loop, nor a loop whose "
                 "iterations write the same elements; prefer an outer spatial loop with >= cores iterations."),
    "vectorize": ("run the loop as SIMD: its extent becomes the vector lanes (wider loops are split into "
                  "register-wide pieces automatically).",
                  "extent 2..256 (split first); it must be the innermost loop (or only unrolled loops inside); "
                  "the store must be contiguous in it (stride 1 in the LAST index of the written tensor) — so "
                  "never a reduction loop; no where() guarding a read may depend on it."),
    "unroll": ("unroll the loop fully, or by `factor` (split, then unroll the inner part).",
               "the loop must be serial; full unrolling only for small extents (<= 256 and small bodies), "
               "otherwise give factor."),
    "cache_write": ("accumulate `tensor`'s tile in a local buffer <tensor>_local inside loop `at` and write it "
                    "back once: with unroll + vectorize of the tile loops it lives in registers (register "
                    "tiling). Creates loops <tensor>_local_c0.. (init) and <tensor>_local_w0.. (write-back).",
                    "the tensor must be written inside `at`; `at` must be serial; apply it before marking "
                    "loops (parallel/vectorize/unroll) and after tiling; the loop must not also read the tensor."),
    "pack": ("copy input `tensor` into panels <tensor>_packed: dimension `dim` is split by `factor`, the "
             "panel index goes first and the in-panel index last, so a vector loop over that dimension "
             "reads contiguous memory (pack B with dim=1, factor=vector multiple for C=A.B). Creates loops "
             "<tensor>_packed0.. for the copy (which can be parallelized).",
             "only for program inputs (use cache_write for computed tensors); 0 <= dim < ndim; factor >= 1."),
    "compute_at": ("compute the part of intermediate `tensor` that loop `at` reads inside `at` (fusion: the "
                   "producer runs per iteration of the consumer's loop, its storage shrinks).",
                   "tensor must be an intermediate whose loops are untransformed (do it first); `at` must be a "
                   "loop of a consumer, the tensor must not be read outside `at`; before marking loops."),
    "compute_inline": ("substitute the intermediate `tensor`'s elementwise definition into its readers.",
                       "tensor must be elementwise (one assignment, no reduction), loops untransformed."),
}

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
    """``split(loop, factor=None, nparts=None)`` — read off the primitive itself."""
    params = list(inspect.signature(PRIMITIVES[op]).parameters.values())[1:]   # drop func
    return f"{op}(" + ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}=None"
                                for p in params) + ")"


def vocabulary() -> str:
    lines = []
    for op in PRIMITIVES:
        does, rules = PRIMITIVE_NOTES.get(op, ("", ""))
        params = [p for p in inspect.signature(PRIMITIVES[op]).parameters if p != "func"]
        meaning = "; ".join(f"{p}: {PARAMETER_OVERRIDES.get((op, p), PARAMETERS.get(p, ''))}" for p in params)
        lines.append(f"- {signature(op)} — {does}\n    parameters: {meaning}\n    legal only if: {rules}")
    return "\n".join(lines)


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

