"""The suite's workloads written the way a numba user writes them: explicit loops,
``@numba.njit(parallel=True, fastmath=True)`` and ``numba.prange`` over the outer loop.

    matmul(a, b)                 prange over rows of C; loop over k; loop over j (stride-1 rows of B and C)
    attention(q, k, v)           prange over heads x query rows; loops for the scores, max, exp, sum, P V
    conv2d(x, w)                 NCHW, 3x3, padding 1 (pad copy first); prange over output channels
    mlp(x, wg, wu, wd)           matmul for gate and up, an elementwise SwiGLU loop (prange), matmul for down

Thread count: ``numba.set_num_threads(n)`` (at most NUMBA_NUM_THREADS, default: the cores).
Compiled on first call (``cache=True`` keeps the machine code in benchmarks/__pycache__);
the suite's warm-up call excludes compilation from the timings.
"""
from __future__ import annotations

import math

import numba
import numpy as np

JIT = dict(parallel=True, fastmath=True, cache=True)


@numba.njit(**JIT)
def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m, kk = a.shape
    n = b.shape[1]
    c = np.zeros((m, n), dtype=np.float32)
    for i in numba.prange(m):
        for p in range(kk):
            aip = a[i, p]
            for j in range(n):
                c[i, j] += aip * b[p, j]
    return c


@numba.njit(**JIT)
def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    heads, tokens, dim = q.shape
    out = np.zeros((heads, tokens, dim), dtype=np.float32)
    scale = np.float32(1.0 / math.sqrt(dim))
    for hi in numba.prange(heads * tokens):
        h, i = hi // tokens, hi % tokens
        s = np.empty(tokens, dtype=np.float32)
        for j in range(tokens):
            acc = np.float32(0.0)
            for e in range(dim):
                acc += q[h, i, e] * k[h, j, e]
            s[j] = acc * scale
        mx = s[0]
        for j in range(1, tokens):
            mx = max(mx, s[j])
        total = np.float32(0.0)
        for j in range(tokens):
            s[j] = np.exp(s[j] - mx)
            total += s[j]
        for j in range(tokens):
            p = s[j] / total
            for e in range(dim):
                out[h, i, e] += p * v[h, j, e]
    return out


@numba.njit(**JIT)
def conv2d(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    _, channels, height, width = x.shape
    filters, _, kh, kw = w.shape
    pad = kh // 2
    xp = np.zeros((channels, height + 2 * pad, width + 2 * pad), dtype=np.float32)
    xp[:, pad:pad + height, pad:pad + width] = x[0]
    out = np.zeros((1, filters, height, width), dtype=np.float32)
    for f in numba.prange(filters):
        for c in range(channels):
            for ky in range(kh):
                for kx in range(kw):
                    wv = w[f, c, ky, kx]
                    for y in range(height):
                        for xx in range(width):
                            out[0, f, y, xx] += wv * xp[c, y + ky, xx + kx]
    return out


@numba.njit(**JIT)
def swiglu(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    rows, cols = g.shape
    h = np.empty((rows, cols), dtype=np.float32)
    for t in numba.prange(rows):
        for f in range(cols):
            h[t, f] = g[t, f] / (np.float32(1.0) + np.exp(-g[t, f])) * u[t, f]
    return h


@numba.njit(fastmath=True, cache=True)  # no loop of its own: the three matmuls and swiglu are parallel
def mlp(x: np.ndarray, wg: np.ndarray, wu: np.ndarray, wd: np.ndarray) -> np.ndarray:
    return matmul(swiglu(matmul(x, wg), matmul(x, wu)), wd)


# workload name (benchmarks/workloads.py) -> kernel
KERNELS = {
    "llama3_attention": attention,
    "deepseek_moe": matmul,
    "llama4_mlp": mlp,
    "flux_attention": attention,
    "flux_conv": conv2d,
    "matmul": matmul,
}
