"""The NumPy reference kernels against naive loops, and col2im as the adjoint of im2col.

The loops below index one element at a time, straight from the definitions
in ``minicnn/backend/numpy_kernels.py``; they are slow and obviously right.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minicnn.backend import numpy_kernels as k
from strategies import conv_cases, distinct, normal, pool_cases, seeds


def padded(x, padding, value):
    (PH, PW) = padding
    return np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=value)


def naive_im2col(x, kernel_size, stride, padding, pad_value=0.0):
    (KH, KW), (SH, SW) = kernel_size, stride
    N, C, H, W = x.shape
    OH = (H + 2 * padding[0] - KH) // SH + 1
    OW = (W + 2 * padding[1] - KW) // SW + 1
    img = padded(x, padding, pad_value)
    col = np.zeros((N, C * KH * KW, OH * OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    for oh in range(OH):
                        for ow in range(OW):
                            col[n, (c * KH + i) * KW + j, oh * OW + ow] = img[n, c, oh * SH + i, ow * SW + j]
    return col


def naive_col2im(col, x_shape, kernel_size, stride, padding):
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    N, C, H, W = x_shape
    OH = (H + 2 * PH - KH) // SH + 1
    OW = (W + 2 * PW - KW) // SW + 1
    img = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    for oh in range(OH):
                        for ow in range(OW):
                            img[n, c, oh * SH + i, ow * SW + j] += col[n, (c * KH + i) * KW + j, oh * OW + ow]
    return img[:, :, PH:PH + H, PW:PW + W]


def naive_maxpool(x, kernel_size, stride, padding):
    """Output, and the flat window offset of the first maximum of each window (strict > keeps the first)."""
    (KH, KW), (SH, SW) = kernel_size, stride
    N, C, H, W = x.shape
    OH = (H + 2 * padding[0] - KH) // SH + 1
    OW = (W + 2 * padding[1] - KW) // SW + 1
    img = padded(x, padding, -np.inf)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    arg = np.empty((N * C, OH * OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    best, where = -np.inf, -1
                    for i in range(KH):
                        for j in range(KW):
                            v = img[n, c, oh * SH + i, ow * SW + j]
                            if where < 0 or v > best:
                                best, where = v, i * KW + j
                    out[n, c, oh, ow] = best
                    arg[n * C + c, oh * OW + ow] = where
    return out, arg


def naive_maxpool_backward(dy, x_shape, kernel_size, stride, padding, arg):
    (KH, KW), (SH, SW), (PH, PW) = kernel_size, stride, padding
    N, C, H, W = x_shape
    OH, OW = dy.shape[2:]
    dx = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    i, j = divmod(int(arg[n * C + c, oh * OW + ow]), KW)
                    dx[n, c, oh * SH + i, ow * SW + j] += dy[n, c, oh, ow]
    return dx[:, :, PH:PH + H, PW:PW + W]


def window(case):
    return case.kernel_size, case.stride, case.padding


@pytest.mark.parametrize("size,kernel,stride,padding,expected", [
    (28, 3, 1, 1, 28), (28, 2, 2, 0, 14), (7, 3, 2, 0, 3), (5, 5, 1, 0, 1), (4, 5, 3, 2, 2), (1, 1, 3, 2, 2),
])
def test_output_size(size, kernel, stride, padding, expected):
    assert k.output_size(size, kernel, stride, padding) == expected


@given(case=conv_cases(), seed=seeds)
def test_im2col_matches_naive_loop(case, seed):
    x = normal(seed, case.x_shape)
    col = k.im2col(x, *window(case))
    assert col.shape == (case.x_shape[0], case.x_shape[1] * np.prod(case.kernel_size), np.prod(case.out_hw))
    np.testing.assert_array_equal(col, naive_im2col(x, *window(case)))


@given(case=conv_cases(), seed=seeds)
def test_col2im_matches_naive_loop(case, seed):
    N, C = case.x_shape[:2]
    col = normal(seed, (N, C * int(np.prod(case.kernel_size)), int(np.prod(case.out_hw))))
    np.testing.assert_allclose(k.col2im(col, case.x_shape, *window(case)),
                               naive_col2im(col, case.x_shape, *window(case)), rtol=1e-12, atol=1e-12)


@given(case=conv_cases(), seed=seeds)
def test_col2im_is_the_adjoint_of_im2col(case, seed):
    """<im2col(x), c> == <x, col2im(c)> for every x and c: the identity behind the convolution's dx."""
    x = normal(seed, case.x_shape)
    N, C = case.x_shape[:2]
    c = normal(seed + 1, (N, C * int(np.prod(case.kernel_size)), int(np.prod(case.out_hw))))
    lhs = float((k.im2col(x, *window(case)) * c).sum())
    rhs = float((x * k.col2im(c, case.x_shape, *window(case))).sum())
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)


