"""Ties in the fused convolution -> ReLU -> 2 x 2 max-pool of the Numba backend, on every path.

docs/layers.md ("Ties go to the first maximum"): a pool window whose largest value occurs
twice sends its gradient to the *first* of them in window order, as PyTorch does.  The
fused kernels pick each window's winner themselves (numba_kernels._first_max4) on the
direct, rows and Winograd paths of training and on inference's paths, so each is run here
on inputs with exact ties and compared with ``.reference``, the NumPy composition.

Exact ties need exact arithmetic: inputs, weights, biases and output gradients are small
integers (from {-1, 0, 1, 2}, the gradients nonzero), so every sum, on every path and in
float32 as in float64, is an exactly representable integer (Winograd's transforms add
multiples of 1/4, exact too): the results must be *equal*, not close.  The ties are made on
purpose: the input is constant along whole rows, whole columns or both, or repeats each
value over 2 x 2 blocks, so neighbouring convolution outputs see the same numbers; an
example without a tie at a positive window maximum is rejected (``assume``).

Which path a call takes is decided by the shapes alone (numba_conv): *direct* for stride 1
and K = C*KH*KW <= 32, *Winograd* for a 3 x 3 stride-1 convolution with more channels and
an even output, *rows* for the rest; each test asserts it from what the forward keeps.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minicnn
from minicnn.nn import functional
from minicnn.nn import fused as F  # the fused functions (formerly in minicnn.nn.functional): change here only
from strategies import seeds, using

pytest.importorskip("numba", reason="Numba is not installed (pip install numba): the numba backend cannot load here")

VALUES = np.array([-1, 0, 1, 2])
GRADIENTS = np.array([-2, -1, 1, 3])  # nonzero: every window's gradient goes somewhere
POOL = ((2, 2), (2, 2), (0, 0))
DTYPES = [np.float32, np.float64]
few = settings(max_examples=15, deadline=None)


def _size(out, kernel, stride, pad, extra=0):
    """The input size that gives ``out`` outputs (``extra`` more rows that stride skips)."""
    return (out - 1) * stride + kernel - 2 * pad + extra


@st.composite
def direct_shapes(draw):
    """Stride 1 and K = C*KH*KW <= 27 (at most 3 channels of 3 x 3): numba_conv's direct kernels."""
    C, (KH, KW) = draw(st.integers(1, 3)), (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    PH, PW = draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2))
    OH, OW = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    return dict(C=C, kernel=(KH, KW), stride=(1, 1), padding=(PH, PW),
                hw=(_size(OH, KH, 1, PH), _size(OW, KW, 1, PW)))


@st.composite
def winograd_shapes(draw):
    """3 x 3, stride 1, padding 0-2, an even output of 2-6 per axis, and 4-5 channels (K = 36-45 > 32):
    numba_winograd.fits, and too many rows for the direct kernels."""
    def side():
        pad = draw(st.integers(0, 2))
        out = draw(st.sampled_from([o for o in (2, 4, 6) if _size(o, 3, 1, pad) >= 1]))
        return _size(out, 3, 1, pad), pad
    (H, PH), (W, PW) = side(), side()
    return dict(C=draw(st.integers(4, 5)), kernel=(3, 3), stride=(1, 1), padding=(PH, PW), hw=(H, W))


