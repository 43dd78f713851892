"""Every layer, loss and model against central finite differences, and the checker against wrong backwards.

All checks run in float64 (``gradcheck`` converts a copy of the module).
Inputs are drawn so that the functions are smooth within reach of the
finite-difference step: ReLU inputs away from 0, max-pool inputs without ties
(see ``tests/strategies.py``).
"""
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from minicnn import GradcheckError, gradcheck, models, nn
from strategies import away_from_zero, conv_cases, distinct, normal, pool_cases, seeds

# --- layers ----------------------------------------------------------------


@given(case=conv_cases(), seed=seeds)
def test_conv2d(case, seed):
    rng = np.random.default_rng(seed)
    conv = nn.Conv2d(case.x_shape[1], case.out_channels, case.kernel_size, case.stride, case.padding,
                     bias=case.bias, dtype=np.float64, generator=rng)
    assert min(case.out_hw) >= 1
    assert gradcheck(conv, normal(seed + 1, case.x_shape))


@given(case=pool_cases(), seed=seeds)
def test_maxpool2d(case, seed):
    pool = nn.MaxPool2d(case.kernel_size, case.stride, case.padding)
    assert gradcheck(pool, distinct(seed, case.x_shape))


def test_maxpool2d_overlapping_windows():
    """Stride 1 with a 3x3 window: an element that wins several windows gets the sum of their gradients."""
    assert gradcheck(nn.MaxPool2d(3, stride=1, padding=1), distinct(7, (2, 2, 5, 6)))


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), seed=seeds)
def test_relu(shape, seed):
    assert gradcheck(nn.ReLU(), away_from_zero(seed, shape))


@given(n=st.integers(1, 3), fin=st.integers(1, 6), fout=st.integers(1, 6), bias=st.booleans(), seed=seeds)
def test_linear(n, fin, fout, bias, seed):
    layer = nn.Linear(fin, fout, bias=bias, dtype=np.float64, generator=np.random.default_rng(seed))
    assert gradcheck(layer, normal(seed + 1, (n, fin)))


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), seed=seeds,
       scale=st.sampled_from([0.3081, -2.0, 1e-3]), offset=st.sampled_from([0.0, 0.1307, -5.0]))
def test_rescaling(shape, seed, scale, offset):
    assert gradcheck(nn.Rescaling(scale, offset), normal(seed, shape))


@given(shape=st.lists(st.integers(1, 3), min_size=2, max_size=4).map(tuple), seed=seeds)
def test_flatten(shape, seed):
    assert gradcheck(nn.Flatten(), normal(seed, shape))


@pytest.mark.parametrize("cls", [nn.LogSoftmax, nn.Softmax])
@pytest.mark.parametrize("dim", [1, -1])
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), seed=seeds)
def test_softmaxes(cls, dim, shape, seed):
    x = 3 * normal(seed, shape)
    assert gradcheck(cls(dim=dim), x)


def _random_bn(c, seed, training):
    rng = np.random.default_rng(seed)
    bn = nn.BatchNorm2d(c, dtype=np.float64)
    bn.weight.data[...] = rng.uniform(0.5, 2.0, c) * rng.choice([-1.0, 1.0], c)
    bn.bias.data[...] = rng.standard_normal(c)
    bn.running_mean = rng.standard_normal(c)
    bn.running_var = rng.uniform(0.5, 2.0, c)
    return bn.train(training)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4), seed=seeds)
def test_batchnorm2d(training, n, c, h, w, seed):
    assume(not training or n * h * w >= 2)  # batch statistics need two values per channel
    assert gradcheck(_random_bn(c, seed, training), 1.5 + 2 * normal(seed + 1, (n, c, h, w)))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple),
       p=st.sampled_from([0.0, 0.2, 0.5, 0.9]), seed=seeds)
def test_dropout(training, shape, p, seed):
    drop = nn.Dropout(p, generator=np.random.default_rng(seed)).train(training)
    assert gradcheck(drop, normal(seed + 1, shape))


# --- losses ----------------------------------------------------------------

