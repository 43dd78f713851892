"""Module, Parameter and Sequential: registration, state dicts, dtype conversion, modes and gradients."""
import re
from collections import OrderedDict

import numpy as np
import pytest

from minicnn import models, nn
from minicnn.nn import StateDictError
from strategies import using

MNIST_CNN_SHAPES = OrderedDict([
    ("conv1.weight", (32, 1, 3, 3)), ("conv1.bias", (32,)),
    ("conv2.weight", (64, 32, 3, 3)), ("conv2.bias", (64,)),
    ("fc1.weight", (128, 3136)), ("fc1.bias", (128,)),
    ("fc2.weight", (10, 128)), ("fc2.bias", (10,)),
])


def _bn(name, c):
    return [(f"{name}.weight", (c,)), (f"{name}.bias", (c,)), (f"{name}.running_mean", (c,)),
            (f"{name}.running_var", (c,)), (f"{name}.num_batches_tracked", ())]


MNIST_BN_CNN_SHAPES = OrderedDict(
    [("conv1.weight", (32, 1, 3, 3)), ("conv1.bias", (32,))] + _bn("bn1", 32)
    + [("conv2.weight", (64, 32, 3, 3)), ("conv2.bias", (64,))] + _bn("bn2", 64)
    + [("fc1.weight", (128, 3136)), ("fc1.bias", (128,)), ("fc2.weight", (10, 128)), ("fc2.bias", (10,))]
)


def _snapshot(module):
    return OrderedDict((k, np.array(v, copy=True)) for k, v in module.state_dict().items())


def _assert_state_equal(a, b):
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert np.asarray(a[key]).dtype == np.asarray(b[key]).dtype, key


# --- state dict layout -----------------------------------------------------


def test_mnist_cnn_state_dict_layout():
    model = models.MnistCNN(seed=0)
    state = model.state_dict()
    assert list(state) == list(MNIST_CNN_SHAPES)
    assert {k: tuple(v.shape) for k, v in state.items()} == MNIST_CNN_SHAPES
    assert sum(p.size for p in model.parameters()) == 421_642
    assert [n for n, _ in model.named_parameters()] == list(MNIST_CNN_SHAPES)
    assert all(v.dtype == np.float32 for v in state.values())


def test_mnist_bn_cnn_state_dict_layout():
    model = models.MnistBNCNN(seed=0)
    state = model.state_dict()
    assert list(state) == list(MNIST_BN_CNN_SHAPES)
    assert {k: tuple(np.shape(v)) for k, v in state.items()} == MNIST_BN_CNN_SHAPES
    assert sum(p.size for p in model.parameters()) == 421_642 + 2 * (32 + 64)
    assert state["bn1.num_batches_tracked"].dtype == np.int64
    np.testing.assert_array_equal(state["bn2.running_var"], 1.0)
    np.testing.assert_array_equal(state["bn2.running_mean"], 0.0)
    buffers = [n for n, _ in model.named_buffers()]
    assert buffers == [k for k in MNIST_BN_CNN_SHAPES if "running" in k or "num_batches" in k]


def test_state_dict_holds_the_modules_own_arrays():
    lin = nn.Linear(2, 2)
    assert lin.state_dict()["weight"] is lin.weight.data


def test_get_model_by_name():
    assert isinstance(models.get_model("mnistcnn"), models.MnistCNN)
    assert isinstance(models.get_model("MnistBNCNN"), models.MnistBNCNN)
    with pytest.raises(ValueError, match="unknown model 'LeNet'; choose one of MnistCNN, MnistBNCNN"):
        models.get_model("LeNet")
    with pytest.raises(ValueError, match="either generator or seed"):
        models.MnistCNN(seed=1, generator=np.random.default_rng(1))


# --- load_state_dict -------------------------------------------------------


