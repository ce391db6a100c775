"""Tests for ``minicompiler.einsum``: a JIT-compiled, numpy-compatible ``numpy.einsum``.

``numpy.einsum`` is the oracle throughout.  For every case the test computes the
expected answer with numpy on the very same operands and requires that
minicompiler's result has

* the same Python type (``np.ndarray``, or a numpy scalar such as ``np.float32``
  when the result is 0-d, exactly as numpy returns),
* the same dtype (numpy's promotion rules, including mixed-dtype operands),
* the same shape,
* the same values: bit-exact for integers, ``rtol=1e-10`` for float64 and
  ``rtol=1e-4`` for float32, with an absolute tolerance that grows with the
  number of products summed into each output element (summation order is free).

The file is organised as

1. a deterministic table of (spec, shapes, dtypes, memory layout) cases, plus
   misaligned and byte-swapped operands,
2. a hypothesis property test over random valid specs,
3. kernel-cache behaviour (same spec with new data, shapes, dtypes, layouts),
4. operands are never modified,
5. the symbolic API (``placeholder`` / ``einsum`` / ``build``),
6. error handling: ``ValueError`` wherever numpy raises one, ``TypeError`` for
   unsupported dtypes and for mixing placeholders with arrays.

Every distinct signature compiles one kernel (~20-50 ms), so the table is kept to
a few hundred cases with small sizes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minicompiler as mc

Shape = tuple[int, ...]

#: The element types minicompiler supports; everything else is a TypeError.
DTYPES: tuple[str, ...] = ("float32", "float64", "int32", "int64")


# ---------------------------------------------------------------------------
# Helpers: operand construction and comparison against numpy
# ---------------------------------------------------------------------------

#: How an operand is laid out in memory.  All layouts hold the same kind of data;
#: only the strides differ, so the kernel must not assume C-contiguity.
LAYOUTS: tuple[str, ...] = (
    "C",          # fresh C-contiguous array
    "F",          # Fortran order
    "T",          # transpose of a C array (all axes reversed)
    "strided",    # every axis sliced with step 2 (a[::2, ::2, ...])
    "reversed",   # axis 0 reversed: a negative stride
    "broadcast",  # np.broadcast_to from size 1 on axis 0: a zero stride (read-only)
)


def random_array(rng: np.random.Generator, shape: Shape, dtype: str) -> np.ndarray:
    """Small random values: floats in [-1, 1), ints in [-5, 5] (no overflow anywhere)."""
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    return rng.integers(-5, 6, size=shape, dtype=dtype)


def make_operand(rng: np.random.Generator, shape: Shape, dtype: str, layout: str = "C") -> np.ndarray:
    """A random array of ``shape``/``dtype`` whose memory layout is ``layout``."""
    ndim = len(shape)
    if layout == "C" or ndim == 0:
        return random_array(rng, shape, dtype)
    if layout == "F":
        return np.asfortranarray(random_array(rng, shape, dtype))
    if layout == "T":
        return random_array(rng, shape[::-1], dtype).T
    if layout == "strided":
        big = random_array(rng, tuple(2 * n for n in shape), dtype)
        return big[(slice(None, None, 2),) * ndim]
    if layout == "reversed":
        return random_array(rng, shape, dtype)[::-1]
    if layout == "broadcast":
        return np.broadcast_to(random_array(rng, (1,) + shape[1:], dtype), shape)
    raise AssertionError(f"unknown layout {layout!r}")


def terms_per_output(spec: str, shapes: Sequence[Shape]) -> int:
    """How many products numpy adds up for one output element (at least 1).

    einsum over all-ones operands counts exactly that, element by element.
    """
    counts = np.asarray(np.einsum(spec, *[np.ones(s) for s in shapes]))
    return max(1, int(counts.max())) if counts.size else 1


def assert_matches_numpy(result: Any, expected: Any, terms: int = 1) -> None:
    """Check type, dtype, shape and values of ``result`` against numpy's ``expected``."""
    if isinstance(expected, np.ndarray):
        assert isinstance(result, np.ndarray), f"expected an ndarray, got {type(result).__name__}"
    else:  # a 0-d result: numpy returns a scalar such as np.float32(1.5)
        assert type(result) is type(expected), (
            f"0-d result should be a numpy scalar {type(expected).__name__}, got {type(result).__name__}"
        )
    assert result.dtype == expected.dtype, f"dtype {result.dtype} != numpy's {expected.dtype}"
    assert result.shape == expected.shape, f"shape {result.shape} != numpy's {expected.shape}"
    assert_values_close(result, expected, terms)


