"""Regressions: tuning from any kind of Python, tunes that measure nothing, and inputs that once
crashed the compiler (a segfault, silent NaNs, invalid LLVM IR, a minutes-long build, a KeyError).

Each reproducer is the 8x4 @ 4x16 float32 matmul ``C`` of the report that found it. Cases that
once killed the interpreter run in a child process, so a regression fails a test instead of
taking pytest down.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import minicompiler as mc
from minicompiler.schedule import PRIMITIVES
from minicompiler.schedule.params import LOOP, Primitive
from minicompiler.search.legality import collecting_defects, try_steps
from minicompiler.search.measure import MeasureResult, Measurer, run_candidate
from minicompiler.search.space import Space
from minicompiler.search.tune import TuneError
from minicompiler.search.workload import Workload

ROOT = Path(__file__).resolve().parent.parent


def _matmul() -> mc.Tensor:
    A = mc.placeholder((8, 4), name="A")
    B = mc.placeholder((4, 16), name="B")
    k = mc.reduce_axis(4, "k")
    return mc.compute((8, 16), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((8, 4)).astype("float32"), rng.standard_normal((4, 16)).astype("float32")


def _check(schedule: mc.Schedule) -> None:
    a, b = _inputs()
    np.testing.assert_allclose(mc.build(schedule)(a, b), a @ b, rtol=1e-5, atol=1e-5)


def _run_python(code: str, how: str, tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` the way a user would: as a script file, with -c, or piped on stdin."""
    script = tmp_path / "user_script.py"
    script.write_text(code)
    command = {"script": [sys.executable, str(script)], "-c": [sys.executable, "-c", code],
               "stdin": [sys.executable, "-"]}[how]
    return subprocess.run(command, input=code if how == "stdin" else None, capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path)


# ------------------------------------------------------------------ tuning from any Python
TUNE_WITHOUT_MAIN_GUARD = """
import minicompiler as mc

A = mc.placeholder((64, 64), name="A")
B = mc.placeholder((64, 64), name="B")
k = mc.reduce_axis(64, "k")
C = mc.compute((64, 64), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")

result = mc.tune(C, budget=4, database="{db}", threads=1, seed=0)
print("STATUSES", sorted(set(s.status for s in result.history)))
print("SPEEDUP", result.speedup)
"""


