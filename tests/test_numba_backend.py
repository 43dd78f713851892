"""The Numba backend: each kernel against the NumPy reference, the layers with it active.

im2col and max-pooling forward must agree exactly (values, argmax, dtype);
col2im and max-pooling backward add overlapping windows, possibly in another
order, so they agree to rounding.  The fallback to NumPy when Numba cannot be
imported is simulated by hiding the ``numba`` module.
"""
import ctypes.util
import io
import dataclasses
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import hypothesis
from hypothesis import given
from hypothesis import strategies as st

import minicnn
from minicnn import backend as backend_module
from minicnn import nn
from minicnn.backend import numpy_kernels as ref
from strategies import conv_cases, distinct, normal, pool_cases, seeds, using

numba = pytest.importorskip("numba", reason="Numba is not installed (pip install numba): the numba backend cannot load here")
from minicnn.backend import numba_conv as nc  # noqa: E402  (needs numba)
from minicnn.backend import numba_kernels as nk  # noqa: E402
from minicnn.backend import numba_rows  # noqa: E402
from minicnn import threads  # noqa: E402
from minicnn.backend import numba_winograd as winograd  # noqa: E402

DTYPES = [np.float32, np.float64]
dtypes = st.sampled_from(DTYPES)
ROUNDING = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
POOL_2X2 = ((2, 2), (2, 2), (0, 0))


def window(case):
    return case.kernel_size, case.stride, case.padding


def tied(seed, shape, dtype):
    """Small integers, so most windows hold ties (first maximum must win), with a few -inf
    (an all -inf window next to the border must name the border, as the reference does)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, shape).astype(dtype)
    x[rng.random(shape) < 0.1] = -np.inf
    return x


# --- kernel parity ----------------------------------------------------------------------------

@given(case=conv_cases(), seed=seeds, dtype=dtypes, pad_value=st.sampled_from([0.0, -np.inf, 1.5]))
def test_im2col_equals_reference(case, seed, dtype, pad_value):
    x = normal(seed, case.x_shape, dtype)
    got = nk.im2col(x, *window(case), pad_value=pad_value)
    want = ref.im2col(x, *window(case), pad_value=pad_value)
    assert got.dtype == want.dtype == dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@given(case=conv_cases(), seed=seeds, dtype=dtypes)
def test_col2im_equals_reference(case, seed, dtype):
    col_shape = ref.im2col(np.zeros(case.x_shape, dtype), *window(case)).shape
    col = normal(seed, col_shape, dtype)
    got = nk.col2im(col, case.x_shape, *window(case))
    want = ref.col2im(col, case.x_shape, *window(case))
    assert got.dtype == dtype and got.shape == case.x_shape
    np.testing.assert_allclose(got, want, **ROUNDING[dtype])


@given(case=conv_cases(), seed=seeds, dtype=dtypes)
def test_col2im_of_a_strided_view(case, seed, dtype):
    """Conv2d passes col2im a (N, K, P) view of a (K, N*P) product; any memory layout must work."""
    N, K, P = ref.im2col(np.zeros(case.x_shape, dtype), *window(case)).shape
    dcols = normal(seed, (K, N * P), dtype)
    view = dcols.reshape(K, N, P).transpose(1, 0, 2)
    np.testing.assert_allclose(nk.col2im(view, case.x_shape, *window(case)),
                               ref.col2im(np.ascontiguousarray(view), case.x_shape, *window(case)),
                               **ROUNDING[dtype])


@given(case=conv_cases(), seed=seeds, dtype=dtypes, input_grad=st.booleans())
def test_training_conv2d_forward_and_backward_equal_reference(case, seed, dtype, input_grad):
    """Training's whole-batch rows, any stride."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nc, "_DIRECT_MAX_K", 0)  # never direct
        x = np.zeros(case.x_shape, dtype)
        weight = np.zeros((case.out_channels, case.x_shape[1], *case.kernel_size), dtype)
        saved = nc.conv2d(x, weight, None, case.stride, case.padding)[1]
        assert isinstance(saved, nc.Rows) and saved.rows.ndim == 2  # rows (N*P, K)
        _check_conv2d_against_reference(case, seed, dtype, input_grad)


@given(case=conv_cases(), seed=seeds, dtype=dtypes, input_grad=st.booleans(),
       path=st.sampled_from(["rows", "direct"]))
def test_conv2d_relu_and_its_backward_equal_reference(case, seed, dtype, input_grad, path):
    """Training's fused convolution -> ReLU on both paths (clipped as stored) against the reference's
    conv2d then relu, and back."""
    if path == "direct":
        case = dataclasses.replace(case, stride=(1, 1))
    C, OC = case.x_shape[1], case.out_channels
    x = normal(seed, case.x_shape, dtype)
    weight = normal(seed + 1, (OC, C, *case.kernel_size), dtype)
    bias = normal(seed + 2, (OC,), dtype) if case.bias else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nc, "_DIRECT_MAX_K", 10 ** 9 if path == "direct" else 0)
        y, saved = nc.conv2d_relu(x, weight, bias, case.stride, case.padding)
        y_ref, col = ref.conv2d(x, weight, bias, case.stride, case.padding)
        assert y.dtype == dtype and (y >= 0).all()
        np.testing.assert_allclose(y, np.maximum(y_ref, 0), **ROUNDING[dtype])
        dy = normal(seed + 3, y.shape, dtype)
        got = nc.conv2d_relu_backward(dy, y, saved, weight, x.shape, case.stride, case.padding, input_grad)
    want = ref.conv2d_backward(dy * (y > 0), col, weight, x.shape, case.stride, case.padding, input_grad)
    assert_gradients_equal(got, want, dtype)


@given(case=conv_cases(), seed=seeds, dtype=dtypes, input_grad=st.booleans(),
       path=st.sampled_from(["rows", "direct"]),
       pool=st.sampled_from([POOL_2X2, ((3, 3), (2, 2), (1, 1)), ((2, 2), (1, 1), (0, 0))]))