losses_shapes = dict(n=st.integers(1, 4), c=st.integers(1, 5), seed=seeds)


def _log_probs(seed, n, c):
    x = 2 * normal(seed, (n, c))
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


@given(**losses_shapes)
def test_nll_loss(n, c, seed):
    target = np.random.default_rng(seed + 1).integers(0, c, n)
    assert gradcheck(nn.NLLLoss(), _log_probs(seed, n, c), target)


@pytest.mark.parametrize("kind", ["index", "one-hot", "probabilities", "unnormalised"])
@given(**losses_shapes)
def test_cross_entropy_loss(kind, n, c, seed):
    rng = np.random.default_rng(seed + 1)
    index = rng.integers(0, c, n)
    target = {
        "index": index,
        "one-hot": np.eye(c)[index],
        "probabilities": rng.dirichlet(np.ones(c), n),
        "unnormalised": rng.uniform(0, 2, (n, c)),  # rows need not sum to 1: dx = softmax * sum(T) - T
    }[kind]
    assert gradcheck(nn.CrossEntropyLoss(), 3 * normal(seed, (n, c)), target)


# --- containers and whole models -------------------------------------------


@given(seed=seeds, n=st.integers(2, 3))
def test_sequential(seed, n):
    rng = np.random.default_rng(seed)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, generator=rng),
        nn.BatchNorm2d(3, dtype=np.float64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.3, generator=rng),
        nn.Flatten(),
        nn.Linear(3 * 2 * 2, 4, dtype=np.float64, generator=rng),
        nn.LogSoftmax(dim=1),
    )
    assert gradcheck(net, normal(seed + 1, (n, 2, 4, 5)))


# The models take (N, 1, 28, 28); a batch of 2 keeps this to seconds.  Every
# tensor above 100 entries (the input, all weights, fc1.bias) is checked along
# 16 random directions; the other biases and BatchNorm's gamma and beta
# element by element.
@pytest.mark.parametrize("name,training", [("MnistCNN", True), ("MnistBNCNN", True), ("MnistBNCNN", False)],
                         ids=["MnistCNN", "MnistBNCNN-train", "MnistBNCNN-eval"])
def test_models(name, training):
    model = models.get_model(name, dtype=np.float64, seed=3).train(training)
    if not training:  # running statistics that are not the identity
        for bn in (model.bn1, model.bn2):
            bn.running_mean = np.linspace(-0.1, 0.1, bn.num_features)
            bn.running_var = np.linspace(0.5, 1.5, bn.num_features)
    x = np.random.default_rng(4).uniform(0, 1, (2, 1, 28, 28))
    assert gradcheck(model, x, max_elements=100)


def test_model_with_loss_end_to_end():
    """The loss's backward feeds the model's: check d loss / d fc2 through both, in float64."""
    model = models.MnistCNN(dtype=np.float64, seed=5)
    criterion = nn.NLLLoss()
    x = np.random.default_rng(6).uniform(0, 1, (2, 1, 28, 28))
    target = np.array([3, 7])

    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.criterion = model, criterion

        def forward(self, x, target):
            return self.criterion(self.model(x), target)

        def backward(self):
            return self.model.backward(self.criterion.backward())

    assert gradcheck(WithLoss(), x, target, max_elements=100)


# --- the checker itself ----------------------------------------------------


class _Captured(nn.Linear):
    """A Linear that remembers the grad_output it was given (on the class: gradcheck works on a copy)."""

    seen = []

    def backward(self, grad_output):
        type(self).seen.append(grad_output.copy())
        return super().backward(grad_output)


def _linear(cls, fin=4, fout=3, seed=0, bias=True):
    return cls(fin, fout, bias=bias, dtype=np.float64, generator=np.random.default_rng(seed))


def _parse(message):
    analytic = float(re.search(r"analytic (\S+),", message).group(1))
    numeric = float(re.search(r"numeric (\S+) ", message).group(1))
    return analytic, numeric


def test_correct_backward_passes():
    assert gradcheck(_linear(nn.Linear), normal(1, (2, 4))) is True


