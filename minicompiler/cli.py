"""The ``minicompiler`` command line.

    minicompiler tune "ik,kj->ij" --size i=512,j=512,k=512 --budget 32
    minicompiler run "ik,kj->ij" --size i=512,j=512,k=512 --show ir
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def parse_sizes(text: str) -> dict[str, int]:
    """``"i=512,j=256"`` → ``{"i": 512, "j": 256}``, with a clear error for anything else."""
    sizes: dict[str, int] = {}
    for item in filter(None, text.split(",")):
        label, eq, value = item.partition("=")
        label = label.strip()
        if not eq or len(label) != 1 or not label.isalpha():
            raise ValueError(f"--size entries look like i=512, got {item!r}")
        try:
            sizes[label] = int(value)
        except ValueError:
            raise ValueError(f"--size {label}= needs an integer, got {value!r}") from None
        if sizes[label] < 0:
            raise ValueError(f"--size {label} must be >= 0")
    return sizes


def operand_shapes(subscripts: str, sizes: dict[str, int]) -> list[tuple[int, ...]]:
    """The operand shapes an einsum spec implies, given every label's size."""
    lhs = subscripts.replace(" ", "").split("->")[0]
    shapes = []
    for term in lhs.split(","):
        if "." in term:
            raise ValueError("the command line takes subscripts without '...'")
        missing = [c for c in term if c not in sizes]
        if missing:
            raise ValueError(f"no size given for label(s) {', '.join(sorted(set(missing)))}: add them to --size")
        shapes.append(tuple(sizes[c] for c in term))
    return shapes


