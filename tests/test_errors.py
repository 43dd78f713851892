"""Bad input gives a ValueError that names the layer and says what was expected and what came."""
import re

import numpy as np
import pytest

from minicnn import models, nn
from strategies import using

f32, f64 = np.float32, np.float64


def zeros(shape, dtype=f32):
    return np.zeros(shape, dtype)


CONV = "Conv2d\\(3, 4, kernel_size=\\(3, 3\\), stride=\\(1, 1\\)\\)"
LINEAR = "Linear\\(in_features=3, out_features=2, bias=True\\)"
BN = "BatchNorm2d\\(3, eps=1e-05, momentum=0.1\\)"
POOL = "MaxPool2d\\(kernel_size=\\(3, 3\\), stride=\\(3, 3\\), padding=\\(0, 0\\)\\)"

# (id, layer, input, regex the message must match)
FORWARD_CASES = [
    # wrong number of dimensions
    ("conv-ndim", nn.Conv2d(3, 4, 3), zeros((3, 5, 5)), f"{CONV}: expected a 4-D input \\(N, C, H, W\\), got shape \\(3, 5, 5\\)"),
    ("pool-ndim", nn.MaxPool2d(3), zeros((1, 2, 2)), f"{POOL}: expected a 4-D input .*got shape \\(1, 2, 2\\)"),
    ("linear-ndim", nn.Linear(3, 2), zeros((2, 3, 1)), f"{LINEAR}: expected a 2-D input \\(N, in_features\\), got shape \\(2, 3, 1\\)"),
    ("bn-ndim", nn.BatchNorm2d(3), zeros((2, 3, 2)), f"{BN}: expected a 4-D input .*got shape \\(2, 3, 2\\)"),
    ("flatten-scalar", nn.Flatten(), 3.0, "Flatten: expected an array with a batch dimension, got 3.0"),
    ("relu-list", nn.ReLU(), [1.0, -1.0], "ReLU: expected an array, got list"),
    ("conv-list", nn.Conv2d(3, 4, 3), [[1.0]], f"{CONV}: expected an array \\(N, C, H, W\\), got list"),
    # channel / feature mismatch
    ("conv-channels", nn.Conv2d(3, 4, 3), zeros((1, 2, 5, 5)), f"{CONV}: expected 3 input channels, got 2 \\(input shape \\(1, 2, 5, 5\\)\\)"),
    ("bn-channels", nn.BatchNorm2d(3), zeros((2, 4, 2, 2)), f"{BN}: expected 3 channels, got 4"),
    ("linear-features", nn.Linear(3, 2), zeros((2, 4)), f"{LINEAR}: expected 3 input features, got 4 \\(input shape \\(2, 4\\)\\)"),
    # spatial size too small for the window
    ("conv-small", nn.Conv2d(3, 4, 3), zeros((1, 3, 2, 5)), f"{CONV}: input of spatial size 2x5 \\(padded 2x5\\) is smaller than the kernel 3x3"),
    ("conv-small-padded", nn.Conv2d(3, 4, 5, padding=1), zeros((1, 3, 2, 9)),
     "Conv2d.*: input of spatial size 2x9 \\(padded 4x11\\) is smaller than the kernel 5x5"),
    ("pool-small", nn.MaxPool2d(3), zeros((1, 1, 2, 2)), f"{POOL}: input of spatial size 2x2 \\(padded 2x2\\) is smaller than the window 3x3"),
    # dtype: integers, and float64 into a float32 layer
    ("conv-int", nn.Conv2d(3, 4, 3), zeros((1, 3, 5, 5), np.int32), f"{CONV}: expected a floating-point input, got dtype int32"),
    ("conv-f64", nn.Conv2d(3, 4, 3), zeros((1, 3, 5, 5), f64),
     f"{CONV}: input dtype float64 does not match the layer's float32; convert the input \\(x.astype\\(np.float32\\)\\)"),
    ("conv-f32-into-f64", nn.Conv2d(3, 4, 3, dtype=f64), zeros((1, 3, 5, 5), f32),
     "Conv2d.*: input dtype float32 does not match the layer's float64"),
    ("linear-f64", nn.Linear(3, 2), zeros((2, 3), f64), f"{LINEAR}: input dtype float64 does not match the layer's float32"),
    ("bn-f64", nn.BatchNorm2d(3), zeros((2, 3, 2, 2), f64), f"{BN}: input dtype float64 does not match the layer's float32"),
    ("pool-int", nn.MaxPool2d(2), zeros((1, 1, 4, 4), np.int64), "MaxPool2d.*: expected a floating-point input, got dtype int64"),
    ("dropout-int", nn.Dropout(0.5), np.arange(3), "Dropout: expected a floating-point array, got int64"),
    ("softmax-int", nn.Softmax(), np.arange(3), "Softmax\\(dim=1\\): expected a floating-point array .*got int64 of shape \\(3,\\)"),
    # dim out of range
    ("log-softmax-dim", nn.LogSoftmax(dim=2), zeros((2, 3)), "LogSoftmax\\(dim=2\\): dim=2 is out of range for an input of shape \\(2, 3\\)"),
    ("softmax-dim", nn.Softmax(dim=-3), zeros((2, 3)), "Softmax\\(dim=-3\\): dim=-3 is out of range"),
    # training BatchNorm needs two values per channel
    ("bn-one-value", nn.BatchNorm2d(3), zeros((1, 3, 1, 1)), f"{BN}: training needs more than one value per channel, got input shape \\(1, 3, 1, 1\\)"),
]


