"""The Numba convolution's rows strategy: one window per row, channels last, in training and (a block of
images at a time) in inference; with ReLU and a 2 x 2 max-pool taken as the product is stored.

Notation: that of :mod:`minicnn.backend.numba_kernels` (N, C, H, W, OC, KH, KW, SH, SW, PH, PW, OH,
OW; ``P = OH*OW``, ``K = C*KH*KW``).  :mod:`minicnn.backend.numba_conv` chooses the strategy.

Rows (training: every convolution with ``K > _DIRECT_MAX_K`` or a stride)
    The reference's whole-batch product with the columns laid out the other
    way round: one row per window, channels last,

        rows[n*P + p, (i*KW + j)*C + c] = x_padded[n, c, oh*SH + i, ow*SW + j]     (N*P, K)

    so that unfolding copies runs of C contiguous values (from a channels-last
    copy of x) instead of runs of OW, and folding back in backward adds them.
    The products are the reference's, transposed: ``y = rows @ w_rows^T`` (N*P,
    OC), ``dW = dY @ rows`` and ``drows = dY^T @ w_rows`` with ``w_rows`` the
    weight with its K axis in the same (i, j, c) order.  The rows are kept for
    backward.  (Two other layouts were measured and removed: the reference's
    K-major columns, and the blocked path below in training too; the figures
    are in docs/backends.md.)

Blocked rows (the same convolutions in inference, under no_grad)
    The same steps one block of images at a time: as many images as fit
    ``_BLOCK_BYTES`` with their product are unfolded into one reused buffer
    as rows, multiplied while the buffer is still in the cache, and stored
    into the output with the bias added (and, for ``conv2d_relu_maxpool2d``,
    ReLU and a 2 x 2 max-pool).  conv2 of MnistCNN at batch 64 unfolds into a
    12,544 x 288 float32 matrix (14.4 MB, seven times a core's L2):
    unblocked, it is written to memory and read back by the product.  It
    keeps nothing for a backward pass.

Docs: docs/backends.md#numba
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from minicnn.backend.numba_kernels import _first_max4, _transpose01

#: The working set of one block of images in the blocked path: its rows and its product.  Sized
#: to stay in the two cores' L2 caches together (2 MB each on the machines measured), so the product
#: reads the rows just unfolded from the cache instead of memory.  Smaller blocks
#: (1 MB: conv2 of MnistCNN in 22 blocks of 3 images) ran slower: each block starts three parallel
#: loops and a product, and a thin product of 3 images is far below BLAS's speed.
_BLOCK_BYTES = 4 << 20

_NO_ARGMAX = np.empty((0, 0, 0, 0), dtype=np.int8)  # an empty argmax: the pooling kernels store none


# --- blocks of images (inference) ---------------------------------------------------------------

def _images_per_block(K, OC, P, itemsize, N) -> int:
    """How many images' rows (P, K) and products (P, OC) fit ``_BLOCK_BYTES`` together (at least one)."""
    return max(1, min(N, _BLOCK_BYTES // ((K + OC) * P * itemsize)))


def _blocks(N, per_block):
    """(first image, image count) of each block of ``per_block`` images (the last one may be smaller)."""
    return [(n0, min(per_block, N - n0)) for n0 in range(0, N, per_block)]


# --- rows: one window per row, channels last -----------------------------------------------------

@numba.njit(parallel=True, cache=True)
def _channels_last(x, xh):
    """xh[n, h, w, c] = x[n, c, h, w]"""
    N, C, H, W = x.shape
    for task in prange(N * H):
        n, h = task // H, task % H
        for w in range(W):
            dst = xh[n, h, w]
            for c in range(C):
                dst[c] = x[n, c, h, w]


@numba.njit(parallel=True, cache=True)
def _im2rows(xh, KH, KW, SH, SW, PH, PW, rows):
    """rows[n, oh, ow, (i*KW + j)*C : +C] = xh_padded[n, oh*SH + i, ow*SW + j, :]: KH*KW runs of C values."""
    N, H, W, C = xh.shape
    OH, OW = rows.shape[1], rows.shape[2]
    zero, uC = rows.dtype.type(0), np.uint64(C)
    for task in prange(N * OH):
        n, oh = task // OH, task % OH
        for ow in range(OW):
            dst = rows[n, oh, ow]
            for i in range(KH):
                ih = oh * SH - PH + i
                for j in range(KW):
                    iw, base = ow * SW - PW + j, np.uint64((i * KW + j) * C)
                    if 0 <= ih < H and 0 <= iw < W:
                        src = xh[n, ih, iw]
                        for c in range(uC):
                            dst[base + c] = src[c]
                    else:
                        for c in range(uC):
                            dst[base + c] = zero


@numba.njit(parallel=True, cache=True)
def _rows_to_planes(prod, bias, relu, y):
    """y[n, oc, p] = prod[n, p, oc] + bias[oc], and with ``relu`` max(that, 0) (NaN stays NaN)."""
    N, P, OC = prod.shape
    zero = y.dtype.type(0)
    for n in prange(N):
        src, dst = prod[n], y[n]
        for p in range(P):
            row = src[p]
            for oc in range(OC):
                v = row[oc] + bias[oc]
                dst[oc, p] = zero if relu and v < zero else v


@numba.njit(parallel=True, cache=True)
def _swap_masked(g, y, out):
    """out[i, b, :] = g[b, i, :] where y[b, i, :] > 0, else 0: ReLU's backward in the axis swap
    that the convolution's backward makes anyway (without a mask, numba_kernels._transpose01)."""
    B, A = g.shape[0], g.shape[1]
    zero = out.dtype.type(0)
    for row in prange(A * B):
        i, b = row // B, row % B
        src, dst, mask = g[b, i], out[i, b], y[b, i]
        for p in range(np.uint64(src.shape[0])):
            dst[p] = src[p] if mask[p] > zero else zero


@numba.njit(parallel=True, cache=True)
def _rows2im(drows, KH, KW, SH, SW, PH, PW, dx):
    """dx[n] = each row's KH*KW runs added back onto their pixels (channels last in a local image),
    then stored channels first; one image per parallel iteration, so no two threads add into one pixel."""
    N, C, H, W = dx.shape
    OH, OW = drows.shape[1], drows.shape[2]
    uC = np.uint64(C)
    for n in prange(N):
        acc = np.zeros((H, W, C), dtype=dx.dtype)
        for oh in range(OH):
            for ow in range(OW):
                src = drows[n, oh, ow]
                for i in range(KH):
                    ih = oh * SH - PH + i
                    if 0 <= ih < H:
                        for j in range(KW):
                            iw, base = ow * SW - PW + j, np.uint64((i * KW + j) * C)
                            if 0 <= iw < W:
                                dst = acc[ih, iw]
                                for c in range(uC):
                                    dst[c] += src[base + c]
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    dx[n, c, h, w] = acc[h, w, c]


def weight_rows(weight, dtype):
    """The weight as (OC, K) with K in the rows' (i, j, c) order."""
    OC = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1).reshape(OC, -1), dtype=dtype)


