"""Windows of an image as columns: the geometry, im2col and its adjoint col2im.

Notation: that of :mod:`minicnn.nn.functional` (N, C, H, W, KH, KW, SH, SW,
PH, PW, OH, OW; ``K = C*KH*KW``, one unfolded window; ``P = OH*OW``, the
windows of one image).

These are the reference kernels (plain array operations, written with the
array module of their arguments): each loops only over the kernel window
(KH * KW iterations) and lets NumPy or CuPy do the rest with strided slices.
A backend may override them (:func:`minicnn.backend.kernel`); the overrides
are tested against these.

Docs: docs/convolution.md
"""
from __future__ import annotations

from minicnn.backend import get_array_module, kernel


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Length of a convolution output along one axis: ``(size + 2p - k) // s + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def window(shape, kernel_size, stride, padding) -> tuple[int, ...]:
    """``(N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW)`` for windows over an input of ``shape``, as ints.

    ``shape`` is (N, C, H, W); ``kernel_size``, ``stride`` and ``padding`` are
    (height, width) pairs, as the layers keep them.
    """
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    N, C, H, W = (int(s) for s in shape)
    return (N, C, H, W, int(KH), int(KW), int(SH), int(SW), int(PH), int(PW),
            output_size(H, KH, SH, PH), output_size(W, KW, SW, PW))


@kernel
def im2col(x, kernel_size, stride, padding, pad_value=0.0):
    """Unfold every KH x KW window of ``x`` into a column.

    x    : (N, C, H, W)
    out  : (N, K, P); row ``(c, i, j)`` holds input channel ``c`` at window
           offset ``(i, j)``, column ``(oh, ow)`` is the window whose top-left
           corner sits at ``(oh*SH - PH, ow*SW - PW)``.

    With this layout a convolution is one matrix product per image,
    ``y[n] = W.reshape(OC, K) @ col[n]``.  ``pad_value`` is what the border
    holds: 0 for convolution, -inf for max-pooling.

    The array is stored K-major (a (K, N, P) array seen through a transposed
    view), so ``col.transpose(1, 0, 2).reshape(K, N*P)``, the whole batch as
    one matrix, costs no copy.
    """
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x.shape, kernel_size, stride, padding)
    xp = get_array_module(x)
    img = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=pad_value)
    col = xp.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
    for i in range(KH):
        i_end = i + SH * OH
        for j in range(KW):
            j_end = j + SW * OW
            # Window offset (i, j) of every output position at once.
            col[:, i, j] = img[:, :, i:i_end:SH, j:j_end:SW].transpose(1, 0, 2, 3)
    return col.reshape(C * KH * KW, N, OH * OW).transpose(1, 0, 2)


@kernel
def col2im(col, x_shape, kernel_size, stride, padding):
    """The adjoint of :func:`im2col`: add every column back onto its window.

    col     : (N, K, P), as :func:`im2col` lays it out
    x_shape : (N, C, H, W)
    out     : (N, C, H, W) where overlapping windows have been *summed*; the
              padded border is cut away.

    ``<im2col(x), col> == <x, col2im(col)>`` for all x and col, which is why
    the backward pass of a convolution w.r.t. its input is col2im of
    ``W^T @ dY``.
    """
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x_shape, kernel_size, stride, padding)
    xp = get_array_module(col)
    col = col.reshape(N, C, KH, KW, OH, OW)
    img = xp.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
    for i in range(KH):
        i_end = i + SH * OH
        for j in range(KW):
            j_end = j + SW * OW
            img[:, :, i:i_end:SH, j:j_end:SW] += col[:, :, i, j]
    return img[:, :, PH:PH + H, PW:PW + W]


@kernel
def transpose01(a, bias=None):
    """Swap the first two axes into a new C-contiguous array, adding ``bias`` on the way.

    a    : (A, B, P)
    bias : (A,) or None
    out  : (B, A, P) with ``out[b, i, p] = a[i, b, p] + bias[i]`` (no bias: just
           the transpose).

    Not math but data movement: :func:`minicnn.nn.functional.conv2d` turns the
    product ``W_mat @ cols`` (OC, N, P) into the output (N, OC, P) with it, and
    its backward pass turns ``dY`` (N, OC, P) into (OC, N, P).  A kernel of its
    own so that a backend can do the copy in one fast pass.
    """
    out = get_array_module(a).ascontiguousarray(a.transpose(1, 0, 2))
    if bias is not None:
        out += bias[:, None]
    return out
