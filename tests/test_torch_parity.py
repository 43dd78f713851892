"""Every layer, loss and model against PyTorch, the optional test-only reference.

Weights go from minicnn to PyTorch through ``state_dict`` (the layouts and
names are the same), then both compute the forward pass and the input and
parameter gradients in float64 and must agree to rounding.  The ``torch``
fixture (tests/conftest.py) skips these tests, saying why, where PyTorch is
not installed.
"""
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from minicnn import models, nn
from strategies import away_from_zero, conv_cases, distinct, normal, seeds

pytestmark = pytest.mark.torch

TOL = dict(rtol=1e-10, atol=1e-12)
# The torch fixture only imports PyTorch and sets its default dtype, so sharing it across examples is safe.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def to_torch(torch, ours, theirs):
    """Load minicnn's state dict into the PyTorch module, via torch.from_numpy."""
    state = OrderedDict((k, torch.from_numpy(v)) for k, v in ours.state_dict().items())
    theirs.load_state_dict(state)
    return theirs


def assert_same_state(ours, theirs):
    theirs_state = theirs.state_dict()
    assert list(ours.state_dict()) == list(theirs_state)
    for key, value in ours.state_dict().items():
        np.testing.assert_allclose(np.asarray(value), theirs_state[key].numpy(), err_msg=key, **TOL)


def compare(torch, ours, theirs, x, seed=0, tol=TOL):
    """Forward, input gradient and parameter gradients of a layer (PyTorch's weights loaded from ours)."""
    to_torch(torch, ours, theirs)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = theirs(xt)
    y = ours(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), err_msg="forward", **tol)
    g = normal(seed + 100, y.shape)
    yt.backward(torch.from_numpy(g))
    dx = ours.backward(g)
    np.testing.assert_allclose(dx, xt.grad.numpy(), err_msg="input gradient", **tol)
    theirs_params = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(theirs_params)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs_params[name].grad.numpy(), err_msg=name, **tol)
    assert_same_state(ours, theirs)  # buffers, e.g. BatchNorm's running statistics after the step


# --- layers ----------------------------------------------------------------


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,bias", [
    (1, 2, 3, 1, 0, True),
    (3, 4, 3, 1, 1, True),
    (3, 4, 3, 2, 1, False),
    (2, 5, (3, 2), (2, 1), (1, 2), True),
    (2, 3, 5, 3, 2, True),
    (4, 2, 1, 2, 0, True),
])
def test_conv2d(torch, cin, cout, kernel, stride, padding, bias):
    ours = nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias, dtype=np.float64,
                     generator=np.random.default_rng(0))
    theirs = torch.nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias)
    compare(torch, ours, theirs, normal(1, (2, cin, 9, 8)))


@fixture_ok
@given(case=conv_cases(), seed=seeds)
def test_conv2d_drawn_shapes(torch, case, seed):
    c = case.x_shape[1]
    ours = nn.Conv2d(c, case.out_channels, case.kernel_size, case.stride, case.padding, bias=case.bias,
                     dtype=np.float64, generator=np.random.default_rng(seed))
    theirs = torch.nn.Conv2d(c, case.out_channels, case.kernel_size, case.stride, case.padding, bias=case.bias)
    compare(torch, ours, theirs, normal(seed + 1, case.x_shape), seed)


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 1)), (4, 3, 2)])
def test_maxpool2d(torch, kernel, stride, padding):
    ours = nn.MaxPool2d(kernel, stride, padding)
    theirs = torch.nn.MaxPool2d(kernel, stride, padding)
    compare(torch, ours, theirs, distinct(0, (2, 3, 7, 8)))
    # All-negative input: PyTorch pads with -inf as well, so padding never wins.
    compare(torch, nn.MaxPool2d(kernel, stride, padding), torch.nn.MaxPool2d(kernel, stride, padding),
            -5.0 - np.abs(distinct(1, (1, 2, 6, 5))))


def test_maxpool2d_ties_like_torch(torch):
    """Both send the gradient of a tied window to its first maximum."""
    x = np.random.default_rng(0).integers(0, 2, (2, 2, 6, 6)).astype(np.float64)
    compare(torch, nn.MaxPool2d(3, 1, 1), torch.nn.MaxPool2d(3, 1, 1), x)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(torch, bias):
    ours = nn.Linear(7, 5, bias=bias, dtype=np.float64, generator=np.random.default_rng(0))
    compare(torch, ours, torch.nn.Linear(7, 5, bias=bias), normal(1, (4, 7)))


def test_relu_and_flatten(torch):
    compare(torch, nn.ReLU(), torch.nn.ReLU(), away_from_zero(0, (2, 3, 4, 5)))
    compare(torch, nn.Flatten(), torch.nn.Flatten(), normal(0, (2, 3, 4, 5)))


@pytest.mark.parametrize("name", ["LogSoftmax", "Softmax"])
@pytest.mark.parametrize("dim", [1, -1])
@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 4)])
def test_softmaxes(torch, name, dim, shape):
    compare(torch, getattr(nn, name)(dim=dim), getattr(torch.nn, name)(dim=dim), 4 * normal(0, shape))