@st.composite
def rows_shapes(draw):
    """Neither direct nor Winograd: a stride of 2 along some axis (any channel count), or stride 1 with
    K = 36 > 32 (4 channels of 3 x 3) and an odd output height, which Winograd's tiles cannot pool."""
    if draw(st.booleans()):
        C, (KH, KW) = draw(st.integers(1, 4)), (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        SH, SW = draw(st.sampled_from([(2, 2), (2, 1), (1, 2)]))
        PH, PW = draw(st.integers(0, KH // 2)), draw(st.integers(0, KW // 2))
        OH, OW = draw(st.integers(2, 5)), draw(st.integers(2, 5))
        H = _size(OH, KH, SH, PH, draw(st.integers(0, SH - 1)))
        W = _size(OW, KW, SW, PW, draw(st.integers(0, SW - 1)))
        return dict(C=C, kernel=(KH, KW), stride=(SH, SW), padding=(PH, PW), hw=(H, W))
    PH, PW = draw(st.integers(0, 1)), draw(st.integers(0, 1))
    OH, OW = draw(st.sampled_from([3, 5])), draw(st.integers(2, 5))
    return dict(C=4, kernel=(3, 3), stride=(1, 1), padding=(PH, PW), hw=(_size(OH, 3, 1, PH), _size(OW, 3, 1, PW)))


SHAPES = {"direct": direct_shapes(), "rows": rows_shapes(), "winograd": winograd_shapes()}


@st.composite
def tied_cases(draw, path):
    """(x, weight, bias, stride, padding, seed) of small integers, x made to repeat along rows/columns."""
    shape = draw(SHAPES[path])
    N, OC, (H, W), seed = draw(st.integers(1, 2)), draw(st.integers(1, 3)), shape["hw"], draw(seeds)
    # How far each value of x repeats down and across: 1 (no repeat), 2 (2 x 2 blocks with the other
    # axis) or the whole axis.  At least one axis repeats, so neighbouring outputs tie.
    rh, rw = draw(st.sampled_from([(H, 1), (1, W), (H, W), (2, 2), (H, 2), (2, W)]))
    rng = np.random.default_rng(seed)
    coarse = rng.choice(VALUES, (N, shape["C"], -(-H // rh), -(-W // rw)))
    x = np.repeat(np.repeat(coarse, rh, axis=2), rw, axis=3)[:, :, :H, :W]
    weight = rng.choice(VALUES, (OC, shape["C"], *shape["kernel"]))
    bias = rng.choice(VALUES, OC) if draw(st.booleans()) else None
    return x, weight, bias, shape["stride"], shape["padding"], seed


def _as(dtype, *arrays):
    return [None if a is None else np.ascontiguousarray(a, dtype=dtype) for a in arrays]


def _positive_ties(x, weight, bias, stride, padding):
    """How many 2 x 2 pool windows of relu(conv2d(x)) have their maximum, > 0, more than once."""
    y, _ = functional.conv2d.reference(x, weight, bias, stride, padding)
    N, OC, OH, OW = y.shape
    ZH, ZW = OH // 2, OW // 2
    windows = y[:, :, :2 * ZH, :2 * ZW].reshape(N, OC, ZH, 2, ZW, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
        N, OC, ZH, ZW, 4)
    top = windows.max(axis=-1)
    return int(((top > 0) & ((windows == top[..., None]).sum(axis=-1) > 1)).sum())


# What a training forward keeps names its path: numba_conv's Direct (the input itself) or Rows (the rows
# (N*P, K)) record, or Winograd's transformed tiles (a numba_winograd.Tiles); the reference keeps its
# columns (N, K, P).
_KEPT = {"direct": lambda s: type(s).__name__ == "Direct" and s.x.ndim == 4,
         "rows": lambda s: type(s).__name__ == "Rows" and s.rows.ndim == 2,
         "winograd": lambda s: type(s).__name__ == "Tiles"}


def _assert_path(path, saved):
    assert _KEPT[path](saved), f"expected the {path} path, but the forward kept a {type(saved).__name__} " \
                               f"{getattr(saved, 'shape', '')}"


def _train_and_backward(case, dtype, input_grad, path):
    x, weight, bias, stride, padding, seed = case
    assume(_positive_ties(x, weight, bias, stride, padding) > 0)
    x, weight, bias = _as(dtype, x, weight, bias)
    with using("numba"):
        z, saved, argmax = F.conv2d_relu_maxpool2d_train(x, weight, bias, stride, padding, *POOL)
        dz = np.random.default_rng(seed + 1).choice(GRADIENTS, z.shape).astype(dtype)
        got = F.conv2d_relu_maxpool2d_backward(dz, z, argmax, saved, weight, x.shape, stride, padding, *POOL,
                                               input_grad=input_grad)
    _assert_path(path, saved)
    z_ref, saved_ref, argmax_ref = F.conv2d_relu_maxpool2d_train.reference(x, weight, bias, stride, padding, *POOL)
    want = F.conv2d_relu_maxpool2d_backward.reference(dz, z_ref, argmax_ref, saved_ref, weight, x.shape, stride,
                                                      padding, *POOL, input_grad=input_grad)
    assert z.dtype == dtype and z.shape == z_ref.shape
    np.testing.assert_array_equal(z, z_ref)
    # Where z = 0 no gradient passes, and the fused kernels take the winner before ReLU (the reference
    # after it, among zeros): the winners must agree where z > 0, ties included.
    positive = (z_ref > 0).reshape(argmax_ref.shape)
    np.testing.assert_array_equal(np.asarray(argmax)[positive], argmax_ref[positive],
                                  err_msg="a tie's winner: the first maximum in window order")
    for name, g, w in zip(("dx", "dweight", "dbias"), got, want):
        if w is None:
            assert g is None, name
            continue
        assert g.dtype == dtype, name
        np.testing.assert_array_equal(g, w, err_msg=f"{name}: the gradient routed through the tied windows")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("path", ["direct", "rows", "winograd"])
def test_training_ties_go_to_the_first_maximum(path, dtype):
    @few
    @given(case=tied_cases(path), input_grad=st.booleans())
    def check(case, input_grad):
        _train_and_backward(case, dtype, input_grad, path)
    check()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("path", ["direct", "rows", "winograd"])
def test_inference_with_ties_equals_the_reference(path, dtype):
    """Inference's fused call: the direct kernel for the direct shapes, the blocked rows for the others
    (inference has no Winograd path: those shapes are blocked rows too).  It keeps nothing, so only the
    pooled values can be compared; the dispatch is checked to reach the Numba override."""
    @few
    @given(case=tied_cases(path))
    def check(case):
        x, weight, bias, stride, padding, _ = case
        assume(_positive_ties(x, weight, bias, stride, padding) > 0)
        x, weight, bias = _as(dtype, x, weight, bias)
        with using("numba") as numba_backend, minicnn.no_grad():
            assert numba_backend.kernel("conv2d_relu_maxpool2d", x) is not F.conv2d_relu_maxpool2d.reference
            z = F.conv2d_relu_maxpool2d(x, weight, bias, stride, padding, *POOL)
        want = F.conv2d_relu_maxpool2d.reference(x, weight, bias, stride, padding, *POOL)
        assert z.dtype == dtype
        np.testing.assert_array_equal(z, want)
    check()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("path", ["direct", "rows"])
def test_conv_relu_with_exact_zeros_equals_the_reference(path, dtype):
    """Training's conv2d_relu (no pool) on the same integer inputs: many outputs are exactly 0, where
    ReLU's gradient is 0 (PyTorch's subgradient), on the direct path (keeps x) and the rows (keep rows)."""
    @few
    @given(case=tied_cases(path), input_grad=st.booleans())
    def check(case, input_grad):
        x, weight, bias, stride, padding, seed = case
        x, weight, bias = _as(dtype, x, weight, bias)
        with using("numba"):
            y, saved = F.conv2d_relu(x, weight, bias, stride, padding)
            dy = np.random.default_rng(seed + 1).choice(GRADIENTS, y.shape).astype(dtype)
            got = F.conv2d_relu_backward(dy, y, saved, weight, x.shape, stride, padding, input_grad=input_grad)
        assert _KEPT[path](saved)
        y_ref, saved_ref = F.conv2d_relu.reference(x, weight, bias, stride, padding)
        want = F.conv2d_relu_backward.reference(dy, y_ref, saved_ref, weight, x.shape, stride, padding,
                                                input_grad=input_grad)
        np.testing.assert_array_equal(y, y_ref)
        for name, g, w in zip(("dx", "dweight", "dbias"), got, want):
            if w is None:
                assert g is None, name
            else:
                np.testing.assert_array_equal(g, w, err_msg=name)
    check()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("path, C, stride, hw", [("direct", 1, (1, 1), (6, 6)), ("rows", 2, (2, 2), (9, 9)),
                                                 ("winograd", 4, (1, 1), (6, 6))])
def test_a_constant_image_sends_every_gradient_to_the_top_left(path, C, stride, hw, dtype):
    """The plainest tie: a constant image, no padding, positive weights: every output of a plane is
    the same positive number, so every window is a four-way tie, won by offset 0 (its top left)."""
    x = np.ones((2, C, *hw), dtype=dtype)
    weight = np.ones((3, C, 3, 3), dtype=dtype)
    with using("numba"):
        z, saved, argmax = F.conv2d_relu_maxpool2d_train(x, weight, None, stride, (0, 0), *POOL)
        dx, dweight, dbias = F.conv2d_relu_maxpool2d_backward(np.ones_like(z), z, argmax, saved, weight, x.shape,
                                                              stride, (0, 0), *POOL)
    _assert_path(path, saved)
    assert (np.asarray(z) == 9 * C).all()
    assert (np.asarray(argmax) == 0).all(), f"{path}: winners {np.unique(argmax)}, expected the first (0) only"
    z_ref, saved_ref, argmax_ref = F.conv2d_relu_maxpool2d_train.reference(x, weight, None, stride, (0, 0), *POOL)
    want = F.conv2d_relu_maxpool2d_backward.reference(np.ones_like(z), z_ref, argmax_ref, saved_ref, weight,
                                                      x.shape, stride, (0, 0), *POOL)
    for name, g, w in zip(("dx", "dweight", "dbias"), (dx, dweight, dbias), want):
        np.testing.assert_array_equal(g, w, err_msg=name)
