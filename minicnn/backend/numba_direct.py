"""The Numba convolution's direct strategy: stride 1 and few rows (K = C*KH*KW), multiply-adds straight
from a zero-padded copy of each image, in training and inference; with ReLU and a 2 x 2 max-pool taken
as each plane is stored.

Notation: that of :mod:`minicnn.backend.numba_kernels`.  :mod:`minicnn.backend.numba_conv` chooses the
strategy.

Direct (stride 1 and ``K <= _DIRECT_MAX_K``, such as conv1: one channel, K = 9)
    With few rows the product ``w_mat @ cols`` is a thin, memory-bound pass:
    im2col writes K copies of the image for a product that does only K
    multiply-adds per output.  The direct kernel does those multiply-adds
    from a zero-padded copy of each image instead:

        y[n, oc, oh, ow] = bias[oc] + sum over (c, i, j) of w[oc, c, i, j] * xpad[n, c, oh + i, ow + j]

    The padded image is stored flat with row length ``Wp = W + 2*PW``, so for
    one tap (c, i, j) all the outputs of a plane are one contiguous loop
    ``acc[t] += w * xpad_flat[i*Wp + j + t]`` over ``t < OH*Wp`` (``t = oh*Wp
    + ow``; the ``Wp - OW`` positions past each row's end are computed and
    dropped), which LLVM turns into vector code.  The weight gradient is the
    same sum the other way round, ``dW[oc, c, i, j] = sum over n, t of
    dY_wide[n, oc, t] * xpad_flat[n, c, i*Wp + j + t]`` (dY widened to rows of
    Wp with zeros), and the input gradient adds ``w * dY_wide`` back onto the
    padded image, which is then cropped.

Docs: docs/backends.md#numba
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from minicnn.backend.numba_kernels import _first_max4

_SUMS = {"reassoc", "contract"}  # lets LLVM vectorise a sum (it reorders it, as BLAS does)


# --- direct (stride 1, few rows) ----------------------------------------------------------------
# A padded plane is stored flat: xpad[n, c, (h + PH)*Wp + (w + PW)] = x[n, c, h, w], zeros
# around, and KW - 1 more zeros at the end so that the last tap's loop stays inside.
# The loops index with unsigned integers, as in numba_kernels: no wrap-around tests, vector code.

@numba.njit(parallel=True, cache=True)
def _pad_planes(x, PH, PW, xpad):
    """xpad[n, c] = x[n, c] zero-padded by (PH, PW), rows of Wp = W + 2*PW, flat."""
    N, C, H, W = x.shape
    Wp = W + 2 * PW
    zero = xpad.dtype.type(0)
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        dst = xpad[n, c]
        for t in range(np.uint64(dst.shape[0])):
            dst[t] = zero
        for h in range(H):
            src, base = x[n, c, h], np.uint64((h + PH) * Wp + PW)
            for w in range(np.uint64(W)):
                dst[base + w] = src[w]


@numba.njit(cache=True, inline="always")
def _direct_plane(xpad, w, bias, Wp, n, oc, acc):
    """acc[oh*Wp + ow] = bias[oc] + sum over (c, i, j) of w[oc, c, i, j] * xpad[n, c, (oh + i)*Wp + ow + j]"""
    C, KH, KW = xpad.shape[1], w.shape[2], w.shape[3]
    L = np.uint64(acc.shape[0])
    b = bias[oc] if bias.shape[0] != 0 else acc.dtype.type(0)
    for t in range(L):
        acc[t] = b
    for c in range(C):
        src = xpad[n, c]
        for i in range(KH):
            for j in range(KW):
                wv, off = w[oc, c, i, j], np.uint64(i * Wp + j)
                for t in range(L):
                    acc[t] += wv * src[off + t]


@numba.njit(parallel=True, cache=True)
def forward(xpad, w, bias, Wp, relu, y):
    """y[n, oc, oh, ow] = bias[oc] + sum over (c, i, j) of w[oc, c, i, j] * xpad[n, c, (oh + i)*Wp + ow + j],
    with ``relu`` clipped at 0 (NaN stays NaN)."""
    N, OC, OH, OW = y.shape
    zero = y.dtype.type(0)
    for plane in prange(N * OC):
        n, oc = plane // OC, plane % OC
        acc = np.empty(OH * Wp, dtype=y.dtype)     # the plane's outputs, rows of Wp
        _direct_plane(xpad, w, bias, Wp, n, oc, acc)
        for oh in range(OH):
            dst, base = y[n, oc, oh], np.uint64(oh * Wp)
            if relu:
                for ow in range(np.uint64(OW)):
                    v = acc[base + ow]
                    dst[ow] = zero if v < zero else v
            else:
                for ow in range(np.uint64(OW)):
                    dst[ow] = acc[base + ow]


@numba.njit(parallel=True, cache=True)
def forward_relu_pool2(xpad, w, bias, Wp, OH, z):
    """z[n, oc] = relu of the 2 x 2 maxima of the direct convolution's plane (OH rows of Wp)."""
    N, OC = z.shape[0], z.shape[1]
    for plane in prange(N * OC):
        n, oc = plane // OC, plane % OC
        acc = np.empty(OH * Wp, dtype=z.dtype)
        _direct_plane(xpad, w, bias, Wp, n, oc, acc)               # the bias is in acc already
        _relu_pool2(acc, Wp, z.dtype.type(0), z[n, oc])


