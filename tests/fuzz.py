#!/usr/bin/env python
"""A fuzzer for minicompiler: random programs x random schedules, each case in a child process.

    python tests/fuzz.py --cases 2000 --seed 0 [--jobs 1] [--out results.jsonl]
    python tests/fuzz.py --replay results.jsonl            # re-run every defect of a run (or a case JSON)

A *case* is plain JSON: a program (family + sizes), a seed for the inputs, and a list of step
recipes. Recipes are resolved against the schedule built so far, inside the worker:

  {"kind": "space", "r": R}              a legal next step drawn from search.space.Space
                                          (candidates shuffled by R, the first one that applies)
  {"kind": "real", "op": OP, "r": R}     OP with the program's real loop / tensor names and
                                          plausible numbers, combined at random (legal or not)
  {"kind": "mutate", "r": R, "how": ..}  a Space candidate with one argument replaced by a bad
                                          value, dropped, an extra argument, or a wrong op name
  {"kind": "concrete", ...}              a step given outright (garbage names, types, numbers)

Every step goes through the public API: ``Schedule.apply(Step.make(op, **args))`` or
``Schedule.apply(Step.from_json(obj))`` ("via": "make" / "json"). A step that is rejected
cleanly (ScheduleError / ValueError / TypeError with a message) leaves the schedule as it was and
the case continues with the next step, so one case checks several rejections and still builds.
Then ``mc.build`` and a run on random inputs, compared with an independent numpy reference.

Outcomes: "correct" (built, ran, matched), "rejected" (build refused cleanly), or a DEFECT:
  exception         any other exception type from Step.make / apply / build / run (stage says which)
  empty_message     a clean exception type with an empty message
  accepted_invalid  an ill-typed or out-of-range step (reorder order="ji", a bool factor, dim -1,
                    factor 0, an unknown argument...) was accepted
  wrong_result      output differs from the numpy reference (NaN included), or is left unwritten
  out_of_bounds     the kernel wrote outside its output array
  input_modified    the kernel wrote into an input
  nondeterministic  two calls gave different outputs
  trace_roundtrip   Schedule.from_json(to_json()) or exec(trace()) does not rebuild the schedule
  memory            MemoryError with no absurd number in the steps
  crash             the worker died (segfault, abort)
  timeout           the case ran past --timeout (a compile or run blow-up)

The worker is a fresh interpreter (``python tests/fuzz.py --worker``) talking JSON lines over
stdin/stdout, with RLIMIT_AS set; it is restarted after a crash or a timeout, and every few
hundred cases. Defects are shrunk (steps dropped, sizes reduced, while the defect stays the same)
and printed as standalone Python reproducers.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, Callable, Iterable, Iterator, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# ============================================================================ programs
# Each family: a parameter generator (rng -> dict) and a source template (dict -> Python text
# defining the placeholders, ``T`` the tensor to schedule, ``inputs`` the placeholders in creation
# order, and ``reference(*arrays)`` in plain numpy). The same text runs in the worker and is
# printed in reproducers.

SIZES = [1, 2, 3, 4, 5, 7, 8, 11, 13, 16, 17]
SIZE_WEIGHTS = [4, 4, 3, 2, 4, 5, 2, 3, 4, 2, 4]


BIG_SIZES = [24, 32, 33, 48, 64, 65, 100]


def _size(rng: random.Random, hi: int = 17, big: float = 0.04) -> int:
    """A size from SIZES up to ``hi`` (primes and ones weighted up), or with probability ``big`` a larger one
    (past the vector / unroll limits, scratch tensors past the stack limit)."""
    if big and rng.random() < big:
        return rng.choice(BIG_SIZES)
    pool = [(s, w) for s, w in zip(SIZES, SIZE_WEIGHTS) if s <= hi]
    return rng.choices([s for s, _ in pool], [w for _, w in pool])[0]


def _tup(*dims: int) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def _gen_matmul(rng: random.Random) -> dict:
    dtype = rng.choices(["float32", "float64", "int32"], [85, 8, 7])[0]
    return {"family": "matmul", "M": _size(rng, big=0.05), "N": _size(rng, big=0.05),
            "K": _size(rng, big=0.05), "dtype": dtype}


def _src_matmul(p: dict) -> str:
    M, N, K, dt = p["M"], p["N"], p["K"], p.get("dtype", "float32")
    return f'''A = mc.placeholder({_tup(M, K)}, dtype="{dt}", name="A")
B = mc.placeholder({_tup(K, N)}, dtype="{dt}", name="B")
k = mc.reduce_axis({K}, "k")
T = mc.compute({_tup(M, N)}, lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="C")
inputs = [A, B]


def reference(A, B):
    return A.astype(np.float64) @ B.astype(np.float64)
'''


def _gen_bmm(rng: random.Random) -> dict:
    return {"family": "bmm", "Bt": rng.choice([1, 2, 3]), "M": _size(rng, 13), "N": _size(rng, 13),
            "K": _size(rng, 13)}


def _src_bmm(p: dict) -> str:
    Bt, M, N, K = p["Bt"], p["M"], p["N"], p["K"]
    return f'''A = mc.placeholder({_tup(Bt, M, K)}, name="A")
B = mc.placeholder({_tup(Bt, K, N)}, name="B")
r = mc.reduce_axis({K}, "r")
T = mc.compute({_tup(Bt, M, N)}, lambda b, i, j: mc.sum(A[b, i, r] * B[b, r, j], axis=r), name="C")
inputs = [A, B]


def reference(A, B):
    return np.matmul(A.astype(np.float64), B.astype(np.float64))
'''


EINSUM_SPECS = ["ik,kj->ij", "bik,bkj->bij", "ij,ij->i", "i,j->ij", "ijk,kl->ijl", "ij,jk",
                "bij,bkj->bik", "ik,jk->ij", "ij->ji", "ij->j", "ii->i", "ij,jk,kl->il", "i,i->",
                "...ij,jk->...ik", "abc,cd->abd", "ijk->ki"]


def _einsum_shapes(spec: str, sizes: dict) -> list[tuple[int, ...]]:
    lhs = spec.split("->")[0]
    shapes = []
    for term in lhs.split(","):
        dims: list[int] = []
        if term.startswith("..."):
            dims += sizes["..."]
            term = term[3:]
        dims += [sizes[c] for c in term]
        shapes.append(tuple(dims))
    return shapes


def _gen_einsum(rng: random.Random) -> dict:
    spec = rng.choice(EINSUM_SPECS)
    hi = 7 if spec.count(",") >= 2 else 13
    letters = sorted({c for c in spec if c.isalpha()})
    sizes: dict[str, Any] = {c: _size(rng, hi, big=0.0 if hi == 7 or len(letters) > 3 else 0.04) for c in letters}
    if "..." in spec:
        sizes["..."] = [_size(rng, 5) for _ in range(rng.choice([1, 2]))]
    return {"family": "einsum", "spec": spec, "sizes": sizes}


def _src_einsum(p: dict) -> str:
    spec = p["spec"]
    shapes = _einsum_shapes(spec, p["sizes"])
    names = ["A", "B", "D"][:len(shapes)]
    lines = [f'{n} = mc.placeholder({_tup(*s)}, name="{n}")' for n, s in zip(names, shapes)]
    args = ", ".join(names)
    lines.append(f'T = mc.einsum("{spec}", {args})')
    lines.append(f"inputs = [{args}]")
    cast = ", ".join(f"{n}.astype(np.float64)" for n in names)
    return "\n".join(lines) + f'''


def reference({args}):
    return np.einsum("{spec}", {cast})
'''


def _gen_conv(rng: random.Random) -> dict:
    while True:
        p = {"family": "conv", "N": rng.choice([1, 1, 2]), "C": rng.choice([1, 2, 3]),
             "F": rng.choice([1, 2, 3, 4, 5]), "H": _size(rng, 13), "W": _size(rng, 13),
             "KH": rng.choice([1, 2, 3]), "KW": rng.choice([1, 2, 3]), "P": rng.choice([0, 1, 1, 2]),
             "S": rng.choice([1, 1, 2, 3]), "inline_pad": rng.random() < 0.3}
        if _conv_ok(p):
            return p


def _conv_ok(p: dict) -> bool:
    return p["H"] + 2 * p["P"] >= p["KH"] and p["W"] + 2 * p["P"] >= p["KW"] and min(
        p["N"], p["C"], p["F"], p["H"], p["W"], p["KH"], p["KW"], p["S"]) >= 1 and p["P"] >= 0


def _src_conv(p: dict) -> str:
    N, C, F, H, W, KH, KW, P, S = (p[k] for k in ("N", "C", "F", "H", "W", "KH", "KW", "P", "S"))
    OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1
    head = f'''X = mc.placeholder({_tup(N, C, H, W)}, name="X")
Wt = mc.placeholder({_tup(F, C, KH, KW)}, name="W")
rc, ry, rx = mc.reduce_axis({C}, "rc"), mc.reduce_axis({KH}, "ry"), mc.reduce_axis({KW}, "rx")
'''
    if p.get("inline_pad"):
        body = f'''

def window(b, f, y, x):
    yy, xx = y * {S} + ry, x * {S} + rx
    inside = (yy >= {P}) & (yy < {H + P}) & (xx >= {P}) & (xx < {W + P})
    return mc.sum(mc.where(inside, X[b, rc, yy - {P}, xx - {P}], 0.0) * Wt[f, rc, ry, rx], axis=(rc, ry, rx))


T = mc.compute({_tup(N, F, OH, OW)}, window, name="conv")
'''
    else:
        body = f'''

def padded(b, c, y, x):
    inside = (y >= {P}) & (y < {H + P}) & (x >= {P}) & (x < {W + P})
    return mc.where(inside, X[b, c, y - {P}, x - {P}], 0.0)


Xpad = mc.compute({_tup(N, C, H + 2 * P, W + 2 * P)}, padded, name="Xpad")
T = mc.compute({_tup(N, F, OH, OW)},
               lambda b, f, y, x: mc.sum(Xpad[b, rc, y * {S} + ry, x * {S} + rx] * Wt[f, rc, ry, rx],
                                         axis=(rc, ry, rx)), name="conv")
'''
    return head + body + f'''inputs = [X, Wt]


def reference(X, W):
    Xp = np.pad(X.astype(np.float64), ((0, 0), (0, 0), ({P}, {P}), ({P}, {P})))
    out = np.zeros({_tup(N, F, OH, OW)})
    for ky in range({KH}):
        for kx in range({KW}):
            patch = Xp[:, :, ky:ky + {S * (OH - 1) + 1}:{S}, kx:kx + {S * (OW - 1) + 1}:{S}]
            out += np.einsum("ncyx,fc->nfyx", patch, W[:, :, ky, kx].astype(np.float64))
    return out
'''


def _gen_softmax(rng: random.Random) -> dict:
    return {"family": "softmax", "N": _size(rng, big=0.12), "M": _size(rng, big=0.12)}


def _src_softmax(p: dict) -> str:
    N, M = p["N"], p["M"]
    return f'''X = mc.placeholder({_tup(N, M)}, name="X")
jm = mc.reduce_axis({M}, "jm")
m = mc.compute({_tup(N)}, lambda i: mc.max(X[i, jm], axis=jm), name="m")
E = mc.compute({_tup(N, M)}, lambda i, j: mc.exp(X[i, j] - m[i]), name="E")
jl = mc.reduce_axis({M}, "jl")
l = mc.compute({_tup(N)}, lambda i: mc.sum(E[i, jl], axis=jl), name="l")
T = mc.compute({_tup(N, M)}, lambda i, j: E[i, j] / l[i], name="Y")
inputs = [X]


def reference(X):
    X = X.astype(np.float64)
    e = np.exp(X - X.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
'''


def _gen_attention(rng: random.Random) -> dict:
    return {"family": "attention", "H": rng.choice([1, 1, 2]), "T": _size(rng, 13, big=0.15),
            "S": _size(rng, 13, big=0.15), "D": _size(rng, 8, big=0.05)}


def _src_attention(p: dict) -> str:
    H, Tq, S, D = p["H"], p["T"], p["S"], p["D"]
    scale = 1.0 / math.sqrt(D)
    return f'''Q = mc.placeholder({_tup(H, Tq, D)}, name="Q")
K = mc.placeholder({_tup(H, S, D)}, name="K")
V = mc.placeholder({_tup(H, S, D)}, name="V")
d = mc.reduce_axis({D}, "d")
Sc = mc.compute({_tup(H, Tq, S)}, lambda h, i, j: mc.sum(Q[h, i, d] * K[h, j, d], axis=d), name="S")
jm = mc.reduce_axis({S}, "jm")
m = mc.compute({_tup(H, Tq)}, lambda h, i: mc.max(Sc[h, i, jm], axis=jm), name="m")
E = mc.compute({_tup(H, Tq, S)}, lambda h, i, j: mc.exp((Sc[h, i, j] - m[h, i]) * {scale!r}), name="E")
jl = mc.reduce_axis({S}, "jl")
l = mc.compute({_tup(H, Tq)}, lambda h, i: mc.sum(E[h, i, jl], axis=jl), name="l")
jo = mc.reduce_axis({S}, "jo")
O = mc.compute({_tup(H, Tq, D)}, lambda h, i, e: mc.sum(E[h, i, jo] * V[h, jo, e], axis=jo), name="O")
T = mc.compute({_tup(H, Tq, D)}, lambda h, i, e: O[h, i, e] / l[h, i], name="Y")
inputs = [Q, K, V]


def reference(Q, K, V):
    s = np.matmul(Q.astype(np.float64), K.astype(np.float64).transpose(0, 2, 1)) * {scale!r}
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return np.matmul(e / e.sum(axis=-1, keepdims=True), V.astype(np.float64))
'''


def _gen_layernorm(rng: random.Random) -> dict:
    return {"family": "layernorm", "N": _size(rng, big=0.12), "M": _size(rng, big=0.12)}


def _src_layernorm(p: dict) -> str:
    N, M = p["N"], p["M"]
    return f'''X = mc.placeholder({_tup(N, M)}, name="X")
r1 = mc.reduce_axis({M}, "r1")
mu = mc.compute({_tup(N)}, lambda i: mc.sum(X[i, r1], axis=r1), name="mu")
Dv = mc.compute({_tup(N, M)}, lambda i, j: X[i, j] - mu[i] / {float(M)!r}, name="Dv")
r2 = mc.reduce_axis({M}, "r2")
var = mc.compute({_tup(N)}, lambda i: mc.sum(Dv[i, r2] * Dv[i, r2], axis=r2), name="var")
T = mc.compute({_tup(N, M)}, lambda i, j: Dv[i, j] / mc.sqrt(var[i] / {float(M)!r} + 1e-5), name="Y")
inputs = [X]


def reference(X):
    X = X.astype(np.float64)
    d = X - X.mean(axis=1, keepdims=True)
    return d / np.sqrt((d * d).mean(axis=1, keepdims=True) + 1e-5)
'''


def _gen_mlp(rng: random.Random) -> dict:
    return {"family": "mlp", "T": _size(rng, 5), "Hd": _size(rng, 8), "I": _size(rng, 8)}


def _src_mlp(p: dict) -> str:
    Tk, Hd, I = p["T"], p["Hd"], p["I"]
    return f'''X = mc.placeholder({_tup(Tk, Hd)}, name="X")
Wg = mc.placeholder({_tup(Hd, I)}, name="Wg")
Wu = mc.placeholder({_tup(Hd, I)}, name="Wu")
Wd = mc.placeholder({_tup(I, Hd)}, name="Wd")
kg, ku, kd = mc.reduce_axis({Hd}, "kg"), mc.reduce_axis({Hd}, "ku"), mc.reduce_axis({I}, "kd")
G = mc.compute({_tup(Tk, I)}, lambda t, f: mc.sum(X[t, kg] * Wg[kg, f], axis=kg), name="G")
U = mc.compute({_tup(Tk, I)}, lambda t, f: mc.sum(X[t, ku] * Wu[ku, f], axis=ku), name="U")
Hs = mc.compute({_tup(Tk, I)}, lambda t, f: G[t, f] / (1.0 + mc.exp(-G[t, f])) * U[t, f], name="H")
T = mc.compute({_tup(Tk, Hd)}, lambda t, o: mc.sum(Hs[t, kd] * Wd[kd, o], axis=kd), name="Y")
inputs = [X, Wg, Wu, Wd]


def reference(X, Wg, Wu, Wd):
    X, Wg, Wu, Wd = (a.astype(np.float64) for a in (X, Wg, Wu, Wd))
    g = X @ Wg
    return (g / (1.0 + np.exp(-g)) * (X @ Wu)) @ Wd
'''


def _fdtype(rng: random.Random) -> str:
    return "float64" if rng.random() < 0.12 else "float32"


def _gen_pool(rng: random.Random) -> dict:
    while True:
        p = {"family": "pool", "C": rng.choice([1, 2, 3]), "H": _size(rng, 13), "W": _size(rng, 17),
             "K": rng.choice([1, 2, 3]), "S": rng.choice([1, 2, 2, 3]), "op": rng.choice(["max", "min", "sum"]),
             "dtype": rng.choices(["float32", "float64", "int32", "int64"], [70, 10, 12, 8])[0]}
        if p["H"] >= p["K"] and p["W"] >= p["K"]:
            return p


def _src_pool(p: dict) -> str:
    C, H, W, K, S, op, dt = p["C"], p["H"], p["W"], p["K"], p["S"], p["op"], p["dtype"]
    OH, OW = (H - K) // S + 1, (W - K) // S + 1
    npop = {"max": "np.maximum", "min": "np.minimum", "sum": "np.add"}[op]
    return f'''X = mc.placeholder({_tup(C, H, W)}, dtype="{dt}", name="X")
ry, rx = mc.reduce_axis({K}, "ry"), mc.reduce_axis({K}, "rx")
T = mc.compute({_tup(C, OH, OW)}, lambda c, y, x: mc.{op}(X[c, y * {S} + ry, x * {S} + rx], axis=(ry, rx)), name="pool")
inputs = [X]


def reference(X):
    out = None
    for ky in range({K}):
        for kx in range({K}):
            win = X[:, ky:ky + {S * (OH - 1) + 1}:{S}, kx:kx + {S * (OW - 1) + 1}:{S}].astype(np.float64)
            out = win if out is None else {npop}(out, win)
    return out
'''


def _gen_gather(rng: random.Random) -> dict:
    return {"family": "gather", "N": _size(rng, 13), "M": _size(rng), "dtype": _fdtype(rng)}


def _src_gather(p: dict) -> str:
    N, M, dt = p["N"], p["M"], p["dtype"]
    return f'''X = mc.placeholder({_tup(N, M)}, dtype="{dt}", name="X")
Y = mc.compute({_tup(2 * N, M)}, lambda i, j: X[i // 2, {M - 1} - j] * 2.0 + X[i % {N}, j], name="Y")
T = mc.compute({_tup(2 * N, M)}, lambda i, j: mc.where(mc.equal(j % 2, 0), Y[i, j], -Y[{2 * N - 1} - i, j]), name="Z")
inputs = [X]


def reference(X):
    X = X.astype(np.float64)
    i, j = np.arange({2 * N})[:, None], np.arange({M})[None, :]
    Y = X[i // 2, {M - 1} - j] * 2.0 + X[i % {N}, j]
    return np.where(j % 2 == 0, Y, -Y[{2 * N - 1} - i, j])
'''


def _gen_elementwise(rng: random.Random) -> dict:
    return {"family": "elementwise", "N": _size(rng), "M": _size(rng), "dtype": _fdtype(rng)}


def _src_elementwise(p: dict) -> str:
    N, M, dt = p["N"], p["M"], p["dtype"]
    return f'''A = mc.placeholder({_tup(N, M)}, dtype="{dt}", name="A")
B = mc.placeholder({_tup(N, M)}, dtype="{dt}", name="B")
I = mc.placeholder({_tup(N, M)}, dtype="int32", name="I")
E1 = mc.compute({_tup(N, M)}, lambda i, j: mc.where(A[i, j] > B[i, j], mc.tanh(A[i, j]) * 2.0,
                                                   mc.sqrt(mc.abs(B[i, j])) + mc.log(mc.abs(A[i, j]) + 1.0)), name="E1")
T = mc.compute({_tup(N, M)}, lambda i, j: mc.maximum(E1[i, j], -0.5) - mc.minimum(B[i, j], 0.25)
               + mc.cast(I[i, j] * 3 + 1, "{dt}") / 4.0, name="Y")
inputs = [A, B, I]


def reference(A, B, I):
    A, B = A.astype(np.float64), B.astype(np.float64)
    e1 = np.where(A > B, np.tanh(A) * 2.0, np.sqrt(np.abs(B)) + np.log(np.abs(A) + 1.0))
    return np.maximum(e1, -0.5) - np.minimum(B, 0.25) + (I.astype(np.int64) * 3 + 1) / 4.0
'''


def _gen_minred(rng: random.Random) -> dict:
    return {"family": "minred", "N": _size(rng, 13), "R": _size(rng, 13), "S": _size(rng, 8),
            "dtype": rng.choices(["float32", "int32", "int64", "float64"], [40, 30, 15, 15])[0]}


def _src_minred(p: dict) -> str:
    N, R, S, dt = p["N"], p["R"], p["S"], p["dtype"]
    return f'''A = mc.placeholder({_tup(N, R, S)}, dtype="{dt}", name="A")
r, q = mc.reduce_axis({R}, "r"), mc.reduce_axis({S}, "q")
T = mc.compute({_tup(N)}, lambda i: mc.min(A[i, r, q] * 2 - A[i, {R - 1} - r, q], axis=(r, q)), name="Y")
inputs = [A]


def reference(A):
    A = A.astype(np.float64)
    return (A * 2 - A[:, ::-1, :]).min(axis=(1, 2))
'''


def _gen_chain(rng: random.Random) -> dict:
    return {"family": "chain", "M": _size(rng, 13, big=0.1), "K": _size(rng, 13), "N": _size(rng, 13, big=0.1),
            "P": _size(rng, 13)}


def _src_chain(p: dict) -> str:
    M, K, N, P = p["M"], p["K"], p["N"], p["P"]
    return f'''A = mc.placeholder({_tup(M, K)}, name="A")
B = mc.placeholder({_tup(K, N)}, name="B")
E = mc.placeholder({_tup(N, P)}, name="E")
k, n = mc.reduce_axis({K}, "k"), mc.reduce_axis({N}, "n")
AB = mc.compute({_tup(M, N)}, lambda i, j: mc.sum(A[i, k] * B[k, j], axis=k), name="AB")
T = mc.compute({_tup(M, P)}, lambda i, j: mc.sum(AB[i, n] * E[n, j], axis=n), name="Y")
inputs = [A, B, E]


def reference(A, B, E):
    return (A.astype(np.float64) @ B.astype(np.float64)) @ E.astype(np.float64)
'''


def _gen_gemv(rng: random.Random) -> dict:
    return {"family": "gemv", "K": _size(rng, 17, big=0.1), "N": _size(rng, 17, big=0.1), "dtype": _fdtype(rng)}


def _src_gemv(p: dict) -> str:
    K, N, dt = p["K"], p["N"], p["dtype"]
    return f'''A = mc.placeholder({_tup(K, N)}, dtype="{dt}", name="A")
x = mc.placeholder({_tup(K)}, dtype="{dt}", name="x")
bias = mc.placeholder({_tup(N)}, dtype="{dt}", name="bias")
k = mc.reduce_axis({K}, "k")
G = mc.compute({_tup(N)}, lambda i: mc.sum(A[k, i] * x[k], axis=k), name="G")
T = mc.compute({_tup(N)}, lambda i: G[i] + bias[i], name="y")
inputs = [A, x, bias]


def reference(A, x, bias):
    return A.astype(np.float64).T @ x.astype(np.float64) + bias
'''


FAMILIES: dict[str, tuple[Callable[[random.Random], dict], Callable[[dict], str], int]] = {
    "matmul": (_gen_matmul, _src_matmul, 20),
    "bmm": (_gen_bmm, _src_bmm, 8),
    "einsum": (_gen_einsum, _src_einsum, 15),
    "conv": (_gen_conv, _src_conv, 17),
    "softmax": (_gen_softmax, _src_softmax, 12),
    "attention": (_gen_attention, _src_attention, 12),
    "layernorm": (_gen_layernorm, _src_layernorm, 8),
    "mlp": (_gen_mlp, _src_mlp, 7),
    "pool": (_gen_pool, _src_pool, 7),
    "gather": (_gen_gather, _src_gather, 5),
    "elementwise": (_gen_elementwise, _src_elementwise, 5),
    "minred": (_gen_minred, _src_minred, 5),
    "chain": (_gen_chain, _src_chain, 6),
    "gemv": (_gen_gemv, _src_gemv, 5),
}

# The names a step may plausibly mention, per family (garbage steps draw from these too).
NAME_HINTS = {
    "matmul": "i j k i_init j_init A B C C_local A_packed B_packed",
    "bmm": "b i j r b_init i_init j_init A B C C_local",
    "einsum": "i j k l b a c d e0 i_init j_init A B D out out_local",
    "conv": "b c y x f rc ry rx b1 y1 x1 b_init f_init X W Xpad conv conv_local",
    "softmax": "i j jm jl i1 j1 i2 i_init X m E l Y Y_local",
    "attention": "h i j d e jm jl jo h1 i1 j1 h_init i_init Q K V S m E l O Y O_local",
    "layernorm": "i j r1 r2 i1 j1 i_init X mu Dv var Y",
    "mlp": "t f o kg ku kd t1 f1 t_init X Wg Wu Wd G U H Y",
    "pool": "c y x ry rx c_init y_init x_init X pool pool_local",
    "gather": "i j i1 j1 X Y Z Y_local",
    "elementwise": "i j i1 j1 A B I E1 Y",
    "minred": "i r q i_init A Y Y_local",
    "chain": "i j k n i1 j1 i_init j_init A B E AB Y AB_local Y_local",
    "gemv": "i k i1 i_init A x bias G y G_local",
}


def program_source(prog: dict) -> str:
    return FAMILIES[prog["family"]][1](prog)


def program_ok(prog: dict) -> bool:
    if prog["family"] == "conv":
        return _conv_ok(prog)
    if prog["family"] == "einsum" and "ii" in prog["spec"].split("->")[0]:
        return True  # one size for i: square by construction
    return True


def shrink_programs(prog: dict) -> Iterator[dict]:
    """Smaller variants of a program (one size at a time), for the shrinker."""
    def smaller(v: int) -> list[int]:
        return sorted({x for x in (1, 2, 3, v // 2, v - 1) if 1 <= x < v})

    keys = [k for k, v in prog.items() if isinstance(v, int) and not isinstance(v, bool) and k != "P"]
    for key in keys:
        for v in smaller(prog[key]):
            new = dict(prog, **{key: v})
            if program_ok(new):
                yield new
    if prog["family"] == "conv":
        if prog["P"] > 0:
            yield dict(prog, P=prog["P"] - 1) if _conv_ok(dict(prog, P=prog["P"] - 1)) else prog
    if prog["family"] == "einsum":
        for c, v in prog["sizes"].items():
            if isinstance(v, int):
                for x in smaller(v):
                    yield dict(prog, sizes=dict(prog["sizes"], **{c: x}))
    if prog.get("dtype") not in (None, "float32"):
        yield dict(prog, dtype="float32")


# ============================================================================ steps
OPS = ["split", "tile", "reorder", "fuse", "parallel", "vectorize", "unroll", "cache_write", "cache_read", "prefetch",
       "pack", "compute_at", "compute_inline"]
BAD_OPS = ["splitt", "Split", "", " split", "tile2", "apply", "__init__", "func", "vectorise", "inline",
           "cache_reads", "rfactor"]
PARAMS = {
    "split": ["loop", "factor", "nparts"], "tile": ["outer_loop", "inner_loop", "outer_factor", "inner_factor"],
    "reorder": ["order"], "fuse": ["outer", "inner"], "parallel": ["loop"], "vectorize": ["loop"],
    "unroll": ["loop", "factor"], "cache_write": ["tensor", "at"], "cache_read": ["tensor", "at", "panel"],
    "prefetch": ["tensor", "at", "distance"],
    "pack": ["tensor", "dim", "factor"],
    "compute_at": ["tensor", "at"], "compute_inline": ["tensor"],
}
NAME_PARAMS = {"loop", "outer_loop", "inner_loop", "outer", "inner", "tensor", "at"}
FACTOR_PARAMS = {"factor", "nparts", "outer_factor", "inner_factor", "panel", "distance"}
OPTIONAL = {("split", "factor"), ("split", "nparts"), ("unroll", "factor"), ("cache_read", "panel")}

HUGE_INTS = [2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 63 - 1, 2 ** 63, -(2 ** 63), 2 ** 64, 10 ** 400, -(10 ** 400)]
BAD_INTS = [0, -1, -2, -7, 1000, 4096] + HUGE_INTS
BAD_OTHER: list[Any] = [True, False, None, 0.0, 0.5, 4.0, -1.5, 1e308, float("inf"), float("nan"),
                        "", "ji", "ij", "i", "4", "8", "C", "C_local", "xyz", "i_o", " i", "i ", "\u00ec",
                        [], ["i"], ["i", "j"], ["j", "i", "j"], [4], [4, 8], [["i", "j"]], {}, {"op": "split"}]
INT_POOL = [1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 16, 17, 32, 64]
EXTREME_INTS = [0, -1, 2 ** 31, 2 ** 31 - 1, 2 ** 32, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64, 10 ** 400, 10 ** 6]
SPACE_OP_WEIGHT = {"split": 1.5, "unroll": 1.0, "vectorize": 1.5, "parallel": 1.0, "reorder": 1.0, "fuse": 0.7,
                   "cache_write": 1.0, "cache_read": 0.8, "prefetch": 0.5, "pack": 0.8, "compute_at": 1.2, "compute_inline": 1.2}


def _weird(rng: random.Random) -> Any:
    return rng.choice(BAD_INTS) if rng.random() < 0.45 else rng.choice(BAD_OTHER)


def _random_value(rng: random.Random, param: str, names: list[str]) -> Any:
    """A value for ``param``: usually of the right type with a made-up or borrowed name, sometimes junk."""
    if rng.random() < 0.3:
        return _weird(rng)
    if param == "order":
        k = rng.choice([2, 2, 3, 4])
        return [rng.choice(names) for _ in range(k)]
    if param in NAME_PARAMS:
        base = rng.choice(names)
        return rng.choice([base, base, base + "_o", base + "_i", base + "1", base + "_o_o", base.upper()])
    if param == "dim":
        return rng.choice([0, 1, 2, 3, -1])
    return rng.choice(INT_POOL)


def _random_step(rng: random.Random, family: str) -> dict:
    names = NAME_HINTS[family].split()
    via = "json" if rng.random() < 0.35 else "make"
    if via == "json" and rng.random() < 0.08:
        return {"kind": "concrete", "via": "json",
                "json": rng.choice([[], ["split", "i", 4], "split", None, 7, {"loop": "i"}, {"op": 3, "loop": "i"},
                                    {"op": None}, {"op": ["split"]}, {"op": "split", "loop": "i", "factor": {}}])}
    op = rng.choice(OPS) if rng.random() < 0.85 else rng.choice(BAD_OPS)
    params = list(PARAMS.get(op, rng.choice(list(PARAMS.values()))))
    args = {p: _random_value(rng, p, names) for p in params if rng.random() < 0.93}
    if rng.random() < 0.1:
        args[rng.choice(["foo", "func", "nparts", "factor", "order", "axis", "Loop", "loop"])] = _weird(rng)
    return {"kind": "concrete", "via": via, "op": op, "args": args}


def gen_steps(rng: random.Random, family: str, profile: Optional[str] = None) -> list[dict]:
    steps = _gen_steps(rng, family, profile)
    if rng.random() < 0.3:  # the Space / proposer as if for another vector width: other factors and tiles
        bits = rng.choice([128, 256, 512, 1024])
        for item in steps:
            if item["kind"] in ("space", "proposer", "mutate"):
                item["vector_bits"] = bits
    return steps


PROFILES = ["legal", "mixed", "hostile", "long", "stages"]


def _gen_steps(rng: random.Random, family: str, force: Optional[str] = None) -> list[dict]:
    profile = rng.choices(PROFILES, [26, 40, 10, 12, 12])[0]
    profile = force or profile
    n = rng.choices(range(0, 13), [2, 6, 8, 10, 10, 10, 9, 8, 6, 4, 3, 2, 2])[0]
    if profile == "long":
        n = rng.randint(13, 30)
    if profile == "stages":
        n = rng.randint(3, 14)
    mix = {"legal": [100, 0, 0, 0], "mixed": [45, 30, 15, 10], "hostile": [20, 25, 35, 20],
           "long": [60, 28, 8, 4], "stages": [55, 40, 5, 0]}[profile]
    # "stages": new storage and moved stages (cache_write, pack, compute_at / compute_inline),
    # stacked on each other and scheduled further: where the transforms interact most.
    stage_ops = ["cache_write", "cache_read", "prefetch", "pack", "compute_at", "compute_inline"]
    steps: list[dict] = []
    if rng.random() < 0.3:  # start from the heuristic proposer's choices: realistic, deep schedules
        for _ in range(rng.choice([1, 2, 3, 4, 6, 8])):
            steps.append({"kind": "proposer", "r": rng.choice([0, 0, 0, 1, 2, 3]), "via": "make"})
    for _ in range(n):
        kind = rng.choices(["space", "real", "mutate", "concrete"], mix)[0]
        via = "json" if rng.random() < 0.3 else "make"
        r = rng.randrange(2 ** 31)
        if kind == "space":
            steps.append({"kind": "space", "r": r, "via": via})
            if profile == "stages" and rng.random() < 0.6:
                steps[-1]["prefer"] = stage_ops
        elif kind == "real":
            op = rng.choices(OPS, [14, 8, 12, 8, 6, 10, 10, 10, 8, 5, 12, 9, 7])[0]
            if profile == "stages" and rng.random() < 0.6:
                op = rng.choice(stage_ops)
            steps.append({"kind": "real", "op": op, "r": r, "via": via})
        elif kind == "mutate":
            how = rng.choices(["arg", "int", "drop", "extra", "op"], [40, 30, 10, 10, 10])[0]
            item: dict[str, Any] = {"kind": "mutate", "r": r, "via": via, "how": how}
            if how == "arg":
                item["value"] = _weird(rng)
            elif how == "int":
                item["value"] = rng.choice(EXTREME_INTS + [-7, 1000, 4096, 1, 2])
            elif how == "extra":
                item["name"] = rng.choice(["foo", "func", "nparts", "factor", "dim", "at", "order", "loop", "x"])
                item["value"] = rng.choice(INT_POOL + ["i", None, 2 ** 31])
            elif how == "op":
                item["value"] = rng.choice(BAD_OPS + OPS)
            steps.append(item)
        else:
            steps.append(_random_step(rng, family))
    return steps


def gen_case(rng: random.Random, case_id: int = 0, families: Optional[list[str]] = None,
             profile: Optional[str] = None) -> dict:
    """One case, deterministic in ``rng`` (a random.Random, or hypothesis' st.randoms())."""
    names = families or list(FAMILIES)
    family = rng.choices(names, [FAMILIES[n][2] for n in names])[0]
    prog = FAMILIES[family][0](rng)
    case = {"id": case_id, "seed": rng.randrange(2 ** 31), "threads": rng.choice([1, 2, 2, 3]), "program": prog,
            "steps": gen_steps(rng, family, profile)}
    if rng.random() < 0.1:
        case["cross"] = True    # also mc.assembly(s, mc.Target.aarch64())
    if rng.random() < 0.1:
        case["misuse"] = True   # also call the kernel wrongly: clean TypeError / ValueError expected
    if family == "einsum" and rng.random() < 0.5:
        # also the drop-in: mc.einsum(spec, *arrays) on arrays of these dtypes and layouts, against np.einsum
        n_ops = len(prog["spec"].split("->")[0].split(","))
        case["einsum_arrays"] = [[rng.choices(["float32", "float64", "int32", "int64"], [70, 12, 10, 8])[0],
                                  rng.choices(["c", "f", "strided", "reversed"], [55, 15, 15, 15])[0]]
                                 for _ in range(n_ops)]
    return case


def case_for(seed: int, index: int, families: Optional[list[str]] = None, profile: Optional[str] = None) -> dict:
    return gen_case(random.Random(f"{seed}:{index}"), index, families, profile)


def invalid_reason(rec: dict) -> Optional[str]:
    """Why a step must be rejected by its types / ranges alone (None: it may be legal)."""
    if rec.get("via") == "json" and "json" in rec:
        data = rec.get("json")
        if not isinstance(data, dict) or not isinstance(data.get("op"), str):
            return "from_json of something that is not {'op': str, ...}"
        op, args = data["op"], {k: v for k, v in data.items() if k != "op"}
    else:
        op, args = rec.get("op"), rec.get("args", {})
    if op not in PARAMS:
        return f"unknown op {op!r}"
    for key in args:
        if key not in PARAMS[op]:
            return f"{op} has no argument {key!r}"
    for key in PARAMS[op]:
        if key not in args and (op, key) not in OPTIONAL:
            return f"{op} needs {key}"
    for key, v in args.items():
        if key in NAME_PARAMS and not isinstance(v, str):
            return f"{key}={v!r}: not a string ({type(v).__name__})"
        if key == "order" and (not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v)):
            return f"order={v!r}: not a list of loop names ({type(v).__name__})"
        if key == "order" and (len(v) < 2 or len(set(v)) != len(v)):
            return f"order={v!r}: needs two or more distinct names"
        if key in FACTOR_PARAMS or key == "dim":
            if v is None and (op, key) in OPTIONAL:
                continue
            if not isinstance(v, int) or isinstance(v, bool):
                return f"{key}={v!r}: not an int ({type(v).__name__})"
            if v < (0 if key == "dim" else 1):
                return f"{key}={v!r}: out of range"
    if op == "split" and (args.get("factor") is None) == (args.get("nparts") is None):
        return "split needs exactly one of factor / nparts"
    return None