def random_operands(shapes: Sequence[tuple[int, ...]], dtype: str, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if dtype.startswith("int"):
        return [rng.integers(-4, 5, size=s).astype(dtype) for s in shapes]
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def median_seconds(fn, min_repeats: int = 5, budget_s: float = 1.0) -> float:
    """Median wall time of ``fn()`` after one warm-up call, repeated until the budget is spent."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < budget_s and len(times) < 1000:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def einsum_from_args(args: argparse.Namespace):  # noqa: ANN201
    """The program ``einsum`` runs for operands of the given sizes (same structural key)."""
    from minicompiler.frontend.einsum import einsum_program, parse_einsum

    shapes = operand_shapes(args.subscripts, parse_sizes(args.size))
    spec = parse_einsum(args.subscripts, shapes)
    tensor, holders = einsum_program(spec, shapes, [args.dtype] * len(shapes), args.dtype)
    return tensor, holders, shapes


def cmd_tune(args: argparse.Namespace) -> int:
    import minicompiler as mc
    from minicompiler.search.session import decisions
    from minicompiler.search.tune import tune

    tensor, holders, shapes = einsum_from_args(args)
    print(f"tuning {args.subscripts} {shapes} {args.dtype}: budget {args.budget}, strategy {args.strategy}, "
          f"proposer {args.proposer}, threads {args.threads or mc.get_num_threads()}", file=sys.stderr)
    print(f"target: {mc.Target.host().describe()}", file=sys.stderr)
    start = time.perf_counter()
    proposer = args.proposer
    if args.proposer == "llm":   # the CLI builds the LLM proposer; the search only sees a proposer
        from minicompiler.llm import LLMConfig, make_proposer
        proposer = make_proposer(LLMConfig(
            model=args.llm_model, base_url=args.llm_base_url, timeout_s=args.llm_timeout,
            max_calls=args.llm_max_calls, max_tokens=args.llm_max_tokens, record=args.llm_record,
            replay=args.llm_replay, fallback=args.llm_fallback, structured=args.llm_structured,
            context_tokens=args.llm_context, temperature=args.llm_temperature,
            max_output_tokens=args.llm_max_output, system_role=args.llm_system_role, prompt=args.llm_prompt))
    elif args.llm_record or args.llm_replay:
        raise ValueError("--llm-record / --llm-replay need --proposer llm")
    result = tune(tensor, budget=args.budget, strategy=args.strategy, proposer=proposer,
                  database=args.db, seed=args.seed, threads=args.threads, inputs=holders,
                  resume=args.resume, timeout_s=args.timeout, confirm=args.confirm,
                  name=f"{args.subscripts} {args.size}")
    elapsed = time.perf_counter() - start
    flops = result.workload.flops
    print(f"\n{result.samples} samples in {elapsed:.1f} s (run {result.run_id})")
    if result.llm_stats is not None:
        print(result.llm_stats.summary())
    summary = result.failure_summary()
    if summary:
        print(summary)
    base = f"{result.baseline_time_s * 1e3:.3f} ms" if result.baseline_time_s else "unmeasured"
    print(f"unscheduled: {base}   best: {result.best_time_s * 1e3:.3f} ms "
          f"({flops / result.best_time_s / 1e9:.1f} GFLOP/s)   speedup: {result.speedup:.2f}x")
    if result.confirmed:
        print(f"the {len(result.confirmed)} fastest, re-measured (best: the lowest median):")
        for c in sorted(result.confirmed, key=lambda c: c.median_s):
            times = " ".join(f"{t * 1e3:.3f}" for t in c.times_s)
            print(f"  sample {c.sample:>3}: median {c.median_s * 1e3:.3f} ms ({times})  {decisions(c.steps)}")
    first = next((s for s in result.history if s.steps), None)
    if first is not None and first.time_s and result.best_time_s:
        # Below 1x: the first proposal's single timing beat the confirmed median of the best.
        print(f"first proposal (sample {first.index}): {first.time_s * 1e3:.3f} ms; the best's speedup "
              f"over it: {first.time_s / result.best_time_s:.2f}x")
    print("\nbest schedule (replayable):")
    print(result.trace())
    if args.report:
        print(f"report written to {result.report(args.report)}")
    if args.tree:
        import networkx as nx
        nx.write_graphml(result.tree, args.tree) if result.tree is not None else None
        print(f"search tree written to {args.tree}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import minicompiler as mc

    tensor, holders, shapes = einsum_from_args(args)
    start = time.perf_counter()
    kernel = mc.build(tensor, inputs=holders)
    compile_s = time.perf_counter() - start
    shows = set(filter(None, args.show.split(",")))
    if "ir" in shows:
        print(kernel.ir, end="\n\n")
    if "llvm" in shows:
        print(kernel.optimized_llvm_ir, end="\n\n")
    if "asm" in shows:
        print(kernel.assembly, end="\n\n")
    operands = random_operands(shapes, args.dtype)
    result = kernel(*operands)
    reference = np.einsum(args.subscripts, *operands)
    ok = np.allclose(result, reference, rtol=1e-4, atol=1e-4 * max(1, tensor.size))
    ours = median_seconds(lambda: kernel(*operands))
    theirs = median_seconds(lambda: np.einsum(args.subscripts, *operands, optimize=True))
    print(f"{args.subscripts}  shapes {shapes}  {args.dtype}")
    print(f"compile {compile_s * 1e3:.1f} ms   correct vs numpy: {ok}")
    print(f"minicompiler {ours * 1e3:.3f} ms   numpy.einsum {theirs * 1e3:.3f} ms   "
          f"ratio {theirs / ours:.2f}x")
    return 0 if ok else 1


def read_steps(path: str) -> tuple:
    """A trace from a file: JSON (``Schedule.to_json()``, a tuning record's steps) or Python
    (``s.trace()``'s lines, or a chain of Schedule calls), never executed."""
    from minicompiler.schedule import trace_from_python
    from minicompiler.schedule.step import trace_from_json
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ValueError(f"cannot read the trace file {path}: {error.strerror or error}") from None
    return trace_from_json(text) if text.lstrip().startswith("[") else trace_from_python(text)


def cmd_explain(args: argparse.Namespace) -> int:
    import minicompiler as mc
    from minicompiler.codegen.asm import hot_loop
    from minicompiler.lower import explain_lowering
    from minicompiler.runtime.threads import default_threads

    tensor, holders, _ = einsum_from_args(args)
    threads = args.threads or default_threads()
    schedule = mc.Schedule(tensor, holders)
    if args.steps and args.from_db:
        raise ValueError("--steps and --from-db are exclusive")
    if args.steps:
        schedule = schedule.replay(read_steps(args.steps))
        origin = args.steps
    elif args.from_db:
        from minicompiler.search.database import Database
        from minicompiler.search.tune import best_schedule
        database = Database(args.db)
        tuned = best_schedule(tensor, database, threads, holders)
        if tuned is None:
            raise ValueError(f"no tuned schedule for this einsum on this machine at {threads} thread(s) in the "
                             f"database {database.path}: tune it first")
        schedule, origin = tuned, f"the database's best for {threads} thread(s)"
    else:
        from minicompiler.search.heuristic import greedy_schedule
        schedule = greedy_schedule(schedule, mc.Target.host().with_(cores=threads))
        origin = "the heuristic's greedy schedule (give --steps FILE or --from-db for another)"
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    print(f"{args.subscripts} {[tuple(h.shape) for h in holders]}: {len(schedule.steps)} step(s) from {origin}\n")
    print(schedule.explain(color))
    if args.lowered:
        print("\n== lowering passes ==\n")
        print("\n\n".join(change.render(color) for change in explain_lowering(schedule)))
    if args.asm:
        loop = hot_loop(mc.build(schedule).assembly)
        print("\n== hot loop (assembly) ==\n")
        print(loop.summary() + "\n" + loop.text if loop is not None else "no loop in the assembly")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="minicompiler", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="compile an einsum with the default schedule, check and time it")
    run.add_argument("subscripts", help="einsum subscripts, e.g. 'ik,kj->ij'")
    run.add_argument("--size", required=True, help="label sizes, e.g. i=512,j=512,k=512")
    run.add_argument("--dtype", default="float32", choices=["float32", "float64", "int32", "int64"])
    run.add_argument("--show", default="", help="comma list of ir,llvm,asm to print")
    run.set_defaults(func=cmd_run)

    explain = sub.add_parser("explain", help="each step of a schedule: the step, what it did, the diff of the "
                                             "loop nest (and of each lowering pass, and the hot loop's assembly)")
    explain.add_argument("subscripts", help="einsum subscripts, e.g. 'ik,kj->ij'")
    explain.add_argument("--size", required=True, help="label sizes, e.g. i=512,j=512,k=512")
    explain.add_argument("--dtype", default="float32", choices=["float32", "float64", "int32", "int64"])
    explain.add_argument("--steps", default=None, metavar="FILE",
                         help="the trace: JSON (Schedule.to_json) or Python (s.trace()'s lines); default: the "
                              "heuristic's greedy schedule")
    explain.add_argument("--from-db", action="store_true", help="the best tuned schedule in the database")
    explain.add_argument("--db", default=None, help="tuning database (default: $MINICOMPILER_DB or the user cache)")
    explain.add_argument("--threads", type=int, default=None, help="the thread count it was tuned for")
    explain.add_argument("--lowered", action="store_true", help="also each lowering pass, as a diff")
    explain.add_argument("--asm", action="store_true", help="also the hot loop's assembly, vector instructions counted")
    explain.add_argument("--color", default="auto", choices=["auto", "always", "never"],
                         help="colour the diffs (auto: on a terminal only)")
    explain.set_defaults(func=cmd_explain)

    tune = sub.add_parser("tune", help="search for a fast schedule of an einsum, measuring candidates")
    tune.add_argument("subscripts", help="einsum subscripts, e.g. 'ik,kj->ij'")
    tune.add_argument("--size", required=True, help="label sizes, e.g. i=512,j=512,k=512")
    tune.add_argument("--dtype", default="float32", choices=["float32", "float64", "int32", "int64"])
    tune.add_argument("--budget", type=int, default=32, help="samples (measured candidates), default 32")
    tune.add_argument("--strategy", default="mcts", choices=["mcts", "evolutionary", "random"])
    tune.add_argument("--proposer", default="heuristic", choices=["heuristic", "llm"])
    tune.add_argument("--threads", type=int, default=None, help="threads for parallel loops (default: all)")
    tune.add_argument("--seed", type=int, default=None)
    tune.add_argument("--db", default=None, help="tuning database (default: $MINICOMPILER_DB or "
                                                 "~/.cache/minicompiler/tuning.jsonl)")
    tune.add_argument("--resume", action="store_true", help="continue the latest run of this workload")
    tune.add_argument("--timeout", type=float, default=60.0, help="seconds per candidate before it is killed")
    tune.add_argument("--tree", default=None, help="write the MCTS tree as GraphML to this file")
    tune.add_argument("--report", default=None, metavar="DIR", help="write DIR/index.html: the curve, the "
                      "roofline, the search tree, every sample and the best trace explained")
    tune.add_argument("--confirm", type=int, default=3, help="re-measure this many of the fastest after "
                                                             "the search; the best by median (default 3, 0: off)")
    llm = tune.add_argument_group("LLM proposer (--proposer llm; the key comes from $OPENAI_API_KEY only)")
    llm.add_argument("--llm-model", default=None, help="model name (default: $MINICOMPILER_LLM_MODEL or gpt-4o-mini)")
    llm.add_argument("--llm-base-url", default=None, help="OpenAI-compatible endpoint, e.g. "
                                                          "http://localhost:11434/v1 (default: $OPENAI_BASE_URL)")
    llm.add_argument("--llm-timeout", type=float, default=60.0, help="seconds per LLM request (default 60)")
    llm.add_argument("--llm-max-calls", type=int, default=None, help="at most this many LLM calls in this tune")
    llm.add_argument("--llm-max-tokens", type=int, default=None, help="at most this many LLM tokens in this tune")
    llm.add_argument("--llm-record", default=None, metavar="FILE", help="record LLM calls and measurements")
    llm.add_argument("--llm-replay", default=None, metavar="FILE", help="replay a recording offline")
    llm.add_argument("--no-llm-fallback", dest="llm_fallback", action="store_false",
                     help="fail on LLM errors instead of continuing with the heuristic proposer")
    llm.add_argument("--llm-context", type=int, default=None, metavar="TOKENS",
                     help="the model's context window; prompts are made to fit it (default: learned from the "
                          "server's answers)")
    llm.add_argument("--llm-prompt", default=None, choices=["full", "short", "compact", "minimal"],
                     help="the most detailed prompt to send (default: the largest that fits the context; "
                          "smaller prompts answer faster on a CPU-served model)")
    llm.add_argument("--llm-temperature", type=float, default=0.2, help="sampling temperature (default 0.2)")
    llm.add_argument("--llm-max-output", type=int, default=1024, metavar="TOKENS",
                     help="completion-token cap per call (default 1024: a short JSON answer)")
    llm.add_argument("--no-llm-structured", dest="llm_structured", action="store_false",
                     help="do not ask the server to constrain answers to the JSON schema (plain text)")
    llm.add_argument("--llm-no-system-role", dest="llm_system_role", action="store_const", const=False,
                     default=None, help="send the instructions in the user message (chat templates without a "
                                        "system role; automatic for Gemma)")
    tune.set_defaults(func=cmd_tune)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as error:
        print(f"minicompiler: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        tuning = sys.modules.get("minicompiler.search.tune")
        if tuning is not None and isinstance(error, tuning.TuneError):   # measured nothing: say why
            print(f"minicompiler: error: {error}", file=sys.stderr)
            return 1
        llm_client = sys.modules.get("minicompiler.llm.client")      # an LLMError: say what failed, no traceback
        if llm_client is None or not isinstance(error, llm_client.LLMError):
            raise
        print(f"minicompiler: LLM error: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