def test_im2col_pad_value_fills_the_border():
    x = np.ones((1, 1, 2, 2))
    col = k.im2col(x, (3, 3), (1, 1), (1, 1), pad_value=-np.inf)
    # Every 3x3 window of the padded 4x4 image holds exactly the 4 ones and 5 border cells.
    assert (col == 1).sum(axis=1).tolist() == [[4, 4, 4, 4]]
    assert np.isneginf(col).sum(axis=1).tolist() == [[5, 5, 5, 5]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_keep_dtype_and_leave_inputs_alone(dtype):
    x = normal(0, (2, 3, 5, 4), dtype)
    x_before = x.copy()
    col = k.im2col(x, (3, 2), (2, 1), (1, 1))
    col_before = col.copy()
    back = k.col2im(col, x.shape, (3, 2), (2, 1), (1, 1))
    y, arg = k.maxpool2d_forward(x, (2, 2), (1, 2), (1, 0))
    dy = np.ones_like(y)
    dx = k.maxpool2d_backward(dy, arg, x.shape, (2, 2), (1, 2), (1, 0))
    assert col.dtype == back.dtype == y.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(col, col_before)
    np.testing.assert_array_equal(dy, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_transpose01_matches_naive_loop(with_bias, dtype):
    a = normal(1, (3, 4, 5), dtype)
    a_before = a.copy()
    bias = normal(2, (3,), dtype) if with_bias else None
    out = k.transpose01(a, bias)
    want = np.empty((4, 3, 5), dtype)
    for i in range(3):
        for b in range(4):
            want[b, i] = a[i, b] + (bias[i] if with_bias else 0)
    assert out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(a, a_before)


@given(case=pool_cases(), seed=seeds)
def test_maxpool_forward_matches_naive_loop(case, seed):
    x = distinct(seed, case.x_shape)
    y, arg = k.maxpool2d_forward(x, *window(case))
    y_ref, arg_ref = naive_maxpool(x, *window(case))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)


@given(case=pool_cases(), seed=seeds, levels=st.integers(1, 3))
def test_maxpool_ties_go_to_the_first_maximum(case, seed, levels):
    """Inputs from a few levels tie often; the winner is the first maximum in window order, as in PyTorch."""
    x = np.random.default_rng(seed).integers(0, levels, case.x_shape).astype(np.float64)
    y, arg = k.maxpool2d_forward(x, *window(case))
    y_ref, arg_ref = naive_maxpool(x, *window(case))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = normal(seed, y.shape)
    np.testing.assert_allclose(k.maxpool2d_backward(dy, arg, case.x_shape, *window(case)),
                               naive_maxpool_backward(dy, case.x_shape, *window(case), arg_ref), rtol=1e-12)


def test_maxpool_tie_in_one_window():
    x = np.array([[[[1.0, 5.0], [5.0, 5.0]]]])
    y, arg = k.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0))
    assert y.item() == 5.0 and arg.item() == 1
    dx = k.maxpool2d_backward(np.array([[[[2.0]]]]), arg, x.shape, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(dx, [[[[0.0, 2.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_padding_never_wins(dtype):
    """Padding is -inf: an all-negative input with padding must not produce 0 anywhere."""
    x = -1.0 - np.random.default_rng(0).uniform(0, 1, (2, 2, 5, 5)).astype(dtype)
    for kernel, stride, pad in [((2, 2), (2, 2), (1, 1)), ((3, 3), (1, 1), (1, 1)), ((4, 2), (3, 1), (2, 1))]:
        y, _ = k.maxpool2d_forward(x, kernel, stride, pad)
        assert (y < -1.0).all(), (kernel, stride, pad)
        np.testing.assert_array_equal(y, naive_maxpool(x, kernel, stride, pad)[0])


@given(case=pool_cases(), seed=seeds)
def test_maxpool_backward_matches_naive_loop(case, seed):
    """Each output's gradient lands on its window's winner; overlapping windows add up."""
    x = distinct(seed, case.x_shape)
    y, arg = k.maxpool2d_forward(x, *window(case))
    dy = normal(seed + 1, y.shape)
    np.testing.assert_allclose(k.maxpool2d_backward(dy, arg, case.x_shape, *window(case)),
                               naive_maxpool_backward(dy, case.x_shape, *window(case), arg), rtol=1e-12)