def assert_values_close(result: Any, expected: Any, terms: int = 1) -> None:
    """Exact for integers; relative tolerance per float type, absolute one scaled by ``terms``."""
    kind = np.asarray(expected).dtype
    if kind == np.float32:
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4 * terms)
    elif kind == np.float64:
        np.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-12 * terms)
    else:
        np.testing.assert_array_equal(result, expected)


# ---------------------------------------------------------------------------
# 1. The deterministic case table
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    spec: str
    shapes: tuple[Shape, ...]
    dtypes: tuple[str, ...]
    layouts: tuple[str, ...]

    @property
    def id(self) -> str:
        shapes = ",".join("x".join(map(str, s)) if s else "()" for s in self.shapes)
        dtypes = self.dtypes[0] if len(set(self.dtypes)) == 1 else ",".join(self.dtypes)
        layouts = "" if set(self.layouts) == {"C"} else "|" + ",".join(self.layouts)
        return f"{self.spec}|{shapes}|{dtypes}{layouts}"


# (spec, operand shapes).  Each entry is run once per supported dtype.
SPECS: list[tuple[str, tuple[Shape, ...]]] = [
    # --- one operand: identity, transposes, reductions -------------------
    ("i->i", ((7,),)),
    ("i->", ((13,),)),
    ("i", ((1,),)),                              # implicit output: identity
    ("ij", ((17, 3),)),                          # implicit output: identity
    ("ji", ((4, 7),)),                           # implicit output sorts labels: transpose
    ("kji", ((2, 5, 3),)),                       # implicit: full 3-d transpose
    ("ij->ji", ((3, 5),)),
    ("ij->", ((7, 13),)),
    ("ij->i", ((17, 3),)),
    ("ij->j", ((5, 33),)),
    ("ijk->kji", ((2, 3, 4),)),
    ("ijk->jk", ((3, 1, 7),)),
    ("ijkl->ljki", ((2, 3, 1, 4),)),
    # --- repeated labels inside one operand (diagonals, traces) ----------
    ("ii->i", ((7, 7),)),
    ("ii", ((5, 5),)),                           # implicit: trace, 0-d result
    ("ii->", ((1, 1),)),
    ("iij->j", ((3, 3, 5),)),
    ("iji->ij", ((4, 3, 4),)),
    ("iii->i", ((3, 3, 3),)),
    ("ijji->ij", ((2, 3, 3, 2),)),
    # --- two operands -----------------------------------------------------
    ("i,i->", ((33,), (33,))),                   # dot product, 0-d result
    ("i,i", ((17,), (17,))),                     # implicit dot product
    ("i,j->ij", ((3,), (5,))),                   # outer product
    ("i,j", ((7,), (1,))),                       # implicit outer product
    ("ab,cd->abcd", ((2, 3), (1, 4))),           # 2-d x 2-d outer product
    ("ij,j->i", ((13, 7), (7,))),                # matrix-vector
    ("ij,jk->ik", ((3, 7), (7, 5))),             # matmul
    ("ij,jk", ((17, 33), (33, 3))),              # implicit matmul
    ("ij,kj->ik", ((5, 6), (4, 6))),             # A @ B.T
    ("ji,jk->ik", ((6, 5), (6, 4))),             # A.T @ B
    ("ij,jk->ki", ((2, 3), (3, 4))),             # (A @ B).T
    ("ij,jk->", ((3, 4), (4, 5))),               # sum of a matmul
    ("ij,ij->ij", ((4, 5), (4, 5))),             # Hadamard product
    ("ij,ij->", ((7, 3), (7, 3))),               # Frobenius inner product
    ("ij,ij->i", ((3, 13), (3, 13))),            # row-wise dot
    ("ab,ba", ((3, 4), (4, 3))),                 # implicit trace(A @ B)
    ("i,ii->i", ((4,), (4, 4))),
    ("ii,i->", ((5, 5), (5,))),
    ("Ij,jK->IK", ((3, 4), (4, 2))),             # upper-case labels are legal
    ("bij,bjk->bik", ((3, 4, 5), (3, 5, 2))),    # batched matmul
    ("bij,bkj->bik", ((2, 3, 7), (2, 5, 7))),
    ("ijk,k->ij", ((2, 3, 4), (4,))),
    ("ijk,ikl->jl", ((3, 2, 4), (3, 4, 5))),
    # --- ellipsis and broadcasting of the '...' dimensions ----------------
    ("...ij,...jk->...ik", ((2, 3, 4), (2, 4, 5))),
    ("...ij,...jk->...ik", ((5, 1, 3, 4), (2, 4, 6))),  # leading (5,1) vs (2,) -> (5,2)
    ("...ij,...jk", ((3, 2, 2), (2, 3))),                # implicit, second has no batch dims
    ("...i,...i->...", ((3, 4), (4,))),
    ("...,...", ((3, 1), (1, 4))),                       # pure broadcasting product
    ("i...->...", ((3, 4, 5),)),
    ("...ii->...i", ((2, 3, 3),)),                       # batched diagonal
    ("...ji", ((2, 3, 5),)),                             # implicit batched transpose
    ("...ij->...ji", ((3, 4),)),                         # '...' matching zero dims
    ("ij...,jk...->ik...", ((2, 3, 4), (3, 5, 1))),      # '...' at the end
    # --- size-1 broadcasting of labelled dimensions (numpy allows it) ------
    ("ij,jk->ik", ((2, 1), (1, 4))),
    ("ij,jk->ik", ((2, 1), (3, 4))),             # j has size 1 in A, 3 in B
    ("i,i->i", ((1,), (5,))),
    ("ij,ij->", ((3, 1), (1, 4))),
    ("ij,ij->ij", ((3, 1), (1, 4))),
    # --- three or more operands -------------------------------------------
    ("ij,jk,kl->il", ((3, 4), (4, 5), (5, 2))),
    ("i,i,i->", ((7,), (7,), (7,))),
    ("i,j,k->ijk", ((2,), (3,), (4,))),
    ("ab,bc,ca->", ((3, 4), (4, 5), (5, 3))),
    ("bi,bj,bk->bijk", ((2, 3), (2, 2), (2, 4))),
    ("ij,jk,kl,lm->im", ((2, 3), (3, 4), (4, 5), (5, 2))),
    ("a,b,c,d->abcd", ((2,), (3,), (1,), (2,))),
    ("ab,bc,cd,da->", ((2, 3), (3, 4), (4, 5), (5, 2))),
    ("a,a,a,a,a->a", ((5,), (5,), (5,), (5,), (5,))),
    # --- 0-d operands -------------------------------------------------------
    ("->", ((),)),
    (",->", ((), ())),
    (",i->i", ((), (3,))),
    # --- zero-size dimensions -----------------------------------------------
    ("ij,jk->ik", ((0, 3), (3, 4))),
    ("ij,jk->ik", ((3, 0), (0, 4))),             # empty reduction: all zeros
    ("i->", ((0,),)),
    ("ij->j", ((0, 5),)),
    ("ii->i", ((0, 0),)),
    ("bij,bjk->bik", ((0, 2, 3), (0, 3, 2))),
    ("...ij,...jk->...ik", ((0, 2, 3), (1, 3, 2))),
    # --- size 1 and sizes that are not powers of two -------------------------
    ("ij,jk->ik", ((1, 1), (1, 1))),
    ("ij,jk->ik", ((1, 7), (7, 1))),
    ("ij,jk->ik", ((33, 17), (17, 13))),
    ("i,i->", ((257,), (257,))),
]