def test_training_conv_relu_pool_and_its_backward_equal_reference(case, seed, dtype, input_grad, path, pool):
    """Training's fused convolution -> ReLU -> max-pool (pooled as stored, dY built from dz in one pass on
    rows, direct and Winograd's tiles with a 2x2 pool; the composition otherwise) against the layers'
    functions in turn (Winograd's own cases: test_winograd_conv_relu_pool_and_its_backward_equal_reference)."""
    if path == "direct":
        case = dataclasses.replace(case, stride=(1, 1))
    oh, ow = nc.window(case.x_shape, case.kernel_size, case.stride, case.padding)[-2:]
    hypothesis.assume(oh + 2 * pool[2][0] >= pool[0][0] and ow + 2 * pool[2][1] >= pool[0][1])
    C, OC = case.x_shape[1], case.out_channels
    x = distinct(seed, case.x_shape, dtype)  # no ties within a window, so one argmax
    weight = normal(seed + 1, (OC, C, *case.kernel_size), dtype)
    bias = normal(seed + 2, (OC,), dtype) if case.bias else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nc, "_DIRECT_MAX_K", 10 ** 9 if path == "direct" else 0)
        patch.setattr(nc, "_WINOGRAD", False)
        z, saved, argmax = nc.conv2d_relu_maxpool2d_train(x, weight, bias, case.stride, case.padding, *pool)
        dz = normal(seed + 3, z.shape, dtype)
        got = nc.conv2d_relu_maxpool2d_backward(dz, z, argmax, saved, weight, x.shape, case.stride, case.padding,
                                                *pool, input_grad=input_grad)
    with using("numpy"):
        y, col = ref.conv2d(x, weight, bias, case.stride, case.padding)
        r = np.maximum(y, 0)
        z_ref, argmax_ref = ref.maxpool2d_forward(r, *pool)
        dr = ref.maxpool2d_backward(dz, argmax_ref, r.shape, *pool)
        want = ref.conv2d_backward(dr * (r > 0), col, weight, x.shape, case.stride, case.padding, input_grad)
    assert z.dtype == dtype and z.shape == z_ref.shape
    np.testing.assert_allclose(z, z_ref, **ROUNDING[dtype])
    positive = (z_ref > 0).reshape(argmax.shape)
    np.testing.assert_array_equal(argmax[positive], argmax_ref[positive])  # where a gradient goes through
    assert_gradients_equal(got, want, dtype)


@st.composite
def winograd_cases(draw):
    """A 3 x 3 convolution of stride 1 with an even output (2-8 along each axis), padding 0-2, and more
    channels than the direct kernels take, so that it runs on Winograd's tiles."""
    def side():
        out, pad = 2 * draw(st.integers(1, 4)), draw(st.integers(0, 2))
        return out + 2 - 2 * pad, pad
    (h, ph), (w, pw) = side(), side()
    hypothesis.assume(h >= 1 and w >= 1)
    return dict(x_shape=(draw(st.integers(1, 3)), draw(st.integers(4, 9)), h, w), padding=(ph, pw),
                out_channels=draw(st.integers(1, 5)), bias=draw(st.booleans()))


@given(case=winograd_cases(), seed=seeds, dtype=dtypes, input_grad=st.booleans())
def test_winograd_conv_relu_pool_and_its_backward_equal_reference(case, seed, dtype, input_grad):
    """Winograd's F(2 x 2, 3 x 3) with the bias, ReLU and 2 x 2 max-pool in its output transform, and its
    backward from dz through the same transforms, against the layers' functions in turn."""
    x_shape, padding, OC = case["x_shape"], case["padding"], case["out_channels"]
    x = distinct(seed, x_shape, dtype)  # no ties within a window, so one argmax
    weight = normal(seed + 1, (OC, x_shape[1], 3, 3), dtype)
    bias = normal(seed + 2, (OC,), dtype) if case["bias"] else None
    z, saved, argmax = nc.conv2d_relu_maxpool2d_train(x, weight, bias, (1, 1), padding, *POOL_2X2)
    assert isinstance(saved, winograd.Tiles)  # the default path for these shapes
    dz = normal(seed + 3, z.shape, dtype)
    got = nc.conv2d_relu_maxpool2d_backward(dz, z, argmax, saved, weight, x_shape, (1, 1), padding,
                                            *POOL_2X2, input_grad=input_grad)
    with using("numpy"):
        y, col = ref.conv2d(x, weight, bias, (1, 1), padding)
        r = np.maximum(y, 0)
        z_ref, argmax_ref = ref.maxpool2d_forward(r, *POOL_2X2)
        dr = ref.maxpool2d_backward(dz, argmax_ref, r.shape, *POOL_2X2)
        want = ref.conv2d_backward(dr * (r > 0), col, weight, x_shape, (1, 1), padding, input_grad)
    assert z.dtype == dtype and z.shape == z_ref.shape
    np.testing.assert_allclose(z, z_ref, **ROUNDING[dtype])
    positive = (z_ref > 0).reshape(argmax.shape)
    np.testing.assert_array_equal(argmax[positive], argmax_ref[positive])  # where a gradient goes through
    assert_gradients_equal(got, want, dtype)


def test_winograd_takes_only_the_shapes_it_computes():
    """3 x 3, stride 1, padding at most 2, an even output of at least 2 x 2; anything else takes the rows."""
    assert winograd.fits((8, 4, 3, 3), (1, 1), (1, 1), (14, 14))
    for weight_shape, stride, padding, out in [((8, 4, 5, 5), (1, 1), (2, 2), (14, 14)),
                                               ((8, 4, 3, 3), (2, 2), (1, 1), (14, 14)),
                                               ((8, 4, 3, 3), (1, 1), (1, 1), (13, 14)),
                                               ((8, 4, 3, 3), (1, 1), (1, 1), (14, 7))]:
        assert not winograd.fits(weight_shape, stride, padding, out)
    x, weight = normal(0, (2, 8, 7, 7), np.float32), normal(1, (4, 8, 3, 3), np.float32)  # output 7 x 7: odd
    assert isinstance(nc.conv2d_relu_maxpool2d_train(x, weight, None, (1, 1), (1, 1), *POOL_2X2)[1], nc.Rows)
    assert nc.plan(weight.shape, (1, 1), (1, 1), (7, 7), training=True, pool2=True) == "rows"
    assert nc.plan(weight.shape, (1, 1), (1, 1), (6, 6), training=True, pool2=True) == "winograd"


