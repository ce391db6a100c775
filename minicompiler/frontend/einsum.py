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

import operator
import string
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

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
    """Split a term into letters and '...'; reject anything else.

    Spaces are skipped, as numpy skips them, but not inside '...': numpy rejects '. . .'.
    """
    tokens: list[str] = []
    i = 0
    while i < len(term):
        if term[i] == " ":
            i += 1
        elif term.startswith("...", i):
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
    # Spaces are not stripped here: '- >' is no arrow to numpy (nor '. . .' an ellipsis).
    if subscripts.count("->") > 1:
        raise ValueError("einsum subscripts: '->' may appear only once")
    lhs, arrow, rhs = subscripts.partition("->")
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
    """The schedule einsum compiles: what the registered schedule sources offer (with the
    auto-scheduler installed: the tuning database's best for this program, target and thread
    count, else the heuristic's greedy schedule), else the plain loop nest."""
    from ..schedule.sources import find_schedule
    return find_schedule(tensor, holders) or tensor


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
    shape: tuple[int, ...]  # the result's shape, which an ``out=`` array must have exactly
    scalar: bool
    fortran: bool  # order='F' (or 'A' on Fortran-ordered operands): return a Fortran-ordered result


_plans: dict[tuple, _Plan] = {}
_kernels: dict[tuple, Any] = {}
_lock = threading.Lock()


def _make_plan(spec: EinsumSpec, arrays: list[np.ndarray], dtype: str, fortran: bool) -> _Plan:
    from ..lower import build
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
    shape = tuple(spec.size(l) for l in spec.output)
    return _Plan([p for p, _, _ in prepared], kernel, shape, scalar=not shape, fortran=fortran)


# ----------------------------------------------------------------------- numpy's keyword arguments

_CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")
# numpy's sublist form names labels 0..51: 0-25 are 'A'-'Z', 26-51 are 'a'-'z'.
_SUBLIST_LETTERS = string.ascii_uppercase + string.ascii_lowercase


def _keyword_string(value: Any, name: str) -> str:
    """``casting=``/``order=`` as numpy reads them: a str or bytes, else TypeError."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        raise TypeError(f"einsum: {name} must be str, not {type(value).__name__}")
    return value


def _check_casting(casting: Any) -> str:
    text = _keyword_string(casting, "casting")
    if text not in _CASTINGS:
        raise ValueError(f"einsum: casting must be one of {', '.join(map(repr, _CASTINGS))} (got {casting!r})")
    return text


def _check_order(order: Any) -> str:
    """numpy's order converter: None means the default 'K'; one letter of CFAK, either case."""
    if order is None:
        return "K"
    text = _keyword_string(order, "order").upper()
    if len(text) != 1 or text not in "CFAK":
        raise ValueError(f"einsum: order must be one of 'C', 'F', 'A', or 'K' (got {order!r})")
    return text


def _result_dtype(dtypes: Sequence[Any], dtype: Any, out_dtype: Optional[np.dtype], casting: str) -> str:
    """The dtype einsum computes in, checked against ``casting`` the way numpy checks it.

    numpy computes in ``dtype`` if given, else in the common type of the operands *and* of
    ``out`` (so a float64 ``out`` makes float32 operands sum in float64), and requires each
    operand to cast to it, and it to cast to ``out``, under the ``casting`` rule.
    """
    if dtype is not None:
        work = np.dtype(dtype)
    else:
        work = np.result_type(*dtypes, *([] if out_dtype is None else [out_dtype]))
    for n, operand_dtype in enumerate(dtypes):
        if not np.can_cast(operand_dtype, work, casting):
            raise TypeError(f"einsum: cannot cast operand {n} from dtype {np.dtype(operand_dtype)} to "
                            f"{work} according to the rule {casting!r}")
    if out_dtype is not None and not np.can_cast(work, out_dtype, casting):
        raise TypeError(f"einsum: cannot cast the result from dtype {work} to out's dtype {out_dtype} "
                        f"according to the rule {casting!r}")
    return check_tensor_dtype(work)


def _sublist_subscripts(sublist: Any) -> str:
    """One sublist of numpy's interleaved form (``einsum(a, [0, 1], b, [1, 2], [0, 2])``) as letters."""
    try:
        items = list(sublist)
    except TypeError:
        raise TypeError("einsum: the subscripts for each operand must be a list or a tuple") from None
    text = ""
    for item in items:
        if item is Ellipsis:
            text += "..."
            continue
        try:  # ints and numpy integers; numpy refuses bools, so do we
            label = None if isinstance(item, (bool, np.bool_)) else operator.index(item)
        except TypeError:
            label = None
        if label is None:
            raise TypeError(f"einsum: each subscript must be either an integer or an ellipsis, not {item!r}")
        if not 0 <= label < len(_SUBLIST_LETTERS):
            raise ValueError(f"einsum: subscript {label} is not within the valid range [0, 52)")
        text += _SUBLIST_LETTERS[label]
    return text