# Mixed dtypes: the result dtype must follow numpy's promotion (e.g. int32 + float32 -> float64).
MIXED: list[tuple[str, tuple[Shape, ...], tuple[str, ...]]] = [
    ("ij,jk->ik", ((3, 4), (4, 5)), pair)
    for pair in [
        ("float32", "float64"), ("float64", "float32"),
        ("int32", "float32"), ("float32", "int32"),
        ("int32", "int64"), ("int64", "int32"),
        ("int64", "float32"), ("int32", "float64"), ("int64", "float64"),
    ]
] + [
    ("i,i->", ((13,), (13,)), ("int32", "float32")),
    ("i,i->", ((13,), (13,)), ("int64", "int32")),
    ("i,i,i->i", ((5,), (5,), (5,)), ("int32", "int64", "float32")),
    ("i,i,i->i", ((5,), (5,), (5,)), ("int32", "int32", "int64")),
    ("...ij,...jk", ((2, 3, 4), (4, 5)), ("float32", "int64")),
    (",i->i", ((), (3,)), ("float64", "float32")),
]

# Non-contiguous operands: every operand of the spec gets the given layout.
LAYOUT_SPECS: list[tuple[str, tuple[Shape, ...], str]] = [
    ("ij,jk->ik", ((5, 6), (6, 7)), "float32"),
    ("ij->ji", ((7, 3),), "int64"),
    ("ii->i", ((4, 4),), "float64"),
    ("bij,bjk->bik", ((2, 3, 4), (2, 4, 3)), "int32"),
    ("i,i->", ((9,), (9,)), "float32"),
    ("...ij,...jk->...ik", ((2, 3, 4), (4, 5)), "float64"),
]


