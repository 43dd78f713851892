"""The Numba backend's convolution: ``conv2d``, ``conv2d_backward``, training's fused
``conv2d_relu``, ``conv2d_relu_maxpool2d_train`` and their backward passes, and inference's fused
``conv2d_relu_maxpool2d`` as overrides; :func:`plan` chooses how each call runs.

Notation: that of :mod:`minicnn.backend.numba_kernels` (N, C, H, W, OC, KH,
KW, SH, SW, PH, PW, OH, OW; ``P = OH*OW``, ``K = C*KH*KW``).

The reference (:func:`minicnn.nn.functional.conv2d`) unfolds the whole batch
with im2col, multiplies once, and keeps the columns for backward.  Here one
function, :func:`plan`, chooses from the shapes, the stride and whether
gradients are on how a convolution runs, and each strategy sits in a file of
its own with its math:

    direct        stride 1 and K <= _DIRECT_MAX_K (conv1: one     numba_direct.py
                  channel, K = 9): multiply-adds straight from a
                  zero-padded copy of each image
    rows          training, the other convolutions: the           numba_rows.py
                  whole-batch product with one window per row,
                  channels last
    blocked rows  inference, the other convolutions: the same,    numba_rows.py
                  a block of images at a time, in the cache
    winograd      training's Conv2d -> ReLU -> 2x2 max-pool runs   numba_winograd.py
                  of a 3 x 3 convolution of stride 1 with an
                  even output (conv2): Winograd's F(2 x 2, 3 x 3)

What a path keeps for backward is a small named record, and the backward
follows the record: :class:`Direct` (the input), :class:`Rows` (the rows),
``numba_winograd.Tiles`` (the transformed input); inference's blocked rows
keep nothing (None), and a forward of a dtype these kernels do not take kept
the reference's columns, which go to the reference.  Each override names the
path it took, or why it handed the call to the reference, in
:func:`minicnn.trace`; each is tested against the reference (values to
rounding, the same dtype).

ReLU and max-pooling fused (training's Conv2d -> ReLU pairs and Conv2d -> ReLU -> MaxPool2d runs)
    On every path the output is clipped at 0 (and, for a 2 x 2 pool of stride 2, pooled with
    its argmax noted) as it is stored, and the backward applies ReLU's mask (and routes dz to
    each window's argmax) as it reads dY, so ReLU and max-pooling make no passes of their own;
    inference's blocked rows run conv2d and ReLU one after the other, and other pools go to the
    reference, the layers' functions in turn.

Docs: docs/backends.md#numba
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minicnn.backend import numba_direct, numba_rows
from minicnn.backend import numba_winograd as winograd
from minicnn.nn import functional, fused
from minicnn.nn.grad_mode import is_grad_enabled
from minicnn.nn.unfold import window
from minicnn.tracing import note

__all__ = ["conv2d", "conv2d_backward", "conv2d_relu", "conv2d_relu_backward", "conv2d_relu_maxpool2d",
           "conv2d_relu_maxpool2d_train", "conv2d_relu_maxpool2d_backward"]  # the overrides

#: Convolutions of stride 1 with at most this many rows in their columns (K = C*KH*KW) take the
#: direct kernels: a one-channel first layer (K = 9 for 3 x 3, 25 for 5 x 5) or a 3 x 3 one on RGB
#: images (K = 27).  A direct kernel does K multiply-adds per output from the cache, where the
#: product would do the same K with BLAS after im2col has written K copies of the image; with more
#: rows the product's register blocking wins.  benchmarks/bench_numba_levers.py measures what
#: the direct kernels buy in a training step and in inference.
_DIRECT_MAX_K = 32

#: Whether training's Conv2d -> ReLU -> MaxPool2d runs whose convolution is 3 x 3 of stride 1 with an
#: even output (numba_winograd.fits: conv2 of MnistCNN) take Winograd's F(2 x 2, 3 x 3) (see
#: :mod:`minicnn.backend.numba_winograd`) instead of the rows; wide convolutions only (the direct
#: kernels keep theirs).  bench_numba_levers.py turns it off to measure what it buys.
_WINOGRAD = True



def _uses_direct(K, stride) -> bool:
    return K <= _DIRECT_MAX_K and tuple(stride) == (1, 1)


def plan(weight_shape, stride, padding, out_hw, training: bool, pool2: bool = False) -> str:
    """The path a convolution takes here, from its shapes, its stride and whether gradients are on
    (``training``); ``pool2``: a Conv2d -> ReLU -> 2 x 2 max-pool run of stride 2, pooled as stored.

        "direct"        stride 1 and K = C*KH*KW <= _DIRECT_MAX_K                    numba_direct.py
        "winograd"      training's pool2 runs of a 3 x 3, stride 1, with an even output  numba_winograd.py
        "rows"          the other convolutions in training                           numba_rows.py
        "blocked rows"  the other convolutions in inference                          numba_rows.py
    """
    if _uses_direct(int(np.prod(weight_shape[1:])), stride):
        return "direct"
    if not training:
        return "blocked rows"
    if pool2 and _WINOGRAD and winograd.fits(weight_shape, stride, padding, out_hw):
        return "winograd"
    return "rows"


class Rows(NamedTuple):
    """What the rows path keeps for backward: the input unfolded, one window per row, (N*P, K)."""

    rows: np.ndarray


class Direct(NamedTuple):
    """What the direct path keeps for backward: the input itself (backward pads it again)."""

    x: np.ndarray


# --- the overrides ------------------------------------------------------------------------------

def _forward_args(x, bias, weight, stride, padding):
    """x contiguous, the bias as an array (empty for none) and the window's dimensions."""
    x = np.ascontiguousarray(x)
    bias = np.empty(0, dtype=x.dtype) if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    return x, bias, window(x.shape, weight.shape[2:], stride, padding)