def _subscripts_and_operands(args: tuple) -> tuple[str, tuple]:
    """Either of numpy's call forms as (subscripts string, operands).

    ``einsum("ij,jk->ik", a, b)`` (str or bytes subscripts) or the interleaved
    ``einsum(a, [0, 1], b, [1, 2], [0, 2])``, whose optional last sublist is the output.
    """
    if not args:
        raise ValueError("einsum: give the subscripts and at least one operand, "
                         "or at least one operand and its subscripts list")
    if isinstance(args[0], str):
        return args[0], args[1:]
    if isinstance(args[0], bytes):
        return args[0].decode("ascii"), args[1:]
    pairs = len(args) // 2
    if pairs == 0:
        raise ValueError("einsum: give at least one operand and its subscripts list")
    terms = ",".join(_sublist_subscripts(args[2 * n + 1]) for n in range(pairs))
    if len(args) % 2:
        terms += "->" + _sublist_subscripts(args[-1])
    return terms, tuple(args[0:2 * pairs:2])


# ------------------------------------------------------------------------------------------ einsum

def einsum(*operands: Any, out: Optional[np.ndarray] = None, dtype: Any = None, order: Any = "K",
           casting: Any = "safe", optimize: Any = False) -> Any:
    """Einstein summation, like ``numpy.einsum``: ``einsum(subscripts, *operands)`` or
    numpy's interleaved ``einsum(a, [0, 1], b, [1, 2], [0, 2])``.

    On placeholders/tensors: returns the symbolic result tensor. On arrays: computes it
    with a compiled kernel (cached per signature) and returns a numpy array (a numpy
    scalar for a 0-d result). ``dtype``, ``casting`` and ``out`` follow numpy's rules;
    ``order`` gives a C- or Fortran-ordered result ('K' gives C order). ``optimize`` is
    accepted for compatibility and ignored: the whole expression becomes one fused loop nest.
    """
    if operands and isinstance(operands[0], str):  # the common form, kept cheap
        subscripts, operands = operands[0], operands[1:]
    else:
        subscripts, operands = _subscripts_and_operands(operands)
    if not operands:
        raise ValueError("einsum needs at least one operand")
    if out is not None and not isinstance(out, np.ndarray):
        raise TypeError(f"einsum: out must be a numpy array, not {type(out).__name__}")
    symbolic = [isinstance(o, Tensor) for o in operands]
    if any(symbolic):
        if not all(symbolic):
            raise TypeError("einsum: do not mix placeholders and arrays; make every operand a placeholder "
                            "(symbolic) or every operand an array (computed now)")
        if out is not None:
            raise TypeError("einsum: out= needs array operands; on placeholders einsum returns a tensor")
        _check_order(order)
        spec = parse_einsum(subscripts, [o.shape for o in operands])
        result_dtype = _result_dtype([o.dtype for o in operands], dtype, None, _check_casting(casting))
        return einsum_tensor(spec, operands, result_dtype)  # type: ignore[arg-type]

    arrays = [o if isinstance(o, np.ndarray) else np.asarray(o) for o in operands]
    key = (subscripts, dtype, casting, order, None if out is None else out.dtype.str,
           tuple((a.shape, a.strides, a.dtype.str, a.flags.aligned) for a in arrays))
    plan = _plans.get(key)
    if plan is None:
        plan = _new_plan(subscripts, arrays, out, dtype, order, casting)
        with _lock:
            _plans[key] = plan
    if out is not None and out.shape != plan.shape:
        raise ValueError(f"einsum: out has shape {out.shape} but the result has shape {plan.shape}")
    inputs = [a if prepare is None else prepare(a) for prepare, a in zip(plan.prepare, arrays)]
    result = np.empty(plan.kernel.output_shape, plan.kernel.output_dtype)
    plan.kernel.run_unchecked(inputs, result)
    if out is not None:
        np.copyto(out, result, casting="unsafe")  # the casting rule was checked when planning
        return out
    if plan.fortran:
        return np.asfortranarray(result)
    return result[()] if plan.scalar else result


def _new_plan(subscripts: str, arrays: list[np.ndarray], out: Optional[np.ndarray], dtype: Any,
              order: Any, casting: Any) -> _Plan:
    """Check a new call signature in numpy's order (keywords, subscripts, out's shape, casting,
    so a call with several faults raises numpy's exception class) and compile its plan."""
    casting, order = _check_casting(casting), _check_order(order)
    spec = parse_einsum(subscripts, [a.shape for a in arrays])
    shape = tuple(spec.size(l) for l in spec.output)
    if out is not None and out.shape != shape:
        raise ValueError(f"einsum: out has shape {out.shape} but the result has shape {shape}")
    result_dtype = _result_dtype([a.dtype for a in arrays], dtype, None if out is None else out.dtype, casting)
    for n, a in enumerate(arrays):
        if a.dtype.name not in TENSOR_DTYPES:
            raise TypeError(f"einsum: operand {n} has unsupported dtype {a.dtype}; "
                            f"minicompiler supports {', '.join(TENSOR_DTYPES)}")
    # numpy's 'A' is Fortran order when every operand is Fortran-contiguous.
    fortran = order == "F" or (order == "A" and all(a.flags.f_contiguous for a in arrays))
    return _make_plan(spec, arrays, result_dtype, fortran and len(shape) > 1)
