"""What each layer computes (forward values, modes, statistics), its dtype, and that it leaves its arguments alone."""
import re

import numpy as np
import pytest
from hypothesis import given

from minicnn import models, nn
from strategies import away_from_zero, conv_cases, distinct, normal, seeds

# --- forward values --------------------------------------------------------


def naive_conv2d(x, w, b, stride, padding):
    """Direct convolution (cross-correlation, as in PyTorch), one output element at a time."""
    (SH, SW), (PH, PW) = stride, padding
    N, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    y = np.zeros((N, OC, OH, OW))
    for n in range(N):
        for o in range(OC):
            for i in range(OH):
                for j in range(OW):
                    y[n, o, i, j] = (xp[n, :, i * SH:i * SH + KH, j * SW:j * SW + KW] * w[o]).sum()
            if b is not None:
                y[n, o] += b[o]
    return y


@given(case=conv_cases(), seed=seeds)
def test_conv2d_matches_direct_convolution(case, seed):
    conv = nn.Conv2d(case.x_shape[1], case.out_channels, case.kernel_size, case.stride, case.padding,
                     bias=case.bias, dtype=np.float64, generator=np.random.default_rng(seed))
    x = normal(seed + 1, case.x_shape)
    y = conv(x)
    assert y.shape == (case.x_shape[0], case.out_channels, *case.out_hw)
    b = conv.bias.data if case.bias else None
    np.testing.assert_allclose(y, naive_conv2d(x, conv.weight.data, b, case.stride, case.padding),
                               rtol=1e-12, atol=1e-12)


def test_conv2d_small_example():
    conv = nn.Conv2d(1, 1, 2, dtype=np.float64)
    conv.weight.data[...] = [[[[1.0, 2.0], [3.0, 4.0]]]]
    conv.bias.data[...] = 0.5
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    # Top-left window [[0, 1], [3, 4]] -> 0 + 2 + 9 + 16 + 0.5.
    np.testing.assert_array_equal(conv(x), [[[[27.5, 37.5], [57.5, 67.5]]]])


def test_conv2d_shapes_of_the_mnist_blocks():
    x = np.zeros((2, 1, 28, 28), np.float32)
    assert nn.Conv2d(1, 32, 3, padding=1)(x).shape == (2, 32, 28, 28)
    assert nn.Conv2d(1, 8, 5, stride=2)(x).shape == (2, 8, 12, 12)
    assert nn.Conv2d(1, 4, (3, 1), stride=(1, 2), padding=(0, 1))(x).shape == (2, 4, 26, 15)


def test_maxpool2d_small_example():
    x = np.array([[[[1.0, 2.0, 5.0, 0.0],
                    [4.0, 3.0, 1.0, 1.0],
                    [0.0, 0.0, 7.0, 8.0],
                    [9.0, 0.0, 6.0, 2.0]]]])
    pool = nn.MaxPool2d(2)
    assert pool.stride == (2, 2)  # defaults to the kernel size
    np.testing.assert_array_equal(pool(x), [[[[4.0, 5.0], [9.0, 8.0]]]])
    dx = pool.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    np.testing.assert_array_equal(dx, [[[[0, 0, 2, 0], [1, 0, 0, 0], [0, 0, 0, 4], [3, 0, 0, 0]]]])


def test_maxpool2d_all_negative_with_padding():
    x = -1.0 - distinct(1, (1, 2, 4, 4))
    x -= x.max() + 1.0  # every value <= -1
    y = nn.MaxPool2d(2, stride=2, padding=1)(x)
    assert y.shape == (1, 2, 3, 3)
    assert (y <= -1.0).all()


@given(seed=seeds)
def test_relu(seed):
    x = away_from_zero(seed, (3, 4, 2))
    relu = nn.ReLU()
    np.testing.assert_array_equal(relu(x), np.where(x > 0, x, 0.0))
    g = normal(seed + 1, x.shape)
    np.testing.assert_array_equal(relu.backward(g), np.where(x > 0, g, 0.0))


def test_relu_subgradient_at_zero_is_zero():
    relu = nn.ReLU()
    relu(np.array([0.0, -0.0, 1.0]))
    np.testing.assert_array_equal(relu.backward(np.ones(3)), [0.0, 0.0, 1.0])