def test_winograd_backward_names_tiles_of_another_input():
    x, weight = normal(0, (2, 8, 6, 6), np.float32), normal(1, (4, 8, 3, 3), np.float32)
    z, tiles, argmax = nc.conv2d_relu_maxpool2d_train(x, weight, None, (1, 1), (1, 1), *POOL_2X2)
    with pytest.raises(ValueError, match=r"tiles of shape \(16, 27, 8\).*got \(16, 18, 8\)"):
        nc.conv2d_relu_maxpool2d_backward(np.ones((3, 4, 3, 3), np.float32), np.ones((3, 4, 3, 3), np.float32),
                                          np.zeros((12, 9), np.int8), tiles, weight, (3, 8, 6, 6), (1, 1), (1, 1),
                                          *POOL_2X2)


def test_training_conv_relu_pool_keeps_nan():
    x = np.zeros((1, 4, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    for k in (1, 3):  # K = 4 (direct) and 36 (rows)
        z, _, _ = nc.conv2d_relu_maxpool2d_train(x, np.ones((2, 4, k, k), np.float32), None, (1, 1),
                                                 (k // 2, k // 2), *POOL_2X2)
        assert np.isnan(z[0, :, 0, 0]).all()


def test_conv2d_relu_keeps_nan():
    x = np.full((1, 4, 3, 3), np.nan, np.float32)
    for k in (1, 3):  # K = 4 (direct) and 36 (rows)
        y, _ = nc.conv2d_relu(x, np.ones((2, 4, k, k), np.float32), None, (1, 1), (k // 2, k // 2))
        assert np.isnan(y).all()


def test_rows_are_one_window_per_row_channels_last():
    """rows[n*P + p, (i*KW + j)*C + c] = x_padded[n, c, oh + i, ow + j], zeros in the border."""
    x = np.arange(2 * 4 * 4 * 5, dtype=np.float64).reshape(2, 4, 4, 5) + 1
    weight = np.zeros((1, 4, 3, 3))  # K = 36: more rows than the direct kernels take
    rows = nc.conv2d(x, weight, None, (1, 1), (1, 1))[1].rows
    assert rows.shape == (2 * 4 * 5, 36)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    n, oh, ow = 1, 2, 4
    want = padded[n, :, oh:oh + 3, ow:ow + 3].transpose(1, 2, 0).ravel()  # (i, j, c) order
    np.testing.assert_array_equal(rows[n * 20 + oh * 5 + ow], want)
    assert rows[0, :4].tolist() == [0, 0, 0, 0]  # window (0, 0) at the top-left corner: border


def test_backward_names_a_saved_array_of_the_wrong_shape():
    x, weight = normal(0, (2, 4, 6, 6), np.float32), normal(1, (5, 4, 3, 3), np.float32)
    y, saved = nc.conv2d(x, weight, None, (1, 1), (1, 1))
    with pytest.raises(ValueError, match=r"rows of shape \(72, 36\), got \(71, 36\)"):
        nc.conv2d_backward(np.ones_like(y), nc.Rows(saved.rows[:-1]), weight, x.shape, (1, 1), (1, 1))
    w1 = normal(3, (2, 4, 1, 1), np.float32)  # K = 4: the direct path, which keeps its input
    _, kept = nc.conv2d(x[:1], w1, None, (1, 1), (0, 0))
    with pytest.raises(ValueError, match=r"input of shape \(2, 4, 6, 6\), got \(1, 4, 6, 6\)"):
        nc.conv2d_backward(np.ones((2, 2, 6, 6), np.float32), kept, w1, x.shape, (1, 1), (0, 0))


@given(case=conv_cases(), seed=seeds, dtype=dtypes, input_grad=st.booleans())
def test_direct_conv2d_forward_and_backward_equal_reference(case, seed, dtype, input_grad):
    """The direct kernels (stride 1, any K here) against the reference."""
    case = dataclasses.replace(case, stride=(1, 1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nc, "_DIRECT_MAX_K", 10 ** 9)
        assert nc._uses_direct(int(np.prod(case.kernel_size)) * case.x_shape[1], case.stride)
        _check_conv2d_against_reference(case, seed, dtype, input_grad)


@pytest.mark.parametrize("shape, weight_shape, stride, direct", [
    ((64, 1, 28, 28), (32, 1, 3, 3), (1, 1), True),     # MnistCNN conv1: K = 9
    ((64, 1, 28, 28), (32, 1, 5, 5), (1, 1), True),     # MnistDeepCNN conv1: K = 25
    ((64, 32, 14, 14), (64, 32, 3, 3), (1, 1), False),  # MnistCNN conv2: K = 288, BLAS's
    ((64, 1, 28, 28), (32, 1, 3, 3), (2, 2), False),    # a stride: blocked
])
def test_the_first_layers_take_the_direct_kernels(shape, weight_shape, stride, direct):
    K = int(np.prod(weight_shape[1:]))
    assert nc._uses_direct(K, stride) is direct


def test_direct_weight_gradient_keeps_its_precision_over_a_large_batch():
    """Its sums run over N*OH*Wp products; each image's sum is added into float64 totals, so a float32
    gradient over 512 images stays as close to the float64 one as the reference's BLAS product is."""
    x, weight = normal(0, (512, 1, 28, 28), np.float64), normal(1, (8, 1, 3, 3), np.float64)
    dy = normal(2, (512, 8, 28, 28), np.float64)
    exact = ref.conv2d_backward(dy, ref.conv2d(x, weight, None, (1, 1), (1, 1))[1], weight, x.shape,
                                (1, 1), (1, 1), input_grad=False)[1]
    f32 = [a.astype(np.float32) for a in (x, weight, dy)]
    got = nc.conv2d_backward(f32[2], nc.Direct(f32[0]), f32[1], x.shape, (1, 1), (1, 1), input_grad=False)[1]
    blas = ref.conv2d_backward(f32[2], ref.conv2d(f32[0], f32[1], None, (1, 1), (1, 1))[1], f32[1], x.shape,
                               (1, 1), (1, 1), input_grad=False)[1]
    assert np.abs(got - exact).max() <= 2 * np.abs(blas - exact).max() + 1e-3


def assert_gradients_equal(got, want, dtype):
    """(dx, dweight, dbias) against the reference's, to rounding; dx None on both sides or neither."""
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            assert g.dtype == dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, **ROUNDING[dtype])


def _check_conv2d_against_reference(case, seed, dtype, input_grad):
    C, OC = case.x_shape[1], case.out_channels
    x = normal(seed, case.x_shape, dtype)
    weight = normal(seed + 1, (OC, C, *case.kernel_size), dtype)
    bias = normal(seed + 2, (OC,), dtype) if case.bias else None
    y, saved = nc.conv2d(x, weight, bias, case.stride, case.padding)
    y_ref, col = ref.conv2d(x, weight, bias, case.stride, case.padding)
    assert y.dtype == dtype and y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, **ROUNDING[dtype])
    dy = normal(seed + 3, y.shape, dtype)
    got = nc.conv2d_backward(dy, saved, weight, x.shape, case.stride, case.padding, input_grad=input_grad)
    want = ref.conv2d_backward(dy, col, weight, x.shape, case.stride, case.padding, input_grad=input_grad)
    if input_grad:
        assert got[0].dtype == dtype
        np.testing.assert_allclose(got[0], want[0], **ROUNDING[dtype])
    else:
        assert got[0] is None and want[0] is None
    for g, w in zip(got[1:], want[1:]):
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, **ROUNDING[dtype])


def _check_fused_inference_against_reference(case, seed, dtype, pool):
    C, OC = case.x_shape[1], case.out_channels
    x = normal(seed, case.x_shape, dtype)
    weight = normal(seed + 1, (OC, C, *case.kernel_size), dtype)
    bias = normal(seed + 2, (OC,), dtype) if case.bias else None
    z = nc.conv2d_relu_maxpool2d(x, weight, bias, case.stride, case.padding, *pool)
    with using("numpy"):  # the reference's parts are the NumPy ones
        z_ref = ref.conv2d_relu_maxpool2d(x, weight, bias, case.stride, case.padding, *pool)
    assert z.dtype == dtype and z.shape == z_ref.shape
    np.testing.assert_allclose(z, z_ref, **ROUNDING[dtype])



@given(case=conv_cases(), seed=seeds, dtype=dtypes, block_bytes=st.sampled_from([1, 4096, 1 << 20]))
def test_fused_inference_blocked_equals_reference(case, seed, dtype, block_bytes):
    """conv -> ReLU -> 2x2 max-pool with the pooling in the blocked rows product's store."""
    assume_poolable(case)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(numba_rows, "_BLOCK_BYTES", block_bytes)
        patch.setattr(nc, "_DIRECT_MAX_K", 0)
        _check_fused_inference_against_reference(case, seed, dtype, POOL_2X2)


@given(case=conv_cases(), seed=seeds, dtype=dtypes, block_bytes=st.sampled_from([1, 4096, 1 << 20]))
def test_blocked_inference_conv2d_equals_reference(case, seed, dtype, block_bytes):
    """The convolution alone under no_grad (one image per block, a few, or all), as blocked rows."""
    C, OC = case.x_shape[1], case.out_channels
    x = normal(seed, case.x_shape, dtype)
    weight = normal(seed + 1, (OC, C, *case.kernel_size), dtype)
    bias = normal(seed + 2, (OC,), dtype) if case.bias else None
    with pytest.MonkeyPatch.context() as patch, minicnn.no_grad():
        patch.setattr(numba_rows, "_BLOCK_BYTES", block_bytes)
        patch.setattr(nc, "_DIRECT_MAX_K", 0)
        y, saved = nc.conv2d(x, weight, bias, case.stride, case.padding)
    assert saved is None  # inference keeps nothing
    y_ref = ref.conv2d(x, weight, bias, case.stride, case.padding)[0]
    assert y.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **ROUNDING[dtype])


@given(case=conv_cases(), seed=seeds, dtype=dtypes)
def test_fused_inference_direct_equals_reference(case, seed, dtype):
    """conv -> ReLU -> 2x2 max-pool with the pooling in the direct kernel's store."""
    case = dataclasses.replace(case, stride=(1, 1))
    assume_poolable(case)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nc, "_DIRECT_MAX_K", 10 ** 9)
        _check_fused_inference_against_reference(case, seed, dtype, POOL_2X2)


@given(case=conv_cases(kernel_max=3), seed=seeds, pool=st.sampled_from([
    ((3, 3), (2, 2), (1, 1)), ((2, 2), (1, 1), (0, 0)), ((1, 2), (1, 2), (0, 0))]))
def test_fused_inference_with_another_pool_takes_the_reference(case, seed, pool):
    oh, ow = nc.window(case.x_shape, case.kernel_size, case.stride, case.padding)[-2:]
    hypothesis.assume(oh + 2 * pool[2][0] >= pool[0][0] and ow + 2 * pool[2][1] >= pool[0][1])
    _check_fused_inference_against_reference(case, seed, np.float64, pool)


def assume_poolable(case):
    oh, ow = nc.window(case.x_shape, case.kernel_size, case.stride, case.padding)[-2:]
    hypothesis.assume(oh >= 2 and ow >= 2)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "blocked rows"])
