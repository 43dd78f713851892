"""minicnn.trace: every module and kernel call in order, with what ran (override or reference) and the
override's path; ``minicnn trace`` prints it for a training step and an inference batch."""
import numpy as np
import pytest

import minicnn
from minicnn import cli, models, nn
from minicnn.backend import available_backends
from strategies import using

NUMBA = pytest.mark.skipif("numba" not in available_backends(), reason="Numba is not installed here")


def kernels(t, name):
    return [c for c in t.calls if c.kind == "kernel" and c.name == name]


def train_step(model, x, y):
    criterion = nn.NLLLoss()
    criterion(model(x), y)
    model.parameter_backward(criterion.backward())


@using("numpy")
def test_on_numpy_every_kernel_is_the_reference_and_the_modules_are_named_in_order():
    model = models.MnistCNN(seed=0, dtype=np.float64)
    x, y = np.random.default_rng(0).standard_normal((2, 1, 28, 28)), np.array([1, 2])
    with minicnn.trace(model) as t:
        train_step(model, x, y)
    forwards = [c.name for c in t.calls if c.kind == "forward" and c.depth == 1]
    assert forwards == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2",
                        "log_softmax"]
    assert [(c.kind, c.name) for c in t.calls if c.depth == 0 and c.kind != "kernel"] == [
        ("forward", "MnistCNN"), ("parameter_backward", "MnistCNN")]
    backwards = [c.name for c in t.calls if c.kind in ("backward", "parameter_backward") and c.depth == 1]
    assert backwards == ["log_softmax", "fc2", "relu3", "fc1", "flatten", "pool2", "relu2", "conv2", "pool1", "relu1",
                         "conv1"]
    assert {c.ran for c in t.calls if c.kind == "kernel"} == {"reference"}
    conv = kernels(t, "conv2d")[0]
    assert conv.depth == 2 and conv.inputs[:2] == [(2, 1, 28, 28), (32, 1, 3, 3)]
    assert conv.output[0] == (2, 32, 28, 28) and conv.seconds > 0
    # the modules' own methods are back once the block ends
    assert not any(k in m.__dict__ for m in model.modules() for k in ("forward", "backward", "parameter_backward"))


@NUMBA
@using("numba")
@pytest.mark.parametrize("shape, weight, expected", [
    ((2, 1, 12, 12), (4, 1, 3, 3), "direct, pooled as stored"),       # K = 9: the direct kernels
    ((2, 8, 12, 12), (4, 8, 3, 3), "winograd, pooled as stored"),     # 3x3, stride 1, even output
    ((2, 8, 13, 13), (4, 8, 3, 3), "rows, pooled as stored"),         # odd output: no 2x2 tiles
])
def test_the_trace_names_the_path_each_fused_run_took(shape, weight, expected):
    conv = nn.Conv2d(weight[1], weight[0], 3, padding=1, generator=np.random.default_rng(0))
    model = nn.fuse(nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2)))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with minicnn.trace(model) as t:
        out = model(x)
        model.backward(np.ones_like(out))
    (run,) = kernels(t, "conv2d_relu_maxpool2d_train")
    assert (run.ran, run.path) == ("numba override", expected)
    (back,) = kernels(t, "conv2d_relu_maxpool2d_backward")
    assert back.path == {"winograd, pooled as stored": "winograd", "rows, pooled as stored": "rows, dY built from dz",
                         "direct, pooled as stored": "direct"}[expected]
    with minicnn.no_grad(), minicnn.trace() as t:
        model(x)
    (infer,) = kernels(t, "conv2d_relu_maxpool2d")
    assert infer.path == ("direct, pooled as stored" if weight[1] == 1 else "blocked rows, pooled as stored")


@NUMBA
@using("numba")
def test_the_trace_says_why_an_override_handed_a_call_to_the_reference():
    model = nn.fuse(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3)))
    x = np.zeros((1, 1, 9, 9), np.float32)
    with minicnn.trace(model) as t:
        model(x)
    (run,) = kernels(t, "conv2d_relu_maxpool2d_train")
    assert run.path == "reference: pool 3x3 stride 3x3 padding 0x0, not 2x2 stride 2 padding 0"
    inner = t.calls[t.calls.index(run) + 1]  # the reference's own calls, one level in
    assert inner.name == "conv2d" and inner.depth == run.depth + 1 and inner.ran == "numba override"
    relu = nn.ReLU()
    with minicnn.trace(relu) as t:
        relu(np.ones((2, 3), np.float32))
    assert kernels(t, "relu_forward")[0].path == "reference: 6 elements, under the 32,768 worth two threads"


def test_minicnn_trace_prints_a_training_step_and_an_inference_batch(capsys):
    backend = "numba" if "numba" in available_backends() else "numpy"
    assert cli.main(["trace", "--backend", backend, "--batch", "4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"MnistCNN on the {backend} backend, a batch of 4")
    assert "\ntraining step: forward, loss, parameter_backward, Adam (" in out
    assert "\ninference batch, under no_grad (" in out
    if backend == "numba":
        assert "(conv1): ConvReLUMaxPool2d(" in out
        assert "conv2d_relu_maxpool2d_train" in out and "winograd, pooled as stored" in out
        assert "adam_update_many" in out


def test_minicnn_trace_refuses_a_batch_it_cannot_take(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["trace", "--batch", "0"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "minicnn trace: error: --batch must be between 1 and 10,000 (the test images), got 0")