def test_linear_and_flatten():
    lin = nn.Linear(3, 2, dtype=np.float64)
    lin.weight.data[...] = [[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]]
    lin.bias.data[...] = [0.5, -0.5]
    x = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(lin(x), [[-1.5, 3.5]])
    flat = nn.Flatten()
    x4 = normal(0, (2, 3, 4, 5))
    y = flat(x4)
    assert y.shape == (2, 60)
    np.testing.assert_array_equal(y[1], x4[1].ravel())
    assert flat.backward(y).shape == x4.shape


@pytest.mark.parametrize("dim", [0, 1, -1, 2])
def test_log_softmax_and_softmax(dim):
    x = 5 * normal(0, (3, 4, 5))
    log_p = nn.LogSoftmax(dim=dim)(x)
    p = nn.Softmax(dim=dim)(x)
    np.testing.assert_allclose(np.exp(log_p).sum(axis=dim), 1.0, rtol=1e-12)
    np.testing.assert_allclose(p, np.exp(log_p), rtol=1e-12)
    expected = np.exp(x) / np.exp(x).sum(axis=dim, keepdims=True)
    np.testing.assert_allclose(p, expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmaxes_do_not_overflow(dtype):
    """exp(1000) overflows; the max-shift keeps everything finite and exact."""
    x = np.array([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4]], dtype=dtype)
    log_p = nn.LogSoftmax()(x)
    p = nn.Softmax()(x)
    assert np.isfinite(log_p[0]).all() and np.isfinite(p).all()
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=1e-7)
    np.testing.assert_allclose(log_p[0, :2], np.log(0.5), rtol=1e-6)
    assert log_p[1, 2] == 0.0


def test_batchnorm2d_train_normalises_and_updates_running_stats():
    bn = nn.BatchNorm2d(3, dtype=np.float64, momentum=0.1)
    x = 2.0 + 3.0 * normal(0, (4, 3, 5, 6))
    y = bn(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-4)  # eps=1e-5 in the denominator
    mu = x.mean(axis=(0, 2, 3))
    var_unbiased = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.running_mean, 0.9 * 0.0 + 0.1 * mu, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.9 * 1.0 + 0.1 * var_unbiased, rtol=1e-12)
    assert int(bn.num_batches_tracked) == 1
    bn(x)
    assert int(bn.num_batches_tracked) == 2
    assert isinstance(bn.num_batches_tracked, np.ndarray) and bn.num_batches_tracked.shape == ()
    assert bn.num_batches_tracked.dtype == np.int64


def test_batchnorm2d_eval_uses_running_stats_and_leaves_them():
    bn = nn.BatchNorm2d(2, dtype=np.float64, eps=1e-3)
    bn.weight.data[...] = [2.0, -1.0]
    bn.bias.data[...] = [0.5, 0.0]
    bn.running_mean = np.array([1.0, -2.0])
    bn.running_var = np.array([4.0, 0.25])
    bn.eval()
    x = normal(0, (2, 2, 3, 3))
    y = bn(x)
    rm, rv = np.array([1.0, -2.0]), np.array([4.0, 0.25])
    expected = (np.array([2.0, -1.0])[None, :, None, None] * (x - rm[None, :, None, None])
                / np.sqrt(rv[None, :, None, None] + 1e-3) + np.array([0.5, 0.0])[None, :, None, None])
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_array_equal(bn.running_mean, rm)
    np.testing.assert_array_equal(bn.running_var, rv)
    assert int(bn.num_batches_tracked) == 0


def test_batchnorm2d_one_value_per_channel_in_training_is_an_error():
    bn = nn.BatchNorm2d(2, dtype=np.float64)
    with pytest.raises(ValueError, match=r"BatchNorm2d.*more than one value per channel.*\(1, 2, 1, 1\)"):
        bn(np.ones((1, 2, 1, 1)))
    assert bn.eval()(np.ones((1, 2, 1, 1))).shape == (1, 2, 1, 1)  # fine with running statistics


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_train(p):
    drop = nn.Dropout(p, generator=np.random.default_rng(0))
    x = np.ones((200, 500))
    y = drop(x)
    dropped = (y == 0).mean()
    assert abs(dropped - p) < 0.01
    np.testing.assert_allclose(y[y != 0], 1.0 / (1.0 - p))  # inverted dropout: survivors scaled up
    assert abs(y.mean() - 1.0) < 0.02
    g = normal(1, x.shape)
    np.testing.assert_array_equal(drop.backward(g), g * (y / x))  # the same mask, the same scale