@pytest.mark.parametrize("model_cls", [models.MnistCNN, models.MnistBNCNN], ids=lambda c: c.__name__)
def test_load_state_dict_round_trip(model_cls):
    source, target = model_cls(seed=1), model_cls(seed=2)
    if model_cls is models.MnistBNCNN:  # running statistics and counters that are not the defaults
        source(np.random.default_rng(0).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32))
    assert not np.array_equal(source.fc1.weight.data, target.fc1.weight.data)
    assert target.load_state_dict(source.state_dict()) is target
    _assert_state_equal(target.state_dict(), source.state_dict())
    x = np.random.default_rng(3).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32)
    source.eval(), target.eval()
    np.testing.assert_array_equal(target(x), source(x))


def test_load_state_dict_copies():
    """The loaded module owns its arrays: changing the source afterwards does not reach it."""
    source, target = nn.Linear(3, 2, generator=np.random.default_rng(0)), nn.Linear(3, 2)
    state = source.state_dict()
    target.load_state_dict(state)
    expected = state["weight"].copy()
    state["weight"][...] = 0.0
    source.bias.data += 1.0
    np.testing.assert_array_equal(target.weight.data, expected)
    assert not np.shares_memory(target.bias.data, source.bias.data)


def test_load_state_dict_drops_stale_gradients():
    lin = nn.Linear(2, 2)
    lin(np.ones((1, 2), np.float32))
    lin.backward(np.ones((1, 2), np.float32))
    lin.load_state_dict(nn.Linear(2, 2).state_dict())
    assert lin.weight.grad is None and lin.bias.grad is None