def test_fused_inference_keeps_nan_and_clips_negative_windows(direct):
    """A NaN anywhere in a window gives NaN (as ReLU then max-pooling do); all-negative windows give 0."""
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 0, 1], x[0, 0, 3, 3] = np.nan, -1.0
    weight = np.ones((2, 1, 1, 1), np.float32)
    bias = np.array([0.0, -2.0], np.float32)  # channel 1: every window negative but the NaN one
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nc, "_DIRECT_MAX_K", 10 ** 9 if direct else 0)
        z = nc.conv2d_relu_maxpool2d(x, weight, bias, (1, 1), (0, 0), *POOL_2X2)
    assert np.isnan(z[0, :, 0, 0]).all()
    assert not np.isnan(z[0, :, 1, 1]).any() and (z[0, 1][~np.isnan(z[0, 1])] == 0).all()
    np.testing.assert_array_equal(z[0, 0, 1, :], [0.0, 0.0])


def test_what_conv2d_keeps_for_backward():
    """The direct path keeps the input; a wide convolution in training keeps its rows; in inference the
    blocked rows keep nothing.  The record names the path, and the plan chose it."""
    x = normal(0, (8, 4, 10, 10), np.float32)
    direct_x = x[:, :1].copy()
    y, saved = nc.conv2d(direct_x, normal(1, (6, 1, 3, 3), np.float32), None, (1, 1), (1, 1))
    assert isinstance(saved, nc.Direct) and saved.x is direct_x  # not the columns (9 rows of 8*100)
    assert nc.plan((6, 1, 3, 3), (1, 1), (1, 1), (10, 10), training=True) == "direct"
    wide = normal(1, (6, 4, 3, 3), np.float32)
    y, saved = nc.conv2d(x, wide, None, (1, 1), (1, 1))
    assert isinstance(saved, nc.Rows) and saved.rows.shape == (8 * 100, 36)  # one window a row, channels last
    assert nc.plan(wide.shape, (1, 1), (1, 1), (10, 10), training=True) == "rows"
    with minicnn.no_grad():  # inference: blocked rows, nothing kept
        y_blocked, saved = nc.conv2d(x, wide, None, (1, 1), (1, 1))
    assert saved is None and nc.plan(wide.shape, (1, 1), (1, 1), (10, 10), training=False) == "blocked rows"
    np.testing.assert_allclose(y_blocked, y, **ROUNDING[np.float32])
    with pytest.raises(ValueError, match="ran under no_grad and kept nothing for backward; run it with gradients on"):
        nc.conv2d_backward(y, saved, wide, x.shape, (1, 1), (1, 1))  # nothing for a backward pass