def test_weight_grad_off_by_one_percent_fails():
    class Scaled(nn.Linear):
        def backward(self, grad_output):
            dx = super().backward(grad_output)
            self.weight.grad *= 1.01
            return dx

    with pytest.raises(GradcheckError, match=r"gradient of weight \(shape \(3, 4\)\) is wrong at \(\d, \d\)"):
        gradcheck(_linear(Scaled), normal(1, (2, 4)))


def test_dropped_bias_grad_fails():
    class NoBias(nn.Linear):
        def backward(self, grad_output):
            (x,) = self.saved_tensors(grad_output)
            self.weight.accumulate_grad(grad_output.T @ x)
            return grad_output @ self.weight.data

    with pytest.raises(GradcheckError, match=r"gradient of bias \(shape \(3,\)\).*analytic 0,"):
        gradcheck(_linear(NoBias), normal(1, (2, 4)))


def test_one_wrong_element_is_named_with_both_values():
    class OneOff(_Captured):
        seen = []

        def backward(self, grad_output):
            dx = super().backward(grad_output)
            dx[1, 2] += 0.05
            return dx

    layer = _linear(OneOff)
    x = normal(1, (2, 4))
    with pytest.raises(GradcheckError, match=r"gradient of input \(shape \(2, 4\)\) is wrong at \(1, 2\)") as info:
        gradcheck(layer, x)
    true_dx = OneOff.seen[0] @ layer.weight.data
    analytic, numeric = _parse(str(info.value))
    assert analytic == pytest.approx(true_dx[1, 2] + 0.05, rel=1e-8)
    assert numeric == pytest.approx(true_dx[1, 2], rel=1e-6)


def test_parameter_names_are_dotted_paths():
    class Scaled(nn.Linear):
        def backward(self, grad_output):
            dx = super().backward(grad_output)
            self.bias.grad *= 0.9
            return dx

    net = nn.Sequential(nn.ReLU(), _linear(Scaled))
    with pytest.raises(GradcheckError, match=r"gradient of 1\.bias"):
        gradcheck(net, away_from_zero(2, (2, 4)))


def test_large_tensor_goes_through_random_directions():
    """A 60x70 weight (4,200 > 4,096 entries) is checked along random directions, which still catch a 1% error."""
    class Scaled(nn.Linear):
        def backward(self, grad_output):
            dx = super().backward(grad_output)
            self.weight.grad *= 1.01
            return dx

    x = normal(1, (3, 70))
    assert gradcheck(_linear(nn.Linear, 70, 60), x)
    with pytest.raises(GradcheckError, match=r"gradient of weight \(shape \(60, 70\)\) is wrong at random direction \d+"):
        gradcheck(_linear(Scaled, 70, 60), x)


def test_backward_that_mutates_grad_output_fails():
    class Mutating(nn.ReLU):
        def backward(self, grad_output):
            grad_output *= self.saved_tensors(grad_output)[0]  # in place: the caller's array changes
            return grad_output

    with pytest.raises(GradcheckError, match="modified its grad_output"):
        gradcheck(Mutating(), away_from_zero(1, (3, 4)))


def test_forward_that_mutates_its_input_fails():
    class InPlace(nn.ReLU):
        def forward(self, x):
            self.save_for_backward(x > 0, output=x)
            np.maximum(x, 0, out=x)
            return x

    with pytest.raises(GradcheckError, match="modified its input"):
        gradcheck(InPlace(), away_from_zero(1, (3, 4)))


def test_wrong_gradient_shape_fails():
    class Transposed(nn.Linear):
        def backward(self, grad_output):
            return super().backward(grad_output).T

    with pytest.raises(GradcheckError, match=r"shape \(4, 2\), expected \(2, 4\)"):
        gradcheck(_linear(Transposed), normal(1, (2, 4)))


def test_non_finite_gradient_fails():
    class NaN(nn.Linear):
        def backward(self, grad_output):
            dx = super().backward(grad_output)
            dx[0, 1] = np.nan
            return dx

    with pytest.raises(GradcheckError, match=r"input .* at \(0, 1\): analytic nan"):
        gradcheck(_linear(NaN), normal(1, (2, 4)))