def test_dropout_eval_and_p0_are_identity():
    x = normal(0, (4, 5))
    drop = nn.Dropout(0.5, generator=np.random.default_rng(0)).eval()
    np.testing.assert_array_equal(drop(x), x)
    np.testing.assert_array_equal(drop.backward(x), x)
    np.testing.assert_array_equal(nn.Dropout(0.0)(x), x)


def test_dropout_same_seed_same_mask():
    x = np.ones((10, 10))
    a = nn.Dropout(0.5, generator=np.random.default_rng(7))(x)
    b = nn.Dropout(0.5, generator=np.random.default_rng(7))(x)
    c = nn.Dropout(0.5, generator=np.random.default_rng(8))(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_nll_loss_value_and_gradient():
    z = np.log(np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]]))
    t = np.array([1, 0])
    loss = nn.NLLLoss()
    assert loss(z, t) == pytest.approx(-(np.log(0.7) + np.log(0.5)) / 2, rel=1e-14)
    np.testing.assert_array_equal(loss.backward(), [[0, -0.5, 0], [-0.5, 0, 0]])


@given(seed=seeds)
def test_cross_entropy_equals_log_softmax_then_nll(seed):
    x = 3 * normal(seed, (4, 5))
    t = np.random.default_rng(seed).integers(0, 5, 4)
    log_softmax, nll, ce = nn.LogSoftmax(dim=1), nn.NLLLoss(), nn.CrossEntropyLoss()
    two_step = nll(log_softmax(x), t)
    assert ce(x, t) == pytest.approx(two_step, rel=1e-12)
    np.testing.assert_allclose(ce.backward(), log_softmax.backward(nll.backward()), rtol=1e-10, atol=1e-15)
    # One-hot targets are the same loss with the same gradient.
    ce_onehot = nn.CrossEntropyLoss()
    assert ce_onehot(x, np.eye(5)[t]) == pytest.approx(two_step, rel=1e-12)
    np.testing.assert_allclose(ce_onehot.backward(), ce.backward(), rtol=1e-12, atol=1e-15)


def test_cross_entropy_soft_targets():
    x = normal(0, (3, 4))
    t = np.random.default_rng(1).dirichlet(np.ones(4), 3)
    ce = nn.CrossEntropyLoss()
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    assert ce(x, t) == pytest.approx(-(t * log_p).sum() / 3, rel=1e-12)
    np.testing.assert_allclose(ce.backward(), (np.exp(log_p) - t) / 3, rtol=1e-12, atol=1e-15)


def test_cross_entropy_large_logits_stay_finite():
    x = np.array([[1e4, 0.0, -1e4]], dtype=np.float32)
    ce = nn.CrossEntropyLoss()
    assert ce(x, np.array([0])) == 0.0
    assert ce(x, np.array([2])) == pytest.approx(2e4)
    assert np.isfinite(ce.backward()).all()


@pytest.mark.parametrize("layer", [nn.Conv2d(1, 1, 1), nn.MaxPool2d(2), nn.ReLU(), nn.Linear(2, 2), nn.Flatten(),
                                   nn.LogSoftmax(), nn.Softmax(), nn.BatchNorm2d(1), nn.Rescaling(2.0), nn.NLLLoss(),
                                   nn.CrossEntropyLoss()], ids=lambda m: type(m).__name__)
def test_backward_before_forward_is_a_clear_error(layer):
    is_loss = isinstance(layer, (nn.NLLLoss, nn.CrossEntropyLoss))
    with pytest.raises(RuntimeError, match=f"{type(layer).__name__}.*backward called before forward"):
        if is_loss:
            layer.backward()
        else:
            layer.backward(np.ones((1, 1, 1, 1)))


# --- dtype and argument safety ---------------------------------------------

