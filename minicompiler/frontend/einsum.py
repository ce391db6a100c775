"""einsum: numpy's Einstein-summation notation, symbolic on placeholders, compiled on arrays.

On placeholders, ``einsum("ik,kj->ij", A, B)`` returns the tensor
``compute((M, N), lambda i, j: sum(A[i, k] * B[k, j], axis=k))``.
On numpy arrays it builds that tensor from the arrays' shapes and dtypes, compiles it
once per signature, and calls the kernel: a drop-in for ``numpy.einsum``.

Array layouts are handled before the kernel sees them: a transposed array is passed
as its contiguous base with its labels permuted (no copy), a broadcast (stride-0)
dimension is passed as size 1, and anything else is copied to C order.
"""
from __future__ import annotations

import string
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..dtypes import TENSOR_DTYPES, check_tensor_dtype
from ..ir.expr import Expr, cast
from ..ir.tensor import Tensor
from .compute import compute, placeholder, reduce_axis
from .compute import sum as reduce_sum

Labels = tuple[str, ...]
_LETTERS = set(string.ascii_letters)


@dataclass(frozen=True)
class EinsumSpec:
    """A parsed einsum: labels of each operand's dimensions, of the output, and each label's size.

    Dimensions covered by ``...`` get labels ``e0``, ``e1``… (right-aligned across operands).
    """

    inputs: tuple[Labels, ...]
    output: Labels
    sizes: tuple[tuple[str, int], ...]

    def size(self, label: str) -> int:
        return dict(self.sizes)[label]


def _tokens(term: str, where: str) -> list[str]:
    """Split a term into letters and '...'; reject anything else."""
    tokens: list[str] = []
    i = 0
    while i < len(term):
        if term.startswith("...", i):
            if "..." in tokens:
                raise ValueError(f"einsum subscripts: {where} has more than one '...'")
            tokens.append("...")
            i += 3
        elif term[i] in _LETTERS:
            tokens.append(term[i])
            i += 1
        elif term[i] == ".":
            raise ValueError(f"einsum subscripts: {where} has a '.' that is not part of '...'")
        else:
            raise ValueError(f"einsum subscripts: invalid character {term[i]!r} in {where}; "
                             f"use letters a-z, A-Z and '...'")
    return tokens


def parse_einsum(subscripts: str, shapes: Sequence[tuple[int, ...]]) -> EinsumSpec:
    if not isinstance(subscripts, str):
        raise TypeError("einsum subscripts must be a string such as 'ik,kj->ij'")
    text = subscripts.replace(" ", "")
    if text.count("->") > 1:
        raise ValueError("einsum subscripts: '->' may appear only once")
    lhs, arrow, rhs = text.partition("->")
    if "-" in lhs + rhs or ">" in lhs + rhs:
        raise ValueError("einsum subscripts: '-' and '>' may only appear together as '->'")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum subscripts name {len(terms)} operand(s) but {len(shapes)} were given")
    if arrow and "," in rhs:
        raise ValueError("einsum subscripts: the output (after '->') is a single term, without ','")

    token_lists = [_tokens(term, f"operand {n}") for n, term in enumerate(terms)]
    widths = []
    for n, (tokens, shape) in enumerate(zip(token_lists, shapes)):
        letters = len([t for t in tokens if t != "..."])
        if "..." in tokens:
            if letters > len(shape):
                raise ValueError(f"einsum: operand {n} has {len(shape)} dimension(s) but its subscripts "
                                 f"{terms[n]!r} name {letters}")
            widths.append(len(shape) - letters)
        else:
            if letters != len(shape):
                raise ValueError(f"einsum: operand {n} has {len(shape)} dimension(s) but its subscripts "
                                 f"{terms[n]!r} name {letters}")
            widths.append(0)
    broadcast_width = max(widths, default=0)

    inputs: list[Labels] = []
    for tokens, width in zip(token_lists, widths):
        labels: list[str] = []
        for t in tokens:
            labels.extend([f"e{broadcast_width - width + d}" for d in range(width)] if t == "..." else [t])
        inputs.append(tuple(labels))
    ellipsis_labels = tuple(f"e{d}" for d in range(broadcast_width))

    sizes: dict[str, int] = {}
    for n, (labels, shape) in enumerate(zip(inputs, shapes)):
        own: dict[str, int] = {}
        for label, extent in zip(labels, shape):
            if label in own and own[label] != extent:
                raise ValueError(f"einsum: dimensions in operand {n} for collapsing index {label!r} "
                                 f"don't match ({own[label]} != {extent})")
            own[label] = extent
        for label, extent in own.items():
            known = sizes.get(label)
            if known is None or known == 1:
                sizes[label] = extent
            elif extent not in (1, known):
                raise ValueError(f"einsum: operands could not be broadcast together: label {label!r} "
                                 f"has size {known} in one operand and {extent} in operand {n}")

    if arrow:
        out_tokens = _tokens(rhs, "the output")
        output: list[str] = []
        for t in out_tokens:
            output.extend(ellipsis_labels if t == "..." else [t])
        if "..." not in out_tokens and broadcast_width > 0:
            raise ValueError("einsum: output has fewer dimensions than the broadcast '...' of the "
                             "operands; add '...' to the output")
        for label in output:
            if label not in sizes and len(label) == 1:
                raise ValueError(f"einsum: output subscript {label!r} does not appear in any operand")
        if len(set(output)) != len(output):
            raise ValueError(f"einsum: output subscript {rhs!r} repeats a label")
    else:
        counts: dict[str, int] = {}
        for labels in inputs:
            for label in labels:
                if len(label) == 1:
                    counts[label] = counts.get(label, 0) + 1
        output = list(ellipsis_labels) + sorted((l for l, c in counts.items() if c == 1), key=ord)
    return EinsumSpec(tuple(inputs), tuple(output), tuple(sorted(sizes.items())))