@pytest.mark.parametrize("how", ["script", "-c", "stdin"])
def test_a_tune_without_a_main_guard_measures_its_candidates(tmp_path: Path, how: str) -> None:
    code = TUNE_WITHOUT_MAIN_GUARD.format(db=tmp_path / "db.sqlite")
    out = _run_python(code, how, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "STATUSES ['ok']" in out.stdout, out.stdout + out.stderr[-3000:]
    speedup = float(out.stdout.split("SPEEDUP")[1].split()[0])
    assert speedup > 1.5, out.stdout


def test_a_user_module_named_like_ours_in_the_working_directory_does_not_reach_the_worker(tmp_path: Path) -> None:
    # The worker runs a fixed bootstrap in a fresh interpreter: the user's script is never re-run in it.
    (tmp_path / "sentinel.txt").unlink(missing_ok=True)
    code = "open('sentinel.txt', 'a').write('ran\\n')\n" + TUNE_WITHOUT_MAIN_GUARD.format(db=tmp_path / "db.sqlite")
    out = _run_python(code, "script", tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "sentinel.txt").read_text() == "ran\n"   # once: by the user, not by each worker


def test_a_runner_defined_in_main_is_refused_with_a_clear_error() -> None:
    def runner(workload, steps, config):  # noqa: ANN001, ANN202 - a local function cannot reach the worker
        return MeasureResult("ok", 1.0)
    with pytest.raises(TypeError, match="module-level|importable"):
        Measurer(Workload(_matmul()), runner=runner)


# ------------------------------------------------------------------ a tune that measured nothing
def always_crashing_runner(workload: Workload, steps: list[dict], config: dict) -> MeasureResult:
    """A runner whose every candidate crashes the worker (module level: it is sent to the worker)."""
    import ctypes
    ctypes.string_at(0)
    raise AssertionError("unreachable")


def test_a_tune_in_which_every_candidate_fails_raises_and_names_the_failures(tmp_path: Path) -> None:
    workload_tensor = _matmul()
    with Measurer(Workload(workload_tensor), threads=1, timeout_s=10, runner=always_crashing_runner) as measurer:
        with pytest.raises(TuneError, match="measured nothing") as info:
            mc.tune(workload_tensor, budget=3, database=tmp_path / "db.sqlite", measurer=measurer, progress=False)
    message = str(info.value)
    assert "3 of 3 samples failed (3 crash)" in message and "first crash:" in message and "SIGSEGV" in message


def test_cli_exits_non_zero_with_the_reason_when_nothing_could_be_measured(tmp_path: Path) -> None:
    # A time limit no candidate can meet: every sample times out.
    out = subprocess.run([sys.executable, "-m", "minicompiler", "tune", "ik,kj->ij", "--size", "i=64,j=64,k=64",
                          "--budget", "2", "--threads", "1", "--timeout", "0.001", "--db", str(tmp_path / "db.sqlite")],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "measured nothing" in out.stderr and "timeout" in out.stderr and "Traceback" not in out.stderr


def wrong_when_vectorized_runner(workload: Workload, steps: list[dict], config: dict) -> MeasureResult:
    """Measure normally, except that a candidate with a vectorize step is reported wrong."""
    if any(step["op"] == "vectorize" for step in steps):
        return MeasureResult("wrong", None, [], error="made-up mismatch for the test")
    return run_candidate(workload, steps, config)


def test_partial_failures_are_counted_by_status_with_the_first_error_of_each(tmp_path: Path) -> None:
    tensor = _matmul()
    with Measurer(Workload(tensor), threads=1, runner=wrong_when_vectorized_runner) as measurer:
        result = mc.tune(tensor, budget=6, database=tmp_path / "db.sqlite", measurer=measurer, seed=0,
                         progress=False)
    counts = result.status_counts
    assert counts.get("ok", 0) >= 1 and counts.get("wrong", 0) >= 1 and sum(counts.values()) == result.samples
    assert result.first_errors["wrong"] == "made-up mismatch for the test"
    assert f"{counts['wrong']} wrong" in result.failure_summary()


# ------------------------------------------------------------------ the reproducers
def test_pack_with_a_huge_factor_is_one_panel_and_never_kills_the_interpreter(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import numpy as np, minicompiler as mc
        A = mc.placeholder((8, 4), name="A"); B = mc.placeholder((4, 16), name="B"); k = mc.reduce_axis(4, "k")
        C = mc.compute((8, 16), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")
        a = np.random.rand(8, 4).astype("float32"); b = np.random.rand(4, 16).astype("float32")
        print(np.allclose(mc.build(mc.Schedule(C).pack("B", 1, 2**31))(a, b), a @ b))
    """)
    out = _run_python(code, "script", tmp_path, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-2000:]


@pytest.mark.parametrize("factor", [2**31, 2**40, 2**62])
def test_factors_beyond_the_extent_mean_the_whole_loop(factor: int) -> None:
    s = mc.Schedule(_matmul())
    _check(s.pack("B", 1, factor))
    _check(s.split("j", factor=factor).reorder("i", "k", "j_o", "j_i").vectorize("j_i"))
    _check(s.tile("i", "j", factor, factor))
    _check(s.unroll("k", factor=factor))
    assert "B_packed = empty([1, 4, 16], float32)" in str(s.pack("B", 1, factor))   # one panel


@pytest.mark.parametrize("make", [
    lambda s: s.pack("B", 1, 2**63),
    lambda s: s.split("j", factor=10**400),
    lambda s: s.split("j", nparts=-(2**70)),
    lambda s: s.tile("i", "j", 2**64, 4),
    lambda s: s.unroll("k", factor=2**63),
], ids=["pack_2_63", "split_10_400", "nparts_negative_huge", "tile_2_64", "unroll_2_63"])
def test_factors_no_int64_holds_are_schedule_errors(make) -> None:  # noqa: ANN001
    with pytest.raises(mc.ScheduleError, match="positive integer"):
        make(mc.Schedule(_matmul()))


def test_a_failed_scratch_allocation_is_a_memory_error_not_a_crash(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import resource, numpy as np, minicompiler as mc
        A = mc.placeholder((8, 4), name="A"); B = mc.placeholder((4, 2**26), name="B"); k = mc.reduce_axis(4, "k")
        C = mc.compute((8, 2**26), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")
        kernel = mc.build(mc.Schedule(C).pack("B", 1, 16).split("i", 4).parallel("i_o"))
        a, b = np.ones((8, 4), "float32"), np.ones((4, 2**26), "float32")
        out = np.empty((8, 2**26), "float32")
        used = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, used + 2**30))   # the 1 GiB packed copy cannot fit
        try:
            kernel(a, b, out=out)
            print("no error")
        except MemoryError as error:
            print("MemoryError:", error)
    """)
    out = _run_python(code, "script", tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("MemoryError:") and "scratch" in out.stdout, out.stdout


def test_compute_inline_of_a_cache_write_accumulator_is_refused_and_never_offered() -> None:
    s = mc.Schedule(_matmul()).cache_write("C", at="k")
    with pytest.raises(mc.ScheduleError, match="not a stage defined by compute"):
        s.compute_inline("C_local")
    with pytest.raises(mc.ScheduleError, match="not a stage defined by compute"):
        s.compute_at("C_local", at="i")
    assert not [a for a in Space(mc.Target.host()).actions(s) if a.op in ("compute_inline", "compute_at")]


@pytest.mark.parametrize("rows,pad", [(8, 2), (13, 3), (5, 1)])
def test_padding_rows_while_vectorizing_columns_builds_and_is_correct(rows: int, pad: int) -> None:
    X = mc.placeholder((rows - pad, 16), name="X")
    Y = mc.compute((rows, 16), lambda i, j: mc.where(i >= pad, X[i - pad, j], 0.0), name="Y")
    x = np.random.default_rng(0).standard_normal((rows - pad, 16)).astype("float32")
    expected = np.concatenate([np.zeros((pad, 16), "float32"), x])
    for s in (mc.Schedule(Y).vectorize("j"), mc.Schedule(Y).split("j", 8).vectorize("j_i"),
              mc.Schedule(Y).split("i", 4).unroll("i_i").vectorize("j")):
        np.testing.assert_array_equal(mc.build(s)(x), expected)


def test_padded_convolution_vectorized_along_output_channels_is_correct() -> None:
    X = mc.placeholder((3, 6, 6), name="X")        # C, H, W
    W = mc.placeholder((16, 3, 3, 3), name="W")    # K, C, R, S
    P = mc.compute((3, 8, 8), lambda c, h, w: mc.where((h >= 1) & (h < 7) & (w >= 1) & (w < 7),
                                                       X[c, h - 1, w - 1], 0.0), name="P")
    c, r, q = mc.reduce_axis(3, "c"), mc.reduce_axis(3, "r"), mc.reduce_axis(3, "q")
    Y = mc.compute((6, 6, 16), lambda h, w, k: mc.sum(P[c, h + r, w + q] * W[k, c, r, q], axis=(c, r, q)), name="Y")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 6, 6)).astype("float32"), rng.standard_normal((16, 3, 3, 3)).astype("float32")
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    expected = np.einsum("chwrq,kcrq->hwk", np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2)), w)
    s = mc.Schedule(Y).compute_inline("P")    # Y's loops are h1, w1, k, c1, r, q (P took h, w, c)
    s = s.reorder("h1", "w1", "c1", "r", "q", "k").vectorize("k")
    np.testing.assert_allclose(mc.build(s)(x, w), expected, rtol=1e-4, atol=1e-4)