def build_cases() -> list[Case]:
    cases = [Case(spec, shapes, (dt,) * len(shapes), ("C",) * len(shapes))
             for spec, shapes in SPECS for dt in DTYPES]
    cases += [Case(spec, shapes, dts, ("C",) * len(shapes)) for spec, shapes, dts in MIXED]
    for spec, shapes, dt in LAYOUT_SPECS:
        for layout in LAYOUTS[1:]:
            if layout in ("F", "T") and all(len(s) <= 1 for s in shapes):
                continue  # for vectors, F and T are just C again
            cases.append(Case(spec, shapes, (dt,) * len(shapes), (layout,) * len(shapes)))
    # A few calls where each operand has a different layout.
    cases += [
        Case("ij,jk->ik", ((4, 5), (5, 3)), ("float32", "float32"), ("T", "strided")),
        Case("ij,jk->ik", ((4, 5), (5, 3)), ("int64", "int64"), ("F", "reversed")),
        Case("bij,bjk->bik", ((3, 2, 4), (3, 4, 2)), ("float64", "float64"), ("broadcast", "T")),
    ]
    return cases


CASES = build_cases()


def test_case_table_is_large_and_distinct() -> None:
    """The table must hold many *distinct* signatures, as the ids show."""
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "duplicate cases in the table"
    assert len(CASES) >= 250


def case_seed(case: Case) -> int:
    """A stable per-case seed (``hash()`` of a str is randomised per process)."""
    return sum(ord(ch) * (i + 1) for i, ch in enumerate(case.id)) % (2**32)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_einsum_matches_numpy(case: Case) -> None:
    rng = np.random.default_rng(case_seed(case))
    operands = [make_operand(rng, s, dt, lay) for s, dt, lay in zip(case.shapes, case.dtypes, case.layouts)]
    expected = np.einsum(case.spec, *operands)
    result = mc.einsum(case.spec, *operands)
    assert_matches_numpy(result, expected, terms_per_output(case.spec, case.shapes))


def misaligned_copy(array: np.ndarray) -> np.ndarray:
    """The same values, stored at an address that is not a multiple of the itemsize."""
    raw = np.zeros(array.nbytes + 1, dtype=np.uint8)
    view = raw[1:].view(array.dtype).reshape(array.shape)
    view[...] = array
    assert not view.flags.aligned
    return view


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk->ik", ((5, 7), (7, 3))),
    ("ij->", ((3, 13),)),
])
def test_misaligned_operands(spec: str, shapes: tuple[Shape, ...], dtype: str) -> None:
    """Memory from a byte buffer may be misaligned; the kernel must still read it correctly."""
    rng = np.random.default_rng(20)
    operands = [misaligned_copy(random_array(rng, s, dtype)) for s in shapes]
    expected = np.einsum(spec, *operands)
    assert_matches_numpy(mc.einsum(spec, *operands), expected, terms_per_output(spec, shapes))


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_native_byte_order_is_converted_or_rejected(dtype: str) -> None:
    """A byte-swapped float64 (``'>f8'`` on x86) is still named 'float64'.

    Reading its raw bytes as native numbers gives silently wrong values.  The call
    must either produce numpy's values or refuse the operand with a TypeError.
    """
    rng = np.random.default_rng(21)
    native = random_array(rng, (4, 5), dtype)
    swapped = native.astype(native.dtype.newbyteorder())
    expected = np.einsum("ij,ij->j", native, native)
    # A native call first, so a kernel for this very shape and dtype is already cached.
    assert_values_close(mc.einsum("ij,ij->j", native, native), expected, 4)
    try:
        result = mc.einsum("ij,ij->j", swapped, swapped)
    except TypeError:
        return
    assert result.dtype.name == expected.dtype.name
    assert_values_close(np.asarray(result, dtype=expected.dtype), expected, 4)


# ---------------------------------------------------------------------------
# 2. Property test: random valid specs
# ---------------------------------------------------------------------------

