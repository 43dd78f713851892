"""Hypothesis strategies shared by the engine's tests, and ``using``, a backend for one block.

Shapes are drawn small (the gradient checks evaluate a layer twice per input
element), and always valid: a convolution or pooling window fits its padded
input, so every output has at least one row and column.  Array contents come
from a drawn seed and a ``numpy.random.Generator``, with the two conditions a
trustworthy gradient check needs built in:

* ReLU inputs kept away from 0 (``|x| >= 1e-2``), where ReLU has a kink;
* max-pool inputs without ties: a random permutation of values spaced 0.01
  apart, far above the finite-difference step (1e-6), so no perturbation
  changes which element wins a window.
"""
from __future__ import annotations

import struct
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import minicnn

seeds = st.integers(min_value=0, max_value=2**32 - 1)
batch_sizes = st.integers(min_value=1, max_value=3)
channels = st.integers(min_value=1, max_value=3)


@dataclass(frozen=True)
class WindowCase:
    """One valid (input shape, window) combination for Conv2d or MaxPool2d."""

    x_shape: tuple
    kernel_size: tuple
    stride: tuple
    padding: tuple
    out_channels: int = 1
    bias: bool = True

    @property
    def out_hw(self):
        (H, W), (KH, KW), (SH, SW), (PH, PW) = self.x_shape[2:], self.kernel_size, self.stride, self.padding
        return (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1


@st.composite
def _side(draw, kernel_max, pool):
    """(kernel, stride, padding, input size) along one axis, output size >= 1."""
    k = draw(st.integers(1, kernel_max))
    s = draw(st.integers(1, 3))
    p = draw(st.integers(0, k // 2 if pool else 2))
    smallest = max(1, k - 2 * p)        # the padded input must hold one window
    size = smallest + draw(st.integers(0, 4))  # odd and even sizes both occur
    return k, s, p, size


@st.composite
def conv_cases(draw, kernel_max=5):
    """A Conv2d configuration: batch 1-3, channels 1-3, kernel 1-5, stride 1-3, padding 0-2."""
    kh, sh, ph, h = draw(_side(kernel_max, pool=False))
    kw, sw, pw, w = draw(_side(kernel_max, pool=False))
    return WindowCase(x_shape=(draw(batch_sizes), draw(channels), h, w), kernel_size=(kh, kw),
                      stride=(sh, sw), padding=(ph, pw), out_channels=draw(channels), bias=draw(st.booleans()))


@st.composite
def pool_cases(draw, kernel_max=4):
    """A MaxPool2d configuration: padding at most half the kernel, as PyTorch requires."""
    kh, sh, ph, h = draw(_side(kernel_max, pool=True))
    kw, sw, pw, w = draw(_side(kernel_max, pool=True))
    return WindowCase(x_shape=(draw(batch_sizes), draw(channels), h, w), kernel_size=(kh, kw),
                      stride=(sh, sw), padding=(ph, pw))


def normal(seed, shape, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def away_from_zero(seed, shape, dtype=np.float64, gap=1e-2):
    """Values with ``gap <= |x| <= 2``, either sign: no ReLU kink within reach of a finite difference."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(gap, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)


def distinct(seed, shape, dtype=np.float64, spacing=1e-2):
    """A random permutation of evenly spaced values, centred on 0: no two elements tie."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return ((rng.permutation(n) - (n - 1) / 2) * spacing).reshape(shape).astype(dtype)


def fused_lines() -> list:
    """What the command line says it fused in MnistCNN on the active backend (nothing on numpy)."""
    if minicnn.get_backend().name != "numba":
        return []
    return ["Fused for the numba backend: conv1 -> relu1 -> pool1 as ConvReLUMaxPool2d, conv2 -> relu2 -> pool2 "
            "as ConvReLUMaxPool2d; --no-fuse runs the layers one by one"]


@contextmanager
def using(name):
    """``name`` as the active backend inside the block; the previous one restored after."""
    previous = minicnn.get_backend()
    try:
        yield minicnn.set_backend(name)
    finally:
        minicnn.set_backend(previous.name)


def training_step(model, optimizer, backend, x, y):
    """One NLL training step of ``model`` on host arrays ``x``, ``y`` copied to ``backend``'s device."""
    loss_fn = minicnn.nn.NLLLoss()
    loss_fn(model(backend.asarray(x)), backend.asarray(y))
    model.backward(loss_fn.backward())
    optimizer.step()
    optimizer.zero_grad()


def write_zip(path, members: dict):
    """An .npz archive at ``path`` whose member ``NAME.npy`` holds the bytes ``members[NAME]``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return path


def write_idx(path, array):
    """An IDX file of unsigned bytes (magic 0x08, then the dimensions, big-endian), as MNIST's."""
    path.write_bytes(bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(np.uint8).tobytes())


def tiny_mnist(folder, seed=0, train=20, test=20):
    """An MNIST-layout ``folder`` (made here) of ``train`` training and ``test`` test images of noise, labels
    0-9 in turn, different for each seed: a run on it trains and evaluates in well under a second."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for (images, labels), count in ((("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), train),
                                    (("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), test)):
        write_idx(folder / images, rng.integers(0, 256, (count, 28, 28)))
        write_idx(folder / labels, np.arange(count) % 10)
    return folder


def run_notebook(path):
    """Run the notebook at ``path`` top to bottom in a fresh kernel, in its own folder; return its code cells'
    outputs, after checking that none is an error.  Skips the test where the notebook extra is missing."""
    import pytest

    why = "the notebook extra is not installed (pip install -e '.[notebook]')"
    nbformat = pytest.importorskip("nbformat", reason=why)
    nbclient = pytest.importorskip("nbclient", reason=why)
    pytest.importorskip("ipykernel", reason=why)
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    return outputs