def _bn_pair(torch, c, seed):
    rng = np.random.default_rng(seed)
    ours = nn.BatchNorm2d(c, dtype=np.float64, momentum=0.2, eps=1e-4)
    ours.weight.data[...] = rng.uniform(0.5, 2.0, c)
    ours.bias.data[...] = rng.standard_normal(c)
    ours.running_mean = rng.standard_normal(c)
    ours.running_var = rng.uniform(0.5, 2.0, c)
    return ours, torch.nn.BatchNorm2d(c, momentum=0.2, eps=1e-4)


def test_batchnorm2d_train_and_running_stats(torch):
    ours, theirs = _bn_pair(torch, 3, 0)
    x = 1.0 + 2.0 * normal(1, (4, 3, 5, 5))
    compare(torch, ours, theirs, x)  # forward, gradients, then running stats and the counter
    # A second step on the same pair (no reload) must keep them in step.
    x2 = normal(2, (2, 3, 3, 4))
    xt = torch.from_numpy(x2)
    np.testing.assert_allclose(ours(x2), theirs(xt).detach().numpy(), **TOL)
    assert_same_state(ours, theirs)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 2


def test_batchnorm2d_eval(torch):
    ours, theirs = _bn_pair(torch, 3, 1)
    ours.eval(), theirs.eval()
    compare(torch, ours, theirs, normal(1, (2, 3, 4, 3)))
    assert int(theirs.num_batches_tracked) == 0


def test_dropout_eval_and_p0(torch):
    compare(torch, nn.Dropout(0.5).eval(), torch.nn.Dropout(0.5).eval(), normal(0, (3, 4)))
    compare(torch, nn.Dropout(0.0), torch.nn.Dropout(0.0), normal(0, (3, 4)))


# --- losses ----------------------------------------------------------------


def compare_loss(torch, ours, theirs, x, target, target_t):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    lt = theirs(xt, target_t)
    assert ours(x, target) == pytest.approx(lt.item(), rel=1e-12, abs=1e-14)
    lt.backward()
    np.testing.assert_allclose(ours.backward(), xt.grad.numpy(), **TOL)


def test_nll_loss(torch):
    x = normal(0, (5, 4))
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    t = np.array([0, 3, 1, 3, 2])
    compare_loss(torch, nn.NLLLoss(), torch.nn.NLLLoss(), log_p, t, torch.from_numpy(t))


@pytest.mark.parametrize("kind", ["index", "one-hot", "probabilities", "unnormalised"])
def test_cross_entropy_loss(torch, kind):
    x = 3 * normal(0, (5, 4))
    rng = np.random.default_rng(1)
    index = rng.integers(0, 4, 5)
    target = {"index": index, "one-hot": np.eye(4)[index], "probabilities": rng.dirichlet(np.ones(4), 5),
              "unnormalised": rng.uniform(0, 2, (5, 4))}[kind]
    compare_loss(torch, nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), x, target, torch.from_numpy(target))


# --- whole models ----------------------------------------------------------


def torch_model(torch, batchnorm, p=(0.25, 0.5)):
    """The PyTorch network that MnistCNN (batchnorm=False) or MnistBNCNN describes, with the same names."""
    tnn = torch.nn

    def block(i, cin, cout):
        layers = [(f"conv{i}", tnn.Conv2d(cin, cout, 3, padding=1))]
        layers += [(f"bn{i}", tnn.BatchNorm2d(cout))] if batchnorm else []
        layers += [(f"relu{i}", tnn.ReLU()), (f"pool{i}", tnn.MaxPool2d(2))]
        layers += [(f"drop{i}", tnn.Dropout(p[i - 1]))] if batchnorm else []
        return layers

    return tnn.Sequential(OrderedDict(
        block(1, 1, 32) + block(2, 32, 64)
        + [("flatten", tnn.Flatten()), ("fc1", tnn.Linear(3136, 128)), ("relu3", tnn.ReLU()),
           ("fc2", tnn.Linear(128, 10)), ("log_softmax", tnn.LogSoftmax(dim=1))]))