def _bias_or_zeros(bias, OC, dtype):
    return bias if bias.shape[0] != 0 else np.zeros(OC, dtype=dtype)


def conv2d(x, weight, bias, stride, padding):
    """``y = weight * x + bias`` on the path :func:`plan` chooses; returns ``(y, saved)``: a
    :class:`Rows` or :class:`Direct` record, or None in inference's blocked rows (nothing for a
    backward pass).  Same values as :func:`functional.conv2d` up to the rounding of a sum taken in
    another order."""
    x, bias, dims = _forward_args(x, bias, weight, stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    path = plan(weight.shape, stride, padding, (OH, OW), is_grad_enabled())
    note(path)
    if path == "rows":
        y, rows = numba_rows.forward(x, weight, bias, dims)
        return y, Rows(rows)
    y = np.empty((N, weight.shape[0], OH, OW), dtype=x.dtype)
    if path == "direct":
        xpad, Wp = numba_direct.padded(x, dims)
        numba_direct.forward(xpad, np.ascontiguousarray(weight), bias, Wp, False, y)
        return y, Direct(x)
    numba_rows.blocked_forward(x, weight, bias, dims, y)
    return y, None


def conv2d_relu(x, weight, bias, stride, padding):
    """Training's ``relu(conv2d(x))`` (see :func:`fused.conv2d_relu`): on the rows and direct
    paths the output is clipped as it is stored, so ReLU makes no pass of its own; inference's
    blocked rows run :func:`conv2d` and ReLU one after the other."""
    x, bias, dims = _forward_args(x, bias, weight, stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    path = plan(weight.shape, stride, padding, (OH, OW), is_grad_enabled())
    if path == "blocked rows":
        note("reference: conv2d, then ReLU")
        return fused.conv2d_relu.reference(x, weight, bias, stride, padding)
    note(f"{path}, clipped as stored")
    if path == "rows":
        y, rows = numba_rows.forward(x, weight, bias, dims, relu=True)
        return y, Rows(rows)
    y = np.empty((N, weight.shape[0], OH, OW), dtype=x.dtype)
    xpad, Wp = numba_direct.padded(x, dims)
    numba_direct.forward(xpad, np.ascontiguousarray(weight), bias, Wp, True, y)
    return y, Direct(x)


def _pool2(pool_kernel, pool_stride, pool_padding) -> bool:
    return (tuple(pool_kernel), tuple(pool_stride), tuple(pool_padding)) == ((2, 2), (2, 2), (0, 0))


def _not_pool2(pool_kernel, pool_stride, pool_padding) -> str:
    """Why a fused run goes to the reference: its pool, in the trace's words."""
    (KH, KW), (SH, SW), (PH, PW) = pool_kernel, pool_stride, pool_padding
    return f"reference: pool {KH}x{KW} stride {SH}x{SW} padding {PH}x{PW}, not 2x2 stride 2 padding 0"


def conv2d_relu_maxpool2d(x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding):
    """Inference's ``maxpool2d(relu(conv2d(x)))`` (see :func:`fused.conv2d_relu_maxpool2d`): for a
    2 x 2 pool of stride 2 without padding, the convolution's planes are pooled and clipped as they are
    stored, so its full-size output is never written; any other pool goes to the reference."""
    if not _pool2(pool_kernel, pool_stride, pool_padding):
        note(_not_pool2(pool_kernel, pool_stride, pool_padding))
        return fused.conv2d_relu_maxpool2d.reference(x, weight, bias, stride, padding,
                                                     pool_kernel, pool_stride, pool_padding)
    x, bias, dims = _forward_args(x, bias, weight, stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    z = np.empty((N, weight.shape[0], OH // 2, OW // 2), dtype=x.dtype)
    path = plan(weight.shape, stride, padding, (OH, OW), training=False, pool2=True)
    note(f"{path}, pooled as stored")
    if path == "direct":
        xpad, Wp = numba_direct.padded(x, dims)
        numba_direct.forward_relu_pool2(xpad, np.ascontiguousarray(weight), bias, Wp, OH, z)
    else:
        numba_rows.blocked_forward(x, weight, bias, dims, z, relu_pool2=True)
    return z


def conv2d_relu_maxpool2d_train(x, weight, bias, stride, padding, pool_kernel, pool_stride, pool_padding):
    """Training's ``maxpool2d(relu(conv2d(x)))`` (see :func:`fused.conv2d_relu_maxpool2d_train`):
    for a 2 x 2 pool of stride 2 the convolution's output is clipped, pooled and its argmax noted as it
    is stored (direct, rows or Winograd), so neither it nor ReLU's output is ever written; returns
    ``(z, saved, argmax)``, argmax as int8 window offsets.  Any other pool: the reference."""
    if not _pool2(pool_kernel, pool_stride, pool_padding):
        note(_not_pool2(pool_kernel, pool_stride, pool_padding))
        return fused.conv2d_relu_maxpool2d_train.reference(x, weight, bias, stride, padding,
                                                           pool_kernel, pool_stride, pool_padding)
    x, bias, dims = _forward_args(x, bias, weight, stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, ZH, ZW = weight.shape[0], OH // 2, OW // 2
    path = plan(weight.shape, stride, padding, (OH, OW), training=True, pool2=True)
    note(f"{path}, pooled as stored")
    if path == "winograd":
        bias = _bias_or_zeros(bias, OC, x.dtype)
        z, tiles, argmax = winograd.relu_pool2_forward(x, np.asarray(weight, dtype=x.dtype), bias, (PH, PW))
        return z, tiles, argmax.reshape(N * OC, ZH * ZW)
    z = np.empty((N, OC, ZH, ZW), dtype=x.dtype)
    argmax = np.empty((N, OC, ZH, ZW), dtype=np.int8)
    if path == "direct":
        xpad, Wp = numba_direct.padded(x, dims)
        numba_direct.forward_relu_pool2_argmax(xpad, np.ascontiguousarray(weight), bias, Wp, OH, z, argmax)
        saved = Direct(x)
    else:
        rows = numba_rows.unfold(x, dims)
        prod = rows @ numba_rows.weight_rows(weight, x.dtype).T                            # (N*P, OC)
        numba_rows.pool2_relu(prod.reshape(N, OH * OW, OC), _bias_or_zeros(bias, OC, x.dtype), OW, z, argmax)
        saved = Rows(rows)
    return z, saved, argmax.reshape(N * OC, ZH * ZW)


def conv2d_relu_maxpool2d_backward(grad_output, z, argmax, saved, weight, x_shape, stride, padding,
                                   pool_kernel, pool_stride, pool_padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d_relu_maxpool2d_train` from its ``z``, ``argmax`` and
    ``saved`` (the record of the path its forward took): dY is built from dz in one pass (each gradient
    with z > 0 at its window's argmax, zeros elsewhere), straight into the layout the convolution's
    backward reads; see :func:`fused.conv2d_relu_maxpool2d_backward`."""
    if isinstance(saved, winograd.Tiles):
        note("winograd")
        return _winograd_backward(grad_output, z, argmax, saved, weight, x_shape, stride, padding, input_grad)
    if not (_pool2(pool_kernel, pool_stride, pool_padding) and argmax.dtype == np.int8
            and isinstance(saved, (Rows, Direct))):  # the forward took the reference: so does its backward
        note("reference: the forward's")
        return fused.conv2d_relu_maxpool2d_backward.reference(
            grad_output, z, argmax, saved, weight, x_shape, stride, padding, pool_kernel, pool_stride,
            pool_padding, input_grad)
    dims = window(x_shape, weight.shape[2:], stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, ZH, ZW, P = weight.shape[0], OH // 2, OW // 2, OH * OW
    if not (tuple(grad_output.shape) == tuple(z.shape) == (N, OC, ZH, ZW)) or argmax.shape != (N * OC, ZH * ZW):
        raise ValueError(f"conv2d_relu_maxpool2d_backward: for an input of shape {(N, C, H, W)} expected "
                         f"grad_output and z of shape {(N, OC, ZH, ZW)} and argmax of shape {(N * OC, ZH * ZW)}, "
                         f"got {tuple(grad_output.shape)}, {tuple(z.shape)} and {tuple(argmax.shape)}")
    dtype = grad_output.dtype
    dz, z = np.ascontiguousarray(grad_output), np.ascontiguousarray(z, dtype=dtype)
    argmax = np.ascontiguousarray(argmax).reshape(N, OC, ZH, ZW)
    if isinstance(saved, Rows):
        note("rows, dY built from dz")
        dy = np.empty((OC, N, P), dtype=dtype)
        numba_rows.unpool2_masked(dz, z, argmax, OW, True, dy)
        rows = _checked_rows(saved, dims, dtype)
        return numba_rows.products(dy.reshape(OC, N * P), rows, weight, dims, input_grad)
    dy = np.empty((N, OC, OH, OW), dtype=dtype)
    numba_rows.unpool2_masked(dz, z, argmax, OW, False, dy.reshape(N, OC, P))
    return _backward(dy, saved, weight, x_shape, stride, padding, input_grad, None)


def _winograd_backward(grad_output, z, argmax, tiles, weight, x_shape, stride, padding, input_grad):
    """The backward of a run that took Winograd's forward, its arguments checked against the tiles."""
    dims = window(x_shape, weight.shape[2:], stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC, ZH, ZW = weight.shape[0], OH // 2, OW // 2
    expected = (16, N * ZH * ZW, C)
    if (tuple(tiles.V.shape) != expected or (tiles.TH, tiles.TW) != (ZH, ZW)
            or not (tuple(grad_output.shape) == tuple(z.shape) == (N, OC, ZH, ZW))
            or argmax.shape != (N * OC, ZH * ZW)):
        raise ValueError(f"conv2d_relu_maxpool2d_backward: for an input of shape {(N, C, H, W)} expected "
                         f"the forward's tiles of shape {expected}, grad_output and z of shape {(N, OC, ZH, ZW)} "
                         f"and argmax of shape {(N * OC, ZH * ZW)}, got {tuple(tiles.V.shape)}, "
                         f"{tuple(grad_output.shape)}, {tuple(z.shape)} and {tuple(argmax.shape)}")
    dtype = tiles.dtype
    dz = np.ascontiguousarray(grad_output, dtype=dtype)
    z = np.ascontiguousarray(z, dtype=dtype)
    argmax = np.ascontiguousarray(argmax, dtype=np.int8).reshape(N, OC, ZH, ZW)
    return winograd.relu_pool2_backward(dz, z, argmax, tiles, weight, x_shape, (PH, PW), input_grad)


def conv2d_backward(grad_output, saved, weight, x_shape, stride, padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d` from what it kept; see :func:`functional.conv2d_backward`.

    ``dx`` is None with ``input_grad=False``.  ``saved`` is this backend's :class:`Rows` or
    :class:`Direct` record, or the reference's columns (N, K, P) (from a forward of a dtype these
    kernels do not take), which go to the reference.
    """
    if isinstance(saved, np.ndarray):
        note("reference: the forward's columns")
        return functional.conv2d_backward.reference(grad_output, saved, weight, x_shape, stride, padding,
                                                    input_grad)
    return _backward(grad_output, saved, weight, x_shape, stride, padding, input_grad, None)


def conv2d_relu_backward(grad_output, y, saved, weight, x_shape, stride, padding, input_grad=True):
    """``(dx, dweight, dbias)`` of :func:`conv2d_relu`, ``y`` its clipped output; see
    :func:`fused.conv2d_relu_backward`.  On the rows and direct paths ReLU's mask is applied as dY
    is read (in the axis swap, or as each plane is widened), so it makes no pass of its own."""
    if isinstance(saved, np.ndarray):
        note("reference: the forward's")
        return fused.conv2d_relu_backward.reference(grad_output, y, saved, weight, x_shape, stride,
                                                    padding, input_grad)
    if getattr(y, "shape", None) != tuple(grad_output.shape):
        raise ValueError(f"conv2d_relu_backward: expected the forward's output y of grad_output's shape "
                         f"{tuple(grad_output.shape)}, got {getattr(y, 'shape', type(y).__name__)}")
    return _backward(grad_output, saved, weight, x_shape, stride, padding, input_grad,
                     np.ascontiguousarray(y, dtype=grad_output.dtype))


def _checked_rows(saved: Rows, dims, dtype):
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    rows = np.ascontiguousarray(saved.rows, dtype=dtype)
    if rows.shape != (N * OH * OW, C * KH * KW):
        raise ValueError(f"conv2d_backward: for an input of shape {(N, C, H, W)} expected the forward's rows of "
                         f"shape {(N * OH * OW, C * KH * KW)}, got {tuple(rows.shape)}")
    return rows


def _backward(grad_output, saved, weight, x_shape, stride, padding, input_grad, relu_out):
    """The rows and direct backward passes, by the record the forward kept; ``relu_out`` (or None)
    masks dY, as ReLU's backward."""
    dims = window(x_shape, weight.shape[2:], stride, padding)
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = dims
    OC = weight.shape[0]
    if not isinstance(saved, (Rows, Direct)):  # None: inference's blocked rows kept nothing
        raise ValueError("conv2d_backward: the forward of this convolution ran under no_grad and kept nothing "
                         "for backward; run it with gradients on")
    if tuple(grad_output.shape) != (N, OC, OH, OW):
        raise ValueError(f"conv2d_backward: for an input of shape {(N, C, H, W)} expected grad_output of shape "
                         f"{(N, OC, OH, OW)}, got {tuple(grad_output.shape)}")
    dtype = grad_output.dtype
    grad_output = np.ascontiguousarray(grad_output)
    mask = np.empty((0, 0, 0, 0), dtype=dtype) if relu_out is None else relu_out
    if isinstance(saved, Rows):
        note("rows")
        return numba_rows.backward(grad_output, _checked_rows(saved, dims, dtype), weight, dims, input_grad, mask)
    note("direct")
    if tuple(saved.x.shape) != (N, C, H, W):
        raise ValueError(f"conv2d_backward: expected the forward's input of shape {(N, C, H, W)}, "
                         f"got {tuple(saved.x.shape)}")
    x = np.ascontiguousarray(saved.x, dtype=dtype)
    dx = np.empty((N, C, H, W), dtype=dtype) if input_grad else None
    dweight, dbias = np.empty(weight.shape, dtype=dtype), np.empty(OC, dtype=dtype)
    xpad, Wp = numba_direct.padded(x, dims)
    numba_direct.weight_grad(xpad, grad_output, mask, Wp, dweight, dbias)
    if input_grad:
        numba_direct.input_grad(grad_output, mask, np.ascontiguousarray(weight, dtype=dtype), PH, PW, Wp, dx)
    return dx, dweight, dbias