@st.composite
def einsum_problems(draw: st.DrawFn) -> tuple[str, list[np.ndarray]]:
    """A random valid einsum call: 1-3 operands of 0-3 labels each (repeats allowed).

    Every label has one size shared by all its occurrences, so the call is always
    valid.  Optionally some operands carry a '...' whose dimensions broadcast
    against each other (each a suffix of one batch shape, some sizes replaced by 1).
    The output is either implicit or a random ordered subset of the labels.
    """
    pool = "abcde"
    sizes = {label: draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7])) for label in pool}
    batch = tuple(draw(st.lists(st.sampled_from([1, 2, 3]), max_size=2)))
    use_ellipsis = draw(st.booleans())
    n_operands = draw(st.integers(1, 3))

    terms: list[str] = []
    operands: list[np.ndarray] = []
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    for _ in range(n_operands):
        labels = draw(st.lists(st.sampled_from(pool), max_size=3))
        shape = [sizes[label] for label in labels]
        term = "".join(labels)
        if use_ellipsis and draw(st.booleans()):
            rank = draw(st.integers(0, len(batch)))
            own_batch = [n if draw(st.booleans()) else 1 for n in batch[len(batch) - rank:]]
            at = draw(st.integers(0, len(labels)))      # '...' may sit anywhere in the term
            term = term[:at] + "..." + term[at:]
            shape = shape[:at] + own_batch + shape[at:]
        terms.append(term)
        operands.append(random_array(rng, tuple(shape), draw(st.sampled_from(DTYPES))))

    spec = ",".join(terms)
    if draw(st.booleans()):  # explicit output
        used = sorted({ch for t in terms for ch in t if ch != "."})
        order = list(draw(st.permutations(used)))[: draw(st.integers(0, len(used)))]
        if any("..." in t for t in terms):      # numpy requires '...' in an explicit output then
            order.insert(draw(st.integers(0, len(order))), "...")
        spec += "->" + "".join(order)
    return spec, operands


@settings(max_examples=60, deadline=None, database=None)
@given(einsum_problems())
def test_random_specs_match_numpy(problem: tuple[str, list[np.ndarray]]) -> None:
    spec, operands = problem
    expected = np.einsum(spec, *operands)
    result = mc.einsum(spec, *operands)
    assert_matches_numpy(result, expected, terms_per_output(spec, [op.shape for op in operands]))


# ---------------------------------------------------------------------------
# 3. The kernel cache
# ---------------------------------------------------------------------------

def test_same_signature_twice_gives_fresh_results() -> None:
    """A cached kernel must read the new data and must not reuse the old output buffer."""
    rng = np.random.default_rng(1)
    a1, b1 = random_array(rng, (5, 6), "float32"), random_array(rng, (6, 7), "float32")
    a2, b2 = random_array(rng, (5, 6), "float32"), random_array(rng, (6, 7), "float32")
    r1 = mc.einsum("ij,jk->ik", a1, b1)
    r2 = mc.einsum("ij,jk->ik", a2, b2)
    assert_matches_numpy(r1, np.einsum("ij,jk->ik", a1, b1), 6)  # r1 must be untouched by call 2
    assert_matches_numpy(r2, np.einsum("ij,jk->ik", a2, b2), 6)


def test_same_signature_twice_scalar_result() -> None:
    rng = np.random.default_rng(2)
    for _ in range(3):
        x, y = random_array(rng, (11,), "int64"), random_array(rng, (11,), "int64")
        assert_matches_numpy(mc.einsum("i,i->", x, y), np.einsum("i,i->", x, y))


def test_same_spec_different_shapes() -> None:
    rng = np.random.default_rng(3)
    for shape_a, shape_b in [((2, 3), (3, 4)), ((5, 1), (1, 2)), ((7, 13), (13, 3)),
                             ((0, 3), (3, 2)), ((2, 3), (3, 4))]:
        a, b = random_array(rng, shape_a, "float64"), random_array(rng, shape_b, "float64")
        assert_matches_numpy(mc.einsum("ij,jk->ik", a, b), np.einsum("ij,jk->ik", a, b), shape_a[1])


def test_same_spec_ellipsis_with_different_batch_ranks() -> None:
    """'...' stands for 0, 1 or 2 dims: each is a different kernel for the same spec."""
    rng = np.random.default_rng(4)
    for batch in [(), (3,), (2, 3), (3,)]:
        a = random_array(rng, batch + (2, 4), "int32")
        b = random_array(rng, batch + (4, 5), "int32")
        spec = "...ij,...jk->...ik"
        assert_matches_numpy(mc.einsum(spec, a, b), np.einsum(spec, a, b))


def test_same_spec_and_shapes_different_dtypes() -> None:
    """The dtype is part of the cache key."""
    rng = np.random.default_rng(5)
    for dtype in ["float32", "int64", "float64", "int32", "float32"]:
        a, b = random_array(rng, (4, 3), dtype), random_array(rng, (3, 2), dtype)
        assert_matches_numpy(mc.einsum("ij,jk->ik", a, b), np.einsum("ij,jk->ik", a, b), 3)


def test_same_spec_and_shapes_different_layouts() -> None:
    """Arrays with equal shapes but different strides must not share a wrong kernel."""
    rng = np.random.default_rng(6)
    for layout in ["C", "T", "F", "strided", "reversed", "broadcast", "C"]:
        a = make_operand(rng, (5, 4), "float64", layout)
        b = make_operand(rng, (4, 3), "float64", layout)
        assert_matches_numpy(mc.einsum("ij,jk->ik", a, b), np.einsum("ij,jk->ik", a, b), 4)