def einsum_tensor(spec: EinsumSpec, operands: Sequence[Tensor], dtype: str, name: str = "out") -> Tensor:
    """The tensor ``spec`` defines over ``operands`` (placeholders or computed tensors)."""
    sizes = dict(spec.sizes)
    seen: list[str] = []
    for labels in spec.inputs:
        seen.extend(l for l in labels if l not in seen)
    reduced = {l: reduce_axis(sizes[l], name=l) for l in seen if l not in spec.output}

    def body(*out_vars: Expr) -> Expr:
        var: dict[str, Expr] = dict(zip(spec.output, out_vars))
        var.update(reduced)
        product: Optional[Expr] = None
        for tensor, labels in zip(operands, spec.inputs):
            # A size-1 dimension facing a larger label size is broadcast: read index 0.
            index = tuple(0 if tensor.shape[d] == 1 and sizes[l] != 1 else var[l] for d, l in enumerate(labels))
            term = cast(tensor[index], dtype)
            product = term if product is None else product * term
        assert product is not None
        return reduce_sum(product, axis=tuple(reduced.values())) if reduced else product

    shape = tuple(sizes[l] for l in spec.output)
    return compute(shape, body, name=name, axis_names=list(spec.output))


def einsum_program(spec: EinsumSpec, shapes: Sequence[tuple[int, ...]], dtypes: Sequence[str],
                   result_dtype: str) -> tuple[Tensor, list[Tensor]]:
    """The tensor program an einsum call on arrays runs: operands ``A``, ``B``… and the output.

    The command line's ``tune`` builds its program here too, so what it tunes is found again
    (by the program's structural key) when ``einsum`` meets arrays of the same signature.
    """
    names = [chr(ord("A") + n) if n < 26 else f"X{n}" for n in range(len(shapes))]
    holders = [placeholder(s, d, name=n) for s, d, n in zip(shapes, dtypes, names)]
    return einsum_tensor(spec, holders, result_dtype), holders


def _tuned_or_default(tensor: Tensor, holders: list[Tensor]) -> Any:
    """The schedule einsum compiles: the best one in the tuning database for this program,
    target and thread count; else the heuristic proposer's greedy schedule (no search); else
    the plain loop nest."""
    from ..target import Target
    try:
        from search.proposer import greedy_schedule
        from search.tune import best_schedule
        from ..runtime.threads import get_num_threads
        tuned = best_schedule(tensor, threads=get_num_threads(), inputs=holders)
        if tuned is not None:
            return tuned
        from ..schedule import Schedule
        return greedy_schedule(Schedule(tensor, holders), Target.host())
    except Exception:  # noqa: BLE001 - a bad database or heuristic must never break einsum: fall back
        return tensor


# ------------------------------------------------------------------------------------------ arrays

Prepare = Optional[Callable[[np.ndarray], np.ndarray]]