def test_conv2d_backward_checks_shapes_before_indexing():
    x, weight = normal(0, (2, 3, 6, 6), np.float32), normal(1, (4, 3, 3, 3), np.float32)
    y, saved = nc.conv2d(x, weight, None, (1, 1), (0, 0))
    with pytest.raises(ValueError, match=r"grad_output of shape \(2, 4, 4, 4\)"):
        nc.conv2d_backward(np.ones((2, 4, 5, 5), np.float32), saved, weight, x.shape, (1, 1), (0, 0))


@given(case=pool_cases(kernel_max=5), seed=seeds, dtype=dtypes, ties=st.booleans())
def test_maxpool_forward_equals_reference(case, seed, dtype, ties):
    x = tied(seed, case.x_shape, dtype) if ties else normal(seed, case.x_shape, dtype)
    out, argmax = nk.maxpool2d_forward(x, *window(case))
    want_out, want_argmax = ref.maxpool2d_forward(x, *window(case))
    assert out.dtype == dtype and argmax.dtype == want_argmax.dtype
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(argmax, want_argmax)
    # Inference: the same maxima without recording the winners.
    out, argmax = nk.maxpool2d_forward(x, *window(case), with_argmax=False)
    assert argmax is None and ref.maxpool2d_forward(x, *window(case), with_argmax=False)[1] is None
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, want_out)


@given(case=pool_cases(kernel_max=5), seed=seeds, dtype=dtypes, ties=st.booleans())
def test_maxpool_backward_equals_reference(case, seed, dtype, ties):
    x = tied(seed, case.x_shape, dtype) if ties else normal(seed, case.x_shape, dtype)
    out, argmax = ref.maxpool2d_forward(x, *window(case))
    g = normal(seed + 1, out.shape, dtype)
    got = nk.maxpool2d_backward(g, argmax, x.shape, *window(case))
    want = ref.maxpool2d_backward(g, argmax, x.shape, *window(case))
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, want, **ROUNDING[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 2, 7, 9), (1, 1, 2, 3), (3, 1, 5, 2)])
def test_maxpool_2x2_fast_path_equals_reference(shape, dtype):
    """The specialised 2x2 / stride-2 / unpadded loops, with ties and odd sizes (uncovered last row and column)."""
    x = tied(7, shape, dtype)
    w = ((2, 2), (2, 2), (0, 0))
    out, argmax = nk.maxpool2d_forward(x, *w)
    want_out, want_argmax = ref.maxpool2d_forward(x, *w)
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(argmax, want_argmax)
    g = normal(8, out.shape, dtype)
    np.testing.assert_array_equal(nk.maxpool2d_backward(g, argmax, shape, *w),
                                  ref.maxpool2d_backward(g, argmax, shape, *w))
    np.testing.assert_array_equal(nk.maxpool2d_forward(x, *w, with_argmax=False)[0], want_out)


@pytest.mark.parametrize("window_", [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1))])
def test_maxpool_nan_wins_like_argmax(window_):
    x = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 1, 6, 6)
    x[0, 0, 1, 1] = x[1, 0, 4, 3] = np.nan
    out, argmax = nk.maxpool2d_forward(x, *window_)
    want_out, want_argmax = ref.maxpool2d_forward(x, *window_)
    np.testing.assert_array_equal(out, want_out)  # NaNs compare equal here
    np.testing.assert_array_equal(argmax, want_argmax)
    np.testing.assert_array_equal(nk.maxpool2d_forward(x, *window_, with_argmax=False)[0], want_out)


@pytest.mark.parametrize("window_", [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1))])
@pytest.mark.parametrize("with_argmax", [True, False])
def test_maxpool_keeps_the_first_of_tied_signed_zeros(window_, with_argmax):
    """-0.0 == 0.0, so the first in window order wins, and its sign shows in the output."""
    rng = np.random.default_rng(3)
    x = np.where(rng.random((2, 2, 6, 6)) < 0.5, np.float32(-0.0), np.float32(0.0))
    out = nk.maxpool2d_forward(x, *window_, with_argmax=with_argmax)[0]
    want = ref.maxpool2d_forward(x, *window_)[0]
    np.testing.assert_array_equal(np.signbit(out), np.signbit(want))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("shape", [(3, 4, 5), (1, 2, 1), (4, 1, 7), (2, 3, 0)])
def test_transpose01_equals_reference(shape, with_bias, dtype):
    a = normal(9, shape, dtype)
    bias = normal(10, shape[:1], dtype) if with_bias else None
    got, want = nk.transpose01(a, bias), ref.transpose01(a, bias)
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)  # one addition per element, as in the reference


@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose01_of_a_strided_view(dtype):
    """Conv2d passes views (a reshaped product, a reshaped gradient); a transposed one must work too."""
    a = normal(11, (5, 3, 4), dtype).transpose(1, 0, 2)
    bias = normal(12, (3,), dtype)
    np.testing.assert_array_equal(nk.transpose01(a, bias), ref.transpose01(a, bias))


