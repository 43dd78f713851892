"""The documented MNIST networks.

MnistCNN (421,642 parameters), for a (N, 1, 28, 28) batch:

    conv1  Conv2d(1, 32, 3, padding=1)   -> (N, 32, 28, 28)     320 params
    relu1, pool1 MaxPool2d(2)           -> (N, 32, 14, 14)
    conv2  Conv2d(32, 64, 3, padding=1)  -> (N, 64, 14, 14)  18,496 params
    relu2, pool2 MaxPool2d(2)           -> (N, 64, 7, 7)
    flatten                             -> (N, 3136)
    fc1    Linear(3136, 128), relu3     -> (N, 128)         401,536 params
    fc2    Linear(128, 10)              -> (N, 10)            1,290 params
    log_softmax LogSoftmax(dim=1)       -> log-probabilities, for NLLLoss

MnistBNCNN adds BatchNorm2d (bn1, bn2) between each convolution and its ReLU,
Dropout(0.25) after the first pooled block and Dropout(0.5) after the second.

MnistDeepCNN (887,530 parameters), the deeper Keras-style network, two
convolutions per block:

    rescale Rescaling(0.3081, 0.1307)           -> (N, 1, 28, 28), pixels in [0, 1] again
    conv1  Conv2d(1, 32, 5, padding=2), relu1    -> (N, 32, 28, 28)     832 params
    conv2  Conv2d(32, 32, 5, padding=2), relu2   -> (N, 32, 28, 28)  25,632 params
    pool1 MaxPool2d(2), drop1 Dropout(0.25)     -> (N, 32, 14, 14)
    conv3  Conv2d(32, 64, 3, padding=1), relu3   -> (N, 64, 14, 14)  18,496 params
    conv4  Conv2d(64, 64, 3, padding=1), relu4   -> (N, 64, 14, 14)  36,928 params
    pool2 MaxPool2d(2), drop2 Dropout(0.25)     -> (N, 64, 7, 7)
    flatten                                     -> (N, 3136)
    fc1    Linear(3136, 256), relu5, drop3 Dropout(0.5) -> (N, 256)  803,072 params
    fc2    Linear(256, 10)                      -> (N, 10)            2,570 params
    log_softmax LogSoftmax(dim=1)

It starts as Keras starts it: Glorot-uniform weights, zero biases.  It takes
the same standardised input as the others, (p - 0.1307) / 0.3081 for pixels p
in [0, 1], and its first layer undoes that, since the notebook's network sees
p itself: the background is then 0, as the convolutions' zero padding is.
It costs about 7.6 times MnistCNN's multiply-adds per image (32.3 M against
4.2 M; conv2 alone is 20 M).  Its training recipe (RMSprop, a plateau schedule
on validation accuracy, zoom) is in minicnn/recipes.py.

State-dict keys and shapes equal those of the same network written with
``torch.nn`` attribute names ``conv1, conv2, fc1, fc2`` (and ``bn1, bn2``;
``conv3, conv4`` in MnistDeepCNN).

Docs: docs/overview.md, docs/comparisons.md
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minicnn import nn
from minicnn.data.transforms import MNIST_MEAN, MNIST_STD
from minicnn.nn.init import glorot_uniform_
from minicnn.validate import check_generator


def _rng(owner, generator, seed):
    if generator is not None and seed is not None:
        raise ValueError(f"{owner}: pass either generator or seed, not both")
    check_generator(generator, owner)
    return generator if generator is not None else np.random.default_rng(seed)


class MnistCNN(nn.Sequential):
    """Two conv blocks and two fully connected layers ending in LogSoftmax (see the module docstring).

    ``filters`` (conv1's channels; conv2 has twice as many) and ``units`` (fc1's) are the
    knobs ``minicnn tune`` turns; the documented network is ``filters=32, units=128``.
    """

    def __init__(self, num_classes=10, dtype=None, generator=None, seed=None, filters=32, units=128):
        rng = _rng(type(self).__name__, generator, seed)
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(1, filters, 3, padding=1, dtype=dtype, generator=rng)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(filters, 2 * filters, 3, padding=1, dtype=dtype, generator=rng)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(2 * filters * 7 * 7, units, dtype=dtype, generator=rng)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(units, num_classes, dtype=dtype, generator=rng)),
            ("log_softmax", nn.LogSoftmax(dim=1)),
        ]))


class MnistBNCNN(nn.Sequential):
    """MnistCNN with BatchNorm2d after each convolution and Dropout after each pooled block."""

    def __init__(self, num_classes=10, dtype=None, generator=None, seed=None):
        rng = _rng(type(self).__name__, generator, seed)
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(1, 32, 3, padding=1, dtype=dtype, generator=rng)),
            ("bn1", nn.BatchNorm2d(32, dtype=dtype)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("drop1", nn.Dropout(0.25, generator=rng)),
            ("conv2", nn.Conv2d(32, 64, 3, padding=1, dtype=dtype, generator=rng)),
            ("bn2", nn.BatchNorm2d(64, dtype=dtype)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("drop2", nn.Dropout(0.5, generator=rng)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(64 * 7 * 7, 128, dtype=dtype, generator=rng)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(128, num_classes, dtype=dtype, generator=rng)),
            ("log_softmax", nn.LogSoftmax(dim=1)),
        ]))


class MnistDeepCNN(nn.Sequential):
    """Two blocks of two convolutions, then a 256-unit layer, with Dropout (see the module docstring).

    Its input is standardised, as every minicnn network's; its first layer turns it back into
    pixels in [0, 1], the inputs of the Keras notebook whose network this is.

    ``init="glorot"`` (the default) starts it as Keras starts the report's network: Glorot-uniform
    weights and zero biases (:func:`minicnn.nn.init.glorot_uniform_`); ``init="fan_in"`` keeps the
    layers' own PyTorch-style draw.
    """

    def __init__(self, num_classes=10, dtype=None, generator=None, seed=None, init="glorot"):
        if init not in ("glorot", "fan_in"):
            raise ValueError(f"MnistDeepCNN: init must be 'glorot' or 'fan_in', got {init!r}")
        rng = _rng(type(self).__name__, generator, seed)
        super().__init__(OrderedDict([
            ("rescale", nn.Rescaling(MNIST_STD, MNIST_MEAN)),  # standardised input -> pixels in [0, 1]
            ("conv1", nn.Conv2d(1, 32, 5, padding=2, dtype=dtype, generator=rng)),
            ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(32, 32, 5, padding=2, dtype=dtype, generator=rng)),
            ("relu2", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("drop1", nn.Dropout(0.25, generator=rng)),
            ("conv3", nn.Conv2d(32, 64, 3, padding=1, dtype=dtype, generator=rng)),
            ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(64, 64, 3, padding=1, dtype=dtype, generator=rng)),
            ("relu4", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("drop2", nn.Dropout(0.25, generator=rng)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(64 * 7 * 7, 256, dtype=dtype, generator=rng)),
            ("relu5", nn.ReLU()),
            ("drop3", nn.Dropout(0.5, generator=rng)),
            ("fc2", nn.Linear(256, num_classes, dtype=dtype, generator=rng)),
            ("log_softmax", nn.LogSoftmax(dim=1)),
        ]))
        if init == "glorot":
            glorot_uniform_(self, rng)


MODELS = {"MnistCNN": MnistCNN, "MnistBNCNN": MnistBNCNN, "MnistDeepCNN": MnistDeepCNN}


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name (case-insensitive): ``"MnistCNN"``, ``"MnistBNCNN"`` or ``"MnistDeepCNN"``."""
    for key, cls in MODELS.items():
        if key.lower() == str(name).lower():
            return cls(**kwargs)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