def unfold(x, dims):
    """rows (N*P, K): x unfolded, one window per row, channels last."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    xh = np.empty((N, H, W, C), dtype=x.dtype)
    _channels_last(x, xh)
    rows = np.empty((N, OH, OW, C * KH * KW), dtype=x.dtype)
    _im2rows(xh, KH, KW, SH, SW, PH, PW, rows)
    return rows.reshape(N * OH * OW, C * KH * KW)


def forward(x, weight, bias, dims, relu=False):
    """(y, rows): the convolution as ``rows @ w_rows^T`` (with ``relu``, clipped at 0 as it is stored),
    rows (N*P, K) kept for backward."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, P = weight.shape[0], OH * OW
    rows = unfold(x, dims)
    prod = rows @ weight_rows(weight, x.dtype).T                                    # (N*P, OC)
    y = np.empty((N, OC, OH, OW), dtype=x.dtype)
    bias = bias if bias.shape[0] != 0 else np.zeros(OC, dtype=x.dtype)
    _rows_to_planes(prod.reshape(N, P, OC), bias, relu, y.reshape(N, OC, P))
    return y, rows


def backward(grad_output, rows, weight, dims, input_grad, relu_out):
    """The backward of :func:`forward`; ``relu_out``, the clipped output (empty: none), masks dY."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, P, dtype = weight.shape[0], OH * OW, grad_output.dtype
    dy = np.empty((OC, N, P), dtype=dtype)
    if relu_out.shape[0] == 0:  # no ReLU: the plain swap
        _transpose01(grad_output.reshape(N, OC, P), np.empty(0, dtype=dtype), dy)
    else:
        _swap_masked(grad_output.reshape(N, OC, P), relu_out.reshape(N, OC, P), dy)
    return products(dy.reshape(OC, N * P), rows, weight, dims, input_grad)


def products(dy, rows, weight, dims, input_grad):
    """``(dx, dweight, dbias)`` from dY as (OC, N*P) and the rows: ``dW = dY @ rows``, ``drows = dY^T @
    w_rows`` folded back onto the image."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, dtype = weight.shape[0], dy.dtype
    dweight = np.ascontiguousarray((dy @ rows).reshape(OC, KH, KW, C).transpose(0, 3, 1, 2))
    dx = None
    if input_grad:
        drows = dy.T @ weight_rows(weight, dtype)                                  # (N*P, K)
        dx = np.empty((N, C, H, W), dtype=dtype)
        _rows2im(drows.reshape(N, OH, OW, C * KH * KW), KH, KW, SH, SW, PH, PW, dx)
    return dx, dweight, dy.sum(axis=1)