def _with_specials(seed, shape, dtype):
    """Normal values with NaN, +-inf and +-0.0 sprinkled in."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype=dtype)
    pick = rng.random(shape) < 0.2
    x[pick] = rng.choice(specials, size=int(pick.sum()))
    return x


def assert_same_bits(got, want):
    """Equal values, NaN where NaN, and the same sign on zeros (assert_array_equal lets -0.0 == 0.0)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@given(shape=st.lists(st.integers(1, 70), min_size=1, max_size=4).map(tuple), seed=seeds, dtype=dtypes)
def test_relu_kernels_equal_reference(shape, seed, dtype):
    """Small arrays take NumPy's loop, large ones the parallel chunks: the reference's bits either way."""
    x = _with_specials(seed, shape, dtype)
    y = ref.relu_forward(x)
    assert_same_bits(nk.relu_forward(x), y)
    g = _with_specials(seed + 1, shape, dtype)
    with np.errstate(invalid="ignore"):  # inf * 0 is NaN, in both
        assert_same_bits(nk.relu_backward(g, y), ref.relu_backward(g, y))


def test_relu_kernels_of_many_chunks_and_other_inputs():
    x = _with_specials(0, (nk._CHUNK * 3 + 5,), np.float32)  # parallel chunks and a short last one
    assert nk._parallel_float(x)
    y = ref.relu_forward(x)
    assert_same_bits(nk.relu_forward(x), y)
    with np.errstate(invalid="ignore"):
        assert_same_bits(nk.relu_backward(x, y), ref.relu_backward(x, y))
    # Strided views, integers, and mixed dtypes take the reference, with its results.
    m = normal(1, (6, 8), np.float32)
    assert_same_bits(nk.relu_forward(m[:, ::2]), ref.relu_forward(m[:, ::2]))
    ints = np.arange(-3, 4)
    np.testing.assert_array_equal(nk.relu_forward(ints), [0, 0, 0, 0, 1, 2, 3])
    g64 = normal(2, m.shape, np.float64)
    assert_same_bits(nk.relu_backward(g64, ref.relu_forward(m)), ref.relu_backward(g64, ref.relu_forward(m)))


def _adam_arrays(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    param, grad, m = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    v = rng.random(shape).astype(dtype)  # a second moment is never negative
    return param, grad, m, v


def _adam_scalars(dtype, t):
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    return [dtype(s) for s in (lr, b1, 1 - b1, b2, 1 - b2, eps, 1 - b1 ** t, 1 - b2 ** t)]


@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=4).map(tuple), seed=seeds, dtype=dtypes,
       t=st.integers(1, 1000))
def test_adam_update_equals_reference(shape, seed, dtype, t):
    expected, got = _adam_arrays(seed, shape, dtype), _adam_arrays(seed, shape, dtype)
    ref.adam_update(*expected, *_adam_scalars(dtype, t))
    nk.adam_update(*got, *_adam_scalars(dtype, t))
    for name, e, g in zip(("param", "grad", "exp_avg", "exp_avg_sq"), expected, got):
        assert g.dtype == dtype, name
        # The same operations on the same scalars, in the same order: equal to the last bit.
        np.testing.assert_array_equal(g, e, err_msg=name)


@pytest.mark.parametrize("many", [False, True], ids=["adam_update", "adam_update_many"])
def test_adam_with_eps_0_divides_0_by_0_as_the_reference(many):
    """With eps = 0 a parameter whose gradient has always been 0 takes 0 / 0: NaN as NumPy divides,
    never a ZeroDivisionError from the compiled loop."""
    shape, t = (2, 16385), 1   # two chunks, so that the parallel loop runs
    scalars = [np.float32(s) for s in (1e-3, 0.9, 0.1, 0.999, 0.001, 0.0, 1 - 0.9 ** t, 1 - 0.999 ** t)]
    arrays = lambda: [np.ones(shape, np.float32), np.zeros(shape, np.float32),  # noqa: E731
                      np.zeros(shape, np.float32), np.zeros(shape, np.float32)]
    expected, got = arrays(), arrays()
    with np.errstate(invalid="ignore"), using("numpy"):
        if many:
            ref.adam_update_many(*([a] for a in expected), *scalars, np.float32(0))
        else:
            ref.adam_update(*expected, *scalars)
    if many:
        nk.adam_update_many(*([a] for a in got), *scalars, np.float32(0))
    else:
        nk.adam_update(*got, *scalars)
    assert np.isnan(expected[0]).all()
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)


def test_adam_update_of_strided_views_updates_the_arrays_themselves():
    expected = _adam_arrays(0, (6, 8), np.float32)
    got = [a.copy() for a in expected]
    ref.adam_update(*(a[:, ::2] for a in expected), *_adam_scalars(np.float32, 3))
    nk.adam_update(*(a[:, ::2] for a in got), *_adam_scalars(np.float32, 3))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)
    assert not np.array_equal(got[0], _adam_arrays(0, (6, 8), np.float32)[0])  # it did move


def _adam_groups(seed, sizes, dtype):
    """Four lists (params, grads, exp_avgs, exp_avg_sqs) of tensors of the given sizes."""
    tensors = [_adam_arrays(seed + k, (n,), dtype) for k, n in enumerate(sizes)]
    return [list(group) for group in zip(*tensors)]


# Sizes around the chunk of 16,384 elements: tensors of one chunk, of several, and a last chunk cut short.
@given(sizes=st.lists(st.sampled_from([1, 7, 16383, 16384, 16385, 40000]), min_size=1, max_size=6),
       seed=seeds, dtype=dtypes, t=st.integers(1, 1000), weight_decay=st.sampled_from([0.0, 0.01]))
def test_adam_update_many_equals_reference(sizes, seed, dtype, t, weight_decay):
    expected, got = _adam_groups(seed, sizes, dtype), _adam_groups(seed, sizes, dtype)
    with using("numpy"):
        ref.adam_update_many(*expected, *_adam_scalars(dtype, t), dtype(weight_decay))
    nk.adam_update_many(*got, *_adam_scalars(dtype, t), dtype(weight_decay))
    for name, e_group, g_group in zip(("param", "grad", "exp_avg", "exp_avg_sq"), expected, got):
        for e, g in zip(e_group, g_group):
            assert g.dtype == dtype, name
            np.testing.assert_array_equal(g, e, err_msg=name)  # the same operations: equal to the last bit