def test_different_specs_on_same_operand_shape() -> None:
    """The spec is part of the cache key, including the implicit/explicit form."""
    rng = np.random.default_rng(7)
    a = random_array(rng, (4, 4), "float32")
    for spec in ["ij->ij", "ij->ji", "ii->i", "ij->", "ij->i", "ij", "ji", "ii", "ij->j"]:
        assert_matches_numpy(mc.einsum(spec, a), np.einsum(spec, a), 4)


def test_implicit_and_explicit_forms_agree() -> None:
    rng = np.random.default_rng(8)
    a, b = random_array(rng, (3, 4), "int64"), random_array(rng, (4, 5), "int64")
    np.testing.assert_array_equal(mc.einsum("ij,jk", a, b), mc.einsum("ij,jk->ik", a, b))


@pytest.mark.parametrize("optimize", [False, True, "greedy", "optimal"])
def test_optimize_argument_is_accepted(optimize: Any) -> None:
    rng = np.random.default_rng(9)
    ops = [random_array(rng, s, "float64") for s in [(3, 4), (4, 5), (5, 2)]]
    result = mc.einsum("ij,jk,kl->il", *ops, optimize=optimize)
    assert_matches_numpy(result, np.einsum("ij,jk,kl->il", *ops), 20)


# ---------------------------------------------------------------------------
# 4. Operands are read, never written
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec, shapes, layout", [
    ("ij,jk->ik", ((4, 5), (5, 3)), "C"),
    ("ij,jk->ik", ((4, 5), (5, 3)), "T"),
    ("ij->ij", ((3, 4),), "C"),
    ("ii->i", ((5, 5),), "C"),
    ("ij->", ((3, 4),), "strided"),
    ("...ij,...jk->...ik", ((2, 3, 4), (4, 2)), "F"),
    ("i,i,i->i", ((6,), (6,), (6,)), "reversed"),
])
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_inputs_are_not_modified(spec: str, shapes: tuple[Shape, ...], layout: str, dtype: str) -> None:
    rng = np.random.default_rng(10)
    operands = [make_operand(rng, s, dtype, layout) for s in shapes]
    before = [op.copy() for op in operands]
    mc.einsum(spec, *operands)
    for op, original in zip(operands, before):
        np.testing.assert_array_equal(op, original)


def test_read_only_inputs_are_accepted() -> None:
    rng = np.random.default_rng(11)
    a, b = random_array(rng, (3, 4), "float64"), random_array(rng, (4, 2), "float64")
    a.setflags(write=False)
    b.setflags(write=False)
    assert_matches_numpy(mc.einsum("ij,jk->ik", a, b), np.einsum("ij,jk->ik", a, b), 4)


# ---------------------------------------------------------------------------
# 5. The symbolic API: placeholder -> einsum -> build
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec, shapes, dtypes", [
    ("ij,jk->ik", ((3, 4), (4, 5)), ("float32", "float32")),
    ("ij,jk", ((2, 7), (7, 3)), ("float64", "float64")),
    ("ii->i", ((5, 5),), ("int32",)),
    ("ij->ji", ((3, 6),), ("int64",)),
    ("bij,bjk->bik", ((2, 3, 4), (2, 4, 5)), ("float32", "float32")),
    ("...ij,...jk->...ik", ((2, 3, 4), (4, 5)), ("float64", "float64")),
    ("ij,jk,kl->il", ((2, 3), (3, 4), (4, 2)), ("float32", "float32", "float32")),
    ("i,i->", ((9,), (9,)), ("float32", "float32")),
    ("ij,jk->ik", ((3, 4), (4, 5)), ("int32", "float32")),   # promotes to float64
    ("ij,jk->ik", ((3, 4), (4, 5)), ("int32", "int64")),     # promotes to int64
])
def test_symbolic_einsum_build_and_run(spec: str, shapes: tuple[Shape, ...], dtypes: tuple[str, ...]) -> None:
    placeholders = [mc.placeholder(s, dtype=dt, name=f"in{k}") for k, (s, dt) in enumerate(zip(shapes, dtypes))]
    out = mc.einsum(spec, *placeholders)

    rng = np.random.default_rng(12)
    arrays = [random_array(rng, s, dt) for s, dt in zip(shapes, dtypes)]
    expected = np.einsum(spec, *arrays)
    assert tuple(out.shape) == expected.shape
    assert out.dtype == expected.dtype.name

    result = np.asarray(mc.build(out)(*arrays))  # a 0-d result may come back as 0-d array or scalar
    assert result.shape == expected.shape
    assert result.dtype == expected.dtype
    assert_values_close(result, expected, terms_per_output(spec, shapes))


