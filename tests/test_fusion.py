"""What runs is what prints: Sequential runs its layers one by one, and ``nn.fuse`` is the explicit step
that puts a fused module (minicnn/nn/fused.py) in the place of each Conv2d -> ReLU (-> MaxPool2d) run."""
import contextlib

import numpy as np
import pytest

import minicnn
from minicnn import models, nn
from minicnn.backend import available_backends, load_backend
from minicnn.nn import fused as fused_module
from minicnn.nn.fusion import fuse_for
from strategies import using

CPU_BACKENDS = [name for name in ("numpy", "numba") if name in available_backends()]
COUNTED = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Linear)


@pytest.fixture
def calls(monkeypatch):
    """Counting wrappers on the classes' forward and backward: {(class name, method): calls}."""
    counts = {}
    for cls in COUNTED:
        for method in ("forward", "backward"):
            real = getattr(cls, method)

            def counting(self, *args, _real=real, _key=(cls.__name__, method)):
                counts[_key] = counts.get(_key, 0) + 1
                return _real(self, *args)

            monkeypatch.setattr(cls, method, counting)
    return counts


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_training_step_and_an_inference_batch_call_every_layer_the_model_prints(backend, calls):
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    with using(backend):
        model = models.MnistCNN(seed=0)
        criterion = nn.NLLLoss()
        criterion(model(x), np.array([3, 7]))
        model.backward(criterion.backward())
        # conv1, conv2; relu1, relu2, relu3; pool1, pool2; fc1, fc2: each forward and each backward once
        expected = {("Conv2d", "forward"): 2, ("Conv2d", "backward"): 2, ("ReLU", "forward"): 3,
                    ("ReLU", "backward"): 3, ("MaxPool2d", "forward"): 2, ("MaxPool2d", "backward"): 2,
                    ("Linear", "forward"): 2, ("Linear", "backward"): 2}
        assert calls == expected
        calls.clear()
        with minicnn.no_grad():
            model.eval()(x)
        assert calls == {key: n for key, n in expected.items() if key[1] == "forward"}


def test_the_first_layer_with_parameters_gets_parameter_backward(calls):
    model = models.MnistCNN(seed=0)
    criterion = nn.NLLLoss()
    criterion(model(np.zeros((2, 1, 28, 28), np.float32)), np.array([1, 2]))
    model.parameter_backward(criterion.backward())
    assert calls[("Conv2d", "backward")] == 1  # conv2's; conv1 computed its parameters' part alone
    assert model.conv1.weight.grad is not None


@pytest.mark.parametrize("name, runs", [
    ("MnistCNN", ["conv1 -> relu1 -> pool1 as ConvReLUMaxPool2d", "conv2 -> relu2 -> pool2 as ConvReLUMaxPool2d"]),
    ("MnistDeepCNN", ["conv1 -> relu1 as ConvReLU", "conv2 -> relu2 -> pool1 as ConvReLUMaxPool2d",
                      "conv3 -> relu3 as ConvReLU", "conv4 -> relu4 -> pool2 as ConvReLUMaxPool2d"]),
    ("MnistBNCNN", [])])  # BatchNorm2d sits between conv and relu
def test_fuse_replaces_each_run_visibly_and_keeps_parameters_and_keys(name, runs):
    model = models.get_model(name, seed=0)
    fused = nn.fuse(model)
    assert nn.fusion.describe(fused) == runs
    assert type(fused) is type(model) and nn.fusion.describe(model) == []  # the model itself is unchanged
    assert list(fused.state_dict()) == list(model.state_dict())
    assert all(a is b for a, b in zip(fused.parameters(), model.parameters()))
    text = repr(fused)
    for run in runs:
        first = run.split(" ")[0]
        assert f"({first}): {run.split(' as ')[1]}(Conv2d(" in text
        assert f"({run.split(' -> ')[1].split(' ')[0]}):" not in text  # the ReLU is inside the fused module