def test_adam_update_many_of_strided_views_updates_the_arrays_themselves():
    expected = [list(a) for a in zip(_adam_arrays(0, (6, 8), np.float32), _adam_arrays(1, (3,), np.float32))]
    got = [[a.copy() for a in group] for group in expected]
    views = lambda groups: [[group[0][:, ::2], group[1]] for group in groups]  # noqa: E731
    with using("numpy"):
        ref.adam_update_many(*views(expected), *_adam_scalars(np.float32, 3), np.float32(0))
    nk.adam_update_many(*views(got), *_adam_scalars(np.float32, 3), np.float32(0))
    for e_group, g_group in zip(expected, got):
        for e, g in zip(e_group, g_group):
            np.testing.assert_array_equal(g, e)
    assert not np.array_equal(got[0][0], _adam_arrays(0, (6, 8), np.float32)[0])  # it did move


def test_adam_update_many_checks_its_lists_before_updating():
    params, grads, ms, vs = _adam_groups(0, [3, 5], np.float32)
    before = [p.copy() for p in params]
    with pytest.raises(ValueError, match="expected as many gradients and states as parameters, got 2, 1, 2, 2"):
        nk.adam_update_many(params, grads[:1], ms, vs, *_adam_scalars(np.float32, 1), np.float32(0))
    with pytest.raises(ValueError, match=r"must have one shape, got \(5,\), \(4,\), \(5,\), \(5,\)"):
        nk.adam_update_many(params, [grads[0], grads[1][:4]], ms, vs, *_adam_scalars(np.float32, 1), np.float32(0))
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)


def test_adam_updates_the_whole_group_with_one_kernel_call(numba_active, monkeypatch):
    calls = []
    monkeypatch.setattr(nk, "_adam_update_many", lambda *args: calls.append(len(args[0])))
    model = minicnn.models.MnistCNN(seed=0)
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    minicnn.optim.Adam(model.parameters()).step()
    assert calls == [8]  # MnistCNN's eight tensors, one parallel loop


@pytest.mark.parametrize("kernels", [ref, nk], ids=["numpy", "numba"])
def test_im2col_is_stored_k_major(kernels):
    """Conv2d views col as one (K, N*P) matrix; that view must not need a copy."""
    col = kernels.im2col(normal(0, (3, 2, 6, 5), np.float32), (3, 2), (1, 2), (1, 0))
    assert col.transpose(1, 0, 2).flags.c_contiguous


ORIGINAL_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")


def test_openmp_with_sleeping_threads_unless_the_user_chose_a_layer():
    """OpenMP's spinning threads would compete with BLAS's threads between kernels; sleeping ones do not."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        assert numba.config.THREADING_LAYER == os.environ["NUMBA_THREADING_LAYER"]
    else:
        assert numba.config.THREADING_LAYER in ("omp", "workqueue")
    assert os.environ.get("OMP_WAIT_POLICY") == ORIGINAL_WAIT_POLICY  # put back after the runtime loaded


@pytest.mark.parametrize("policy, loaded, importable, expected", [
    (None, False, True, "omp"),              # the policy is ours to set: OpenMP, passive
    ("passive", False, True, "omp"),         # the user asked for the same
    ("ACTIVE", False, True, "workqueue"),    # the user wants spinning threads: not with OpenMP then
    (None, True, True, "workqueue"),         # libgomp is loaded already, with whatever policy it read
    (None, False, False, "workqueue"),       # no OpenMP runtime on this system
])
def test_the_threading_layer_rule(policy, loaded, importable, expected, monkeypatch):
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    seen = {}
    real_import = __import__

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "numba.np.ufunc" and fromlist and "omppool" in fromlist:
            seen["policy"] = os.environ.get("OMP_WAIT_POLICY")
            if not importable:
                raise ImportError("libgomp.so.1: cannot open shared object file")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr("builtins.__import__", fake_import)
    assert threads.openmp_or_workqueue(lambda: loaded) == expected
    if expected == "omp" or not importable:
        assert seen["policy"].upper() == "PASSIVE"  # in the environment while the runtime loads
    assert os.environ.get("OMP_WAIT_POLICY") == policy  # and as it was afterwards


def test_the_backend_runs_on_openmp_where_the_runtime_loads():
    """In a fresh process with nothing chosen and libgomp on the system, the loops run on OpenMP's
    sleeping threads (the rule above, end to end), and the environment is as it was."""
    if ctypes.util.find_library("gomp") is None:
        pytest.skip("no GNU OpenMP runtime (libgomp) on this system: the backend runs on workqueue")
    code = ("import os, numpy as np, minicnn; minicnn.set_backend('numba'); "
            "from minicnn.backend import numba_kernels as nk; import numba; "
            "nk.relu_forward(np.ones(1 << 16, np.float32)); "
            "print(numba.threading_layer(), os.environ.get('OMP_WAIT_POLICY'))")
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["omp", "None"]


# --- layers with the backend active -----------------------------------------------------------

@pytest.fixture
def numba_active():
    with using("numba") as active:
        yield active


def test_layers_use_the_numba_kernels(numba_active):
    assert backend_module.kernels_for(np.zeros(1)) is numba_active
    assert numba_active.im2col is nk.im2col and numba_active.maxpool2d_forward is nk.maxpool2d_forward


@given(case=conv_cases(kernel_max=3), seed=seeds)
def test_conv2d_gradcheck(case, seed):
    C = case.x_shape[1]
    layer = nn.Conv2d(C, case.out_channels, case.kernel_size, case.stride, case.padding, bias=case.bias,
                      dtype=np.float64, generator=np.random.default_rng(seed))
    with using("numba"):
        assert minicnn.gradcheck(layer, normal(seed, case.x_shape))


@given(case=pool_cases(), seed=seeds)
def test_maxpool2d_gradcheck(case, seed):
    layer = nn.MaxPool2d(case.kernel_size, case.stride, case.padding)
    with using("numba"):
        assert minicnn.gradcheck(layer, distinct(seed, case.x_shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layers_keep_the_dtype(numba_active, dtype):
    x = normal(0, (2, 3, 9, 9), dtype)
    for layer in (nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=dtype), nn.MaxPool2d(2), nn.MaxPool2d(3, 1, 1)):
        y = layer(x)
        assert y.dtype == dtype
        assert layer.backward(np.ones_like(y)).dtype == dtype


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.dtype(">f4")], ids=["float16", "longdouble", "big-endian"])
def test_other_float_dtypes_take_the_reference(dtype):
    """The kernels are compiled for float32 and float64; any other float gives the NumPy backend's results."""
    x = normal(0, (2, 3, 6, 6), np.float64).astype(dtype)
    results = {}
    for name in ("numpy", "numba"):
        with using(name):
            conv, pool = nn.Conv2d(3, 2, 3, padding=1, dtype=dtype, generator=np.random.default_rng(1)), nn.MaxPool2d(2)
            y = pool(conv(x))
            dx = conv.backward(pool.backward(np.ones_like(y)))
            results[name] = (y, dx, conv.weight.grad)
    for got, expected in zip(results["numba"], results["numpy"]):
        assert got.dtype == expected.dtype and got.dtype.itemsize == np.dtype(dtype).itemsize  # matmul: native order
        np.testing.assert_array_equal(got, expected)