def test_load_state_dict_missing_and_unexpected_keys():
    model = models.MnistCNN(seed=0)
    before = _snapshot(model)
    state = models.MnistCNN(seed=1).state_dict()
    del state["fc1.bias"], state["conv2.weight"]
    state["fc3.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(StateDictError, match=r"missing keys: conv2\.weight, fc1\.bias; unexpected keys: fc3\.weight") as info:
        model.load_state_dict(state)
    assert isinstance(info.value, ValueError)
    assert "Expected keys: conv1.weight, conv1.bias, conv2.weight" in str(info.value)
    _assert_state_equal(model.state_dict(), before)  # all or nothing: not even conv1 was loaded


def test_load_state_dict_shape_mismatch_names_the_key():
    model = models.MnistCNN(seed=0)
    before = _snapshot(model)
    state = models.MnistCNN(seed=1).state_dict()
    state["fc2.weight"] = np.zeros((11, 128), np.float32)
    with pytest.raises(StateDictError, match=r"fc2\.weight: expected shape \(10, 128\), got \(11, 128\)"):
        model.load_state_dict(state)
    _assert_state_equal(model.state_dict(), before)


def test_load_state_dict_non_strict():
    model = models.MnistCNN(seed=0)
    before = _snapshot(model)
    partial = {"fc2.bias": np.full(10, 7.0), "extra": np.zeros(3)}
    model.load_state_dict(partial, strict=False)
    np.testing.assert_array_equal(model.fc2.bias.data, 7.0)
    np.testing.assert_array_equal(model.fc1.weight.data, before["fc1.weight"])
    # A shape mismatch is still an error without strict.
    with pytest.raises(StateDictError, match=r"fc2\.bias: expected shape \(10,\), got \(9,\)"):
        model.load_state_dict({"fc2.bias": np.zeros(9)}, strict=False)


def test_load_state_dict_casts_to_the_modules_dtype():
    bn = nn.BatchNorm2d(3)  # float32 parameters and buffers, int64 counter
    state = {
        "weight": np.array([1.0, 2.0, 3.0]),                    # float64 -> float32
        "bias": np.array([0, 1, 2]),                            # int -> float32
        "running_mean": np.array([0.5, 0.5, 0.5], np.float16),  # float16 -> float32
        "running_var": np.array([1.0, 2.0, 3.0]),
        "num_batches_tracked": np.array(5.0),                   # float -> int64
    }
    bn.load_state_dict(state)
    for key, value in bn.state_dict().items():
        expected = np.int64 if key == "num_batches_tracked" else np.float32
        assert value.dtype == expected, key
        np.testing.assert_array_equal(value, state[key])
    assert isinstance(bn.weight, nn.Parameter)


# --- dtype and device ------------------------------------------------------


def test_to_float64_converts_parameters_and_buffers_and_returns_self():
    model = models.MnistBNCNN(seed=0)
    model.fc1(np.ones((1, 3136), np.float32))
    model.fc1.backward(np.ones((1, 128), np.float32))
    assert model.fc1.weight.grad is not None
    before = _snapshot(model)
    assert model.to(np.float64) is model
    for key, value in model.state_dict().items():
        assert value.dtype == (np.int64 if key.endswith("num_batches_tracked") else np.float64), key
        np.testing.assert_array_equal(value, before[key])  # float32 -> float64 is exact
    assert all(p.grad is None for p in model.parameters())  # gradients are dropped
    out = model.eval()(np.zeros((1, 1, 28, 28)))
    assert out.dtype == np.float64
    assert model.to("float32") is model and model.conv1.weight.dtype == np.float32


def test_to_rejects_non_floating_dtypes():
    with pytest.raises(TypeError, match="floating point, got int32"):
        nn.Linear(2, 2).to(np.int32)


def test_parameter_keeps_dtype():
    for dtype in (np.float16, np.float32, np.float64):
        p = nn.Parameter(np.zeros((2, 3), dtype))
        assert p.dtype == dtype and p.shape == (2, 3) and p.size == 6 and p.grad is None
        p.accumulate_grad(np.ones((2, 3)))  # a float64 gradient is stored in the parameter's dtype
        assert p.grad.dtype == dtype
    assert nn.Parameter([1.0, 2.0]).dtype == np.float64
    with pytest.raises(TypeError, match="floating-point array, got dtype int64"):
        nn.Parameter(np.arange(3))
    assert repr(nn.Parameter(np.zeros((2, 3), np.float32))) == "Parameter(shape=(2, 3), dtype=float32)"


def test_layers_default_to_float32_and_take_a_dtype():
    assert nn.Conv2d(1, 2, 3).weight.dtype == np.float32
    assert nn.Linear(2, 3, dtype=np.float64).bias.dtype == np.float64
    assert nn.BatchNorm2d(4, dtype=np.float64).running_var.dtype == np.float64
    assert models.MnistCNN(dtype=np.float64).fc2.weight.dtype == np.float64


# --- modes and gradients ---------------------------------------------------


def test_train_and_eval_propagate():
    model = models.MnistBNCNN(seed=0)
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert not model.bn1.training and not model.drop2.training
    model.train()
    assert all(m.training for m in model.modules())
    model.train(False)
    assert not model.conv1.training


def _one_step(model, x, target):
    criterion = nn.NLLLoss()
    criterion(model(x), target)
    return model.backward(criterion.backward())


def test_gradients_accumulate_and_zero_grad_clears_them():
    model = models.MnistCNN(dtype=np.float64, seed=0)
    x = np.random.default_rng(1).uniform(0, 1, (2, 1, 28, 28))
    target = np.array([3, 4])
    _one_step(model, x, target)
    first = {n: p.grad.copy() for n, p in model.named_parameters()}
    assert any(np.abs(g).sum() > 0 for g in first.values())
    _one_step(model, x, target)
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[n], rtol=1e-12, atol=1e-15, err_msg=n)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    _one_step(model, x, target)
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, first[n], rtol=1e-12, atol=1e-15, err_msg=n)


def test_same_seed_same_weights():
    a, b, c = models.MnistBNCNN(seed=42), models.MnistBNCNN(seed=42), models.MnistBNCNN(seed=43)
    _assert_state_equal(a.state_dict(), b.state_dict())
    assert not np.array_equal(a.conv1.weight.data, c.conv1.weight.data)
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))  # training mode: the dropout masks agree too
    layer_a = nn.Linear(4, 3, generator=np.random.default_rng(5))
    layer_b = nn.Linear(4, 3, generator=np.random.default_rng(5))
    np.testing.assert_array_equal(layer_a.weight.data, layer_b.weight.data)


