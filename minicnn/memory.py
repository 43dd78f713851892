"""Will a training step fit in this machine's memory?  An estimate, checked before anything is allocated.

``minicnn tune --filters 100000`` used to end in a MemoryError traceback, and
``minicnn train --batch-size 100000`` on the full set was killed by the
kernel without a word.  :func:`check_fits` refuses such sizes first, with one
line that gives the estimate and what the machine has.

The estimate (:func:`step_bytes`) is an upper bound, in bytes, of one
training step of a network of :mod:`minicnn.models` (shapes as in that
module's docstring), for a batch of N images of 1x28x28 and ``itemsize``
bytes per number (4: float32):

    itemsize * (4 * P  +  N * (kept + 2 * largest))

* ``4 * P``: the P parameters, their gradients and the optimizer's state,
  counted as Adam's two moments (SGD and RMSprop keep less).
* ``kept``: per image, the arrays the forward pass keeps for backward: the
  input, every layer's output, each convolution's im2col columns
  (C*KH*KW x OH*OW, the largest by far), each max pooling's input-sized
  argmax mask, each dropout's mask, each batch norm's normalised input.
* ``2 * largest``: per image, the backward pass's transient arrays: the
  gradient flowing back and a column gradient, each at most the largest
  kept array.

For MnistCNN(filters=f, units=u), f >= 4, that is ``kept + 2 * largest =
7,860 + 9,114 f + 2 u`` numbers per image (1.2 MB at f=32, u=128 in float32:
84 MB with the parameters' 6.7 MB for a batch of 64, 72 GB for the 60,000
images in one batch) and ``P = 18 f**2 + 12 f + 98 f u + 11 u + 10``
(421,642 at f=32, u=128; 1.8e11 at f=100,000, 720 GB before any image).

What the machine has (:func:`available_bytes`) is ``MemAvailable`` of
/proc/meminfo (the memory that can be given to a new allocation without
swapping), or, where there is no /proc, the physical memory
(``SC_PHYS_PAGES * SC_PAGE_SIZE``).
"""
from __future__ import annotations

import os

#: The layers of each model, as the shape walk of :func:`_walk` reads them:
#: ("conv", out_channels, kernel, padding), ("pool", 2), ("bn",), ("drop",), ("relu",), ("fc", units).
#: ``"F"`` and ``"U"`` stand for the ``filters`` and ``units`` of MnistCNN; 2F is ("conv", "2F", ...).
_LAYERS = {
    "MnistCNN": [("conv", "F", 3, 1), ("relu",), ("pool", 2), ("conv", "2F", 3, 1), ("relu",), ("pool", 2),
                 ("flatten",), ("fc", "U"), ("relu",), ("fc", 10), ("logsoftmax",)],
    "MnistBNCNN": [("conv", 32, 3, 1), ("bn",), ("relu",), ("pool", 2), ("drop",),
                   ("conv", 64, 3, 1), ("bn",), ("relu",), ("pool", 2), ("drop",),
                   ("flatten",), ("fc", 128), ("relu",), ("fc", 10), ("logsoftmax",)],
    "MnistDeepCNN": [("rescale",), ("conv", 32, 5, 2), ("relu",), ("conv", 32, 5, 2), ("relu",), ("pool", 2),
                     ("drop",), ("conv", 64, 3, 1), ("relu",), ("conv", 64, 3, 1), ("relu",), ("pool", 2),
                     ("drop",), ("flatten",), ("fc", 256), ("relu",), ("drop",), ("fc", 10), ("logsoftmax",)],
}


def _size(value, filters: int, units: int) -> int:
    return {"F": filters, "2F": 2 * filters, "U": units}.get(value, value)


def _walk(model_name: str, filters: int, units: int) -> tuple[int, int, int]:
    """(parameters, numbers kept per image, largest kept array per image) of ``model_name``."""
    key = next((k for k in _LAYERS if k.lower() == str(model_name).lower()), None)
    if key is None:
        raise ValueError(f"unknown model {model_name!r}; choose one of {', '.join(_LAYERS)}")
    c, h, w = 1, 28, 28
    params, kept, largest = 0, c * h * w, c * h * w
    for layer in _LAYERS[key]:
        kind = layer[0]
        size = c * h * w
        arrays = []
        if kind == "conv":
            oc, k, pad = _size(layer[1], filters, units), layer[2], layer[3]
            params += oc * c * k * k + oc
            h, w = h + 2 * pad - k + 1, w + 2 * pad - k + 1
            arrays = [c * k * k * h * w, oc * h * w]  # im2col columns, output
            c = oc
        elif kind == "pool":
            h, w = h // layer[1], w // layer[1]
            arrays = [size, c * h * w]  # argmax mask of the input's size, output
        elif kind == "bn":
            params += 2 * c
            arrays = [size, size]  # normalised input, output
        elif kind == "drop":
            arrays = [size, size]  # mask, output
        elif kind == "fc":
            units_out = _size(layer[1], filters, units)
            params += size * units_out + units_out
            c, h, w = units_out, 1, 1
            arrays = [units_out]
        elif kind in ("relu", "rescale", "logsoftmax"):
            arrays = [size]
        kept += sum(arrays)
        largest = max([largest, *arrays])
    return params, kept, largest


def step_bytes(model_name: str, batch_size: int, *, filters: int = 32, units: int = 128, itemsize: int = 4) -> int:
    """The upper bound of one training step's memory in bytes (the formula of the module docstring).

    ``filters`` and ``units`` are MnistCNN's (the other models have fixed sizes and ignore them)."""
    params, kept, largest = _walk(model_name, filters, units)
    return itemsize * (4 * params + batch_size * (kept + 2 * largest))


def available_bytes() -> int:
    """The memory a new allocation can have: /proc/meminfo's MemAvailable, else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


def check_fits(model_name: str, batch_size: int, *, filters: int = 32, units: int = 128, itemsize: int = 4,
               extra_bytes: int = 0) -> int:
    """Raise ``ValueError`` with a one-line message when a training step of ``model_name`` at
    ``batch_size`` (plus ``extra_bytes`` the caller will hold besides, e.g. the data set) needs more
    memory than :func:`available_bytes`; return the estimate otherwise."""
    need = step_bytes(model_name, batch_size, filters=filters, units=units, itemsize=itemsize) + extra_bytes
    have = available_bytes()
    if need > have:
        sizes = f"filters {filters}, units {units}, " if str(model_name).lower() == "mnistcnn" else ""
        raise ValueError(f"a training step of {model_name} ({sizes}batch {batch_size:,}) needs about {_gb(need)} "
                         f"(parameters, gradients, Adam's state and the activations kept for backward), "
                         f"more than the {_gb(have)} this machine has available")
    return need