# (name, factory(dtype), input shape, input kind): every layer in the modes it has.
LAYERS = [
    ("Conv2d", lambda dt: nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=dt, generator=np.random.default_rng(0)),
     (2, 3, 7, 6), "normal"),
    ("Conv2d-nobias", lambda dt: nn.Conv2d(3, 2, (2, 3), bias=False, dtype=dt), (2, 3, 5, 5), "normal"),
    ("MaxPool2d", lambda dt: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 6), "distinct"),
    ("ReLU", lambda dt: nn.ReLU(), (2, 3, 4), "away"),
    ("Linear", lambda dt: nn.Linear(5, 3, dtype=dt), (4, 5), "normal"),
    ("Flatten", lambda dt: nn.Flatten(), (2, 3, 2, 2), "normal"),
    ("Rescaling", lambda dt: nn.Rescaling(0.3081, 0.1307), (2, 1, 4, 4), "normal"),
    ("LogSoftmax", lambda dt: nn.LogSoftmax(dim=1), (4, 5), "normal"),
    ("Softmax", lambda dt: nn.Softmax(dim=-1), (2, 3, 5), "normal"),
    ("BatchNorm2d-train", lambda dt: nn.BatchNorm2d(3, dtype=dt), (2, 3, 4, 4), "normal"),
    ("BatchNorm2d-eval", lambda dt: nn.BatchNorm2d(3, dtype=dt).eval(), (2, 3, 4, 4), "normal"),
    ("Dropout-train", lambda dt: nn.Dropout(0.5, generator=np.random.default_rng(0)), (4, 6), "normal"),
    ("Dropout-eval", lambda dt: nn.Dropout(0.5).eval(), (4, 6), "normal"),
]
INPUTS = {"normal": normal, "distinct": distinct, "away": away_from_zero}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,make,shape,kind", LAYERS, ids=[row[0] for row in LAYERS])
def test_layers_keep_dtype_and_leave_arguments_alone(name, make, shape, kind, dtype):
    layer = make(dtype)
    x = INPUTS[kind](1, shape, dtype)
    x_before = x.copy()
    y = layer(x)
    g = normal(2, y.shape, dtype)
    g_before = g.copy()
    dx = layer.backward(g)
    assert y.dtype == dtype, f"{name} output is {y.dtype}"
    assert dx.dtype == dtype and dx.shape == x.shape, f"{name} input gradient is {dx.dtype} {dx.shape}"
    for pname, p in layer.named_parameters():
        assert p.data.dtype == dtype and p.grad is not None and p.grad.dtype == dtype, pname
    for bname, b in layer.named_buffers():
        if bname != "num_batches_tracked":
            assert b.dtype == dtype, bname
    np.testing.assert_array_equal(x, x_before, err_msg=f"{name}.forward/backward changed its input")
    np.testing.assert_array_equal(g, g_before, err_msg=f"{name}.backward changed grad_output")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["NLLLoss", "CrossEntropyLoss-index", "CrossEntropyLoss-onehot"])
def test_losses_keep_dtype_and_leave_arguments_alone(kind, dtype):
    x = normal(0, (4, 3), dtype)
    t = np.array([0, 2, 1, 2])
    if kind == "NLLLoss":
        loss, x = nn.NLLLoss(), nn.LogSoftmax()(x)
    else:
        loss = nn.CrossEntropyLoss()
        if kind.endswith("onehot"):
            t = np.eye(3, dtype=dtype)[t]
    x_before, t_before = x.copy(), t.copy()
    value = loss(x, t)
    dx = loss.backward()
    assert isinstance(value, float)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(t, t_before)