def test_maxpool_backward_kernel_checks_shapes_before_indexing():
    """A wrong gradient shape must be an error, never a read or write outside the arrays."""
    x = normal(0, (2, 3, 6, 6), np.float32)
    _, argmax = nk.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0))
    for bad in [(2, 3, 4, 4), (1, 3, 3, 3), (8, 3, 30, 30)]:
        with pytest.raises(ValueError, match=r"maxpool2d_backward: for an input of shape \(2, 3, 6, 6\) expected "
                                             r"grad_output of shape \(2, 3, 3, 3\) and argmax of shape \(6, 9\), got "):
            nk.maxpool2d_backward(np.ones(bad, np.float32), argmax, x.shape, (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match=r"argmax of shape \(6, 9\), got \(2, 3, 3, 3\) and \(6, 4\)"):
        nk.maxpool2d_backward(np.ones((2, 3, 3, 3), np.float32), argmax[:, :4], x.shape, (2, 2), (2, 2), (0, 0))


def test_adam_update_kernel_checks_shapes_before_indexing():
    param, grad, m, v = _adam_arrays(0, (3,), np.float32)
    before = param.copy()
    with pytest.raises(ValueError, match=r"adam_update: param, grad, exp_avg and exp_avg_sq must have one shape, "
                                         r"got \(3,\), \(4, 3\), \(3,\), \(3,\)"):
        nk.adam_update(param, np.ones((4, 3), np.float32), m, v, *_adam_scalars(np.float32, 1))
    np.testing.assert_array_equal(param, before)


def _mnist_step(backend_name, x, target):
    model = minicnn.models.MnistCNN(seed=3)
    loss_fn = nn.NLLLoss()
    with using(backend_name):
        out = model(x)
        loss = loss_fn(out, target)
        dx = model.backward(loss_fn.backward())
    return out, loss, dx, {name: p.grad for name, p in model.named_parameters()}


def test_mnist_cnn_matches_numpy_backend():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    target = rng.integers(0, 10, 8)
    out, loss, dx, grads = _mnist_step("numba", x, target)
    out0, loss0, dx0, grads0 = _mnist_step("numpy", x, target)
    assert out.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(out, out0, rtol=1e-4, atol=1e-5)
    assert loss == pytest.approx(loss0, rel=1e-5)
    np.testing.assert_allclose(dx, dx0, rtol=1e-4, atol=1e-6)
    for name, g in grads.items():
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, grads0[name], rtol=1e-4, atol=1e-6, err_msg=name)


# --- falling back to NumPy --------------------------------------------------------------------

def test_falls_back_to_numpy_with_one_warning_when_numba_is_missing(monkeypatch):
    assert backend_module._DEFAULT_ORDER == ("numba", "numpy")
    monkeypatch.setitem(sys.modules, "numba", None)  # ``import numba`` now raises ImportError
    monkeypatch.delenv("MINICNN_BACKEND", raising=False)
    monkeypatch.setattr(backend_module, "_loaded", {})
    monkeypatch.setattr(backend_module, "_failures", {})
    monkeypatch.setattr(backend_module, "_current", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = minicnn.get_backend()
    assert chosen.name == "numpy"
    assert len(caught) == 1 and issubclass(caught[0].category, RuntimeWarning)
    message = str(caught[0].message)
    assert "numba" in message and "NumPy" in message and "\n" not in message
    with pytest.raises(minicnn.BackendUnavailableError, match="numba"):
        minicnn.set_backend("numba")


def test_conv2d_backward_takes_the_reference_forwards_columns():
    """A forward of another dtype (one the Numba kernels do not take) keeps the reference's columns,
    and a Numba backward hands them to the reference."""
    x, weight = normal(0, (2, 3, 6, 6), np.float32), normal(1, (4, 3, 3, 3), np.float32)
    dy = normal(2, (2, 4, 6, 6), np.float32)
    _, col = ref.conv2d(x, weight, None, (1, 1), (1, 1))
    want = ref.conv2d_backward(dy, col, weight, x.shape, (1, 1), (1, 1))
    for got in (nc.conv2d_backward(dy, col, weight, x.shape, (1, 1), (1, 1)),):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **ROUNDING[np.float32])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_first_compile_of_a_minicnn_kernel_is_announced_once_on_a_terminal():
    from numba.core import event

    def add_one(x):
        return x + 1

    def add_two(x):
        return x + 2

    add_one.__module__ = add_two.__module__ = "minicnn.backend.a_kernel"  # as minicnn's kernels are

    def not_ours(x):
        return x - 1

    terminal, piped = _Terminal(), io.StringIO()
    with event.install_listener("numba:compile", nk.CompileNotice(terminal)), \
            event.install_listener("numba:compile", nk.CompileNotice(piped)):
        numba.njit(not_ours)(1)
        assert terminal.getvalue() == ""  # another library's compile says nothing
        numba.njit(add_one)(1)
        numba.njit(add_two)(1)
    assert terminal.getvalue() == nk.CompileNotice.LINE + "\n"  # once
    assert piped.getvalue() == ""  # piped or captured output stays as it was
