"""explain(): each step's diff applies to the program before it and gives the program after it;
the lowering passes likewise; the hot loop's assembly is found and its instructions counted."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import minicompiler as mc
from minicompiler.codegen.asm import hot_loop
from minicompiler.lower import explain_lowering
from minicompiler.schedule import trace_from_python
from minicompiler.schedule.explain import Change, explain_steps

ROOT = Path(__file__).resolve().parent.parent

# The README's matmul trace (its output tensor is "out" when the program comes from an einsum).
README_TRACE = """s = (mc.Schedule(C)
     .tile("i", "j", 6, 32)                 # i_o, j_o, i_i, j_i  (tails handled for any size)
     .split("k", 256)
     .reorder("j_o", "k_o", "i_o", "k_i", "i_i", "j_i")
     .cache_write("out", "i_o")             # 6x32 accumulator tile kept in registers
     .pack("B", 1, 32)                      # B read as 32-wide panels
     .unroll("i_i").vectorize("j_i")        # 6 rows x 2 AVX-512 vectors of FMAs per k
     .parallel("j_o"))
"""


def _matmul(m: int = 100, n: int = 70, k: int = 300) -> mc.Tensor:
    return mc.einsum("ik,kj->ij", mc.placeholder((m, k), name="A"), mc.placeholder((k, n), name="B"))


def apply_unified_diff(before: str, diff: str) -> str:
    """``before`` patched by ``diff`` (unified format), hunk by hunk, checking every context line."""
    old, out, position = before.splitlines(), [], 0
    lines = diff.splitlines()[2:]               # past the "--- before" / "+++ after" header
    for line in lines:
        hunk = re.match(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@", line)
        if hunk:
            start = int(hunk.group(1)) - (0 if hunk.group(2) == "0" else 1)
            out += old[position:start]
            position = start
        elif line.startswith(" "):
            assert old[position] == line[1:], f"context line {position + 1} differs"
            out.append(line[1:])
            position += 1
        elif line.startswith("-"):
            assert old[position] == line[1:], f"removed line {position + 1} differs"
            position += 1
        elif line.startswith("+"):
            out.append(line[1:])
    return "\n".join(out + old[position:])


def test_each_steps_diff_applies_and_the_last_state_is_the_schedules_ir() -> None:
    steps = trace_from_python(README_TRACE)
    assert [s.op for s in steps] == ["tile", "split", "reorder", "cache_write", "pack", "unroll", "vectorize",
                                     "parallel"]
    schedule = mc.Schedule(_matmul()).replay(steps)
    changes = explain_steps(schedule)
    assert len(changes) == len(steps)
    assert changes[0].before == str(mc.Schedule(_matmul()))
    for change, following in zip(changes, changes[1:]):
        assert change.after == following.before           # the "after" of step n is the "before" of n+1
    assert changes[-1].after == str(schedule)
    for change in changes:
        assert change.diff() and apply_unified_diff(change.before, change.diff()) == change.after
    assert changes[0].title == "step 1: s = s.tile(outer_loop='i', inner_loop='j', outer_factor=6, inner_factor=32)"
    assert changes[0].summary == "i[100] x j[70] became i_o[17] x j_o[3] x i_i[6] x j_i[32]."
    assert "loop order now" in changes[2].summary and "marked j_i vectorized" in changes[6].summary
    assert "new buffer out_local[6, 32]" in changes[3].summary and "B_packed" in changes[4].summary
    text = schedule.explain()
    assert text.count("\nstep ") + text.startswith("step ") == len(steps) and "\033[" not in text
    assert "\033[32m+" in schedule.explain(color=True)


def test_the_lowering_passes_chain_to_the_lowered_program() -> None:
    schedule = mc.Schedule(_matmul()).replay(trace_from_python(README_TRACE))
    changes = explain_lowering(schedule)
    assert [c.title.split(": ")[1] for c in changes] == ["partition_tails", "legalize_vectors", "simplify",
                                                         "check_code_size", "unroll_loops", "simplify",
                                                         "vectorize_loops", "simplify"]
    assert changes[0].before == str(schedule) and changes[-1].after == str(mc.lower(schedule))
    for change, following in zip(changes, changes[1:]):
        assert change.after == following.before
    for change in changes:
        assert apply_unified_diff(change.before, change.diff()) == change.after
    assert changes[0].diff() and changes[4].diff()          # tails partitioned (100 % 6), loops unrolled


def test_a_trace_in_python_is_read_without_running_it() -> None:
    steps = trace_from_python("s = Schedule(tensor)\ns = s.split(loop='i', factor=4)\ns = s.reorder('i_o', 'j')\n")
    assert [s.to_json() for s in steps] == [{"op": "split", "loop": "i", "factor": 4},
                                            {"op": "reorder", "order": ["i_o", "j"]}]
    with pytest.raises(ValueError, match="literal arguments only"):
        trace_from_python("s = s.split(loop=__import__('os').getcwd(), factor=4)")
    with pytest.raises(ValueError, match="not Python"):
        trace_from_python("s = s.split(")


def test_the_hot_loop_is_the_innermost_loop_with_the_fmas() -> None:
    schedule = mc.Schedule(_matmul(64, 48, 40)).replay(trace_from_python(
        "s.tile('i', 'j', 4, 16).reorder('j_o', 'i_o', 'k', 'i_i', 'j_i').cache_write('out', 'i_o')"
        ".unroll('i_i').vectorize('j_i')"))
    lanes = mc.Target.host().vector_lanes("float32")
    loop = hot_loop(mc.build(schedule).assembly)
    per_k = 4 * 16 // lanes                      # 4 rows x (16 / lanes) vectors per k (LLVM may unroll k)
    assert loop is not None and loop.fmas >= per_k and loop.fmas % per_k == 0
    assert loop.widths.get(mc.Target.host().vector_bits, 0) >= loop.fmas and loop.loads >= 1
    assert "FMAs per load" in loop.summary()
    arm = hot_loop(mc.assembly(schedule, mc.Target.aarch64()))
    assert arm is not None and arm.fmas >= 16 and arm.fmas % 16 == 0 and arm.widths.get(128)
    assert hot_loop("\tret\n") is None
    spill = hot_loop(".LBB0_1:\n\tvmovups\t%ymm3, 64(%rsp)\n\tvfmadd231ps\t%ymm1, %ymm2, %ymm3\n\tjne\t.LBB0_1\n")
    assert spill is not None and spill.stack == 1 and spill.stores == 1 and "spilled" in spill.summary()


def test_cli_explain_prints_one_diff_per_step_plain_in_a_pipe(tmp_path: Path) -> None:
    trace = tmp_path / "trace.py"
    trace.write_text(README_TRACE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "minicompiler", "explain", "ik,kj->ij", "--size", "i=100,j=70,k=300",
                          "--steps", str(trace), "--lowered", "--asm"], capture_output=True, text=True,
                         timeout=300, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert len(re.findall(r"^step \d+: s = s\.", out.stdout, re.M)) == 8
    assert len(re.findall(r"^--- before$", out.stdout, re.M)) >= 8 + 5     # the steps' diffs, the passes'
    assert "== lowering passes ==" in out.stdout and "== hot loop (assembly) ==" in out.stdout
    assert re.search(r"\d+ FMAs", out.stdout) and "\033[" not in out.stdout
    json_trace = tmp_path / "trace.json"
    json_trace.write_text(mc.Schedule(_matmul()).replay(trace_from_python(README_TRACE)).to_json())
    again = subprocess.run([sys.executable, "-m", "minicompiler", "explain", "ik,kj->ij", "--size",
                            "i=100,j=70,k=300", "--steps", str(json_trace)], capture_output=True, text=True,
                           timeout=300, env=env, cwd=ROOT)
    assert again.returncode == 0 and again.stdout.count("\nstep ") == 8, again.stderr


def test_a_change_without_differences_says_so() -> None:
    assert "unchanged" in Change("pass 1: x", "nothing.", "a\nb", "a\nb").render()