def _prepare(array: np.ndarray, labels: Labels) -> tuple[Prepare, Labels, tuple[int, ...]]:
    """How to hand ``array`` to a kernel without copying where its layout allows.

    Returns a function turning the array into a C-contiguous one (None: it already is),
    the labels of that array's dimensions, and its shape.
    """
    if not array.dtype.isnative:  # byte-swapped data: the kernel reads native numbers only
        native = array.dtype.newbyteorder("=")
        return (lambda a: np.ascontiguousarray(a, dtype=native)), labels, array.shape
    broadcast_dims = tuple(d for d in range(array.ndim) if array.strides[d] == 0 and array.shape[d] > 1)
    collapse = tuple(slice(0, 1) if d in broadcast_dims else slice(None) for d in range(array.ndim))
    view = array[collapse] if broadcast_dims else array
    if view.flags.c_contiguous and view.flags.aligned:
        return (lambda a: a[collapse]) if broadcast_dims else None, labels, view.shape
    perm = tuple(sorted(range(view.ndim), key=lambda d: (-abs(view.strides[d]) if view.shape[d] > 1 else 0, d)))
    permuted = view.transpose(perm)
    if permuted.flags.c_contiguous and permuted.flags.aligned:
        return (lambda a: a[collapse].transpose(perm)), tuple(labels[d] for d in perm), permuted.shape
    return (lambda a: np.ascontiguousarray(a[collapse])), labels, view.shape


@dataclass
class _Plan:
    prepare: list[Prepare]
    kernel: Any
    scalar: bool


_plans: dict[tuple, _Plan] = {}
_kernels: dict[tuple, Any] = {}
_lock = threading.Lock()


def _make_plan(subscripts: str, arrays: list[np.ndarray], dtype: str) -> _Plan:
    from ..lower import build
    spec = parse_einsum(subscripts, [a.shape for a in arrays])
    prepared = [_prepare(a, labels) for a, labels in zip(arrays, spec.inputs)]
    inputs = tuple(labels for _, labels, _ in prepared)
    shapes = tuple(shape for _, _, shape in prepared)
    kernel_key = (inputs, spec.output, spec.sizes, shapes, tuple(a.dtype.name for a in arrays), dtype)
    with _lock:
        kernel = _kernels.get(kernel_key)
    if kernel is None:
        tensor, holders = einsum_program(EinsumSpec(inputs, spec.output, spec.sizes), shapes,
                                         [a.dtype.name for a in arrays], dtype)
        kernel = build(_tuned_or_default(tensor, holders), inputs=holders)
        with _lock:
            _kernels[kernel_key] = kernel
    return _Plan([p for p, _, _ in prepared], kernel, scalar=len(spec.output) == 0)


def einsum(subscripts: str, *operands: Union[Tensor, np.ndarray, Any], out: Optional[np.ndarray] = None,
           dtype: Any = None, optimize: Any = False) -> Any:
    """Einstein summation, like ``numpy.einsum``.

    On placeholders/tensors: returns the symbolic result tensor. On arrays: computes it
    with a compiled kernel (cached per signature) and returns a numpy array (a numpy
    scalar for a 0-d result). ``optimize`` is accepted for compatibility and ignored:
    the whole expression becomes one fused loop nest.
    """
    if not operands:
        raise ValueError("einsum needs at least one operand")
    symbolic = [isinstance(o, Tensor) for o in operands]
    if any(symbolic):
        if not all(symbolic):
            raise TypeError("einsum: do not mix placeholders and arrays; make every operand a placeholder "
                            "(symbolic) or every operand an array (computed now)")
        spec = parse_einsum(subscripts, [o.shape for o in operands])
        result_dtype = check_tensor_dtype(dtype) if dtype is not None else \
            np.result_type(*[o.dtype for o in operands]).name
        return einsum_tensor(spec, operands, result_dtype)  # type: ignore[arg-type]

    arrays = [o if isinstance(o, np.ndarray) else np.asarray(o) for o in operands]
    key = (subscripts, dtype, tuple((a.shape, a.strides, a.dtype.str, a.flags.aligned) for a in arrays))
    plan = _plans.get(key)
    if plan is None:
        for n, a in enumerate(arrays):
            if a.dtype.name not in TENSOR_DTYPES:
                raise TypeError(f"einsum: operand {n} has unsupported dtype {a.dtype}; "
                                f"minicompiler supports {', '.join(TENSOR_DTYPES)}")
        result_dtype = check_tensor_dtype(dtype) if dtype is not None else np.result_type(*arrays).name
        plan = _make_plan(subscripts, arrays, result_dtype)
        with _lock:
            _plans[key] = plan
    inputs = [a if prepare is None else prepare(a) for prepare, a in zip(plan.prepare, arrays)]
    result = np.empty(plan.kernel.output_shape, plan.kernel.output_dtype)
    plan.kernel.run_unchecked(inputs, result)
    if out is not None:
        np.copyto(out, result, casting="same_kind")
        return out
    return result[()] if plan.scalar else result