def test_wrong_loss_backward_fails():
    class Unaveraged(nn.CrossEntropyLoss):
        def backward(self, grad_output=1.0):
            return super().backward(grad_output) * self.saved_tensors()[0].shape[0]  # forgot the 1/N

    x, target = normal(1, (3, 4)), np.array([0, 3, 1])
    assert gradcheck(nn.CrossEntropyLoss(), x, target)
    with pytest.raises(GradcheckError, match="gradient of input"):
        gradcheck(Unaveraged(), x, target)


def test_bad_arguments_raise_type_error():
    with pytest.raises(TypeError, match="backward"):
        gradcheck(np.sum, normal(1, (2, 2)))
    with pytest.raises(TypeError, match="floating-point"):
        gradcheck(nn.ReLU(), np.arange(4))
    with pytest.raises(TypeError, match="at least one input"):
        gradcheck(nn.ReLU())


def test_the_module_passed_in_is_left_alone():
    """gradcheck works on a float64 copy: no grads, running statistics or dtype change on the original."""
    bn = nn.BatchNorm2d(2)  # float32
    before = {k: np.array(v, copy=True) for k, v in bn.state_dict().items()}
    assert gradcheck(bn, normal(1, (2, 2, 3, 3), np.float32))
    assert bn.weight.grad is None and bn.bias.grad is None
    assert bn.weight.dtype == np.float32
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize("layout", ["fortran", "strided"])
def test_input_in_any_memory_layout(layout):
    """A transposed or strided input is perturbed where the module reads it (not in a copy)."""
    base = normal(1, (4, 6))
    x = base.T.copy().T if layout == "fortran" else base[:, ::2]
    assert not x.flags.c_contiguous
    assert gradcheck(_linear(nn.Linear, fin=x.shape[1]), x)


def test_parameter_in_fortran_order():
    """A weight stored column-major (as after loading a transposed array) is checked where it lives."""
    layer = _linear(nn.Linear)
    layer.weight.data = np.asfortranarray(layer.weight.data)
    assert not layer.weight.data.flags.c_contiguous
    assert gradcheck(layer, normal(1, (2, 4)))


@pytest.mark.parametrize("x,message", [
    (np.array([[1.0, np.nan]]), "got shape \\(1, 2\\) with 1 NaN or inf"),
    (np.array([[np.inf, -np.inf]]), "got shape \\(1, 2\\) with 2 NaN or inf"),
    (np.zeros((0, 2)), "got shape \\(0, 2\\)$"),
])
def test_input_must_be_finite_and_non_empty(x, message):
    """A NaN input used to be reported as the module modifying its input in place."""
    with pytest.raises(ValueError, match="gradcheck: the first input must be a non-empty array of finite values "
                                         "\\(finite differences of NaN or inf mean nothing\\), " + message):
        gradcheck(nn.Linear(2, 2, dtype=np.float64), x)


@pytest.mark.parametrize("kwargs,message", [
    (dict(eps=0), "eps must be a finite number > 0, got 0"),
    (dict(eps=np.nan), "eps must be a finite number > 0, got nan"),
    (dict(atol=-1e-5), "atol must be a finite number >= 0, got -1e-05"),
    (dict(rtol="1e-3"), "rtol must be a finite number >= 0, got '1e-3'"),
    (dict(directions=0), "directions must be an int >= 1, got 0"),
    (dict(max_elements=-1), "max_elements must be an int >= 0, got -1"),
])
def test_bad_tolerances_and_counts_are_named(kwargs, message):
    with pytest.raises(ValueError, match=f"gradcheck: {message}"):
        gradcheck(nn.Linear(2, 2, dtype=np.float64), normal(1, (1, 2)), **kwargs)


def test_max_elements_zero_checks_every_tensor_along_directions():
    assert gradcheck(nn.Linear(3, 2, dtype=np.float64), normal(1, (2, 3)), max_elements=0)
