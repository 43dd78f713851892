"""The convolution and pooling kernels on the GPU, as CuPy ElementwiseKernels.

Each kernel runs one CUDA thread per *output* element and computes it from
the inputs it needs (a gather), so no two threads ever write the same
element: no atomics, and results are bit-for-bit deterministic.  The kernels
compute exactly the values of the readable reference in
:mod:`minicnn.nn.functional` (the tests check it, on a GPU where there
is one, and by compiling these same CUDA sources as C on the CPU where not).

Notation: N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW as in the reference;
``P = OH*OW``, ``K = C*KH*KW``.  All index arithmetic is 64-bit
(``long long``), so arrays past 2**31 elements index correctly.

``im2col``      thread t -> element (k, n, p) of a K-major (K, N, P) array
                (returned as an (N, K, P) view, so Conv2d's one big matrix
                product needs no copy): reads input pixel
                (n, c, oh*SH - PH + i, ow*SW - PW + j), or ``pad`` outside.
``col2im``      thread t -> input pixel (n, c, h, w): sums the column entries
                of every window that covers it, i.e. every (i, j) with
                h + PH - i = oh*SH (0 <= oh < OH) and likewise for w.  This is
                the *gather* form of the reference's scatter-add.
``maxpool_fwd`` thread t -> output (n, c, oh, ow): scans its window in the
                order k = i*KW + j, keeps the first maximum; border = -inf.
``maxpool_bwd`` thread t -> input pixel: sums the gradients of the windows
                covering it whose argmax is this pixel.

The kernel objects are built once per process (CuPy then compiles each once
per dtype and caches the binary).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from minicnn.nn.unfold import window

__all__ = ["im2col", "col2im", "maxpool2d_forward", "maxpool2d_backward"]


@dataclass(frozen=True)
class KernelSource:
    """One elementwise kernel: typed scalar/raw inputs, one output, a CUDA C body.

    In the body ``i`` is the thread index (0 .. size-1) and the output is
    assigned by name, as ``cupy.ElementwiseKernel`` expects.
    """

    name: str
    in_params: tuple  # ("raw T x", "int64 N", ...)
    out_param: str    # "T col"
    body: str


_IM2COL = KernelSource(
    name="minicnn_im2col",
    in_params=("raw T x", "int64 N", "int64 C", "int64 H", "int64 W", "int64 KH", "int64 KW",
               "int64 SH", "int64 SW", "int64 PH", "int64 PW", "int64 OH", "int64 OW", "T pad"),
    out_param="T col",
    body="""
    const long long t = i;
    const long long P = OH * OW;
    const long long p = t % P;
    const long long n = (t / P) % N;
    const long long k = t / (P * N);
    const long long j = k % KW;
    const long long ii = (k / KW) % KH;
    const long long c = k / (KW * KH);
    const long long ih = (p / OW) * SH - PH + ii;
    const long long iw = (p % OW) * SW - PW + j;
    if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
        col = x[((n * C + c) * H + ih) * W + iw];
    } else {
        col = pad;
    }
    """,
)

_COL2IM = KernelSource(
    name="minicnn_col2im",
    in_params=("raw T col", "int64 N", "int64 C", "int64 H", "int64 W", "int64 KH", "int64 KW",
               "int64 SH", "int64 SW", "int64 PH", "int64 PW", "int64 OH", "int64 OW"),
    out_param="T img",
    body="""
    const long long t = i;
    const long long w = t % W;
    const long long h = (t / W) % H;
    const long long c = (t / (W * H)) % C;
    const long long n = t / (W * H * C);
    const long long P = OH * OW;
    T acc = 0;
    for (long long ii = 0; ii < KH; ++ii) {
        const long long dh = h + PH - ii;          /* = oh * SH for the window oh covering h */
        if (dh < 0 || dh % SH != 0) continue;
        const long long oh = dh / SH;
        if (oh >= OH) continue;
        for (long long j = 0; j < KW; ++j) {
            const long long dw = w + PW - j;
            if (dw < 0 || dw % SW != 0) continue;
            const long long ow = dw / SW;
            if (ow >= OW) continue;
            const long long k = (c * KH + ii) * KW + j;
            acc += col[(k * N + n) * P + oh * OW + ow];
        }
    }
    img = acc;
    """,
)

_MAXPOOL_FWD = KernelSource(
    name="minicnn_maxpool_fwd",
    in_params=("raw T x", "raw int64 argmax", "int64 H", "int64 W", "int64 KH", "int64 KW",
               "int64 SH", "int64 SW", "int64 PH", "int64 PW", "int64 OH", "int64 OW", "T neg_inf"),
    out_param="T out",
    body="""
    const long long t = i;                          /* = plane * P + p */
    const long long P = OH * OW;
    const long long p = t % P;
    const long long plane = t / P;
    const long long h0 = (p / OW) * SH - PH;
    const long long w0 = (p % OW) * SW - PW;
    T best = neg_inf;
    long long best_k = 0;
    bool best_nan = false;
    for (long long ii = 0; ii < KH; ++ii) {
        for (long long j = 0; j < KW; ++j) {
            const long long h = h0 + ii, w = w0 + j;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;   /* border: -inf never wins */
            const T v = x[(plane * H + h) * W + w];
            const bool v_nan = isnan(v);
            if (!best_nan && (v > best || v_nan)) {  /* first maximum; a NaN wins, as np.argmax */
                best = v; best_k = ii * KW + j; best_nan = v_nan;
            }
        }
    }
    out = best;
    argmax[t] = best_k;
    """,
)

_MAXPOOL_BWD = KernelSource(
    name="minicnn_maxpool_bwd",
    in_params=("raw T grad", "raw int64 argmax", "int64 H", "int64 W", "int64 KH", "int64 KW",
               "int64 SH", "int64 SW", "int64 PH", "int64 PW", "int64 OH", "int64 OW"),
    out_param="T dx",
    body="""
    const long long t = i;                          /* = (plane * H + h) * W + w */
    const long long w = t % W;
    const long long h = (t / W) % H;
    const long long plane = t / (W * H);
    const long long P = OH * OW;
    T acc = 0;
    for (long long ii = 0; ii < KH; ++ii) {
        const long long dh = h + PH - ii;
        if (dh < 0 || dh % SH != 0) continue;
        const long long oh = dh / SH;
        if (oh >= OH) continue;
        for (long long j = 0; j < KW; ++j) {
            const long long dw = w + PW - j;
            if (dw < 0 || dw % SW != 0) continue;
            const long long ow = dw / SW;
            if (ow >= OW) continue;
            const long long q = plane * P + oh * OW + ow;
            if (argmax[q] == ii * KW + j) acc += grad[q];
        }
    }
    dx = acc;
    """,
)

SOURCES = (_IM2COL, _COL2IM, _MAXPOOL_FWD, _MAXPOOL_BWD)


@lru_cache(maxsize=None)
def _kernel(source: KernelSource):
    import cupy

    return cupy.ElementwiseKernel(", ".join(source.in_params), source.out_param, source.body, source.name)


# --- the four overrides of the CuPy backend --------------------------

def im2col(x, kernel_size, stride, padding, pad_value=0.0):
    """As :func:`minicnn.nn.functional.im2col`: an (N, C*KH*KW, OH*OW) view of K-major memory."""
    import cupy

    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x.shape, kernel_size, stride, padding)
    K, P = C * KH * KW, OH * OW
    col_t = cupy.empty((K, N, P), dtype=x.dtype)
    _kernel(_IM2COL)(cupy.ascontiguousarray(x), N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW,
                     x.dtype.type(pad_value), col_t)
    return col_t.transpose(1, 0, 2)


def col2im(col, x_shape, kernel_size, stride, padding):
    """As :func:`minicnn.nn.functional.col2im`, computed as a gather (one thread per input pixel)."""
    import cupy

    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x_shape, kernel_size, stride, padding)
    col_t = cupy.ascontiguousarray(col.transpose(1, 0, 2))  # free when col is already a K-major view
    img = cupy.empty((N, C, H, W), dtype=col.dtype)
    _kernel(_COL2IM)(col_t, N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW, img)
    return img


def maxpool2d_forward(x, kernel_size, stride, padding, with_argmax=True):
    """As :func:`minicnn.nn.functional.maxpool2d_forward`: ``(out, argmax (N*C, OH*OW))``.

    The kernel always writes ``argmax``; ``with_argmax=False`` only returns ``None`` for it.
    """
    import cupy

    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x.shape, kernel_size, stride, padding)
    out = cupy.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = cupy.empty((N * C, OH * OW), dtype=np.int64)
    _kernel(_MAXPOOL_FWD)(cupy.ascontiguousarray(x), argmax, H, W, KH, KW, SH, SW, PH, PW, OH, OW,
                          x.dtype.type(-np.inf), out)
    return out, (argmax if with_argmax else None)


def maxpool2d_backward(grad_output, argmax, x_shape, kernel_size, stride, padding):
    """As :func:`minicnn.nn.functional.maxpool2d_backward`, as a gather."""
    import cupy

    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x_shape, kernel_size, stride, padding)
    dx = cupy.empty((N, C, H, W), dtype=grad_output.dtype)
    _kernel(_MAXPOOL_BWD)(cupy.ascontiguousarray(grad_output), argmax, H, W, KH, KW, SH, SW, PH, PW,
                          OH, OW, dx)
    return dx