@numba.njit(parallel=True, cache=True)
def forward_relu_pool2_argmax(xpad, w, bias, Wp, OH, z, argmax):
    """Training's forward_relu_pool2: also argmax[n, oc, ph, pw], the window offset 2a + b of
    each first maximum."""
    N, OC, ZH, ZW = z.shape
    zero = z.dtype.type(0)
    for plane in prange(N * OC):
        n, oc = plane // OC, plane % OC
        acc = np.empty(OH * Wp, dtype=z.dtype)
        _direct_plane(xpad, w, bias, Wp, n, oc, acc)               # the bias is in acc already
        for ph in range(ZH):
            top = 2 * ph * Wp
            r0, r1 = acc[top:top + Wp], acc[top + Wp:top + 2 * Wp]   # the window rows, as slices
            dst, arg = z[n, oc, ph], argmax[n, oc, ph]
            for pw in range(ZW):
                best, at = _first_max4(r0[2 * pw], r0[2 * pw + 1], r1[2 * pw], r1[2 * pw + 1])
                dst[pw] = best if not best < zero else zero
                arg[pw] = at


@numba.njit(cache=True, inline="always")
def _relu_pool2(src, row, add, dst):
    """dst[ph, pw] = max(0, add + the largest of src[(2ph + a)*row + 2pw + b] for a, b in {0, 1}): a
    flat plane of rows ``row`` long, max-pooled 2 x 2 with stride 2 (rows and columns past 2*ZH, 2*ZW
    left out, as pooling's floor does), the bias ``add`` added, then ReLU.  NaN stays NaN."""
    zero = dst.dtype.type(0)
    for ph in range(dst.shape[0]):
        top, out = 2 * ph * row, dst[ph]
        r0, r1 = src[top:top + row], src[top + row:top + 2 * row]   # the window rows, as slices
        for pw in range(dst.shape[1]):
            m = _first_max4(r0[2 * pw], r0[2 * pw + 1], r1[2 * pw], r1[2 * pw + 1])[0] + add
            out[pw] = m if not m < zero else zero     # relu; a NaN fails both tests and stays


@numba.njit(cache=True, inline="always")
def _widen(dy, mask, n, oc, Wp, g):
    """g[oh*Wp + ow] = dy[n, oc, oh, ow] for ow < OW (g's other entries are left as they are: zero), or 0
    where ``mask[n, oc, oh, ow] <= 0`` (ReLU's backward, from its output; an empty ``mask``: none)."""
    zero = g.dtype.type(0)
    for oh in range(dy.shape[2]):
        row, base = dy[n, oc, oh], np.uint64(oh * Wp)
        if mask.shape[0] == 0:
            for ow in range(np.uint64(dy.shape[3])):
                g[base + ow] = row[ow]
        else:
            keep = mask[n, oc, oh]
            for ow in range(np.uint64(dy.shape[3])):
                g[base + ow] = row[ow] if keep[ow] > zero else zero


@numba.njit(parallel=True, cache=True, fastmath=_SUMS)
def weight_grad(xpad, dy, mask, Wp, dw, db):
    """dw[oc, c, i, j] = sum over n, t of dY_wide[n, oc, t] * xpad[n, c, i*Wp + j + t]; db[oc] = sum of dY[:, oc]
    (dY masked by ReLU's output ``mask``, unless empty; see _widen).  Each plane's sums are added into
    float64 totals, so a large batch loses no precision."""
    N, C = xpad.shape[0], xpad.shape[1]
    OC, KH, KW = dw.shape[0], dw.shape[2], dw.shape[3]
    OH, OW = dy.shape[2], dy.shape[3]
    L = np.uint64(OH * Wp)
    for oc in prange(OC):
        acc = np.zeros((C, KH, KW), dtype=np.float64)
        bias_acc = 0.0
        g = np.zeros(OH * Wp, dtype=dy.dtype)
        for n in range(N):
            _widen(dy, mask, n, oc, Wp, g)
            s = dy.dtype.type(0)
            for t in range(L):
                s += g[t]
            bias_acc += s
            for c in range(C):
                src = xpad[n, c]
                for i in range(KH):
                    for j in range(KW):
                        off, s = np.uint64(i * Wp + j), dy.dtype.type(0)
                        for t in range(L):
                            s += g[t] * src[off + t]
                        acc[c, i, j] += s
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    dw[oc, c, i, j] = acc[c, i, j]
        db[oc] = bias_acc


@numba.njit(parallel=True, cache=True)
def input_grad(dy, mask, w, PH, PW, Wp, dx):
    """dx[n, c] = the crop of sum over (oc, i, j) of w[oc, c, i, j] * dY_wide[n, oc] added at offset i*Wp + j
    (dY masked by ``mask`` unless empty, as in weight_grad)."""
    N, C, H, W = dx.shape
    OC, KH, KW = w.shape[0], w.shape[2], w.shape[3]
    OH = dy.shape[2]
    L = np.uint64(OH * Wp)
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        dxp = np.zeros((H + 2 * PH) * Wp + KW, dtype=dx.dtype)
        g = np.zeros(OH * Wp, dtype=dx.dtype)
        for oc in range(OC):
            _widen(dy, mask, n, oc, Wp, g)
            for i in range(KH):
                for j in range(KW):
                    wv, off = w[oc, c, i, j], np.uint64(i * Wp + j)
                    for t in range(L):
                        dxp[off + t] += wv * g[t]
        for h in range(H):
            dst, base = dx[n, c, h], np.uint64((h + PH) * Wp + PW)
            for ww in range(np.uint64(W)):
                dst[ww] = dxp[base + ww]


def padded(x, dims):
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    Wp = W + 2 * PW
    xpad = np.empty((N, C, (H + 2 * PH) * Wp + KW - 1), dtype=x.dtype)
    _pad_planes(x, PH, PW, xpad)
    return xpad, Wp