@pytest.mark.parametrize("layer,x,message", [c[1:] for c in FORWARD_CASES], ids=[c[0] for c in FORWARD_CASES])
def test_bad_layer_input(layer, x, message):
    with pytest.raises(ValueError, match=message):
        layer(x)


LOGITS = np.zeros((2, 3))
# (id, loss class, input, target, regex)
LOSS_CASES = [
    ("nll-too-big", nn.NLLLoss, LOGITS, np.array([0, 3]), "NLLLoss: target value 3 is out of range; expected class indices in \\[0, 2\\]"),
    ("nll-negative", nn.NLLLoss, LOGITS, np.array([-1, 0]), "NLLLoss: target value -1 is out of range; expected class indices in \\[0, 2\\]"),
    ("nll-float", nn.NLLLoss, LOGITS, np.array([0.0, 1.0]), "NLLLoss: class-index targets must have an integer dtype, got float64"),
    ("nll-bool", nn.NLLLoss, LOGITS, np.array([True, False]), "NLLLoss: class-index targets must have an integer dtype, got bool"),
    ("nll-length", nn.NLLLoss, LOGITS, np.array([0, 1, 2]), "NLLLoss: expected target of shape \\(2,\\) for input of shape \\(2, 3\\), got \\(3,\\)"),
    ("nll-one-hot", nn.NLLLoss, LOGITS, np.eye(3)[[0, 1]], "NLLLoss: expected target of shape \\(2,\\) for input of shape \\(2, 3\\), got \\(2, 3\\)"),
    ("nll-list", nn.NLLLoss, LOGITS, [0, 1], "NLLLoss: target must be an array, got list"),
    ("nll-input-ndim", nn.NLLLoss, np.zeros((2, 3, 1)), np.array([0, 1]),
     "NLLLoss: expected a floating-point input of shape \\(N, C\\), got float64 of shape \\(2, 3, 1\\)"),
    ("nll-input-int", nn.NLLLoss, np.zeros((2, 3), int), np.array([0, 1]), "NLLLoss: expected a floating-point input .*got int64"),
    ("ce-too-big", nn.CrossEntropyLoss, LOGITS, np.array([0, 3]), "CrossEntropyLoss: target value 3 is out of range; expected class indices in \\[0, 2\\]"),
    ("ce-float", nn.CrossEntropyLoss, LOGITS, np.array([0.0, 1.0]), "CrossEntropyLoss: class-index targets must have an integer dtype, got float64"),
    ("ce-3d", nn.CrossEntropyLoss, LOGITS, np.zeros((2, 3, 1)), "CrossEntropyLoss: expected target of shape \\(2,\\) .*got \\(2, 3, 1\\)"),
    ("ce-one-hot-shape", nn.CrossEntropyLoss, LOGITS, np.zeros((2, 4)),
     "CrossEntropyLoss: one-hot target shape \\(2, 4\\) does not match the input shape \\(2, 3\\)"),
    ("ce-negative-probs", nn.CrossEntropyLoss, LOGITS, -np.ones((2, 3)), "CrossEntropyLoss: one-hot \\(probability\\) targets must be non-negative"),
    ("ce-bool-one-hot", nn.CrossEntropyLoss, LOGITS, np.zeros((2, 3), bool), "CrossEntropyLoss: one-hot targets must be numeric, got bool"),
    ("ce-input-ndim", nn.CrossEntropyLoss, np.zeros((2, 3, 4, 4)), np.array([0, 1]), "CrossEntropyLoss: expected a floating-point input of shape \\(N, C\\)"),
]