def test_fuse_fuses_inside_nested_sequentials_and_only_exact_layer_types():
    class LeakyReLU(nn.ReLU):
        def forward(self, x):
            return np.where(x > 0, x, 0.1 * x)

    inner = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    model = nn.Sequential(inner, nn.Conv2d(2, 2, 1), LeakyReLU())
    fused = nn.fuse(model)
    assert [type(m).__name__ for m in fused.modules()] == ["Sequential", "Sequential", "ConvReLUMaxPool2d",
                                                          "Conv2d", "LeakyReLU"]
    assert type(model[0][0]) is nn.Conv2d  # unchanged


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", ["MnistCNN", "MnistDeepCNN"])
def test_a_fused_model_equals_the_plain_one_forward_backward_and_in_inference(backend, name):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 1, 28, 28))
    grad = rng.standard_normal((3, 10))
    with using(backend):
        plain = models.get_model(name, seed=0, dtype=np.float64).eval()  # eval: no dropout draws
        results = []
        for model in (plain, nn.fuse(plain)):
            model.zero_grad()
            out = model(x)
            dx = model.backward(grad)
            with minicnn.no_grad():
                inferred = model(x)
            results.append((out, dx, inferred, [p.grad.copy() for p in model.parameters()]))
    (out, dx, inferred, grads), (out_f, dx_f, inferred_f, grads_f) = results
    for a, b in ((out, out_f), (dx, dx_f), (inferred, inferred_f), *zip(grads, grads_f)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_twenty_training_steps_of_a_fused_model_follow_the_plain_models_trajectory(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 1, 28, 28))
    y = rng.integers(0, 10, 8)
    weights = []
    with using(backend):
        for fuse in (False, True):
            model = models.MnistCNN(seed=0, dtype=np.float64)
            run = nn.fuse(model) if fuse else model
            opt, criterion = minicnn.optim.Adam(run.parameters(), lr=1e-3), nn.NLLLoss()
            for _ in range(20):
                criterion(run(x), y)
                run.parameter_backward(criterion.backward())
                opt.step()
                opt.zero_grad()
            weights.append(model.state_dict())  # the plain model's own parameters, trained through the fused one
    for key in weights[0]:
        np.testing.assert_allclose(weights[1][key], weights[0][key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_state_dicts_round_trip_between_a_fused_and_a_plain_model(tmp_path):
    fused = nn.fuse(models.MnistCNN(seed=1))
    minicnn.save(fused, tmp_path / "fused.npz")
    plain = minicnn.load(models.MnistCNN(seed=2), tmp_path / "fused.npz")
    for key, value in fused.state_dict().items():
        np.testing.assert_array_equal(plain.state_dict()[key], value)
    minicnn.save(plain, tmp_path / "plain.npz")
    again = minicnn.load(nn.fuse(models.MnistCNN(seed=3)), tmp_path / "plain.npz")
    np.testing.assert_array_equal(again.conv1.weight.data, fused.conv1.weight.data)


def test_only_backends_with_fused_kernels_fuse_and_say_what():
    model = models.MnistCNN(seed=0)
    same, line = fuse_for(model, load_backend("numpy"))
    assert same is model and line is None  # its fused kernels are the layers' functions in turn
    if "numba" in CPU_BACKENDS:
        fused, line = fuse_for(model, load_backend("numba"))
        assert isinstance(fused.conv1, nn.ConvReLUMaxPool2d)
        assert line == ("Fused for the numba backend: conv1 -> relu1 -> pool1 as ConvReLUMaxPool2d, "
                        "conv2 -> relu2 -> pool2 as ConvReLUMaxPool2d; --no-fuse runs the layers one by one")
        assert fuse_for(model, load_backend("numba"), enabled=False) == (model, None)


def test_a_forward_under_no_grad_leaves_nothing_for_backward_in_a_fused_module():
    fused = nn.fuse(models.MnistCNN(seed=0))
    x = np.zeros((2, 1, 28, 28), np.float32)
    fused(x)
    with minicnn.no_grad():
        fused(x)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        fused.conv1.backward(np.zeros((2, 32, 14, 14), np.float32))


def test_a_fused_module_checks_its_gradient_its_input_and_its_pool_window():
    step = nn.ConvReLU(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(RuntimeError, match=r"Conv2d\(1, 2.*-> ReLU\(\)\): backward called before forward"):
        step.backward(np.zeros((1, 2, 3, 3), np.float32))
    step(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d\(1, 2.*-> ReLU.*\(1, 2, 3, 3\)"):
        step.backward(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match="expected 1 input channels, got 3"):
        step(np.zeros((1, 3, 8, 8), np.float32))
    run = nn.ConvReLUMaxPool2d(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    assert run(np.zeros((1, 1, 6, 6), np.float32)).shape == (1, 2, 2, 2)
    with pytest.raises(ValueError, match=r"-> ReLU\(\) -> MaxPool2d.*\(1, 2, 2, 2\)"):
        run.backward(np.zeros((1, 2, 4, 4), np.float32))
    too_large = nn.ConvReLUMaxPool2d(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(4))
    for grad_mode in (minicnn.no_grad, contextlib.nullcontext):
        with grad_mode(), pytest.raises(ValueError, match=r"MaxPool2d.*smaller than the window 4x4"):
            too_large(np.zeros((1, 1, 5, 5), np.float32))  # conv output 3x3


@using("numpy")  # the references call the layers' functions, which dispatch to the backend
def test_the_fused_references_are_the_layers_functions_in_turn():
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    y, saved = nn.functional.conv2d.reference(x, w, b, (1, 1), (1, 1))
    r = np.maximum(y, 0)
    z, argmax = nn.functional.maxpool2d_forward.reference(r, (2, 2), (2, 2), (0, 0))
    z_f, saved_f, argmax_f = fused_module.conv2d_relu_maxpool2d_train.reference(x, w, b, (1, 1), (1, 1),
                                                                              (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(z_f, z)
    np.testing.assert_array_equal(argmax_f, argmax)
    np.testing.assert_array_equal(saved_f, saved)
    np.testing.assert_array_equal(fused_module.conv2d_relu.reference(x, w, b, (1, 1), (1, 1))[0], r)