def test_nested_full_unrolls_are_refused_quickly_naming_the_unrolls() -> None:
    A, B = mc.placeholder((32, 32), name="A"), mc.placeholder((32, 32), name="B")
    k = mc.reduce_axis(32, "k")
    C = mc.compute((32, 32), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")
    start = time.perf_counter()
    with pytest.raises(mc.ScheduleError, match=r"unrolling i with j, k also unrolled.*drop one of these unrolls"):
        mc.Schedule(C).unroll("k").unroll("j").unroll("i")
    assert time.perf_counter() - start < 5


def test_code_size_is_checked_again_when_lowering(monkeypatch: pytest.MonkeyPatch) -> None:
    # Steps after an unroll (tails that copy a body) can still grow the code: lowering checks again.
    import sys as _sys
    lowering = _sys.modules["minicompiler.lower"]
    from minicompiler.schedule.annotate import unrolled_size
    s = mc.Schedule(_matmul()).split("j", 5).unroll("j_i").unroll("k")
    size = unrolled_size(lowering.partition_tails(s.func).body)
    monkeypatch.setattr(lowering, "MAX_UNROLLED_SIZE", size // 8)
    with pytest.raises(mc.ScheduleError, match="IR nodes of code"):
        mc.build(s)
    monkeypatch.setattr(lowering, "MAX_UNROLLED_SIZE", size)
    _check(s)


@pytest.mark.parametrize("make", [
    lambda s: s.apply(mc.Step.make("reorder", order="ji")),
    lambda s: s.apply(mc.Step.from_json({"op": "reorder", "order": "ji"})),
    lambda s: mc.Schedule.from_json(s.tensor, '[{"op": "reorder", "order": "ji"}]'),
], ids=["Step.make", "Step.from_json", "Schedule.from_json"])
def test_a_string_is_not_a_list_of_loop_names(make) -> None:  # noqa: ANN001
    with pytest.raises(mc.ScheduleError, match="order must be a list of loop names"):
        make(mc.Schedule(_matmul()))


@pytest.mark.parametrize("args", [
    {"loop": "j", "factor": 2.5}, {"loop": "j", "factor": True}, {"loop": "j", "factor": "4"},
    {"loop": 3, "factor": 4}, {"loop": ["j"], "factor": 4}, {"loop": "j", "factor": [4]}, {"factor": 4},
    {"loop": "j", "factor": None}, {"loop": "j", "factor": 4, "colour": "red"},
])
def test_malformed_split_arguments_are_schedule_errors_that_name_the_parameter(args: dict) -> None:
    with pytest.raises((mc.ScheduleError, TypeError)) as info:   # TypeError: not step data at all
        mc.Schedule(_matmul()).apply(mc.Step.make("split", **args))
    assert str(info.value)


# ------------------------------------------------------------------ a bug is not an illegal step
def _broken_vectorize(func, loop):  # noqa: ANN001, ANN201 - a primitive with a bug inside
    raise KeyError("the emitter's table")


broken_vectorize = Primitive("vectorize", _broken_vectorize, {"loop": LOOP("the loop")}, "a broken one", "always")


def test_a_bug_inside_a_primitive_propagates_outside_a_tune_and_is_counted_inside(monkeypatch: pytest.MonkeyPatch,
                                                                                tmp_path: Path) -> None:
    monkeypatch.setitem(PRIMITIVES, "vectorize", broken_vectorize)
    s = mc.Schedule(_matmul())
    with pytest.raises(KeyError):                         # not a ScheduleError: nothing swallows it
        s.vectorize("j")
    with pytest.raises(KeyError):
        Space(mc.Target.host()).actions(s)
    with pytest.raises(KeyError):
        try_steps(s, [mc.Step.make("vectorize", loop="j")])
    with collecting_defects() as defects:
        assert try_steps(s, [mc.Step.make("vectorize", loop="j")]) is None
    assert len(defects) == 1 and "KeyError" in defects[0].error
    # A tune goes on, and reports every defect it met (the worker, a fresh interpreter, is unaffected).
    result = mc.tune(_matmul(), budget=3, database=tmp_path / "db.sqlite", threads=1, seed=0, progress=False)
    assert result.samples == 3 and result.best_time_s is not None
    assert result.defects and all("KeyError" in d.error for d in result.defects)
    assert "internal compiler error" in result.failure_summary()


# ------------------------------------------------------------------ found by the fuzzer (tests/fuzz.py)
@pytest.mark.parametrize("n", [5, 8, 13])
def test_cache_write_of_a_strided_tile_keeps_the_points_it_does_not_write(n: int) -> None:
    # Inside j_i, C is written at j_o * 4 + j_i: every 4th point of the tile's bounding box. The
    # write-back covers the whole box, so the other points must start from C, not from zero.
    A, B = mc.placeholder((3, 2), name="A"), mc.placeholder((2, n), name="B")
    k = mc.reduce_axis(2, "k")
    C = mc.compute((3, n), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = mc.Schedule(C).split("j", 4).reorder("j_i", "j_o").cache_write("C", at="j_i")
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((3, 2)).astype("float32"), rng.standard_normal((2, n)).astype("float32")
    np.testing.assert_allclose(mc.build(s)(a, b), a @ b, rtol=1e-5, atol=1e-5)


def test_compute_at_refuses_to_move_reads_of_a_scratch_tensor_out_of_its_scope() -> None:
    # Two cache_writes at i: the second's buffer is filled from the first's, which exists only
    # in its own part of i's body; moving that fill into C_local1_w0 read it out of scope.
    A, B = mc.placeholder((2, 5), name="A"), mc.placeholder((5, 7), name="B")
    k = mc.reduce_axis(5, "k")
    C = mc.compute((2, 7), lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = mc.Schedule(C).cache_write("C", "i").cache_write("C", "i")
    # Refused first as not a stage; the scope check (compute_at never moves a read of a scratch
    # tensor outside its Alloc) stands behind it for stages too.
    with pytest.raises(mc.ScheduleError, match="not a stage defined by compute|it reads C_local, which does not"):
        s.compute_at("C_local1", "C_local1_w0")
    a, b = np.ones((2, 5), "float32"), np.ones((5, 7), "float32")
    np.testing.assert_allclose(mc.build(s)(a, b), a @ b)


def test_hundreds_of_unrolled_loop_copies_are_refused_before_llvm_spends_a_minute() -> None:
    # i x r unrolled copies the 100-iteration q loop 143 times: LLVM vectorizes each copy (13 s).
    A = mc.placeholder((11, 13, 100), name="A")
    r, q = mc.reduce_axis(13, "r"), mc.reduce_axis(100, "q")
    Y = mc.compute((11,), lambda i: mc.min(A[i, r, q] * 2 - A[i, 12 - r, q], axis=(r, q)), name="Y")
    s = mc.Schedule(Y).cache_write("Y", "r").split("q", 64).unroll("i")
    with pytest.raises(mc.ScheduleError, match="unrolling r with i also unrolled"):
        s.unroll("r")


def test_compute_at_and_compute_inline_move_only_stages_defined_by_compute() -> None:
    # Found by the 10,000-case fuzz run: compute_at of a cache_write accumulator (l_local) into its
    # own write-back loop computed a softmax with NaN rows. Buffers that steps add are not stages.
    X = mc.placeholder((13, 4), name="X")
    jm, jl = mc.reduce_axis(4, "jm"), mc.reduce_axis(4, "jl")
    m = mc.compute((13,), lambda i: mc.max(X[i, jm], axis=jm), name="m")
    E = mc.compute((13, 4), lambda i, j: mc.exp(X[i, j] - m[i]), name="E")
    total = mc.compute((13,), lambda i: mc.sum(E[i, jl], axis=jl), name="l")
    Y = mc.compute((13, 4), lambda i, j: E[i, j] / total[i], name="Y")
    s = mc.Schedule(Y)
    assert s.func.stages == ("m", "E", "l")
    s = (s.compute_inline("E").split("i2", 6).cache_write("m", "jm").reorder("j1", "i3").split("i2_i", 4)
         .cache_write("l", "i2_i_o"))
    for make in (lambda: s.compute_at("l_local", "l_local_w0"), lambda: s.compute_inline("m_local"),
                 lambda: mc.Schedule(Y).pack("X", 0, 3).compute_inline("X_packed")):
        with pytest.raises(mc.ScheduleError, match="not a stage defined by compute"):
            make()
    x = np.random.default_rng(0).standard_normal((13, 4)).astype("float32")
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(mc.build(s)(x), e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    # The same run found this too: l's tile (4 rows inside a 6-row block, a tail guard i2_i_o * 4 +
    # i2_i_i < 6 around the write) started from zero and wrote its unwritten rows back over the next
    # block's: correct only while i2_o ran outside. The tile now starts from l, so swapping the
    # loops is refused as the dependence it is (or would be correct).
    try:
        swapped = s.reorder("i2_i_o", "i2_o")
    except mc.ScheduleError as error:
        assert "depend" in str(error)
    else:
        np.testing.assert_allclose(mc.build(swapped)(x), e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_cache_write_of_a_cache_starts_from_what_it_caches_when_a_reduction_runs_around_it() -> None:
    # Found by the 10,000-case fuzz run: out_local1 (a cache of out, filled from out in every k
    # iteration) was cached again inside k as if it were a fresh stage: its tile started from zero
    # and dropped the sum of the earlier k iterations.
    A, B = mc.placeholder((1, 1, 2), name="A"), mc.placeholder((2, 1), name="B")
    out = mc.einsum("ijk,kl->ijl", A, B)
    s = (mc.Schedule(out).cache_write("out", "i_init").reorder("k", "l", "i", "j").cache_write("out", "l")
         .cache_write("out_local1", "j"))
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1, 1, 2)).astype("float32"), rng.standard_normal((2, 1)).astype("float32")
    np.testing.assert_allclose(mc.build(s)(a, b), np.einsum("ijk,kl->ijl", a, b), rtol=1e-5, atol=1e-6)


def test_aarch64_cross_compilation_never_aborts_in_llvms_loop_vectorizer(tmp_path: Path) -> None:
    # Found by a 10,000-case fuzz run: this fused attention loop made LLVM's loop vectorizer hit an
    # assertion for aarch64 and abort the interpreter (in a child process here, so a regression
    # fails this test instead of killing pytest).
    code = textwrap.dedent("""
        import minicompiler as mc
        Q, K, V = (mc.placeholder((2, n, 1), name=x) for x, n in (("Q", 13), ("K", 5), ("V", 5)))
        d, jm, jl, jo = (mc.reduce_axis(n, x) for x, n in (("d", 1), ("jm", 5), ("jl", 5), ("jo", 5)))
        S = mc.compute((2, 13, 5), lambda h, i, j: mc.sum(Q[h, i, d] * K[h, j, d], axis=d), name="S")
        m = mc.compute((2, 13), lambda h, i: mc.max(S[h, i, jm], axis=jm), name="m")
        E = mc.compute((2, 13, 5), lambda h, i, j: mc.exp((S[h, i, j] - m[h, i]) * 1.0), name="E")
        l = mc.compute((2, 13), lambda h, i: mc.sum(E[h, i, jl], axis=jl), name="l")
        O = mc.compute((2, 13, 1), lambda h, i, e: mc.sum(E[h, i, jo] * V[h, jo, e], axis=jo), name="O")
        Y = mc.compute((2, 13, 1), lambda h, i, e: O[h, i, e] / l[h, i], name="Y")
        text = mc.assembly(mc.Schedule(Y).fuse("h4", "i4"), mc.Target.aarch64())
        print("ok", len(text) > 0)
    """)
    out = _run_python(code, "script", tmp_path, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok True", out.stderr[-2000:]