@pytest.mark.parametrize("name", ["MnistCNN", "MnistBNCNN"])
def test_state_dict_keys_and_shapes_match_torch(torch, name):
    ours = models.get_model(name, seed=0)
    theirs = torch_model(torch, batchnorm=name == "MnistBNCNN")
    assert [(k, tuple(np.shape(v))) for k, v in ours.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    assert sum(p.size for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_load_a_torch_state_dict(torch):
    """The other direction: PyTorch's tensors (float64 here) load into a float32 minicnn model."""
    torch.manual_seed(0)
    theirs = torch_model(torch, batchnorm=True)
    theirs(torch.rand(4, 1, 28, 28))  # running statistics away from their defaults
    ours = models.MnistBNCNN(seed=1).load_state_dict(theirs.state_dict())
    for key, value in ours.state_dict().items():
        expected = theirs.state_dict()[key].numpy()
        np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=key)
        assert value.dtype == (np.int64 if key.endswith("num_batches_tracked") else np.float32)
    assert int(ours.bn1.num_batches_tracked) == 1


@pytest.mark.parametrize("name,mode", [("MnistCNN", "train"), ("MnistBNCNN", "eval"), ("MnistBNCNN", "train-p0")])
def test_models(torch, name, mode):
    ours = models.get_model(name, dtype=np.float64, seed=0)
    batchnorm = name == "MnistBNCNN"
    theirs = torch_model(torch, batchnorm, p=(0.0, 0.0) if mode == "train-p0" else (0.25, 0.5))
    if mode == "train-p0":  # dropout masks cannot match across libraries; BatchNorm trains on batch statistics
        ours.drop1.p = ours.drop2.p = 0.0
    if batchnorm:  # non-default statistics and affine parameters, so eval mode is not the identity
        rng = np.random.default_rng(5)
        for bn in (ours.bn1, ours.bn2):
            bn.weight.data[...] = rng.uniform(0.5, 1.5, bn.num_features)
            bn.bias.data[...] = 0.1 * rng.standard_normal(bn.num_features)
            bn.running_mean = 0.1 * rng.standard_normal(bn.num_features)
            bn.running_var = rng.uniform(0.5, 1.5, bn.num_features)
    ours.train(mode != "eval"), theirs.train(mode != "eval")
    to_torch(torch, ours, theirs)

    x = np.random.default_rng(1).uniform(0, 1, (4, 1, 28, 28))
    target = np.array([0, 7, 3, 9])
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = theirs(xt)
    loss_t = torch.nn.NLLLoss()(out_t, torch.from_numpy(target))
    loss_t.backward()
    out = ours(x)
    criterion = nn.NLLLoss()
    loss = criterion(out, target)
    dx = ours.backward(criterion.backward())

    np.testing.assert_allclose(out, out_t.detach().numpy(), **TOL)
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-13)
    theirs_params = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(theirs_params)
    for n, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs_params[n].grad.numpy(), rtol=1e-9, atol=1e-13, err_msg=n)
    assert_same_state(ours, theirs)  # in train mode: the running statistics after the step


# --- initialisation --------------------------------------------------------


def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(a.ravel()), np.sort(b.ravel())
    grid = np.concatenate([a, b])
    return np.abs(np.searchsorted(a, grid, side="right") / a.size
                  - np.searchsorted(b, grid, side="right") / b.size).max()


@pytest.mark.parametrize("make_ours,make_theirs,fan_in", [
    (lambda g: nn.Conv2d(16, 32, 5, generator=g), lambda t: t.nn.Conv2d(16, 32, 5), 16 * 5 * 5),
    (lambda g: nn.Conv2d(1, 32, 3, generator=g), lambda t: t.nn.Conv2d(1, 32, 3), 9),
    (lambda g: nn.Linear(300, 200, generator=g), lambda t: t.nn.Linear(300, 200), 300),
], ids=["conv-5x5", "conv-3x3", "linear"])
def test_default_init_matches_torch(torch, make_ours, make_theirs, fan_in):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, as PyTorch draws them."""
    torch.manual_seed(0)
    ours, theirs = make_ours(np.random.default_rng(0)), make_theirs(torch)
    bound = 1 / np.sqrt(fan_in)
    for name in ("weight", "bias"):
        w = getattr(ours, name).data.astype(np.float64)
        t = getattr(theirs, name).detach().numpy()
        assert np.abs(w).max() <= bound and np.abs(t).max() <= bound, name
        if w.size >= 5000:  # enough samples to see the shape of the distribution
            assert np.abs(w).max() > 0.99 * bound, name  # the whole interval is used
            assert abs(w.mean()) < 0.02 * bound and w.std() == pytest.approx(bound / np.sqrt(3), rel=0.03)
            assert ks_statistic(w, t) < 0.03, name


@pytest.mark.parametrize("name", ["MnistCNN", "MnistBNCNN"])
def test_the_benchmarks_torch_network_is_the_minicnn_model(torch, name):
    """The benchmark's PyTorch reference is built from the minicnn model: same layers, names and weights."""
    from minicnn.bench import torch_network

    ours = models.get_model(name, dtype=np.float64, seed=0).eval()
    theirs = torch_network(torch, ours).double().eval()
    assert [type(m).__name__ for m in theirs] == [type(m).__name__ for m in ours]
    assert_same_state(ours, theirs)
    x = normal(3, (2, 1, 28, 28))
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(x), expected, **TOL)


def test_the_benchmarks_torch_network_names_a_layer_it_cannot_build(torch):
    from minicnn.bench import torch_network

    class Odd(nn.Module):
        pass

    with pytest.raises(TypeError, match=r"torch_network: no PyTorch layer for Odd \('odd'\)"):
        torch_network(torch, nn.Sequential(OrderedDict(odd=Odd())))