@pytest.mark.parametrize("cls,x,target,message", [c[1:] for c in LOSS_CASES], ids=[c[0] for c in LOSS_CASES])
def test_bad_loss_input(cls, x, target, message):
    with pytest.raises(ValueError, match=message):
        cls()(x, target)


# (id, constructor, regex)
CONSTRUCTOR_CASES = [
    ("conv-in-channels", lambda: nn.Conv2d(0, 4, 3), "Conv2d\\(0, 4\\): in_channels must be a positive int, got 0"),
    ("conv-out-channels", lambda: nn.Conv2d(3, 2.5, 3), "Conv2d\\(3, 2.5\\): out_channels must be a positive int, got 2.5"),
    ("conv-kernel-0", lambda: nn.Conv2d(3, 4, 0), "Conv2d\\(3, 4\\): kernel_size must be >= 1, got \\(0, 0\\)"),
    ("conv-kernel-triple", lambda: nn.Conv2d(3, 4, (3, 3, 3)), "Conv2d\\(3, 4\\): kernel_size must be an int or a pair of ints, got \\(3, 3, 3\\)"),
    ("conv-kernel-float", lambda: nn.Conv2d(3, 4, 2.5), "Conv2d\\(3, 4\\): kernel_size must be an int or a pair of ints, got 2.5"),
    ("conv-stride-0", lambda: nn.Conv2d(3, 4, 3, stride=(1, 0)), "Conv2d\\(3, 4\\): stride must be >= 1, got \\(1, 0\\)"),
    ("conv-padding-negative", lambda: nn.Conv2d(3, 4, 3, padding=-1), "Conv2d\\(3, 4\\): padding must be >= 0, got \\(-1, -1\\)"),
    ("conv-bool-kernel", lambda: nn.Conv2d(3, 4, True), "Conv2d\\(3, 4\\): kernel_size must be an int or a pair of ints, got True"),
    ("pool-kernel-0", lambda: nn.MaxPool2d(0), "MaxPool2d\\(kernel_size=0\\): kernel_size must be >= 1, got \\(0, 0\\)"),
    ("pool-padding", lambda: nn.MaxPool2d(2, padding=2),
     "MaxPool2d\\(kernel_size=2\\): padding \\(2, 2\\) must be at most half the kernel size \\(2, 2\\)"),
    ("pool-stride", lambda: nn.MaxPool2d(2, stride=0), "MaxPool2d\\(kernel_size=2\\): stride must be >= 1, got \\(0, 0\\)"),
    ("linear-in", lambda: nn.Linear(0, 3), "Linear: in_features must be a positive int, got 0"),
    ("linear-out", lambda: nn.Linear(3, "2"), "Linear: out_features must be a positive int, got '2'"),
    ("bn-features", lambda: nn.BatchNorm2d(0), "BatchNorm2d: num_features must be a positive int, got 0"),
    ("bn-momentum", lambda: nn.BatchNorm2d(3, momentum=1.5), "BatchNorm2d: momentum must be a number in \\[0, 1\\], got 1.5"),
    ("bn-momentum-none", lambda: nn.BatchNorm2d(3, momentum=None), "BatchNorm2d: momentum must be a number in \\[0, 1\\], got None"),
    ("bn-momentum-str", lambda: nn.BatchNorm2d(3, momentum="0.1"), "BatchNorm2d: momentum must be a number in \\[0, 1\\], got '0.1'"),
    ("bn-momentum-bool", lambda: nn.BatchNorm2d(3, momentum=True), "BatchNorm2d: momentum must be a number in \\[0, 1\\], got True"),
    ("bn-eps", lambda: nn.BatchNorm2d(3, eps=0), "BatchNorm2d: eps must be a finite number > 0, got 0"),
    ("bn-eps-nan", lambda: nn.BatchNorm2d(3, eps=float("nan")), "BatchNorm2d: eps must be a finite number > 0, got nan"),
    ("bn-eps-inf", lambda: nn.BatchNorm2d(3, eps=float("inf")), "BatchNorm2d: eps must be a finite number > 0, got inf"),
    ("bn-features-bool", lambda: nn.BatchNorm2d(True), "BatchNorm2d: num_features must be a positive int, got True"),
    ("conv-channels-bool", lambda: nn.Conv2d(True, 4, 3), "Conv2d\\(True, 4\\): in_channels must be a positive int, got True"),
    ("linear-features-bool", lambda: nn.Linear(True, 2), "Linear: in_features must be a positive int, got True"),
    ("dropout-bool", lambda: nn.Dropout(False), "Dropout: p must be a probability in \\[0, 1\\), got False"),
    ("dropout-1", lambda: nn.Dropout(1.0), "Dropout: p must be a probability in \\[0, 1\\), got 1.0"),
    ("dropout-negative", lambda: nn.Dropout(-0.1), "Dropout: p must be a probability in \\[0, 1\\), got -0.1"),
    ("dropout-str", lambda: nn.Dropout("0.5"), "Dropout: p must be a probability in \\[0, 1\\), got '0.5'"),
    ("log-softmax-dim", lambda: nn.LogSoftmax(dim=1.0), "LogSoftmax: dim must be an int, got 1.0"),
    ("softmax-dim", lambda: nn.Softmax(dim="1"), "Softmax: dim must be an int, got '1'"),
]