def test_placeholder_default_dtype_is_float32() -> None:
    a = mc.placeholder((2, 3))
    out = mc.einsum("ij->ji", a)
    assert tuple(out.shape) == (3, 2)
    assert out.dtype == "float32"


def test_build_with_explicit_input_order() -> None:
    """``inputs=`` fixes the kernel's argument order, independent of creation order."""
    A = mc.placeholder((3, 4), "float32", name="A")
    B = mc.placeholder((4, 5), "float32", name="B")
    C = mc.einsum("ij,jk->ik", A, B)
    rng = np.random.default_rng(13)
    a, b = random_array(rng, (3, 4), "float32"), random_array(rng, (4, 5), "float32")

    np.testing.assert_allclose(mc.build(C)(a, b), a @ b, rtol=1e-4, atol=4e-4)
    np.testing.assert_allclose(mc.build(C, inputs=[A, B])(a, b), a @ b, rtol=1e-4, atol=4e-4)
    np.testing.assert_allclose(mc.build(C, inputs=[B, A])(b, a), a @ b, rtol=1e-4, atol=4e-4)


def test_default_input_order_is_creation_order() -> None:
    """Operands passed to einsum in the opposite order to their creation."""
    A = mc.placeholder((4, 5), "float64", name="A")  # created first
    B = mc.placeholder((3, 4), "float64", name="B")
    C = mc.einsum("ij,jk->ik", B, A)                  # B @ A
    rng = np.random.default_rng(14)
    a, b = random_array(rng, (4, 5), "float64"), random_array(rng, (3, 4), "float64")
    np.testing.assert_allclose(mc.build(C)(a, b), b @ a, rtol=1e-10, atol=1e-12)


def test_built_kernel_can_be_called_repeatedly() -> None:
    A = mc.placeholder((6,), "int32")
    B = mc.placeholder((6,), "int32")
    kernel = mc.build(mc.einsum("i,j->ij", A, B))
    rng = np.random.default_rng(15)
    for _ in range(3):
        a, b = random_array(rng, (6,), "int32"), random_array(rng, (6,), "int32")
        np.testing.assert_array_equal(kernel(a, b), np.outer(a, b))


@pytest.mark.parametrize("order", ["placeholder_first", "array_first"])
def test_mixing_placeholders_and_arrays_is_a_type_error(order: str) -> None:
    A = mc.placeholder((3, 4), "float32")
    b = np.ones((4, 5), dtype=np.float32)
    with pytest.raises(TypeError):
        if order == "placeholder_first":
            mc.einsum("ij,jk->ik", A, b)
        else:
            mc.einsum("jk,ij->ik", b, A)


@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk->ik", ((3, 4), (5, 6))),   # j: 4 vs 5
    ("ii->i", ((3, 4),)),              # diagonal of a non-square operand
    ("ijk", ((3, 4),)),                # 3 labels for a 2-d operand
    ("ij->ik", ((3, 4),)),             # output label k never appears in an input
])
def test_symbolic_errors_are_value_errors(spec: str, shapes: tuple[Shape, ...]) -> None:
    placeholders = [mc.placeholder(s, "float32") for s in shapes]
    with pytest.raises(ValueError):
        mc.einsum(spec, *placeholders)


# ---------------------------------------------------------------------------
# 6. Error handling
# ---------------------------------------------------------------------------

# Loose message keywords.  Each one also matches numpy's own message for the same
# call, so the test asks only for what numpy's wording already conveys.
SUBSCRIPTS = "(?i)subscript"
OPERAND = "(?i)operand"
OUTPUT = "(?i)output"
MISMATCH = "(?i)broadcast|collaps|dimension|shape|match"

