"""Fusion: Sequential runs Conv2d -> ReLU -> MaxPool2d as one kernel call under no_grad, and each
Conv2d -> ReLU pair as one step forward and backward with gradients on."""
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


def test_with_gradients_on_the_inference_run_is_not_taken_and_backward_works(monkeypatch):
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



# --- training: Conv2d -> ReLU as one step --------------------------------------------------------

def layer_by_layer_training(model, x, grad):
    """The forward and backward passes one layer at a time: dx and every parameter's gradient."""
    for layer in model:
        x = layer(x)
    for layer in reversed(list(model)):
        grad = layer.backward(grad)
    return x, grad, [p.grad.copy() for p in model.parameters()]


def fused_training(model, x, grad):
    out = model(x)
    dx = model.backward(grad)
    return out, dx, [p.grad.copy() for p in model.parameters()]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", ["MnistCNN", "MnistDeepCNN", "MnistBNCNN"])
def test_training_equals_the_layers_one_by_one(backend, name):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    grad = rng.standard_normal((3, 10)).astype(np.float32)
    with using(backend):
        results = []
        for run in (fused_training, layer_by_layer_training):
            model = models.get_model(name, seed=0).eval()  # eval: no dropout draws, the same numbers twice
            model.zero_grad()
            results.append(run(model, x, grad))
    (out, dx, grads), (out_ref, dx_ref, grads_ref) = results
    np.testing.assert_allclose(out, out_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-6)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, fused", [
    ("MnistCNN", [("ConvReLUPool", "conv1"), ("ConvReLUPool", "conv2")]),
    ("MnistDeepCNN", [("ConvReLU", "conv1"), ("ConvReLUPool", "conv2"), ("ConvReLU", "conv3"),
                      ("ConvReLUPool", "conv4")]),
    ("MnistBNCNN", [])])  # BatchNorm2d sits between conv and relu
def test_training_fuses_each_conv_relu_run(name, fused):
    model = models.get_model(name, seed=0)
    model(np.zeros((2, 1, 28, 28), np.float32))
    names = {id(m): n for n, m in model.named_children()}
    steps = [(type(s).__name__, names[id(s.conv)]) for s in model._steps if isinstance(s, fusion.ConvReLU)]
    assert steps == fused
    layers_in_steps = sum(3 if kind == "ConvReLUPool" else 2 for kind, _ in fused)
    assert len(model._steps) == len(model) - layers_in_steps + len(fused)


def test_after_a_fused_forward_the_layers_alone_keep_nothing():
    model = models.MnistCNN(seed=0)
    model(np.zeros((2, 1, 28, 28), np.float32))
    for layer, shape in ((model.conv1, (2, 32, 28, 28)), (model.relu1, (2, 32, 28, 28)), (model.pool1, (2, 32, 14, 14))):
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(np.zeros(shape, np.float32))


def test_a_fused_step_checks_its_gradient_and_that_a_forward_ran():
    step = fusion.ConvReLU(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(RuntimeError, match=r"Conv2d\(1, 2.*-> ReLU: backward called before forward"):
        step.backward(np.zeros((1, 2, 3, 3), np.float32))
    step(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d\(1, 2.*-> ReLU.*\(1, 2, 3, 3\)"):
        step.backward(np.zeros((1, 2, 4, 4), np.float32))


def test_a_layer_with_a_wrapped_backward_runs_as_itself_in_training():
    model = models.MnistCNN(seed=0)
    seen = []
    real = model.relu1.backward
    object.__setattr__(model.relu1, "backward", lambda g: seen.append(g.shape) or real(g))
    criterion = nn.NLLLoss()
    criterion(model(np.zeros((2, 1, 28, 28), np.float32)), np.array([1, 2]))
    model.backward(criterion.backward())
    assert seen == [(2, 32, 28, 28)]
    assert [type(s).__name__ for s in model._steps].count("ConvReLUPool") == 1  # conv2's run still fused


def test_a_wrong_input_is_reported_by_the_convolution_in_training_too():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        model(np.zeros((1, 1, 8, 8), np.float32))


def test_a_fused_run_checks_its_gradient_and_reports_a_pool_too_large():
    step = fusion.ConvReLUPool(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    with pytest.raises(RuntimeError, match=r"-> ReLU -> MaxPool2d.*backward called before forward"):
        step.backward(np.zeros((1, 2, 2, 2), np.float32))
    assert step(np.zeros((1, 1, 6, 6), np.float32)).shape == (1, 2, 2, 2)
    with pytest.raises(ValueError, match=r"-> ReLU -> MaxPool2d.*\(1, 2, 2, 2\)"):
        step.backward(np.zeros((1, 2, 4, 4), np.float32))
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(4))
    with pytest.raises(ValueError, match=r"MaxPool2d.*smaller than the window 4x4"):
        model(np.zeros((1, 1, 5, 5), np.float32))  # conv output 3x3, with gradients on
