"""no_grad: inference forwards keep nothing for backward, and forward_in_blocks runs big batches in blocks."""
import threading

import numpy as np
import pytest

import minicnn
from minicnn import models, nn
from minicnn.inference import predict
from minicnn.training import BLOCK_SIZE, evaluate, forward_in_blocks
from strategies import using

CPU_BACKENDS = [name for name in ("numpy", "numba") if name in minicnn.available_backends()]


class CountingForward:
    """Records the batch size of every forward call of ``layer``."""

    def __init__(self, layer):
        self.sizes = []
        forward = layer.forward

        def counted(x):
            self.sizes.append(len(x))
            return forward(x)
        object.__setattr__(layer, "forward", counted)


def images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32)


# --- the switch -------------------------------------------------------------------------------

def test_no_grad_sets_and_restores_the_state_and_nests():
    assert minicnn.is_grad_enabled()
    with minicnn.no_grad():
        assert not minicnn.is_grad_enabled()
        with minicnn.no_grad():
            assert not minicnn.is_grad_enabled()
        assert not minicnn.is_grad_enabled()
    assert minicnn.is_grad_enabled()


def test_no_grad_is_restored_after_an_exception():
    with pytest.raises(KeyError):
        with minicnn.no_grad():
            raise KeyError("inside")
    assert minicnn.is_grad_enabled()


def test_no_grad_as_a_decorator():
    @minicnn.no_grad()
    def inside():
        return minicnn.is_grad_enabled()

    assert inside() is False and inside() is False
    assert minicnn.is_grad_enabled()


def test_no_grad_is_per_thread():
    seen = []
    with minicnn.no_grad():
        thread = threading.Thread(target=lambda: seen.append(minicnn.is_grad_enabled()))
        thread.start()
        thread.join()
    assert seen == [True]


# --- nothing kept for backward ----------------------------------------------------------------

LAYERS = [
    (lambda: nn.Conv2d(1, 2, 3, padding=1), (2, 1, 5, 5)),
    (lambda: nn.MaxPool2d(2), (2, 1, 4, 4)),
    (nn.ReLU, (2, 3)),
    (lambda: nn.Linear(3, 2), (2, 3)),
    (nn.Flatten, (2, 1, 2, 2)),
    (nn.LogSoftmax, (2, 3)),
    (nn.Softmax, (2, 3)),
    (lambda: nn.BatchNorm2d(1), (2, 1, 3, 3)),
    (lambda: nn.Dropout(0.5), (2, 3)),
]


@pytest.mark.parametrize("factory, shape", LAYERS, ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_backward_after_a_no_grad_forward_raises_even_after_a_normal_forward(factory, shape, training):
    layer = factory().train(training)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    y = layer(x)
    layer.backward(np.ones_like(y))  # a normal forward leaves what backward needs
    with minicnn.no_grad():
        y = layer(x)
    # The cache of the earlier forward must not be used for this one.
    with pytest.raises(RuntimeError, match=r"backward called before forward \(a forward inside no_grad\(\)"):
        layer.backward(np.ones_like(y))


@pytest.mark.parametrize("loss_fn", [nn.NLLLoss(), nn.CrossEntropyLoss()], ids=lambda m: type(m).__name__)
def test_a_loss_under_no_grad_keeps_nothing(loss_fn):
    scores = np.log(np.full((2, 3), 1 / 3, dtype=np.float32))
    with minicnn.no_grad():
        assert loss_fn(scores, np.array([0, 2])) == pytest.approx(np.log(3))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        loss_fn.backward()


def test_dropout_backward_before_any_forward_is_an_error_not_the_identity():
    with pytest.raises(RuntimeError, match="Dropout.*backward called before forward"):
        nn.Dropout(0.5).eval().backward(np.ones(3, dtype=np.float32))
    layer = nn.Dropout(0.5).eval()
    layer(np.ones(3, dtype=np.float32))
    np.testing.assert_array_equal(layer.backward(np.full(3, 2.0, dtype=np.float32)), np.full(3, 2.0))


# --- inference in blocks ---------------------------------------------------------------------

@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_blocked_inference_equals_the_whole_batch(backend):
    with using(backend):
        model = models.MnistCNN(seed=0).eval()
        x = images(300)
        whole = model(x)
        counter = CountingForward(model[0])
        blocked = forward_in_blocks(model, x)
    assert counter.sizes == [128, 128, 44]
    assert blocked.shape == whole.shape == (300, 10) and blocked.dtype == np.float32
    # Same products on fewer columns: equal up to float32 rounding, same predicted classes.
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(blocked.argmax(axis=1), whole.argmax(axis=1))
    assert all(getattr(m, "_cache", None) is None for m in model.modules())  # under no_grad


def test_block_size_is_an_argument_and_none_turns_blocking_off():
    model = models.MnistCNN(seed=0).eval()
    counter = CountingForward(model[0])
    x = images(100)
    forward_in_blocks(model, x, block_size=30)
    assert counter.sizes == [30, 30, 30, 10]
    assert BLOCK_SIZE == 128
    forward_in_blocks(model, x, block_size=None)
    assert counter.sizes[4:] == [100]


def test_no_blocks_in_a_plain_call_or_for_a_small_batch():
    model = models.MnistCNN(seed=0).eval()
    counter = CountingForward(model[0])
    model(images(300))
    with minicnn.no_grad():
        model(images(300))
    forward_in_blocks(model, images(128))
    assert counter.sizes == [300, 300, 128]


def test_batchnorm_in_training_mode_sees_the_whole_batch():
    model = models.MnistBNCNN(seed=0).train()
    counter = CountingForward(model[0])
    x = images(200)
    out = forward_in_blocks(model, x)
    assert counter.sizes == [200]
    # In eval mode BatchNorm uses its running statistics, so the samples are independent.
    model.eval()
    blocked = forward_in_blocks(model, x)
    np.testing.assert_allclose(blocked, model(x), rtol=1e-5, atol=1e-5)
    assert counter.sizes[1:3] == [128, 72]
    assert out.shape == (200, 10)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_a_bad_block_size_is_a_clear_error(bad):
    model = models.MnistCNN(seed=0)
    with pytest.raises(ValueError, match=f"block_size must be a positive int or None, got {bad!r}"):
        forward_in_blocks(model, images(2), block_size=bad)


# --- the package's inference helpers use it ---------------------------------------------------

def test_evaluate_and_predict_leave_nothing_cached():
    model = models.MnistCNN(seed=0)
    x, y = images(20), np.arange(20) % 10
    model(x)  # a training forward leaves caches behind
    assert model.fc1._cache is not None and model.conv1._cache is not None
    result = evaluate(model, [(x, y)], nn.NLLLoss())
    assert result["samples"] == 20 and 0.0 <= result["accuracy"] <= 1.0
    assert all(getattr(m, "_cache", None) is None for m in model.modules())
    assert model.training  # the mode is restored
    model(x)
    digits, _ = predict(model, x, batch_size=8)
    assert digits.shape == (20,)
    assert all(getattr(m, "_cache", None) is None for m in model.modules())
    assert minicnn.is_grad_enabled()