# (id, spec, operand shapes, message keyword).  numpy raises ValueError for each; so must minicompiler.
INVALID_CALLS: list[tuple[str, str, tuple[Shape, ...], str]] = [
    # malformed subscripts
    ("two-arrows", "ij,jk->ik->", ((2, 3), (3, 4)), SUBSCRIPTS),
    ("dollar-sign", "i$j", ((2, 3),), SUBSCRIPTS),
    ("digit-label", "i1", ((2, 3),), SUBSCRIPTS),
    ("greater-than-without-dash", "ij>ij", ((2, 3),), SUBSCRIPTS),
    ("dash-without-greater-than", "ij-ij", ((2, 3),), SUBSCRIPTS),
    ("two-ellipses-in-operand", "...i...", ((2, 3),), SUBSCRIPTS),
    ("two-dots", "..ij", ((2, 3),), SUBSCRIPTS),
    ("stray-dot-in-output", "ij->i.", ((2, 3),), SUBSCRIPTS),
    # operand count
    ("too-few-operands", "ij,jk->ik", ((2, 3),), OPERAND),
    ("too-many-operands", "ij->ij", ((2, 3), (2, 3)), OPERAND),
    ("no-operands", "ij->", (), OPERAND),
    # subscript count vs ndim
    ("too-many-subscripts", "ijk", ((2, 3),), SUBSCRIPTS),
    ("too-few-subscripts", "i", ((2, 3),), SUBSCRIPTS),
    ("subscripts-for-0d", "i", ((),), SUBSCRIPTS),
    ("ellipsis-needs-more-dims", "...ij->ij", ((3,),), SUBSCRIPTS),
    ("empty-subscripts-for-2d", "->", ((2, 3),), SUBSCRIPTS),
    # output
    ("output-label-not-in-inputs", "ij->k", ((2, 3),), OUTPUT),
    ("repeated-output-label", "ij->ii", ((3, 3),), OUTPUT),
    ("ellipsis-dims-missing-from-output", "...i->", ((2, 3),), OUTPUT),
    # shape mismatches numpy rejects
    ("matmul-inner-mismatch", "ij,jk->ik", ((2, 3), (4, 5)), MISMATCH),
    ("implicit-matmul-mismatch", "ij,jk", ((2, 3), (4, 5)), MISMATCH),
    ("dot-length-mismatch", "i,i->", ((3,), (4,)), MISMATCH),
    ("hadamard-mismatch", "ij,ij->ij", ((2, 3), (3, 2)), MISMATCH),
    ("diagonal-non-square", "ii->i", ((2, 3),), MISMATCH),
    ("trace-non-square", "ii", ((2, 3),), MISMATCH),
    ("diagonal-size-1-is-not-broadcast", "ii->i", ((1, 3),), MISMATCH),
    ("ellipsis-batch-mismatch", "...ij,...jk->...ik", ((2, 3, 3), (4, 3, 3)), MISMATCH),
    ("three-operand-mismatch", "ij,jk,kl->il", ((2, 3), (3, 4), (5, 2)), MISMATCH),
]


@pytest.mark.parametrize("spec, shapes, keyword", [call[1:] for call in INVALID_CALLS],
                         ids=[call[0] for call in INVALID_CALLS])
def test_invalid_calls_raise_value_error_like_numpy(spec: str, shapes: tuple[Shape, ...], keyword: str) -> None:
    operands = [np.ones(s, dtype=np.float64) for s in shapes]
    with pytest.raises(ValueError, match=keyword):  # numpy's behaviour is the contract
        np.einsum(spec, *operands)
    with pytest.raises(ValueError, match=keyword):
        mc.einsum(spec, *operands)


def unsupported_array(dtype: Any, shape: Shape = (3,)) -> np.ndarray:
    return np.ones(shape, dtype=dtype)


UNSUPPORTED_DTYPES = [np.bool_, np.float16, np.complex64, np.uint8, object, np.int8, np.uint64]


@pytest.mark.parametrize("dtype", UNSUPPORTED_DTYPES, ids=[np.dtype(d).name for d in UNSUPPORTED_DTYPES])
def test_unsupported_dtype_raises_type_error(dtype: Any) -> None:
    with pytest.raises(TypeError, match="(?i)dtype|type"):
        mc.einsum("i->i", unsupported_array(dtype))


@pytest.mark.parametrize("dtype", UNSUPPORTED_DTYPES, ids=[np.dtype(d).name for d in UNSUPPORTED_DTYPES])
def test_unsupported_dtype_in_second_operand_raises_type_error(dtype: Any) -> None:
    good = np.ones(3, dtype=np.float32)
    with pytest.raises(TypeError, match="(?i)dtype|type"):
        mc.einsum("i,i->", good, unsupported_array(dtype))


def test_calls_after_errors_still_work() -> None:
    """A failed call must leave the compiler (and its cache) in a usable state."""
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    for spec, shapes in [("ij,jk->ik", ((2, 3), (4, 5))), ("i$j", ((2, 3),))]:
        with pytest.raises(ValueError):
            mc.einsum(spec, *[np.ones(s) for s in shapes])
    with pytest.raises(TypeError):
        mc.einsum("ij->ji", a.astype(np.float16))
    assert_matches_numpy(mc.einsum("ij->ji", a), np.einsum("ij->ji", a))
