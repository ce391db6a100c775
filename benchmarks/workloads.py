"""Kernels from served models, written with minicompiler's frontend, each with the numpy a user would write.

Every workload is float32 and has
  program()   the computation as a minicompiler tensor (placeholders in the order of inputs()),
  inputs()    random inputs (a fixed seed, standard normal, scaled where it keeps values tame),
  numpy()     the same computation written the natural numpy way (what a user would run instead),
  flops       nominal floating-point operations: 2 per multiply-add of the contractions (elementwise
              work such as softmax or SiLU is not counted), for GFLOP/s.
``small=True`` gives a scaled-down shape of the same program, for tests and quick checks.

    Llama-3-8B attention prefill   softmax(Q Kᵀ / √128) V, 32 heads, 256 tokens, head dim 128
    DeepSeek-R1 MoE expert         [16, 7168] x [7168, 2048]
    Llama-4-Scout MLP (SwiGLU)     x [16, 5120]; gate, up [5120, 8192]; silu(gate) * up; down [8192, 5120]
    FLUX attention                 24 heads, 1024 tokens, head dim 128
    FLUX convolution               3x3, padding 1, 128 -> 128 channels, 64 x 64, batch 1, NCHW
    matmul 1024^3
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

import minicompiler as mc


@dataclass(frozen=True)
class Workload:
    name: str            # short id, used on the command line and as the tuning-database name
    title: str           # what it is, for the report
    program: Callable[[], mc.Tensor]
    inputs: Callable[[], list[np.ndarray]]
    numpy: Callable[..., np.ndarray]
    flops: float


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ----------------------------------------------------------------------------- attention
def attention_program(heads: int, tokens: int, dim: int) -> mc.Tensor:
    """softmax(Q Kᵀ / √d) V stage by stage, as one writes it: scores, row max, exponentials,
    row sums, the weighted sum of V, and the normalisation."""
    Q, K, V = (mc.placeholder((heads, tokens, dim), name=n) for n in "QKV")
    scale = 1.0 / math.sqrt(dim)
    d = mc.reduce_axis(dim, "d")
    S = mc.compute((heads, tokens, tokens), lambda h, i, j: mc.sum(Q[h, i, d] * K[h, j, d], axis=d), name="S")
    jm = mc.reduce_axis(tokens, "jm")
    m = mc.compute((heads, tokens), lambda h, i: mc.max(S[h, i, jm], axis=jm), name="m")
    E = mc.compute((heads, tokens, tokens), lambda h, i, j: mc.exp((S[h, i, j] - m[h, i]) * scale), name="E")
    jl = mc.reduce_axis(tokens, "jl")
    l = mc.compute((heads, tokens), lambda h, i: mc.sum(E[h, i, jl], axis=jl), name="l")  # noqa: E741
    jo = mc.reduce_axis(tokens, "jo")
    O = mc.compute((heads, tokens, dim), lambda h, i, e: mc.sum(E[h, i, jo] * V[h, jo, e], axis=jo), name="O")
    return mc.compute((heads, tokens, dim), lambda h, i, e: O[h, i, e] / l[h, i], name="Y")


def attention_numpy(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    s = np.matmul(q, k.transpose(0, 2, 1)) * np.float32(1.0 / math.sqrt(q.shape[-1]))
    s -= s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    e /= e.sum(axis=-1, keepdims=True)
    return np.matmul(e, v)


def _attention(name: str, title: str, heads: int, tokens: int, dim: int) -> Workload:
    def inputs() -> list[np.ndarray]:
        rng = _rng()
        return [rng.standard_normal((heads, tokens, dim), dtype=np.float32) for _ in range(3)]

    return Workload(name, title, lambda: attention_program(heads, tokens, dim), inputs, attention_numpy,
                    4.0 * heads * tokens * tokens * dim)


# ----------------------------------------------------------------------------- matmul
def matmul_program(m: int, n: int, k: int) -> mc.Tensor:
    A = mc.placeholder((m, k), name="A")
    B = mc.placeholder((k, n), name="B")
    r = mc.reduce_axis(k, "k")
    return mc.compute((m, n), lambda i, j: mc.sum(A[i, r] * B[r, j], axis=r), name="C")


def _matmul(name: str, title: str, m: int, n: int, k: int) -> Workload:
    def inputs() -> list[np.ndarray]:
        rng = _rng()
        return [rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)]

    return Workload(name, title, lambda: matmul_program(m, n, k), inputs, np.matmul, 2.0 * m * n * k)


# ----------------------------------------------------------------------------- SwiGLU MLP
def mlp_program(tokens: int, hidden: int, inter: int) -> mc.Tensor:
    """down( silu(x @ gate) * (x @ up) ), silu(g) = g / (1 + exp(-g))."""
    X = mc.placeholder((tokens, hidden), name="X")
    Wg = mc.placeholder((hidden, inter), name="Wg")
    Wu = mc.placeholder((hidden, inter), name="Wu")
    Wd = mc.placeholder((inter, hidden), name="Wd")
    kg, ku = mc.reduce_axis(hidden, "kg"), mc.reduce_axis(hidden, "ku")
    G = mc.compute((tokens, inter), lambda t, f: mc.sum(X[t, kg] * Wg[kg, f], axis=kg), name="G")
    U = mc.compute((tokens, inter), lambda t, f: mc.sum(X[t, ku] * Wu[ku, f], axis=ku), name="U")
    H = mc.compute((tokens, inter), lambda t, f: G[t, f] / (1.0 + mc.exp(-G[t, f])) * U[t, f], name="H")
    kd = mc.reduce_axis(inter, "kd")
    return mc.compute((tokens, hidden), lambda t, o: mc.sum(H[t, kd] * Wd[kd, o], axis=kd), name="Y")


def mlp_numpy(x: np.ndarray, wg: np.ndarray, wu: np.ndarray, wd: np.ndarray) -> np.ndarray:
    g = x @ wg
    return (g / (1.0 + np.exp(-g)) * (x @ wu)) @ wd


def _mlp(name: str, title: str, tokens: int, hidden: int, inter: int) -> Workload:
    def inputs() -> list[np.ndarray]:
        rng = _rng()
        # Weights scaled by 1/sqrt(fan-in), as trained layers are: activations stay O(1).
        x = rng.standard_normal((tokens, hidden), dtype=np.float32)
        wg, wu = (rng.standard_normal((hidden, inter), dtype=np.float32) * np.float32(hidden ** -0.5)
                  for _ in range(2))
        wd = rng.standard_normal((inter, hidden), dtype=np.float32) * np.float32(inter ** -0.5)
        return [x, wg, wu, wd]

    return Workload(name, title, lambda: mlp_program(tokens, hidden, inter), inputs, mlp_numpy,
                    2.0 * tokens * hidden * inter * 3)


# ----------------------------------------------------------------------------- convolution
def conv_program(channels: int, filters: int, height: int, width: int, kernel: int = 3, pad: int = 1) -> mc.Tensor:
    """NCHW conv2d, stride 1, zero padding as its own stage (as TVM's topi writes it): the padded
    image is a tensor, so the convolution's inner loops carry no bounds test."""
    X = mc.placeholder((1, channels, height, width), name="X")
    W = mc.placeholder((filters, channels, kernel, kernel), name="W")

    def padded(b, c, y, x):  # noqa: ANN001, ANN202
        inside = (y >= pad) & (y < height + pad) & (x >= pad) & (x < width + pad)
        return mc.where(inside, X[b, c, y - pad, x - pad], 0.0)

    P = mc.compute((1, channels, height + 2 * pad, width + 2 * pad), padded, name="Xpad")
    out_h, out_w = height + 2 * pad - kernel + 1, width + 2 * pad - kernel + 1
    rc, ry, rx = mc.reduce_axis(channels, "rc"), mc.reduce_axis(kernel, "ry"), mc.reduce_axis(kernel, "rx")
    return mc.compute((1, filters, out_h, out_w),
                      lambda b, f, y, x: mc.sum(P[b, rc, y + ry, x + rx] * W[f, rc, ry, rx], axis=(rc, ry, rx)),
                      name="conv")


def conv_numpy(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """What a numpy user writes: pad, gather the 3x3 windows (im2col as a strided view), one tensordot."""
    kernel = w.shape[-1]
    pad = kernel // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kernel, kernel), axis=(2, 3))  # n c h w ky kx
    return np.tensordot(w, windows, axes=([1, 2, 3], [1, 4, 5])).transpose(1, 0, 2, 3)


def _conv(name: str, title: str, channels: int, filters: int, height: int, width: int) -> Workload:
    def inputs() -> list[np.ndarray]:
        rng = _rng()
        x = rng.standard_normal((1, channels, height, width), dtype=np.float32)
        w = rng.standard_normal((filters, channels, 3, 3), dtype=np.float32) * np.float32((9 * channels) ** -0.5)
        return [x, w]

    return Workload(name, title, lambda: conv_program(channels, filters, height, width), inputs, conv_numpy,
                    2.0 * filters * channels * 9 * height * width)


# ----------------------------------------------------------------------------- the suite
# name, constructor, title, full-size shape, small shape (the same program scaled down for tests)
SUITE = [
    ("llama3_attention", _attention, "Llama-3-8B attention prefill (32 heads, 256 tokens, d 128)",
     (32, 256, 128), (2, 64, 32)),
    ("deepseek_moe", _matmul, "DeepSeek-R1 MoE expert [16,7168]x[7168,2048]", (16, 2048, 7168), (16, 96, 200)),
    ("llama4_mlp", _mlp, "Llama-4-Scout SwiGLU MLP (16 tokens, 5120 -> 8192 -> 5120)", (16, 5120, 8192), (16, 80, 112)),
    ("flux_attention", _attention, "FLUX attention (24 heads, 1024 tokens, d 128)", (24, 1024, 128), (2, 80, 32)),
    ("flux_conv", _conv, "FLUX conv 3x3, 128->128 channels, 64x64, NCHW", (128, 128, 64, 64), (8, 12, 10, 13)),
    ("matmul", _matmul, "matmul 1024^3", (1024, 1024, 1024), (67, 45, 33)),
]


def suite(small: bool = False) -> list[Workload]:
    """The six workloads of the report (``small``: the same programs on scaled-down shapes)."""
    return [make(name, f"{name} small {small_shape}", *small_shape) if small else make(name, title, *shape)
            for name, make, title, shape, small_shape in SUITE]


def by_name(small: bool = False) -> dict[str, Workload]:
    return {w.name: w for w in suite(small)}