def blocked_forward(x, weight, bias, dims, y, relu_pool2=False):
    """y (N, OC, OH, OW) one block of images at a time, each block unfolded into rows (channels last) and
    multiplied as ``rows @ w_rows^T`` while in the cache; with ``relu_pool2``, y (N, OC, OH // 2, OW // 2)
    receives its 2 x 2 max-pool and ReLU instead."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, K, P = weight.shape[0], C * KH * KW, OH * OW
    per_block = _images_per_block(K, OC, P, x.dtype.itemsize, N)
    w_t = np.ascontiguousarray(weight_rows(weight, x.dtype).T)                      # (K, OC)
    xh_buf = np.empty(per_block * H * W * C, dtype=x.dtype)
    rows_buf = np.empty(per_block * P * K, dtype=x.dtype)
    prod_buf = np.empty(per_block * P * OC, dtype=x.dtype)
    bias = bias if bias.shape[0] != 0 else np.zeros(OC, dtype=x.dtype)
    for n0, m in _blocks(N, per_block):
        xh = xh_buf[:m * H * W * C].reshape(m, H, W, C)
        _channels_last(x[n0:n0 + m], xh)
        rows = rows_buf[:m * P * K].reshape(m, OH, OW, K)
        _im2rows(xh, KH, KW, SH, SW, PH, PW, rows)
        prod = prod_buf[:m * P * OC].reshape(m * P, OC)
        np.matmul(rows.reshape(m * P, K), w_t, out=prod)                             # (m*P, OC)
        if relu_pool2:
            pool2_relu(prod.reshape(m, P, OC), bias, OW, y[n0:n0 + m], _NO_ARGMAX)
        else:
            _rows_to_planes(prod.reshape(m, P, OC), bias, False, y[n0:n0 + m].reshape(m, OC, P))


@numba.njit(parallel=True, cache=True)
def pool2_relu(prod, bias, OW, z, argmax):
    """z[n, oc, ph, pw] = max(0, the first maximum of the window's four rows' prod[n, p, oc] + bias[oc]):
    a 2 x 2 max-pool of stride 2 over whole rows of OC values (rows and columns past 2*ZH, 2*ZW left
    out; NaN stays NaN), and argmax[n, oc, ph, pw] its offset 2a + b in the window (a, b in {0, 1}),
    unless ``argmax`` is empty (inference)."""
    m, OC = prod.shape[0], prod.shape[2]
    ZH, ZW = z.shape[2], z.shape[3]
    zero = z.dtype.type(0)
    for task in prange(m * ZH):
        n, ph = task // ZH, task % ZH
        for pw in range(ZW):
            k = 2 * ph * OW + 2 * pw
            r0, r1, r2, r3 = prod[n, k], prod[n, k + 1], prod[n, k + OW], prod[n, k + OW + 1]
            for oc in range(OC):
                add = bias[oc]
                best, at = _first_max4(r0[oc] + add, r1[oc] + add, r2[oc] + add, r3[oc] + add)
                z[n, oc, ph, pw] = best if not best < zero else zero
                if argmax.shape[0] != 0:
                    argmax[n, oc, ph, pw] = at


@numba.njit(parallel=True, cache=True)
def unpool2_masked(dz, z, argmax, OW, swapped, dst):
    """Max-pool's and ReLU's backward together: plane (n, oc) of dst (P = OH*OW values, all 0 but these)
    receives each dz[n, oc, ph, pw] whose z > 0 at its window's argmax; dst is (OC, N, P) with
    ``swapped`` (the layout the rows' products take), else (N, OC, P)."""
    N, OC, ZH, ZW = dz.shape
    zero = dst.dtype.type(0)
    for task in prange(N * OC):
        n, oc = task // OC, task % OC
        d = dst[oc, n] if swapped else dst[n, oc]
        for p in range(np.uint64(d.shape[0])):
            d[p] = zero
        for ph in range(ZH):
            for pw in range(ZW):
                if z[n, oc, ph, pw] > zero:
                    k = argmax[n, oc, ph, pw]
                    d[(2 * ph + k // 2) * OW + 2 * pw + k % 2] = dz[n, oc, ph, pw]