@pytest.mark.parametrize("make,message", [c[1:] for c in CONSTRUCTOR_CASES], ids=[c[0] for c in CONSTRUCTOR_CASES])
def test_bad_constructor_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_numpy_scalars_are_valid_arguments():
    """What is rejected above is the value, not NumPy's number types."""
    assert nn.Dropout(np.float32(0.25)).p == 0.25
    assert nn.Conv2d(np.int64(2), 3, np.int32(3)).kernel_size == (3, 3)
    assert nn.LogSoftmax(dim=np.int64(-1)).dim == -1


@pytest.mark.parametrize("x,message", [
    (zeros((2, 28, 28)), "Conv2d\\(1, 32, .*\\): expected a 4-D input \\(N, C, H, W\\), got shape \\(2, 28, 28\\)"),
    (zeros((2, 3, 28, 28)), "Conv2d\\(1, 32, .*\\): expected 1 input channels, got 3"),
    (zeros((2, 1, 32, 32)), "Linear\\(in_features=3136, .*\\): expected 3136 input features, got 4096"),
    (zeros((2, 1, 28, 28), f64), "Conv2d\\(1, 32, .*\\): input dtype float64 does not match the layer's float32"),
], ids=["ndim", "channels", "image-size", "dtype"])
def test_bad_model_input_names_the_failing_layer(x, message):
    with pytest.raises(ValueError, match=message):
        models.MnistCNN(seed=0)(x)


def test_a_rejected_input_leaves_the_layer_usable():
    conv = nn.Conv2d(1, 2, 3, dtype=f64)
    x = np.ones((1, 1, 4, 4))
    y = conv(x)
    with pytest.raises(ValueError):
        conv(np.ones((1, 2, 4, 4)))
    assert conv.backward(np.ones_like(y)).shape == x.shape  # the cache of the good call


# --- backward: grad_output must have the shape of the forward output ------------------------------