# --- registration and printing ---------------------------------------------


def test_registration_order_and_replacement():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Linear(2, 2)
            self.a = nn.ReLU()
            self.scale = nn.Parameter(np.ones(1))
            self.register_buffer("count", np.zeros(1))

    net = Net()
    assert [n for n, _ in net.named_modules()] == ["", "b", "a"]
    assert list(net.state_dict()) == ["scale", "count", "b.weight", "b.bias"]
    net.count = np.full(1, 3.0)  # assigning a buffer keeps it a buffer
    assert net.state_dict()["count"][0] == 3.0
    net.b = nn.ReLU()  # replacing a child drops its parameters and keeps its place
    assert list(net.state_dict()) == ["scale", "count"]
    assert list(net.children()) == [net.b, net.a]
    net.scale = nn.Parameter(np.zeros(1))
    assert list(net.state_dict()) == ["scale", "count"] and net.state_dict()["scale"][0] == 0.0
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'missing'"):
        net.missing


def test_module_without_super_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.w = 1

    with pytest.raises(AttributeError, match=r"Broken.__init__ must call super\(\).__init__\(\) first"):
        Broken()


def test_sequential_indexing_and_names():
    relu, lin = nn.ReLU(), nn.Linear(2, 2)
    seq = nn.Sequential(relu, lin)
    assert len(seq) == 2 and seq[0] is relu and seq[-1] is lin and list(seq) == [relu, lin]
    assert list(seq.state_dict()) == ["1.weight", "1.bias"]
    named = nn.Sequential(OrderedDict([("act", relu), ("fc", lin)]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    with pytest.raises(TypeError, match="Sequential: element '1' is a int, not a Module"):
        nn.Sequential(relu, 3)


def test_replacing_a_layer_keeps_the_forward_order():
    """Swapping the classifier head (as in fine-tuning) must not move it to the end of a Sequential."""
    model = models.MnistCNN(seed=0)
    model.fc2 = nn.Linear(128, 5, generator=np.random.default_rng(1))
    names = [name for name, _ in model.named_modules()][1:]
    assert names[-2:] == ["fc2", "log_softmax"]
    out = model(np.zeros((2, 1, 28, 28), np.float32))
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-5)  # still ends in LogSoftmax
    assert out.shape == (2, 5)
    assert list(model.state_dict())[-2:] == ["fc2.weight", "fc2.bias"]


def test_repr_is_readable():
    text = repr(models.MnistBNCNN(seed=0))
    assert text.splitlines()[0] == "MnistBNCNN("
    assert "  (conv1): Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in text
    assert "  (bn1): BatchNorm2d(32, eps=1e-05, momentum=0.1)" in text
    assert "  (pool1): MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))" in text
    assert "  (drop2): Dropout(p=0.5)" in text
    assert "  (fc1): Linear(in_features=3136, out_features=128, bias=True)" in text
    assert "  (log_softmax): LogSoftmax(dim=1)" in text
    assert text.endswith("\n)")
    nested = repr(nn.Sequential(nn.Sequential(nn.ReLU())))
    assert nested == "Sequential(\n  (0): Sequential(\n    (0): ReLU()\n  )\n)"


@pytest.mark.parametrize("name,message", [
    ("forward", "the child name 'forward' would hide Sequential.forward"),
    ("backward", "the child name 'backward' would hide Sequential.backward"),
    ("parameters", "the child name 'parameters' would hide Sequential.parameters"),
    ("training", "the child name 'training' would hide Sequential.training"),
    ("a.b", "a child's name must be a non-empty string without '.' .*got 'a.b'"),
    ("", "a child's name must be a non-empty string without '.' .*got ''"),
])
def test_sequential_child_names_that_would_break_it(name, message):
    with pytest.raises(ValueError, match=f"Sequential: {message}"):
        nn.Sequential(OrderedDict([("fc", nn.Linear(2, 3)), (name, nn.ReLU())]))


@pytest.mark.parametrize("state,message", [
    ([("weight", np.zeros((1, 2)))], "got list"),
    (None, "got NoneType"),
    (nn.Linear(2, 1), "got Linear"),
])
def test_load_state_dict_wants_a_mapping(state, message):
    with pytest.raises(TypeError, match=f"Linear.load_state_dict expects a mapping of names to arrays "
                                        f"\\(such as model.state_dict\\(\\)\\), {message}"):
        nn.Linear(2, 1).load_state_dict(state)


@pytest.mark.parametrize("key,value,message", [
    ("weight", np.zeros((1, 2), complex), "weight: expected an integer or floating-point array for a float32 entry, got dtype complex128"),
    ("weight", np.ones((1, 2), bool), "weight: expected an integer or floating-point array for a float32 entry, got dtype bool"),
    ("bias", None, "bias: expected an integer or floating-point array for a float32 entry, got dtype object"),
    ("weight", [[1.0, 2.0], [3.0]], "weight: not an array \\(setting an array element with a sequence"),
    ("weight", np.full((1, 2), 1e300), "weight: holds values beyond the range of float32"),
])
def test_load_state_dict_refuses_what_would_not_convert_faithfully(key, value, message):
    linear = nn.Linear(2, 1)
    before = _snapshot(linear)
    state = {**{k: v.copy() for k, v in linear.state_dict().items()}, key: value}
    with pytest.raises(StateDictError, match=f"state dict does not fit Linear: {message}"):
        linear.load_state_dict(state)
    _assert_state_equal(linear.state_dict(), before)


def test_load_state_dict_refuses_a_fractional_counter():
    bn = nn.BatchNorm2d(2)
    state = dict(bn.state_dict(), num_batches_tracked=np.array(3.7))
    with pytest.raises(StateDictError, match="num_batches_tracked: expected an integer array for a int64 entry, "
                                             "got dtype float64"):
        bn.load_state_dict(state)


@pytest.mark.parametrize("target", [None, "cuda", "gpu", 3])
def test_to_names_what_it_accepts(target):
    with pytest.raises(TypeError, match=f"Module.to: expected a floating dtype \\(np.float32, 'float64'\\) or a "
                                        f"backend name \\('numpy', 'numba', 'cupy'\\), got {target!r}"):
        nn.Linear(2, 2).to(target)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_an_empty_batch_goes_through_the_network(backend):
    with using(backend):
        model = models.MnistCNN(seed=0)
        x = np.zeros((0, 1, 28, 28), np.float32)
        y = model(x)
        assert y.shape == (0, 10)
        assert model.backward(np.zeros_like(y)).shape == x.shape
        with nn.no_grad():
            assert model(x).shape == (0, 10)


@pytest.mark.parametrize("loss", [nn.NLLLoss(), nn.CrossEntropyLoss()], ids=["nll", "cross-entropy"])
@pytest.mark.parametrize("shape", [(0, 10), (3, 0)])
def test_a_loss_needs_a_sample_and_a_class(loss, shape):
    with pytest.raises(ValueError, match=f"{type(loss).__name__}: expected at least one sample and one class, got "
                                         f"input of shape {re.escape(str(shape))} \\(the mean over an empty batch is undefined\\)"):
        loss(np.zeros(shape, np.float32), np.zeros(shape[0], np.int64))


def test_nll_loss_backward_does_not_see_later_changes_to_the_target():
    loss = nn.NLLLoss()
    log_probs = np.log(np.full((2, 3), 1 / 3, np.float32))
    target = np.array([0, 2])
    loss(log_probs, target)
    target[:] = [1, 1]
    expected = np.zeros((2, 3), np.float32)
    expected[[0, 1], [0, 2]] = -0.5
    np.testing.assert_array_equal(loss.backward(), expected)
