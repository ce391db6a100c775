"""The LLM proposer against a real model: MCTS with the heuristic, with the model answering in
plain text, and with the model's answers constrained to the JSON schema — same budget, same seeds.

For each of three suite workloads (at ``MEDIUM`` shapes: kernels long enough to time steadily,
while the LLM's latency is still what a run costs) and each seed, one tune per configuration:

    heuristic    MCTS + the offline heuristic proposer
    llm-text     MCTS + the LLM proposer, plain-text answers (``structured=False``)
    llm-schema   MCTS + the LLM proposer, answers constrained to the schema (the default)

Per configuration it reports the fallback rate (proposal requests the heuristic answered
alone), the legal-step rate (of the steps the model wrote), choices among the heuristic's
candidates, calls, tokens, LLM latency, wall time, and the best-so-far speedup curve (over one
common baseline per workload: the median of the runs' unscheduled times); and per workload
how the median final speedup of each LLM configuration compares with the heuristic's. A run's
final time is its confirmed best (``tune(confirm=3)``: the 3 fastest re-measured twice more, the
lowest median wins), not its luckiest single timing: on a busy 2-core machine one schedule's
timings scatter by 20 % between runs.

Every finished run is appended to ``--out``/runs.jsonl at once, and a run found there is not
repeated: an interrupted benchmark resumes where it stopped. The model is served locally
(``scripts/llm_server.sh --background``); the server idles while candidates are timed.

    python benchmarks/llm.py [--url http://127.0.0.1:8765/v1] [--model SmolLM2-135M-Instruct-Q4_1]
                             [--budget 16] [--seeds 3] [--workloads matmul,deepseek_moe,llama3_attention]
                             [--shapes medium|small]
                             [--configs heuristic,llm-text,llm-schema] [--prompt compact] [--max-output 512]
                             [--out DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import minicompiler as mc  # noqa: E402
from minicompiler.search.tune import tune  # noqa: E402

import workloads  # noqa: E402
from sample_efficiency import median_curve, plot  # noqa: E402

CONFIGS = ("heuristic", "llm-text", "llm-schema")
# Medium shapes of the suite's programs: kernels of 0.1-1 ms, long enough to time steadily on a busy
# 2-core machine (the small shapes run for microseconds: their timings scatter by 2x between runs,
# more than any proposer changes), short enough that the LLM's latency is what a run costs.
MEDIUM = {"matmul": (256, 256, 256), "deepseek_moe": (16, 512, 1024), "llama3_attention": (4, 128, 64)}
RESULTS = Path(__file__).resolve().parent / "results" / "llm"


def proposer_for(config: str, args: argparse.Namespace) -> Any:
    if config == "heuristic":
        return "heuristic"
    from minicompiler.llm import LLMConfig, make_proposer
    return make_proposer(LLMConfig(base_url=args.url, model=args.model, structured=config == "llm-schema",
                                   prompt=args.prompt, timeout_s=args.timeout, max_output_tokens=args.max_output))


def run_one(workload: workloads.Workload, config: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One tune; its record (curve as best-so-far times, LLM statistics, wall time)."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = tune(workload.program(), budget=args.budget, proposer=proposer_for(config, args), seed=seed,
                      threads=args.threads, database=Path(tmp) / "db.jsonl", progress=False,
                      name=workload.name, confirm=3)
    wall = time.perf_counter() - start
    stats = result.llm_stats.to_dict() if result.llm_stats is not None else None
    return {"workload": workload.name, "title": workload.title, "shapes": args.shapes, "config": config,
            "seed": seed, "budget": args.budget,
            "threads": args.threads, "baseline_s": result.baseline_time_s, "wall_s": wall,
            "best_s": [s.best_s for s in result.history], "status": result.status_counts,
            "final_s": result.best_time_s,      # the confirmed best: lowest median of 3 re-measured (Session.confirm)
            "best_steps": [s.to_json() for s in result.best_steps], "llm": stats,
            "model": args.model if config != "heuristic" else None}


def medium(name: str) -> workloads.Workload:
    """The suite's program ``name`` at its ``MEDIUM`` shape."""
    for suite_name, make, _, _, _ in workloads.SUITE:
        if suite_name == name and name in MEDIUM:
            return make(name, f"{name} {MEDIUM[name]}", *MEDIUM[name])
    raise ValueError(f"no medium shape for {name!r}; medium shapes: {', '.join(MEDIUM)}")


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(runs: list[dict[str, Any]], out: Path, budget: int) -> str:
    """The report's tables (markdown), the curves' CSV and plot."""
    by_workload: dict[str, list[dict]] = {}
    for run in runs:
        by_workload.setdefault(run["workload"], []).append(run)
    curves: dict[str, dict[str, list[list[float]]]] = {}
    rows, lines = [], []
    lines += ["| workload | config | seeds | final speedup (confirmed, median of seeds) | vs heuristic | fallback rate | answers read | "
              "legal steps | choices | prompt / completion tokens | LLM latency per call | wall per run |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, group in by_workload.items():
        baselines = [r["baseline_s"] for r in group if r["baseline_s"]]
        baseline = statistics.median(baselines)
        finals: dict[str, float] = {}
        for config in CONFIGS:
            chosen = [r for r in group if r["config"] == config]
            if not chosen:
                continue
            per_seed = []
            for r in chosen:
                curve = [baseline / b if b else 0.0 for b in r["best_s"]][:budget]
                per_seed.append(curve)
                rows += [[name, config, r["seed"], i, s] for i, s in enumerate(curve, start=1)]
            curves.setdefault(name, {})[config] = per_seed
            finals[config] = statistics.median(baseline / r["final_s"] for r in chosen if r["final_s"])
            llm = [r["llm"] for r in chosen if r["llm"]]
            wall = statistics.median(r["wall_s"] for r in chosen)
            if llm:
                requests = sum(s["requests"] for s in llm)
                fallback = sum(s["fallbacks"] for s in llm) / requests if requests else 0.0
                proposed = sum(s["steps_proposed"] for s in llm)
                legal = f"{sum(s['steps_kept'] for s in llm) / proposed:.0%} of {proposed}" if proposed else "—"
                calls = sum(s["calls"] for s in llm)
                tokens = f"{sum(s['prompt_tokens'] for s in llm) // max(1, calls)} / " \
                         f"{sum(s['completion_tokens'] for s in llm) // max(1, calls)} per call"
                latency = f"{sum(s['latency_s'] for s in llm) / max(1, calls):.1f} s"
                unreadable = sum(s["fallback_reasons"].get("unreadable answer", 0) for s in llm)
                llm_cells = (f"{fallback:.0%} | {calls - unreadable} of {calls} | {legal} | "
                             f"{sum(s['choices'] for s in llm)} | {tokens} | {latency}")
            else:
                llm_cells = "— | — | — | — | — | —"
            ratio = finals[config] / finals["heuristic"] if "heuristic" in finals else float("nan")
            lines.append(f"| {name} | {config} | {len(chosen)} | {finals[config]:.2f}x | {ratio:.2f} | {llm_cells} | "
                         f"{wall:.0f} s |")
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["workload", "config", "seed", "sample", "best_speedup"])
        writer.writerows(rows)
    if curves:
        plot(curves, out / "llm.png")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765/v1")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct-Q4_1")
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per LLM call")
    parser.add_argument("--prompt", default="compact", choices=["full", "short", "compact", "minimal"])
    parser.add_argument("--max-output", type=int, default=512, help="completion-token cap per call (both LLM "
                        "configurations; a constrained answer needs ~150)")
    parser.add_argument("--workloads", default="matmul,deepseek_moe,llama3_attention")
    parser.add_argument("--shapes", default="medium", choices=["medium", "small"])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    chosen = [medium(name) if args.shapes == "medium" else workloads.by_name(small=True)[name]
              for name in args.workloads.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    done = {(r["workload"], r["config"], r["seed"], r["budget"], r.get("shapes")) for r in load(log)}
    print(f"target: {mc.Target.host().describe()}; model {args.model} at {args.url}; budget {args.budget}, "
          f"{args.seeds} seeds; runs go to {log}", flush=True)
    for workload in chosen:
        for seed in range(args.seeds):
            for config in configs:
                if (workload.name, config, seed, args.budget, args.shapes) in done:
                    continue
                record = run_one(workload, config, seed, args)
                with open(log, "a") as f:
                    f.write(json.dumps(record) + "\n")
                llm = record["llm"] or {}
                print(f"{workload.name:17s} {config:10s} seed {seed}: best {min(b for b in record['best_s'] if b) * 1e3:.4f} ms,"
                      f" {record['wall_s']:.0f} s" + (f", fallback {llm.get('fallback_rate', 0):.0%}, "
                                                      f"{llm.get('calls', 0)} calls" if llm else ""), flush=True)
    runs = [r for r in load(log) if r["budget"] == args.budget and r.get("shapes") == args.shapes
            and r["workload"] in args.workloads.split(",")]
    table = summarize(runs, args.out, args.budget)
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