def _has_huge(recs: Iterable[dict]) -> bool:
    def huge(v: Any) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, int):
            return abs(v) >= 2 ** 20
        if isinstance(v, (list, tuple)):
            return any(huge(x) for x in v)
        if isinstance(v, dict):
            return any(huge(x) for x in v.values())
        return False
    return any(huge(r.get("args")) or huge(r.get("json")) for r in recs)


# ============================================================================ the worker side
class Defect(Exception):
    def __init__(self, kind: str, stage: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.kind, self.stage, self.message, self.detail = kind, stage, message, detail


CLEAN = (ValueError, TypeError)  # mc.ScheduleError is a ValueError


def _exc_text(e: BaseException) -> str:
    text = " | ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return f"{type(e).__name__}: {text[:400]}"


def _check_clean(e: BaseException, stage: str, recs: list[dict]) -> str:
    """The message of a clean rejection; raises Defect for anything else."""
    if isinstance(e, MemoryError) and _has_huge([r for r in recs if r.get("status") != "rejected"]):
        return f"MemoryError (absurd size): {e}"
    if isinstance(e, MemoryError):
        raise Defect("memory", stage, _exc_text(e), traceback.format_exc())
    if not isinstance(e, CLEAN) or isinstance(e, (UnicodeError,)):
        raise Defect("exception", stage, _exc_text(e), traceback.format_exc())
    if not str(e).strip():
        raise Defect("empty_message", stage, f"{type(e).__name__} with an empty message", traceback.format_exc())
    return _exc_text(e)


class Runner:
    """Executes cases in this process (the worker)."""

    def __init__(self) -> None:
        import numpy as np

        import minicompiler as mc
        try:
            from minicompiler.search.space import Space
        except ImportError:  # the layout before search/ moved under minicompiler/ (for --root of an old tree)
            from search.space import Space
        self.np, self.mc = np, mc
        self.Space = Space
        self.space = Space(mc.Target.host())
        self.targets: dict[int, Any] = {}
        try:
            mc.set_num_threads(2)
        except Exception:  # noqa: BLE001
            pass

    # -- resolving recipes into concrete steps
    def _names(self, s: Any) -> tuple[list[str], list[str], list[str], list[str]]:
        from minicompiler.ir.stmt import Alloc
        from minicompiler.ir.visitor import walk
        func = s.func
        loops = list(s.loops)
        inputs = [t.name for t in func.inputs]
        outputs = [t.name for t in func.outputs]
        scratch = [n.tensor.name for n in walk(func.body) if isinstance(n, Alloc)]
        return loops, inputs, outputs, scratch

    def _child_pairs(self, s: Any) -> list[tuple[str, str]]:
        from minicompiler.ir.stmt import For
        from minicompiler.schedule.loops import loops as all_loops
        pairs = []
        for loop in all_loops(s.func):
            if isinstance(loop.body, For):
                pairs.append((loop.var.name, loop.body.var.name))
        return pairs

    def _chain(self, s: Any, rng: random.Random) -> list[str]:
        from minicompiler.ir.stmt import For, If
        from minicompiler.schedule.loops import loops as all_loops
        tops = list(all_loops(s.func))
        if not tops:
            return []
        node = rng.choice(tops)
        chain = []
        while isinstance(node, (For, If)):
            if isinstance(node, For):
                chain.append(node.var.name)
                node = node.body
            else:
                if node.else_body is not None:
                    break
                node = node.then_body
        return chain

    def _target(self, item: dict) -> Any:
        """The host, or the host with narrower / wider vectors (other split factors and tilings)."""
        bits = item.get("vector_bits")
        if not bits:
            return self.mc.Target.host()
        if bits not in self.targets:
            self.targets[bits] = self.mc.Target.host().with_(vector_bits=bits)
        return self.targets[bits]

    def _space(self, item: dict) -> Any:
        return self.space if not item.get("vector_bits") else self.Space(self._target(item))

    def resolve(self, item: dict, s: Any) -> list[dict]:
        """The concrete step(s) a recipe stands for at schedule ``s`` (none at a dead end)."""
        kind = item.get("kind")
        if kind == "proposer":
            try:
                from minicompiler.search.heuristic import HeuristicProposer
                from minicompiler.search.proposer import Context
            except ImportError:   # an older tree (--root): the proposer module held both
                try:
                    from minicompiler.search.proposer import Context, HeuristicProposer
                except ImportError:
                    from search.proposer import Context, HeuristicProposer
            proposals = HeuristicProposer().propose(Context(s, self._target(item)), 6)
            if not proposals:
                return []
            chosen = proposals[item.get("r", 0) % len(proposals)]
            return [{"via": item.get("via", "make"), "op": st.op, "from": "proposer",
                     "args": {k: v for k, v in st.to_json().items() if k != "op"}} for st in chosen.steps]
        one = self._resolve_one(item, s)
        return [] if one is None else [one]

    def _resolve_one(self, item: dict, s: Any) -> Optional[dict]:
        kind = item.get("kind")
        via = item.get("via", "make")
        if kind == "concrete":
            return {k: v for k, v in item.items() if k in ("via", "op", "args", "json")}
        rng = random.Random(item.get("r", 0))
        if kind == "space":
            # An op first (so that the many split / unroll candidates do not crowd out the rest),
            # then its candidates in random order until one applies.
            by_op: dict[str, list[Any]] = collections.defaultdict(list)
            for step in self._space(item).candidates(s):
                by_op[step.op].append(step)
            ops = sorted(by_op)
            rng.shuffle(ops)
            prefer = set(item.get("prefer") or ())
            ops.sort(key=lambda op: rng.random() / SPACE_OP_WEIGHT.get(op, 1.0) / (8.0 if op in prefer else 1.0))
            for op in ops:
                options = by_op[op]
                rng.shuffle(options)
                for step in options:
                    try:
                        s.apply(step)
                    except self.mc.ScheduleError:
                        continue
                    return {"via": via, "op": step.op, "from": "space",
                            "args": {k: v for k, v in step.to_json().items() if k != "op"}}
            return None
        if kind == "mutate":
            options = list(self._space(item).candidates(s))
            if not options:
                return None
            how = item.get("how")
            if how == "int":  # an integer argument of a candidate made extreme (still an int)
                options = [o for o in options if any(isinstance(v, int) and not isinstance(v, bool)
                                                     for _, v in o.args)] or options
            step = rng.choice(options).to_json()
            op = step.pop("op")
            ints = sorted(k for k, v in step.items() if isinstance(v, int) and not isinstance(v, bool))
            if how == "int" and ints:
                step[rng.choice(ints)] = item.get("value")
            elif how in ("arg", "int") and step:
                key = rng.choice(sorted(step))
                step[key] = item.get("value")
            elif how == "drop" and step:
                del step[rng.choice(sorted(step))]
            elif how == "extra":
                step[item.get("name", "foo")] = item.get("value")
            elif how == "op":
                op = item.get("value")
            return {"via": via, "op": op, "args": step, "from": "mutate"}
        if kind == "real":
            return {"via": via, "op": item["op"], "args": self._real_args(item["op"], s, rng), "from": "real"}
        raise ValueError(f"unknown recipe kind {kind!r}")

    def _real_args(self, op: str, s: Any, rng: random.Random) -> dict:
        loops, inputs, outputs, scratch = self._names(s)
        loops = loops or ["i"]
        pairs = self._child_pairs(s)
        def num() -> int:  # mostly plausible factors; sometimes zero, negative or absurd (but still an int)
            return rng.choice(INT_POOL) if rng.random() < 0.88 else rng.choice(EXTREME_INTS)
        if op in ("split", "unroll"):
            args: dict[str, Any] = {"loop": rng.choice(loops)}
            if op == "split" and rng.random() < 0.2:
                args["nparts"] = num()
            elif op == "split" or rng.random() < 0.5:
                args["factor"] = num()
            return args
        if op in ("parallel", "vectorize"):
            return {"loop": rng.choice(loops)}
        if op in ("tile", "fuse"):
            if pairs and rng.random() < 0.7:
                a, b = rng.choice(pairs)
            else:
                a, b = rng.choice(loops), rng.choice(loops)
            if op == "fuse":
                return {"outer": a, "inner": b}
            return {"outer_loop": a, "inner_loop": b, "outer_factor": num(), "inner_factor": num()}
        if op == "reorder":
            chain = self._chain(s, rng)
            if len(chain) >= 2 and rng.random() < 0.75:
                k = rng.randint(2, min(4, len(chain)))
                start = rng.randrange(len(chain) - k + 1)
                picked = chain[start:start + k] if rng.random() < 0.6 else rng.sample(chain, k)
                rng.shuffle(picked)
                return {"order": picked}
            return {"order": [rng.choice(loops) for _ in range(rng.choice([2, 3]))]}
        written = outputs + scratch
        if op == "cache_write":
            return {"tensor": rng.choice(written if rng.random() < 0.85 else written + inputs), "at": rng.choice(loops)}
        if op == "cache_read":
            args = {"tensor": rng.choice(inputs + scratch if rng.random() < 0.9 else written), "at": rng.choice(loops)}
            if rng.random() < 0.5:
                args["panel"] = num()
            return args
        if op == "prefetch":
            return {"tensor": rng.choice(inputs if rng.random() < 0.9 else written), "at": rng.choice(loops),
                    "distance": num()}
        if op == "pack":
            t = rng.choice(inputs if rng.random() < 0.9 or not scratch else scratch)
            ndim = len(next((x.shape for x in s.func.params if x.name == t), (1,)))
            return {"tensor": t, "dim": rng.randrange(-1, ndim + 1) if rng.random() < 0.15 else rng.randrange(max(ndim, 1)),
                    "factor": num()}
        if op in ("compute_at", "compute_inline"):
            pool = scratch if scratch and rng.random() < 0.9 else written + inputs
            args = {"tensor": rng.choice(pool)}
            if op == "compute_at":
                args["at"] = rng.choice(loops)
            return args
        return {}

    def make_step(self, rec: dict) -> Any:
        Step = self.mc.Step
        if rec["via"] == "json":
            if "json" in rec:
                return Step.from_json(rec["json"])
            return Step.from_json({"op": rec["op"], **rec["args"]})
        return Step.make(rec["op"], **rec["args"])

    # -- one case
    def execute(self, case: dict, emit: Callable[[dict], None]) -> dict:
        np, mc = self.np, self.mc
        recs: list[dict] = []
        rejections: list[str] = []
        times: dict[str, float] = {}
        result: dict[str, Any] = {"id": case.get("id"), "steps": recs, "rejections": rejections, "times": times}
        stage = "program"

        def stage_is(name: str, **extra: Any) -> None:
            nonlocal stage
            stage = name
            emit({"event": "stage", "stage": name, **extra})

        try:
            if "selftest" in case:
                self._selftest(case["selftest"])
            stage_is("program")
            ns: dict[str, Any] = {"mc": mc, "np": np}
            try:
                exec(compile(program_source(case["program"]), "<program>", "exec"), ns)  # noqa: S102
                s = mc.Schedule(ns["T"])
            except Exception as e:  # noqa: BLE001
                raise Defect("generator", "program", _exc_text(e), traceback.format_exc()) from None
            t0 = time.perf_counter()
            self.mc.set_num_threads(int(case.get("threads", 2)))
            pending: list[dict] = []
            items = list(case.get("steps", []))
            index = -1
            while pending or index + 1 < len(items):
                if not pending:
                    index += 1
                    stage_is("resolve", index=index)
                    try:
                        pending = self.resolve(items[index], s)
                    except Exception as e:  # noqa: BLE001
                        raise Defect("exception", "space", f"resolving a {items[index].get('kind')} step: {_exc_text(e)}",
                                     traceback.format_exc()) from None
                    continue
                rec = pending.pop(0)
                rec["index"] = index
                stage_is("apply", step=rec)
                recs.append(rec)
                what = "make"   # the stage a rejection came from: Step.make / from_json, then apply
                try:
                    step = self.make_step(rec)
                    what = "apply"
                    new = s.apply(step)
                except BaseException as e:  # noqa: BLE001
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    rec["status"] = "rejected"
                    rec["error"] = _check_clean(e, what, recs)
                    rejections.append(rec["error"])
                    emit({"event": "step_status", "status": "rejected"})
                    continue
                rec["status"] = "applied"
                emit({"event": "step_status", "status": "applied"})
                reason = invalid_reason(rec)
                if reason is not None:
                    raise Defect("accepted_invalid", "apply", f"accepted {reason}")
                s = new
            times["steps"] = time.perf_counter() - t0

            stage_is("trace")
            try:
                again = mc.Schedule.from_json(ns["T"], s.to_json())
                if str(again) != str(s):
                    raise Defect("trace_roundtrip", "trace", "Schedule.from_json(to_json()) gives another program")
                env = {"Schedule": mc.Schedule, "tensor": ns["T"]}
                exec(s.trace(), env)  # noqa: S102
                if str(env["s"]) != str(s):
                    raise Defect("trace_roundtrip", "trace", "exec(trace()) gives another program")
            except Defect:
                raise
            except Exception as e:  # noqa: BLE001
                raise Defect("trace_roundtrip", "trace", _exc_text(e), traceback.format_exc()) from None

            stage_is("build")
            t0 = time.perf_counter()
            try:
                kernel = mc.build(s)
            except BaseException as e:  # noqa: BLE001
                if isinstance(e, KeyboardInterrupt):
                    raise
                result["error"] = _check_clean(e, "build", recs)
                result["status"] = "rejected"
                times["build"] = time.perf_counter() - t0
                return result
            times["build"] = time.perf_counter() - t0

            stage_is("run")
            t0 = time.perf_counter()
            try:
                self._run_and_check(kernel, ns, case.get("seed", 0))
            except Defect:
                raise
            except MemoryError as e:  # a scratch allocation the kernel could not get: clean if it was absurd
                result["error"] = _check_clean(e, "run", recs)
                result["status"] = "rejected"
                return result
            except Exception as e:  # noqa: BLE001
                raise Defect("exception", "run", _exc_text(e), traceback.format_exc()) from None
            times["run"] = time.perf_counter() - t0
            if case.get("misuse"):
                stage_is("call")
                self._misuse(kernel, ns)
            if case.get("einsum_arrays"):
                stage_is("einsum_arrays")
                self._einsum_arrays(case)
            if case.get("cross"):
                stage_is("cross")
                try:
                    mc.assembly(s, mc.Target.aarch64())
                except BaseException as e:  # noqa: BLE001
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    _check_clean(e, "cross", recs)
            result["status"] = "correct"
            return result
        except Defect as d:
            result.update(status="defect", kind=d.kind, stage=d.stage, error=d.message, detail=d.detail[-4000:])
            return result
        except RecursionError as e:
            result.update(status="defect", kind="exception", stage=stage, error=_exc_text(e), detail="")
            return result

    def _einsum_arrays(self, case: dict) -> None:
        """mc.einsum on numpy arrays (the drop-in: compiled with its own schedule) against np.einsum."""
        np = self.np
        prog = case["program"]
        spec = prog["spec"]
        rng = np.random.default_rng(case.get("seed", 0) + 1)
        arrays = []
        for shape, (dt, layout) in zip(_einsum_shapes(spec, prog["sizes"]), case["einsum_arrays"]):
            base = rng.integers(-3, 4, size=shape).astype(dt) if dt.startswith("int") else \
                rng.standard_normal(shape).astype(dt)
            if layout == "f":
                base = np.asfortranarray(base)
            elif layout == "strided" and base.ndim:
                big = np.zeros(base.shape[:-1] + (2 * base.shape[-1],), dt)
                big[..., ::2] = base
                base = big[..., ::2]
            elif layout == "reversed" and base.ndim:
                base = base[..., ::-1].copy()[..., ::-1]
            arrays.append(base)
        copies = [a.copy() for a in arrays]
        ref = np.asarray(np.einsum(spec, *copies))
        try:
            got = self.mc.einsum(spec, *arrays)
        except (TypeError, ValueError) as e:
            if not str(e).strip():
                raise Defect("empty_message", "einsum_arrays", f"{type(e).__name__} with an empty message")
            return  # a clean refusal
        except Exception as e:  # noqa: BLE001
            raise Defect("exception", "einsum_arrays", _exc_text(e), traceback.format_exc()) from None
        got = np.asarray(got)
        if any(not np.array_equal(a, c) for a, c in zip(arrays, copies)):
            raise Defect("input_modified", "einsum_arrays", "mc.einsum changed an input array")
        if got.shape != ref.shape or got.dtype != ref.dtype:
            raise Defect("wrong_result", "einsum_arrays", f"mc.einsum gave {got.dtype}{list(got.shape)}, "
                         f"np.einsum {ref.dtype}{list(ref.shape)}")
        if ref.dtype.kind in "iu":
            ok = np.array_equal(got, ref)
        else:
            tol = 1e-3 if ref.dtype == np.float32 else 1e-6
            scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
            ok = bool(np.all(np.isfinite(got))) and np.allclose(got, ref, rtol=tol, atol=tol * 0.1 * scale)
        if not ok:
            err = float(np.nanmax(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
            raise Defect("wrong_result", "einsum_arrays", f"mc.einsum differs from np.einsum: max abs error {err:.3g}")

    def _misuse(self, kernel: Any, ns: dict) -> None:
        """Wrong calls must raise TypeError / ValueError with a message, never run."""
        np = self.np
        good = [np.zeros(shape, dtype) for _, shape, dtype in kernel.input_specs]
        bad_calls: list[tuple[str, Callable[[], Any]]] = [
            ("one array too few", lambda: kernel(*good[:-1])),
            ("a list for an array", lambda: kernel(*([good[0].tolist()] + good[1:]))),
            ("wrong dtype", lambda: kernel(*([good[0].astype(np.float64 if good[0].dtype != np.float64
                                                             else np.float32)] + good[1:]))),
            ("wrong shape", lambda: kernel(*([np.zeros(good[0].shape + (2,), good[0].dtype)] + good[1:]))),
            ("out of the wrong shape", lambda: kernel(*good, out=np.zeros((3,) + tuple(kernel.output_shape),
                                                                          kernel.output_dtype))),
        ]
        if good[0].ndim and good[0].size:
            strided = np.zeros(good[0].shape[:-1] + (2 * good[0].shape[-1],), good[0].dtype)[..., ::2]
            if not strided.flags.c_contiguous:
                bad_calls.append(("a strided array", lambda: kernel(*([strided] + good[1:]))))
        for what, call in bad_calls:
            try:
                call()
            except (TypeError, ValueError) as e:
                if not str(e).strip():
                    raise Defect("empty_message", "call", f"{what}: {type(e).__name__} with an empty message")
                continue
            except Exception as e:  # noqa: BLE001
                raise Defect("exception", "call", f"{what}: {_exc_text(e)}", traceback.format_exc()) from None
            raise Defect("accepted_invalid", "call", f"the kernel ran with {what}")

    def _selftest(self, what: str) -> None:
        if what == "segfault":
            import ctypes
            ctypes.string_at(0)
        elif what == "hang":
            time.sleep(3600)
        elif what == "keyerror":
            raise Defect("exception", "selftest", "KeyError: 'selftest'")

    def _run_and_check(self, kernel: Any, ns: dict, seed: int) -> None:
        np = self.np
        rng = np.random.default_rng(seed)
        placeholders = ns["inputs"]
        arrays = {}
        for t in placeholders:
            if str(t.dtype).startswith("int"):
                arrays[t.name] = rng.integers(-3, 4, size=t.shape).astype(t.dtype)
            else:
                arrays[t.name] = rng.standard_normal(t.shape).astype(t.dtype)
        spec_names = [name for name, _, _ in kernel.input_specs]
        if sorted(spec_names) != sorted(arrays):
            raise Defect("exception", "run", f"kernel takes {spec_names}, the program's inputs are {list(arrays)}")
        pad = 64

        def guarded(shape: tuple, dtype: Any, value: Any, fill: Any) -> tuple[Any, Any]:
            n = int(np.prod(shape)) if shape else 1
            buf = np.empty(n + 2 * pad, dtype)
            buf[:] = fill
            view = buf[pad:pad + n].reshape(shape)
            view[...] = value
            return view, buf

        def fill_for(dtype: Any) -> Any:
            return np.nan if np.dtype(dtype).kind == "f" else -123456789

        ins, bufs = [], []
        for name in spec_names:
            view, buf = guarded(arrays[name].shape, arrays[name].dtype, arrays[name], fill_for(arrays[name].dtype))
            ins.append(view)
            bufs.append(buf.copy())
        shape, dtype = kernel.output_shape, kernel.output_dtype
        canary = 1234.5 if np.dtype(dtype).kind == "f" else 987654321
        outs = []
        for _ in range(2):
            out, obuf = guarded(shape, dtype, fill_for(dtype), canary)
            kernel(*ins, out=out)
            if not (np.all(obuf[:pad] == canary) and np.all(obuf[pad + out.size:] == canary)):
                raise Defect("out_of_bounds", "run", "the kernel wrote outside its output array")
            outs.append(out.copy())
        for view, buf, name in zip(ins, bufs, spec_names):
            b = view.base if view.base is not None else view
            if not np.array_equal(b, buf, equal_nan=True):
                raise Defect("input_modified", "run", f"the kernel changed input {name} (or its surroundings)")
        ref = np.asarray(ns["reference"](*[arrays[t.name].copy() for t in placeholders]))
        got = outs[0]
        if ref.shape != got.shape:
            raise Defect("wrong_result", "run", f"output shape {got.shape}, reference {ref.shape}")
        if np.dtype(dtype).kind in "iu":
            ok = np.array_equal(got.astype(np.int64), ref.astype(np.int64))
            err = float(np.abs(got.astype(np.float64) - ref).max()) if got.size else 0.0
        else:
            scale = float(np.abs(ref).max()) if ref.size else 1.0
            rtol = 1e-3 if np.dtype(dtype) == np.float32 else 1e-6
            atol = (1e-4 if np.dtype(dtype) == np.float32 else 1e-9) * max(1.0, scale)
            ok = bool(np.all(np.isfinite(got))) and np.allclose(got, ref, rtol=rtol, atol=atol)
            with np.errstate(invalid="ignore"):
                err = float(np.nanmax(np.abs(got - ref))) if got.size else 0.0
        if not ok:
            nan = int(np.sum(~np.isfinite(got))) if np.dtype(dtype).kind == "f" else 0
            bad = np.argwhere(~np.isclose(got, ref, rtol=1e-3, atol=1e-4 * max(1.0, float(np.abs(ref).max()))))
            where = [tuple(int(x) for x in b) for b in bad[:3]]
            raise Defect("wrong_result", "run", f"output differs from numpy: max abs error {err:.3g}, "
                         f"{len(bad)} of {got.size} elements wrong ({nan} NaN/inf), e.g. at {where}")
        if not np.array_equal(outs[0], outs[1], equal_nan=True):
            raise Defect("nondeterministic", "run", "two calls of the kernel gave different outputs")


def worker_main(mem_gb: float) -> None:
    """Read cases (JSON lines) on stdin, answer events (JSON lines) on the original stdout."""
    import faulthandler
    import resource
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed, from Python or C, goes to stderr
    sys.stdout = sys.stderr
    faulthandler.enable()
    if mem_gb > 0:
        limit = int(mem_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(5000)
    if os.environ.get("FUZZ_ROOT"):
        sys.path.insert(0, os.environ["FUZZ_ROOT"])

    def emit(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    runner = Runner()
    import minicompiler
    emit({"event": "ready", "pid": os.getpid(), "minicompiler": os.path.dirname(minicompiler.__file__)})
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        res = runner.execute(case, emit)
        try:
            emit({"event": "done", **res})
        except (TypeError, ValueError) as e:  # an unserialisable detail: keep the verdict
            emit({"event": "done", "id": res.get("id"), "status": res.get("status"), "kind": res.get("kind"),
                  "stage": res.get("stage"), "error": f"{res.get('error')} (result not serialisable: {e})",
                  "steps": [], "rejections": [], "times": {}})


# ============================================================================ the parent side
class Worker:
    """One child interpreter running cases; restarted after a crash, a timeout, or ``recycle`` cases."""

    def __init__(self, timeout: float = 30.0, mem_gb: float = 6.0, recycle: int = 250) -> None:
        self.timeout, self.mem_gb, self.recycle = timeout, mem_gb, recycle
        self.proc: Optional[subprocess.Popen] = None
        self.err: Any = None
        self.buf = b""
        self.cases = 0
        self.starts = 0

    def start(self) -> None:
        self.err = tempfile.TemporaryFile()
        env = dict(os.environ, OMP_WAIT_POLICY="passive", PYTHONFAULTHANDLER="1", PYTHONHASHSEED="0",
                   MINICOMPILER_DB=os.path.join(tempfile.gettempdir(), f"fuzz-tuning-{os.getpid()}.db"))
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "--mem-gb", str(self.mem_gb)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, bufsize=0,
                                     cwd=ROOT, env=env)
        self.buf = b""
        self.cases = 0
        self.starts += 1
        event = self._read(time.monotonic() + 120)
        if event is None or event.get("event") != "ready":
            tail = self._stderr_tail(0)
            self.stop()
            raise RuntimeError(f"the fuzz worker did not start: {event}\n{tail}")

    def _read(self, deadline: float) -> Optional[dict]:
        """The next event, or None on EOF; raises TimeoutError past the deadline."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def _stderr_tail(self, start: int, n: int = 3000) -> str:
        try:
            self.err.flush()
            self.err.seek(start)
            text = self.err.read().decode("utf-8", "replace")
            self.err.seek(0, 2)
            return text[-n:]
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self.err is not None:
            self.err.close()
            self.err = None

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def run(self, case: dict, timeout: Optional[float] = None) -> dict:
        if self.proc is None or self.proc.poll() is not None or self.cases >= self.recycle:
            # A worker that cannot start (the package does not import: a tree caught mid-edit) is
            # retried a few times, then the case is reported as such rather than killing the run.
            for attempt in range(4):
                self.stop()
                try:
                    self.start()
                    break
                except RuntimeError as e:
                    if attempt == 3:
                        return {"id": case.get("id"), "status": "defect", "kind": "startup", "stage": "start",
                                "error": str(e).splitlines()[0], "detail": str(e)[-3000:], "steps": [],
                                "rejections": []}
                    time.sleep(10 * (attempt + 1))
        assert self.proc is not None and self.proc.stdin is not None
        self.cases += 1
        err_start = self.err.seek(0, 2)
        steps: list[dict] = []
        stage = "start"
        t0 = time.monotonic()
        deadline = t0 + (timeout or self.timeout)
        try:
            self.proc.stdin.write((json.dumps(case) + "\n").encode())
            self.proc.stdin.flush()
            while True:
                event = self._read(deadline)
                if event is None:
                    rc = self.proc.wait()
                    tail = self._stderr_tail(err_start)
                    self.stop()
                    sig = f"signal {-rc}" if rc < 0 else f"exit code {rc}"
                    return {"id": case.get("id"), "status": "defect", "kind": "crash", "stage": stage,
                            "error": f"worker died ({sig}) during {stage}", "detail": tail, "steps": steps,
                            "rejections": [], "wall": time.monotonic() - t0}
                if event["event"] == "stage":
                    stage = event["stage"]
                    if "step" in event:
                        steps.append(event["step"])
                elif event["event"] == "step_status" and steps:
                    steps[-1]["status"] = event["status"]
                elif event["event"] == "done":
                    event.pop("event")
                    event["wall"] = time.monotonic() - t0
                    return event
        except TimeoutError:
            self._kill()
            self.stop()
            return {"id": case.get("id"), "status": "defect", "kind": "timeout", "stage": stage,
                    "error": f"no answer within {timeout or self.timeout:.0f} s (during {stage})", "detail": "",
                    "steps": steps, "rejections": [], "wall": time.monotonic() - t0}
        except (BrokenPipeError, OSError) as e:
            tail = self._stderr_tail(err_start)
            self._kill()
            self.stop()
            return {"id": case.get("id"), "status": "defect", "kind": "crash", "stage": stage,
                    "error": f"worker pipe broken ({e})", "detail": tail, "steps": steps, "rejections": [],
                    "wall": time.monotonic() - t0}


def run_cases(cases: Iterable[dict], jobs: int = 1, timeout: float = 30.0, mem_gb: float = 6.0,
              on_result: Optional[Callable[[dict, dict], None]] = None) -> list[tuple[dict, dict]]:
    """Run cases on ``jobs`` workers; ``on_result(case, outcome)`` as each finishes."""
    lock = threading.Lock()
    source = iter(cases)
    results: list[tuple[dict, dict]] = []

    def loop() -> None:
        worker = Worker(timeout, mem_gb)
        try:
            while True:
                with lock:
                    case = next(source, None)
                if case is None:
                    return
                outcome = worker.run(case)
                with lock:
                    results.append((case, outcome))
                    if on_result:
                        on_result(case, outcome)
        finally:
            worker.stop()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# ============================================================================ analysis and reports
def normalize(message: str) -> str:
    """A rejection / error message with its particulars (names, numbers) blanked, for counting."""
    m = message.split("\n")[0]
    m = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", m)
    m = re.sub(r"\b\d+\b", "N", m)
    m = re.sub(r"\b[A-Za-z]+\w*_(o|i|init|local|packed)\d*\b", "<name>", m)
    m = re.sub(r"\[[^\]]*\]|\([^)]*\)", "(…)", m)
    return m[:110]


def signature(outcome: dict) -> tuple:
    """What makes two defects the same defect (for the shrinker: it must keep this)."""
    kind, stage = outcome.get("kind"), outcome.get("stage")
    err = outcome.get("error", "")
    if kind == "accepted_invalid":
        rec = (outcome.get("steps") or [{}])[-1]
        op = rec.get("op") if rec.get("via") != "json" or "json" not in rec else "json"
        return (kind, op, re.sub(r"=.*?:", "=…:", err)[:80])
    if kind in ("crash", "timeout"):
        return (kind, stage if stage != "apply" else "apply", err.split("(")[1].split(")")[0] if kind == "crash" and "(" in err else "")
    if kind in ("wrong_result",):
        return (kind, stage, "NaN" if "NaN/inf)" in err and not err.endswith("(0 NaN/inf)") and "(0 NaN" not in err else "")
    etype = err.split(":")[0]
    return (kind, stage, etype, normalize(err)[:80])


def concrete_case(case: dict, outcome: dict) -> dict:
    """The case with its recipes replaced by the steps they resolved to (applied ones and the failing one)."""
    recs = outcome.get("steps") or []
    failing_index = len(recs) - 1 if outcome.get("stage") in ("make", "apply", "space") or \
        outcome.get("kind") == "accepted_invalid" else None
    steps = []
    for i, rec in enumerate(recs):
        if rec.get("status") == "rejected" and i != failing_index:
            continue
        steps.append({"kind": "concrete", **{k: v for k, v in rec.items() if k in ("via", "op", "args", "json")}})
    extra = {k: case[k] for k in ("cross", "misuse", "einsum_arrays") if k in case}
    return {"id": case.get("id"), "seed": case.get("seed", 0), "threads": case.get("threads", 2),
            "program": case["program"], "steps": steps, **extra}


def _py(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        for base in (2, 10):
            if abs(v) >= 10 ** 6:
                e = round(math.log(abs(v), base))
                for ee in (e - 1, e, e + 1):
                    if base ** ee == abs(v):
                        return f"{'-' if v < 0 else ''}{base}**{ee}"
                    if base ** ee - 1 == abs(v) and v > 0:
                        return f"{base}**{ee} - 1"
        return repr(v)
    if isinstance(v, float):
        if math.isnan(v):
            return 'float("nan")'
        if math.isinf(v):
            return f'float("{"-" if v < 0 else ""}inf")'
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_py(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(x)}" for k, x in v.items()) + "}"
    return repr(v)


def step_code(rec: dict) -> str:
    if rec.get("via") == "json":
        data = rec["json"] if "json" in rec else {"op": rec["op"], **rec["args"]}
        return f"mc.Step.from_json({_py(data)})"
    args = rec.get("args", {})
    if all(isinstance(k, str) and k.isidentifier() and k != "op" for k in args):
        inner = ", ".join(f"{k}={_py(v)}" for k, v in args.items())
        return f"mc.Step.make({_py(rec['op'])}{', ' if inner else ''}{inner})"
    return f"mc.Step.make({_py(rec['op'])}, **{_py(args)})"


def reproducer(case: dict, outcome: dict) -> str:
    """A standalone Python snippet showing the defect."""
    cc = concrete_case(case, outcome)
    lines = ["import numpy as np", "import minicompiler as mc", "", program_source(cc["program"]).rstrip(), "", "",
             "s = mc.Schedule(T)"]
    if cc.get("threads", 2) != 2 and any(r.get("op") == "parallel" for r in cc["steps"]):
        lines.insert(lines.index("s = mc.Schedule(T)"), f"mc.set_num_threads({cc['threads']})")
    for rec in cc["steps"]:
        lines.append(f"s = s.apply({step_code(rec)})")
    kind, stage = outcome.get("kind"), outcome.get("stage")
    err = outcome.get("error", "")
    if stage in ("make", "apply", "space") and kind != "accepted_invalid":
        lines.append(f"# ^ {err}")
        return "\n".join(lines)
    if kind == "accepted_invalid":
        lines.append(f"# ^ should raise mc.ScheduleError / ValueError / TypeError: {err}")
        lines.append("print(s)")
        return "\n".join(lines)
    if stage == "einsum_arrays":
        prog = cc["program"]
        lines = ["import numpy as np", "import minicompiler as mc", "",
                 f"rng = np.random.default_rng({cc['seed']} + 1)", "arrays = []"]
        for shape, (dt, layout) in zip(_einsum_shapes(prog["spec"], prog["sizes"]), case["einsum_arrays"]):
            make = (f"rng.integers(-3, 4, size={shape}).astype('{dt}')" if dt.startswith("int")
                    else f"rng.standard_normal({shape}).astype('{dt}')")
            lines.append(f"a = {make}")
            if layout == "f":
                lines.append("a = np.asfortranarray(a)")
            elif layout == "strided" and shape:
                lines += ["big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)", "big[..., ::2] = a",
                          "a = big[..., ::2]"]
            elif layout == "reversed" and shape:
                lines.append("a = a[..., ::-1].copy()[..., ::-1]")
            lines.append("arrays.append(a)")
        lines += [f"ref = np.einsum({prog['spec']!r}, *[x.copy() for x in arrays])",
                  f"out = mc.einsum({prog['spec']!r}, *arrays)",
                  "print(np.asarray(out).dtype, np.asarray(ref).dtype, np.abs(np.asarray(out, np.float64) - ref).max())",
                  f"# expected: {kind}: {err}"]
        return "\n".join(lines)
    if kind == "trace_roundtrip":
        lines += ["print(s.trace())", "assert str(mc.Schedule.from_json(T, s.to_json())) == str(s)",
                  f"# ^ {err}"]
        return "\n".join(lines)
    lines.append("kernel = mc.build(s)" + (f"  # {err}" if stage == "build" else ""))
    lines += [f"rng = np.random.default_rng({cc['seed']})",
              "arrays = [rng.integers(-3, 4, size=t.shape).astype(t.dtype) if t.dtype.startswith('int') "
              "else rng.standard_normal(t.shape).astype(t.dtype) for t in inputs]",
              "out = kernel(*arrays)" + (f"  # {err}" if kind in ("crash", "timeout") and stage == "run" else ""),
              "ref = reference(*arrays)",
              "print('max abs error', np.nanmax(np.abs(out - ref)), 'NaNs', np.isnan(out).sum())"]
    if stage == "call":
        lines.append("# then call the kernel wrongly (the detail says how): a TypeError / ValueError is expected")
    if stage == "cross":
        lines.append("mc.assembly(s, mc.Target.aarch64())")
    if kind not in ("crash", "timeout") or stage != "run":
        lines.append(f"# expected: {kind} at {stage}: {err}")
    return "\n".join(lines)


def shrink(case: dict, outcome: dict, worker: Worker, budget_s: float = 60.0, max_runs: int = 60,
           timeout: Optional[float] = None) -> tuple[dict, dict]:
    """Drop steps and reduce sizes while the defect keeps its signature."""
    target = signature(outcome)
    best_case, best_out = concrete_case(case, outcome), outcome
    check = worker.run(best_case, timeout)
    if check.get("status") != "defect" or signature(check) != target:
        return case, outcome  # not reproducible as concrete steps: keep the original
    best_out = check
    best_case = concrete_case(best_case, check)
    start, runs = time.monotonic(), 0

    def attempt(candidate: dict) -> bool:
        nonlocal best_case, best_out, runs
        if runs >= max_runs or time.monotonic() - start > budget_s:
            return False
        runs += 1
        out = worker.run(candidate, timeout)
        if out.get("status") == "defect" and signature(out) == target:
            best_case, best_out = concrete_case(candidate, out), out
            return True
        return False

    changed = True
    while changed:
        changed = False
        i = len(best_case["steps"]) - 1
        while i >= 0:
            steps = best_case["steps"]
            if i < len(steps) and attempt(dict(best_case, steps=steps[:i] + steps[i + 1:])):
                changed = True
            i -= 1
        for prog in list(shrink_programs(best_case["program"])):
            if attempt(dict(best_case, program=prog)):
                changed = True
                break
        if runs >= max_runs or time.monotonic() - start > budget_s:
            break
    return best_case, best_out


class Summary:
    def __init__(self) -> None:
        self.statuses: collections.Counter = collections.Counter()
        self.kinds: collections.Counter = collections.Counter()
        self.reasons: collections.Counter = collections.Counter()
        self.build_rejections: collections.Counter = collections.Counter()
        self.families: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.steps: collections.Counter = collections.Counter()
        self.defects: dict[tuple, list[tuple[dict, dict]]] = collections.defaultdict(list)
        self.legal_build_rejected: list[tuple[dict, dict]] = []
        self.n = 0

    def add(self, case: dict, out: dict) -> None:
        self.n += 1
        status = out.get("status", "defect")
        self.statuses[status] += 1
        self.families[case["program"]["family"]][status] += 1
        for rec in out.get("steps") or []:
            self.steps[(rec.get("from", "concrete"), rec.get("status", "?"))] += 1
        for msg in out.get("rejections") or []:
            self.reasons[normalize(msg)] += 1
        if status == "rejected":
            self.build_rejections[normalize(out.get("error", ""))] += 1
            if all(r.get("from") == "space" or r.get("status") == "rejected" for r in out.get("steps") or []):
                self.legal_build_rejected.append((case, out))
        if status == "defect":
            self.kinds[out.get("kind")] += 1
            self.defects[signature(out)].append((case, out))

    def line(self) -> str:
        return (f"correct {self.statuses['correct']}  rejected {self.statuses['rejected']}  "
                f"defects {self.statuses['defect']}")

    def report(self, elapsed: float) -> str:
        out = [f"\n{self.n} cases in {elapsed:.0f} s ({self.n / max(elapsed, 1e-9):.2f} cases/s)",
               f"  correct (built, ran, matched numpy): {self.statuses['correct']}",
               f"  rejected cleanly at build:           {self.statuses['rejected']}",
               f"  defects:                             {self.statuses['defect']}"]
        for kind, n in self.kinds.most_common():
            out.append(f"      {kind}: {n}")
        out.append("  per family (correct / rejected / defect):")
        for fam, c in sorted(self.families.items()):
            out.append(f"      {fam:10s} {c['correct']:5d} {c['rejected']:5d} {c['defect']:5d}")
        applied = sum(n for (src, st), n in self.steps.items() if st == "applied")
        rejected = sum(n for (src, st), n in self.steps.items() if st == "rejected")
        out.append(f"  steps: {applied} applied, {rejected} rejected cleanly; by source (applied/rejected):")
        for src in ("proposer", "space", "real", "mutate", "concrete"):
            out.append(f"      {src:9s} {self.steps[(src, 'applied')]:6d} {self.steps[(src, 'rejected')]:6d}")
        out.append("  most common step rejections:")
        for msg, n in self.reasons.most_common(15):
            out.append(f"      {n:5d}  {msg}")
        if self.build_rejections:
            out.append("  build rejections:")
            for msg, n in self.build_rejections.most_common(8):
                out.append(f"      {n:5d}  {msg}")
        if self.legal_build_rejected:
            out.append(f"  note: {len(self.legal_build_rejected)} case(s) whose applied steps all came from the Space "
                       f"were rejected at build (the Space and lowering disagree), e.g. case "
                       f"{self.legal_build_rejected[0][0]['id']}: {self.legal_build_rejected[0][1].get('error')}")
        return "\n".join(out)


def format_defect(case: dict, out: dict, header: str = "") -> str:
    detail = (out.get("detail") or "").strip()
    text = [f"--- DEFECT {header}{out.get('kind')} at {out.get('stage')}: {out.get('error')}"]
    text.append(reproducer(case, out))
    if detail:
        text.append("# detail (tail):\n" + "\n".join("#   " + l for l in detail.splitlines()[-12:]))
    text.append(f"# replay: python tests/fuzz.py --replay '{json.dumps(concrete_case(case, out))}'")
    return "\n".join(text)


# ============================================================================ command line
def _load_cases(arg: str) -> list[dict]:
    if os.path.exists(arg):
        cases = []
        with open(arg) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                obj = json.loads(line)
                if "case" in obj:  # a results file: re-run its defects
                    if obj.get("outcome", {}).get("status") == "defect":
                        cases.append(concrete_case(obj["case"], obj["outcome"]))
                else:
                    cases.append(obj)
        return cases
    obj = json.loads(arg)
    return obj if isinstance(obj, list) else [obj]


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first case index (cases are seed:index)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    ap.add_argument("--mem-gb", type=float, default=6.0, help="RLIMIT_AS of a worker")
    ap.add_argument("--out", help="write every case and outcome as JSON lines")
    ap.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only these program families")
    ap.add_argument("--profile", choices=PROFILES, help="only this kind of step sequence (stages: cache_write / "
                    "pack / compute_at / compute_inline stacked; long: 13-30 steps; hostile: mostly malformed)")
    ap.add_argument("--replay", help="a case as JSON, or a file of cases / a results file (its defects)")
    ap.add_argument("--no-shrink", action="store_true")
    ap.add_argument("--shrink-budget", type=float, default=600.0, help="seconds for shrinking in all")
    ap.add_argument("--shrink-timeouts", action="store_true", help="also shrink timeouts (slow)")
    ap.add_argument("--root", help="import minicompiler / search from this source tree instead (e.g. an old "
                    "`git archive` of the repository, to check that the fuzzer finds its known defects)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.root:
        os.environ["FUZZ_ROOT"] = os.path.abspath(args.root)
    if args.worker:
        worker_main(args.mem_gb)
        return 0

    if args.replay:
        cases = _load_cases(args.replay)
    else:
        cases = [case_for(args.seed, i, args.family, args.profile) for i in range(args.start, args.start + args.cases)]
    total = len(cases)
    print(f"{total} case(s), seed {args.seed}, {args.jobs} job(s), timeout {args.timeout:.0f} s; minicompiler from "
          f"{os.environ.get('FUZZ_ROOT') or ROOT}", flush=True)
    summary = Summary()
    out_file = open(args.out, "w") if args.out else None
    start = time.monotonic()
    last = [start]
    every = max(1, min(100, total // 20))

    def on_result(case: dict, out: dict) -> None:
        summary.add(case, out)
        if out_file:
            out_file.write(json.dumps({"case": case, "outcome": out}) + "\n")
            out_file.flush()
        if out.get("status") == "defect":
            print(f"  case {case.get('id')}: DEFECT {out.get('kind')} at {out.get('stage')}: "
                  f"{(out.get('error') or '')[:160]}", flush=True)
        now = time.monotonic()
        if summary.n % every == 0 or summary.n == total or now - last[0] > 30:
            last[0] = now
            el = now - start
            print(f"[{summary.n:5d}/{total}] {el:6.0f} s  {summary.n / el:5.2f} cases/s  {summary.line()}", flush=True)

    run_cases(cases, args.jobs, args.timeout, args.mem_gb, on_result)
    elapsed = time.monotonic() - start
    if out_file:
        out_file.close()
    print(summary.report(elapsed))

    # distinct defects, shrunk
    if summary.defects:
        print(f"\n{len(summary.defects)} distinct defect signature(s):")
        worker = Worker(args.timeout, args.mem_gb)
        shrink_start = time.monotonic()
        shown: dict[tuple, int] = {}
        try:
            for sig, items in sorted(summary.defects.items(), key=lambda kv: -len(kv[1])):
                case, out = min(items, key=lambda co: (len(co[1].get("steps") or []), co[0].get("id", 0)))
                left = args.shrink_budget - (time.monotonic() - shrink_start)
                can = not args.no_shrink and left > 5 and (out.get("kind") != "timeout" or args.shrink_timeouts)
                if can:
                    case, out = shrink(case, out, worker, budget_s=min(left, 120.0))
                    case = concrete_case(case, out)
                key = sig + (tuple(s.get("op", "json") for s in concrete_case(case, out)["steps"]),)
                if key in shown:
                    continue
                shown[key] = 1
                print("\n" + format_defect(case, out, f"[{len(items)} case(s), e.g. case {items[0][0].get('id')}] "))
        finally:
            worker.stop()
    return 1 if summary.statuses["defect"] else 0


if __name__ == "__main__":
    sys.exit(main())