# (id, layer, input, a grad_output of the wrong shape, the shape expected); each backward runs on
# both CPU backends (on Numba, max-pooling indexes by the shapes, so a wrong one must be stopped first).
BACKWARD_CASES = [
    ("conv", lambda: nn.Conv2d(2, 4, 3), (2, 2, 5, 5), (4, 2, 3, 3), (2, 4, 3, 3)),
    ("pool", lambda: nn.MaxPool2d(2), (2, 3, 6, 6), (2, 3, 4, 4), (2, 3, 3, 3)),
    ("pool-fewer", lambda: nn.MaxPool2d(2), (2, 3, 6, 6), (1, 3, 3, 3), (2, 3, 3, 3)),
    ("relu", lambda: nn.ReLU(), (4, 3), (5, 4, 3), (4, 3)),
    ("linear", lambda: nn.Linear(3, 2), (4, 3), (4, 3), (4, 2)),
    ("flatten", lambda: nn.Flatten(), (2, 3, 2), (3, 4), (2, 6)),
    ("log-softmax", lambda: nn.LogSoftmax(), (4, 3), (1, 3), (4, 3)),
    ("softmax", lambda: nn.Softmax(), (4, 3), (4,), (4, 3)),
    ("dropout", lambda: nn.Dropout(0.5, generator=np.random.default_rng(0)), (4, 3), (4, 1), (4, 3)),
    ("dropout-eval", lambda: nn.Dropout(0.5).eval(), (4, 3), (3, 4), (4, 3)),
    ("batchnorm", lambda: nn.BatchNorm2d(3), (2, 3, 2, 2), (1, 3, 2, 2), (2, 3, 2, 2)),
]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("make,x_shape,bad,expected", [c[1:] for c in BACKWARD_CASES],
                         ids=[c[0] for c in BACKWARD_CASES])
def test_backward_checks_the_gradient_shape(backend, make, x_shape, bad, expected):
    with using(backend):
        layer = make()
        y = layer(np.random.default_rng(0).standard_normal(x_shape).astype(f32))
        assert y.shape == expected
        message = (f"\\.backward: expected grad_output of shape {re.escape(str(expected))} \\(the shape of "
                   f"the forward output\\), got {re.escape(str(bad))}$")
        with pytest.raises(ValueError, match=message):
            layer.backward(np.ones(bad, f32))
        assert layer.backward(np.ones(expected, f32)).shape == x_shape  # still usable


@pytest.mark.parametrize("grad,message", [
    ([[1.0, 2.0]], "ReLU.backward: expected grad_output as an array of shape \\(1, 2\\) .*, got list"),
    (np.ones((1, 2), np.int64), "ReLU.backward: expected a floating-point grad_output, got dtype int64"),
])
def test_backward_wants_a_floating_array(grad, message):
    relu = nn.ReLU()
    relu(np.ones((1, 2), f32))
    with pytest.raises(ValueError, match=message):
        relu.backward(grad)


def test_a_parameter_gradient_must_have_the_parameter_shape():
    """The classic slip in a custom layer: a bias gradient not summed over the batch."""
    bias = nn.Parameter(np.zeros(3, f32))
    with pytest.raises(ValueError, match=re.escape(
            "Parameter.accumulate_grad: gradient of shape (4, 3) for a parameter of shape (3,); a gradient "
            "has its parameter's shape (a bias's gradient is summed over the batch)")):
        bias.accumulate_grad(np.ones((4, 3), f32))
    assert bias.grad is None


@pytest.mark.parametrize("make,owner", [
    (lambda g: nn.Conv2d(1, 2, 3, generator=g), "Conv2d\\(1, 2\\)"),
    (lambda g: nn.Linear(2, 3, generator=g), "Linear"),
    (lambda g: nn.Dropout(0.5, generator=g), "Dropout"),
    (lambda g: models.MnistCNN(generator=g), "MnistCNN"),
], ids=["conv", "linear", "dropout", "model"])
def test_a_seed_where_a_generator_belongs_is_named(make, owner):
    with pytest.raises(TypeError, match=f"{owner}: generator must be a numpy.random.Generator or None, got int 0; "
                                        f"for a seed, pass np.random.default_rng\\(seed\\)"):
        make(0)


@pytest.mark.parametrize("x", [np.array([1, -2]), np.array([True, False]), np.array([1 - 5j])],
                         ids=["int", "bool", "complex"])
def test_relu_wants_floating_point_like_every_layer(x):
    with pytest.raises(ValueError, match=f"ReLU: expected a floating-point array, got dtype {x.dtype}"):
        nn.ReLU()(x)


@pytest.mark.parametrize("mode", ["False", 0, None])
def test_train_mode_must_be_a_bool(mode):
    model = models.MnistCNN(seed=0)
    with pytest.raises(TypeError, match=f"MnistCNN.train: mode must be True or False, got {re.escape(repr(mode))}"):
        model.train(mode)
    assert model.training and model.conv1.training
