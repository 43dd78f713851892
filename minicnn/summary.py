"""A Keras-style table of a model's layers, output shapes and parameter counts.

    >>> print(summary(MnistCNN()))                       # doctest: +SKIP
    Model: MnistCNN    input (None, 1, 28, 28)
    ________________________________________________________________________
     Layer (type)                 Output Shape                  Param #
    ========================================================================
     conv1 (Conv2d)               (None, 32, 28, 28)            320
     relu1 (ReLU)                 (None, 32, 28, 28)            0
     ...
    ========================================================================
    Total params: 421,642 (1.61 MB)
    ...

How the output shapes are found: every leaf module (one without children)
has its ``forward`` wrapped, for the length of one call, by a small function
that notes the shape of what it returns (PyTorch calls this a *forward hook*).
Then a batch of zeros goes through the whole model in eval mode, so BatchNorm
uses (and does not change) its running statistics and Dropout does nothing.
This works for any model, Sequential or not; a leaf the forward pass never
calls shows ``-`` as its shape, and a leaf called several times shows the
shape of its first call.

Counting: a layer's ``Param #`` is the number of values in its own
Parameters (a Conv2d(1, 32, 3): 32*1*3*3 weights + 32 biases = 320).
Every Parameter is trained by the optimizers, so *Non-trainable params*
counts only Parameters whose ``requires_grad`` is set to False (minicnn's
own layers set none). BatchNorm's running mean and variance are *buffers*:
saved in the state dict, changed by forward passes, never by the optimizer,
and reported on their own line rather than as parameters.
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module, get_backend
from minicnn.validate import is_positive_int
from minicnn.nn.grad_mode import no_grad
from minicnn.nn.module import Module

__all__ = ["parameter_counts", "summary", "summary_rows"]


def _own_param_count(module: Module) -> tuple[int, int]:
    """(all, trainable) values in the Parameters that ``module`` itself holds."""
    total = trainable = 0
    for p in module._parameters.values():
        total += p.size
        if getattr(p, "requires_grad", True):
            trainable += p.size
    return total, trainable


def parameter_counts(model: Module) -> dict:
    """Totals for ``model``: parameters (all, trainable, non-trainable), buffers and bytes."""
    total = trainable = 0
    for m in model.modules():
        t, tr = _own_param_count(m)
        total, trainable = total + t, trainable + tr
    params = list(model.parameters())
    buffers = [b for _, b in model.named_buffers()]
    return {
        "total": total,
        "trainable": trainable,
        "non_trainable": total - trainable,
        "buffers": int(sum(int(np.prod(b.shape)) for b in buffers)),
        "param_bytes": int(sum(p.data.nbytes for p in params)),
        "buffer_bytes": int(sum(b.nbytes for b in buffers)),
    }


def _zero_batch(model: Module, shape):
    """Zeros of ``shape`` in the dtype of the model's first parameter, on its device."""
    first = next(model.parameters(), None)
    if first is None:
        return get_backend().asarray(np.zeros(shape, dtype=np.float32))
    xp = get_array_module(first.data)
    return xp.zeros(shape, dtype=first.dtype)


def summary_rows(model: Module, input_shape=(1, 28, 28), batch_size=None) -> list[dict]:
    """One dict per leaf layer, in registration order.

    Keys: ``name`` (dotted, as in ``state_dict``), ``type`` (class name),
    ``output_shape`` (a tuple whose first entry is ``batch_size``, ``None``
    when not given; ``None`` when the layer was not called), ``params`` and
    ``trainable_params`` (ints). A module that has children *and* parameters
    of its own also gets a row, so the rows always add up to the total.
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary expects a minicnn Module, got {type(model).__name__}")
    if not isinstance(input_shape, (tuple, list)) or not input_shape or not all(map(is_positive_int, input_shape)):
        raise ValueError(f"summary: input_shape must be a tuple of positive ints, one sample's shape such as "
                         f"(1, 28, 28), got {input_shape!r}")
    input_shape = tuple(int(d) for d in input_shape)
    if batch_size is not None and not is_positive_int(batch_size):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    layers = [(name, m) for name, m in model.named_modules()
              if m is not model and (not m._modules or m._parameters)]
    if not layers:  # a bare layer, summarised on its own
        layers = [(type(model).__name__.lower(), model)]

    shapes: dict[int, tuple] = {}

    def recording(module, forward):
        def forward_and_record(*inputs):
            out = forward(*inputs)
            shapes.setdefault(id(module), tuple(out.shape))
            return out
        return forward_and_record

    # Wrap each leaf's forward (an instance attribute shadows the class method),
    # run one batch of zeros in eval mode under no_grad, then remove the wrappers
    # and restore the mode and what the last real forward kept for backward (the layers'
    # caches, which no_grad clears), so a summary between a forward and its backward changes nothing.
    was_training = model.training
    kept = {m: m._cache for m in model.modules()}
    model.eval()
    for _, m in layers:
        object.__setattr__(m, "forward", recording(m, m.forward))
    try:
        with no_grad():
            model(_zero_batch(model, (batch_size or 1,) + input_shape))
    except Exception as exc:
        raise ValueError(f"summary: a batch of shape {(batch_size or 1,) + input_shape} does not go "
                         f"through {type(model).__name__}: {exc}") from exc
    finally:
        for _, m in layers:
            m.__dict__.pop("forward", None)
        for m, cache in kept.items():
            object.__setattr__(m, "_cache", cache)
        model.train(was_training)

    rows = []
    for name, m in layers:
        shape = shapes.get(id(m))
        if shape is not None:
            shape = (batch_size,) + shape[1:]
        total, trainable = _own_param_count(m)
        rows.append({"name": name, "type": type(m).__name__, "output_shape": shape,
                     "params": total, "trainable_params": trainable})
    return rows


def _shape_text(shape) -> str:
    if shape is None:
        return "-"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _size(n_bytes: int) -> str:
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.2f} MB"
    return f"{n_bytes / 2**10:.2f} KB"


def summary(model: Module, input_shape=(1, 28, 28), batch_size=None) -> str:
    """The table of :func:`summary_rows` and the totals of :func:`parameter_counts`, as text."""
    rows = summary_rows(model, input_shape, batch_size)
    counts = parameter_counts(model)
    cells = [(f"{r['name']} ({r['type']})", _shape_text(r["output_shape"]), f"{r['params']:,}")
             for r in rows]
    header = ("Layer (type)", "Output Shape", "Param #")
    w1 = max(len(header[0]), *(len(c[0]) for c in cells)) + 2
    w2 = max(len(header[1]), *(len(c[1]) for c in cells)) + 2
    w3 = max(len(header[2]), *(len(c[2]) for c in cells))
    width = 1 + w1 + w2 + w3 + 1

    def line(a, b, c):
        return f" {a:<{w1}}{b:<{w2}}{c:>{w3}}".rstrip()

    out = [f"Model: {type(model).__name__}    input {_shape_text((batch_size,) + tuple(input_shape))}",
           "_" * width, line(*header), "=" * width]
    out += [line(*c) for c in cells]
    out += ["=" * width,
            f"Total params: {counts['total']:,} ({_size(counts['param_bytes'])})",
            f"Trainable params: {counts['trainable']:,}",
            f"Non-trainable params: {counts['non_trainable']:,}"]
    if counts["buffers"]:
        out.append(f"Buffers (running statistics and counters, not trained): {counts['buffers']:,} "
                   f"({_size(counts['buffer_bytes'])})")
    out.append("_" * width)
    return "\n".join(out)