@pytest.mark.parametrize("model_cls", [models.MnistCNN, models.MnistBNCNN], ids=lambda c: c.__name__)
def test_float32_model_stays_float32(model_cls):
    """Forward, loss and backward through a float32 model: no array is silently promoted to float64."""
    model = model_cls(seed=0)
    x = np.random.default_rng(1).uniform(0, 1, (3, 1, 28, 28)).astype(np.float32)
    x_before = x.copy()
    out = model(x)
    assert out.dtype == np.float32 and out.shape == (3, 10)
    criterion = nn.NLLLoss()
    criterion(out, np.array([1, 5, 9]))
    dx = model.backward(criterion.backward())
    assert dx.dtype == np.float32 and dx.shape == x.shape
    for name, p in model.named_parameters():
        assert p.data.dtype == np.float32 and p.grad.dtype == np.float32, name
    for name, b in model.named_buffers():
        assert b.dtype == (np.int64 if name.endswith("num_batches_tracked") else np.float32), name
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_parameter_backward_gives_the_gradients_of_backward_without_dx(backend, monkeypatch):
    """A network's first layer needs no dL/dx: parameter_backward fills the same p.grad, and
    Conv2d then neither multiplies W_mat^T @ dY nor runs col2im."""
    pytest.importorskip(backend)
    from minicnn.nn import functional as F
    from strategies import using

    x = normal(0, (4, 1, 28, 28), np.float32)
    with using(backend):
        grads = []
        for method in ("backward", "parameter_backward"):
            model = models.MnistCNN(seed=0)
            y = model(x)
            getattr(model, method)(np.ones_like(y))
            grads.append([p.grad for p in model.parameters()])
        for full, only in zip(*grads):
            np.testing.assert_allclose(only, full, rtol=1e-6, atol=1e-7)
        conv = nn.Conv2d(1, 2, 3, generator=np.random.default_rng(0))
        seen = []
        conv_backward = F.conv2d_backward
        monkeypatch.setattr(F, "conv2d_backward",
                            lambda *a, **k: seen.append(k["input_grad"]) or conv_backward(*a, **k))
        y = conv(x)
        assert conv.parameter_backward(np.ones_like(y)) is None
        assert seen == [False] and conv.weight.grad is not None


def test_rescaling_maps_each_value_and_scales_the_gradient():
    layer = nn.Rescaling(0.5, -1.0)
    x = np.array([[0.0, 2.0, -4.0]], dtype=np.float32)
    np.testing.assert_array_equal(layer(x), [[-1.0, 0.0, -3.0]])
    np.testing.assert_array_equal(layer.backward(np.array([[2.0, 4.0, -6.0]], np.float32)), [[1.0, 2.0, -3.0]])
    assert repr(layer) == "Rescaling(scale=0.5, offset=-1)"
    assert not list(layer.parameters())


@pytest.mark.parametrize("args, message", [
    ((0.0,), "scale must not be 0"),
    ((float("nan"),), "scale must be a finite number, got nan"),
    ((1.0, float("inf")), "offset must be a finite number, got inf"),
    (("2",), "scale must be a finite number, got '2'"),
])
def test_rescaling_refuses_bad_arguments(args, message):
    with pytest.raises(ValueError, match=re.escape(f"Rescaling: {message}")):
        nn.Rescaling(*args)


def test_rescaling_refuses_integer_input():
    with pytest.raises(ValueError, match="Rescaling: expected a floating-point array, got uint8"):
        nn.Rescaling(1 / 255)(np.zeros((1, 28, 28), np.uint8))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_parameter_backward_skips_the_parameterless_layers_before_the_first_that_learns(backend, monkeypatch):
    """A Rescaling of the images first: its backward is not run, and the convolution after it still
    gets parameter_backward (no dL/dx), with the gradients the full backward gives."""
    pytest.importorskip(backend)
    from minicnn.nn import functional as F
    from strategies import using

    x = normal(0, (3, 1, 8, 8), np.float32)
    seen = []
    conv_backward, rescale_backward = F.conv2d_backward, nn.Rescaling.backward
    monkeypatch.setattr(F, "conv2d_backward", lambda *a, **k: seen.append(k["input_grad"]) or conv_backward(*a, **k))
    monkeypatch.setattr(nn.Rescaling, "backward", lambda self, g: seen.append("rescale") or rescale_backward(self, g))
    with using(backend):
        grads = []
        for method in ("backward", "parameter_backward"):
            model = nn.Sequential(nn.Rescaling(0.3081, 0.1307), nn.Conv2d(1, 2, 3, generator=np.random.default_rng(0)),
                                  nn.Flatten(), nn.Linear(72, 4, generator=np.random.default_rng(1)))
            y = model(x)
            seen.clear()
            getattr(model, method)(normal(2, y.shape, np.float32))
            grads.append([p.grad for p in model.parameters()])
            assert seen == ([True, "rescale"] if method == "backward" else [False])
        for full, only in zip(*grads):
            np.testing.assert_allclose(only, full, rtol=1e-6, atol=1e-7)


def test_parameter_backward_of_an_empty_sequential_does_nothing():
    nn.Sequential().parameter_backward(np.ones(3))
