"""Inference fusion: Sequential runs Conv2d -> ReLU -> MaxPool2d as one kernel call under no_grad."""
import numpy as np
import pytest

import minicnn
from minicnn import models, nn
from minicnn.backend import available_backends
from minicnn.nn import fusion
from strategies import using

CPU_BACKENDS = [name for name in ("numpy", "numba") if name in available_backends()]


def layer_by_layer(model, x):
    for layer in model:
        x = layer(x)
    return x


def spy_on_fusion(monkeypatch):
    runs = []
    real = fusion.conv_relu_pool

    def spy(conv, relu, pool, x):
        runs.append((conv, relu, pool))
        return real(conv, relu, pool, x)

    monkeypatch.setattr(fusion, "conv_relu_pool", spy)
    return runs


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", ["MnistCNN", "MnistDeepCNN", "MnistBNCNN"])
def test_inference_equals_the_layers_one_by_one(backend, name, monkeypatch):
    runs = spy_on_fusion(monkeypatch)
    x = np.random.default_rng(0).standard_normal((5, 1, 28, 28)).astype(np.float32)
    with using(backend):
        model = models.get_model(name, seed=0).eval()
        with minicnn.no_grad():
            fused, separate = model(x), layer_by_layer(model, x)
    np.testing.assert_allclose(fused, separate, rtol=1e-5, atol=1e-6)
    expected = {"MnistCNN": [("conv1", "pool1"), ("conv2", "pool2")],  # conv then relu then pool
                "MnistDeepCNN": [("conv2", "pool1"), ("conv4", "pool2")],
                "MnistBNCNN": []}[name]                               # BatchNorm2d sits between conv and relu
    names = {id(m): n for n, m in model.named_children()}
    assert [(names[id(c)], names[id(p)]) for c, _, p in runs] == expected


def test_with_gradients_on_every_layer_runs_and_keeps_what_backward_needs(monkeypatch):
    runs = spy_on_fusion(monkeypatch)
    model = models.MnistCNN(seed=0)
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
    out = model(x)
    assert runs == []
    criterion = nn.NLLLoss()
    criterion(out, np.array([3, 7]))
    assert model.backward(criterion.backward()).shape == x.shape


def test_a_forward_under_no_grad_leaves_nothing_for_backward_in_the_fused_layers():
    model = models.MnistCNN(seed=0)
    x = np.random.default_rng(2).standard_normal((2, 1, 28, 28)).astype(np.float32)
    model(x)  # a training forward: every layer keeps its part
    with minicnn.no_grad():
        model(x)  # the fused layers drop it too, as every layer does under no_grad
    for layer in (model.conv1, model.relu1, model.pool1):
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(np.zeros((2, 32, 28, 28) if layer is not model.pool1 else (2, 32, 14, 14), np.float32))


def test_a_pool_window_larger_than_the_convolution_output_is_reported_by_max_pooling():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(4))
    with minicnn.no_grad(), pytest.raises(ValueError, match=r"MaxPool2d.*smaller than the window 4x4"):
        model(np.zeros((1, 1, 5, 5), np.float32))  # conv output 3x3


def test_a_wrong_input_is_reported_by_the_convolution():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    with minicnn.no_grad(), pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        model(np.zeros((1, 1, 8, 8), np.float32))


def test_only_those_exact_layer_types_are_fused(monkeypatch):
    class LeakyReLU(nn.ReLU):
        def forward(self, x):
            return np.where(x > 0, x, 0.1 * x)

    runs = spy_on_fusion(monkeypatch)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, generator=np.random.default_rng(0)), LeakyReLU(), nn.MaxPool2d(2))
    model[0].bias.data[...] = -10  # every convolution output negative: a ReLU would give 0 everywhere
    x = np.random.default_rng(3).standard_normal((2, 1, 6, 6)).astype(np.float32)
    with minicnn.no_grad():
        out = model(x)
    assert runs == []
    np.testing.assert_allclose(out, layer_by_layer(model, x))
    assert (out < 0).all()  # the leak survived: the subclass ran, not a fused ReLU


def test_a_layer_with_a_wrapped_forward_runs_as_itself(monkeypatch):
    """A hook (an instance's own forward, as the summary's shape recorder) sees its layer's call."""
    runs = spy_on_fusion(monkeypatch)
    model = models.MnistCNN(seed=0).eval()
    seen = []
    real = model.relu1.forward
    object.__setattr__(model.relu1, "forward", lambda x: seen.append(x.shape) or real(x))
    with minicnn.no_grad():
        model(np.zeros((2, 1, 28, 28), np.float32))
    assert seen == [(2, 32, 28, 28)]
    names = {id(m): n for n, m in model.named_children()}
    assert [names[id(c)] for c, _, _ in runs] == ["conv2"]  # the other run is still fused

