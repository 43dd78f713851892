"""Why the network chose its digit, and where one number inside it came from.

Notation: x the (1, 1, 28, 28) input the network reads; z the (1, K) class
scores, the output of the layer before the final LogSoftmax (fc2's), and
z_c the score of class c. Gradients come from the layers' own ``backward``,
the pass that trains the network, seeded with dz = onehot(c).

Saliency (Simonyan, Vedaldi and Zisserman, 2013)
    g        = dz_c/dx                     (28, 28): how much each input pixel moves the score
    saliency = |g|

Grad-CAM (Selvaraju et al., 2017), on A, the last convolution's maps after
its ReLU (MnistCNN: relu2, 64 maps of 14 x 14)
    alpha_k = (1 / (H*W)) sum_ij dz_c/dA[k, i, j]      one weight per map: its mean gradient
    cam     = relu(sum_k alpha_k A[k])                 (H, W): where the evidence for c lies
    heat    = cam[i * H // 28, j * W // 28]            (28, 28): each cell covers (28/H)^2 pixels

One cell (k, r, c) of a conv block's pooled output, computed backwards:
    pool  p = max_(i, j) a[k, r*SH - PH + i, c*SW - PW + j]       the winner (i*, j*): its first maximum
    relu  a = max(y, 0)                                            (BatchNorm2d, if any, between)
    conv  y[k, R, C] = sum_(c', i, j) w[k, c', i, j] * x_pad[c', R*SH + i, C*SW + j] + b[k]
          at (R, C) = the winner's place; its input channels c' ranked by |their sums|

The layers run one by one (:func:`layers_one_by_one`: a fused ConvReLUMaxPool2d
by its own conv, relu and pool, the same Parameter objects), so that every
array between them exists; the numbers given are those arrays'. Only the
products and their sums are computed here, in float64, from the recorded
input window and the weights; the tests check that they add up to the
convolution's own output. A fused module is also run as it is, and its
output given as ``served``: what the page's model computed. As for
:func:`minicnn.plots.feature_maps`, the model is one whose forward runs its
leaf layers in order (a Sequential).

Docs: docs/explain.md
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minicnn.backend import get_array_module, get_backend, to_numpy
from minicnn.imaging import as_network_input
from minicnn.nn.activation import LogSoftmax, ReLU, Softmax
from minicnn.nn.batchnorm import BatchNorm2d
from minicnn.nn.conv import Conv2d
from minicnn.nn.dropout import Dropout
from minicnn.nn.fused import ConvReLU
from minicnn.nn.grad_mode import is_grad_enabled, no_grad
from minicnn.nn.pooling import MaxPool2d

__all__ = ["CellExplanation", "ClassExplanation", "ConvCell", "LayerWindow", "blocks", "explain_cell",
           "explain_class", "grad_cam", "layers_one_by_one", "saliency", "source_lines"]

ELEMENTWISE = (BatchNorm2d, ReLU, Dropout)   # layers between a convolution and its pooling, cell by cell


# --- running the layers one by one ------------------------------------------------------------

def _leaves(model):
    """``(name, module)`` of the modules ``model(x)`` runs, fused modules as they are."""
    return [(name, m) for name, m in model.named_modules() if not m._modules] or [("", model)]


def _unfused(name, module):
    """A fused module's own layers under their names in its Sequential; any other module, itself."""
    if not isinstance(module, ConvReLU):
        return [(name, module)]
    prefix = name.rpartition(".")[0]
    return [(f"{prefix}.{n}" if prefix else n, layer) for n, layer in zip(module.names, module.layers)]


def layers_one_by_one(model) -> list[tuple[str, object]]:
    """``(name, layer)`` for every layer ``model(x)`` runs, in order; a fused module by its own layers."""
    return [part for name, module in _leaves(model) for part in _unfused(name, module)]


def blocks(model) -> list[tuple[str, str]]:
    """``(pool, conv)`` names of each conv block: a MaxPool2d after a Conv2d, and the last Conv2d before it."""
    found, conv = [], None
    for name, layer in layers_one_by_one(model):
        if isinstance(layer, Conv2d):
            conv = name
        elif isinstance(layer, MaxPool2d) and conv is not None:
            found.append((name, conv))
            conv = None
    return found


def _input(model, image):
    x = as_network_input(image)
    if len(x) != 1:
        raise ValueError(f"an explanation is of one image, got {len(x)}")
    first = next(model.parameters(), None)
    return get_backend().asarray(x, dtype=first.dtype if first is not None else np.float32)


def _record(model, x):
    """The layers one by one on ``x``: ``{name: (layer, input, output)}`` in order; and ``served``, the
    output of each fused module run as it is, under the name of its last layer. Run it under no_grad."""
    record, served = {}, {}
    for name, module in _leaves(model):
        parts = _unfused(name, module)
        if len(parts) > 1:
            served[parts[-1][0]] = to_numpy(module(x))[0]
        for part, layer in parts:
            y = layer(x)
            record[part] = (layer, x, y)
            x = y
    return record, served


@contextmanager
def _left_as_it_was(model, layers):
    """Run ``layers`` (:func:`layers_one_by_one`) in eval mode, then leave ``model`` as the caller had it:
    each module's mode, what each one's forward saved for its backward, and the parameters' ``.grad``
    (set aside meanwhile: a backward adds into ``.grad`` in place). A training step's forward, an
    explanation, then the step's backward gives the gradients it would have given without it."""
    modules = {id(m): m for m in model.modules()} | {id(layer): layer for _, layer in layers}
    kept = [(m, m.training, m._cache) for m in modules.values()]
    grads = [(p, p.grad) for p in model.parameters()]
    for p, _ in grads:
        p.grad = None
    model.eval()
    try:
        yield
    finally:
        for m, training, cache in kept:
            object.__setattr__(m, "training", training)
            object.__setattr__(m, "_cache", cache)
        for p, g in grads:
            p.grad = g


# --- why this digit ---------------------------------------------------------------------------

@dataclass
class ClassExplanation:
    """Saliency and Grad-CAM of one class for one image (host arrays; see the module docstring)."""
    target: int                 # the class c explained
    scores: np.ndarray          # z (K,), float64: the scores before LogSoftmax
    probabilities: np.ndarray   # softmax(z) (K,)
    gradient: np.ndarray        # dz_c/dx (28, 28)
    saliency: np.ndarray        # |dz_c/dx| (28, 28)
    layer: str                  # the layer whose output A Grad-CAM weighs ("relu2")
    maps: np.ndarray            # A (K', H, W)
    weights: np.ndarray         # alpha (K',): the mean gradient of each map
    cam: np.ndarray             # relu(sum_k alpha_k A[k]) (H, W)
    heat: np.ndarray            # cam on the input's grid (28, 28), nearest cell


def _score_end(layers) -> int:
    """How many layers lead to the scores z: all but a final LogSoftmax or Softmax."""
    return len(layers) - 1 if isinstance(layers[-1][1], (LogSoftmax, Softmax)) else len(layers)


def _cam_layer(layers, end) -> int:
    """The index of the last convolution's rectified output: the last Conv2d and the element-wise layers after it."""
    convs = [i for i, (_, layer) in enumerate(layers[:end]) if isinstance(layer, Conv2d)]
    if not convs:
        raise ValueError("the model has no Conv2d: Grad-CAM weighs a convolution's feature maps")
    i = convs[-1]
    while i + 1 < end and isinstance(layers[i + 1][1], ELEMENTWISE):
        i += 1
    return i


def explain_class(model, image, target=None) -> ClassExplanation:
    """Saliency and Grad-CAM of class ``target`` (default: the class read) for one ``image``.

    ``image``: anything :func:`minicnn.imaging.as_network_input` takes for one image (a uint8 (28, 28)
    digit, a normalised (1, 28, 28) input). One forward and one backward pass of the layers one by
    one, in eval mode; the modes, what the layers' forward kept for backward and the parameters'
    ``.grad`` are left as they were, so a call between a training step's forward and backward changes nothing.
    """
    if not is_grad_enabled():
        raise RuntimeError("explain_class runs the backward pass: call it outside `with no_grad():`")
    x = _input(model, image)
    layers = layers_one_by_one(model)
    end = _score_end(layers)
    cam_at = _cam_layer(layers, end)
    with _left_as_it_was(model, layers):
        outputs, h = [], x
        for _, layer in layers[:end]:
            h = layer(h)
            outputs.append(h)
        z = to_numpy(h)[0].astype(np.float64)
        if target is None:
            target = int(z.argmax())
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < len(z):
            raise ValueError(f"class {target!r} is out of range: the network has {len(z)} classes, 0-{len(z) - 1}")
        dz = get_array_module(h).zeros_like(h)
        dz[0, int(target)] = 1
        grad = dz
        for i in range(end - 1, -1, -1):       # backward, the training pass, from dz = onehot(c)
            if i == cam_at:
                d_maps = to_numpy(grad)[0]
            grad = layers[i][1].backward(grad)
    maps = to_numpy(outputs[cam_at])[0].astype(np.float64)
    return _class_explanation(int(target), z, to_numpy(grad)[0, 0].astype(np.float64), layers[cam_at][0],
                              maps, d_maps.astype(np.float64))


def _class_explanation(target, z, gradient, layer, maps, d_maps) -> ClassExplanation:
    e = np.exp(z - z.max())
    weights = d_maps.mean(axis=(1, 2))                                     # alpha_k
    cam = np.maximum((weights[:, None, None] * maps).sum(axis=0), 0)       # relu(sum_k alpha_k A_k)
    (H, W), (IH, IW) = cam.shape, gradient.shape
    heat = cam[np.arange(IH) * H // IH][:, np.arange(IW) * W // IW]
    return ClassExplanation(target, z, e / e.sum(), gradient, np.abs(gradient), layer, maps, weights, cam, heat)


def saliency(model, image, target=None) -> np.ndarray:
    """``|dz_c/dx|`` (28, 28) of class ``target`` (default: the class read); see :func:`explain_class`."""
    return explain_class(model, image, target).saliency


def grad_cam(model, image, target=None) -> np.ndarray:
    """Grad-CAM (28, 28) of class ``target`` (default: the class read); see :func:`explain_class`."""
    return explain_class(model, image, target).heat


# --- one cell of a feature map ----------------------------------------------------------------

@dataclass
class ConvCell:
    """``y[channel, row, col] = sum(products) + bias`` of one Conv2d output, with every term."""
    layer: str
    reads: str                  # the layer whose output is its input ("pool1"); "" for the network's input x
    channel: int
    row: int
    col: int
    rows: list                  # the input rows of the window (outside the input: zero padding)
    cols: list
    inputs: np.ndarray          # (C, KH, KW) the window of the layer's recorded input, 0 in the padding
    padding: np.ndarray         # (KH, KW) True where the window is outside the input
    weights: np.ndarray         # (C, KH, KW) weight[channel]
    products: np.ndarray        # inputs * weights, float64
    sums: np.ndarray            # (C,) the products of each input channel summed
    order: np.ndarray           # the input channels by |sums|, largest first
    bias: float
    total: float                # sums.sum() + bias, float64
    output: float               # y[channel, row, col] as the network computed it


@dataclass
class LayerWindow:
    """One layer's output over the pooling window (NaN outside the map)."""
    layer: str
    kind: str
    values: np.ndarray


@dataclass
class CellExplanation:
    """Where one cell of a conv block's pooled output came from (see the module docstring)."""
    block: str                  # the pooling layer's name ("pool1")
    channel: int
    row: int
    col: int
    value: float                # the pooled value
    served: float | None        # the same cell as the model's fused module computed it (None: not fused)
    rows: list                  # the pooling window's rows and columns in the convolution's output
    cols: list
    chain: list                 # LayerWindow of the conv and each layer after it, up to the pool
    winner: tuple               # (i, j) in the window: its first maximum
    conv: ConvCell              # the convolution's output at the winner, term by term


def _window_places(index, kernel, stride, padding, size):
    places = [index * stride - padding + i for i in range(kernel)]
    return places, [0 <= p < size for p in places]


def _check_index(what, value, size, where):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < size:
        raise ValueError(f"{what} {value!r} is out of range: {where} ({what}s 0-{size - 1})")


def explain_cell(model, image, block, channel, row, col) -> CellExplanation:
    """Where cell (``channel``, ``row``, ``col``) of the pooled output of ``block`` came from, for one ``image``.

    ``block``: the pooling layer's name (``"pool1"``) or its index among :func:`blocks`. Raises
    ``ValueError`` naming the range for a block, channel, row or column out of range. One forward pass,
    in eval mode, that leaves the model as it was (as :func:`explain_class` does).
    """
    names = blocks(model)
    if isinstance(block, (int, np.integer)) and not isinstance(block, bool) and 0 <= block < len(names):
        block = names[block][0]
    conv_name = dict(names).get(block)
    if conv_name is None:
        raise ValueError(f"no block {block!r}: the blocks are {', '.join(p for p, _ in names)}")
    x = _input(model, image)
    with _left_as_it_was(model, layers_one_by_one(model)), no_grad():
        record, served = _record(model, x)
    pool, _, pooled = record[block]
    pooled = to_numpy(pooled)[0]
    C, H, W = pooled.shape
    _check_index("channel", channel, C, f"{block} has {C} feature maps")
    _check_index("row", row, H, f"{block}'s maps are {H}x{W}")
    _check_index("column", col, W, f"{block}'s maps are {H}x{W}")
    names_in_order = list(record)
    chain_names = names_in_order[names_in_order.index(conv_name):names_in_order.index(block)]
    size = to_numpy(record[chain_names[-1]][2]).shape[2:]
    (KH, KW), (SH, SW), (PH, PW) = pool.kernel_size, pool.stride, pool.padding
    rows, row_in = _window_places(row, KH, SH, PH, size[0])
    cols, col_in = _window_places(col, KW, SW, PW, size[1])
    inside = np.outer(row_in, col_in)
    chain = []
    for name in chain_names:
        layer, _, y = record[name]
        values = np.full((KH, KW), np.nan)
        y = to_numpy(y)[0, channel]
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                if inside[i, j]:
                    values[i, j] = y[r, c]
        chain.append(LayerWindow(name, type(layer).__name__, values))
    last = np.where(inside, chain[-1].values, -np.inf)           # max-pooling pads with -inf
    winner = np.unravel_index(int(np.argmax(last)), last.shape)   # argmax: its first maximum, as the pool's
    value = float(pooled[channel, row, col])
    fused = served.get(block)
    return CellExplanation(block, int(channel), int(row), int(col), value,
                           None if fused is None else float(fused[channel, row, col]), rows, cols, chain,
                           (int(winner[0]), int(winner[1])),
                           _conv_cell(conv_name, record, int(channel), rows[winner[0]], cols[winner[1]]))


def _conv_cell(name, record, k, R, C) -> ConvCell:
    order = list(record)
    reads = order[order.index(name) - 1] if order.index(name) > 0 else ""
    recorded = record[name]
    conv, x, y = recorded
    x = to_numpy(x)[0]
    (KH, KW), (SH, SW), (PH, PW) = conv.kernel_size, conv.stride, conv.padding
    rows, row_in = _window_places(R, KH, SH, PH, x.shape[1])
    cols, col_in = _window_places(C, KW, SW, PW, x.shape[2])
    inside = np.outer(row_in, col_in)
    inputs = np.zeros((x.shape[0], KH, KW))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if inside[i, j]:
                inputs[:, i, j] = x[:, r, c]
    weights = to_numpy(conv.weight.data)[k].astype(np.float64)
    products = inputs * weights
    sums = products.sum(axis=(1, 2))
    bias = 0.0 if conv.bias is None else float(to_numpy(conv.bias.data)[k])
    order = np.argsort(-np.abs(sums), kind="stable")
    return ConvCell(name, reads, k, R, C, rows, cols, inputs, ~inside, weights, products, sums, order, bias,
                    float(sums.sum() + bias), float(to_numpy(y)[0, k, R, C]))


# --- where the code is ------------------------------------------------------------------------

def source_lines(function) -> str:
    """Where ``function`` is written, ``minicnn/nn/functional.py#L38-L60`` (a kernel: its reference)."""
    function = inspect.unwrap(getattr(function, "reference", function))
    lines, first = inspect.getsourcelines(function)
    path = Path(inspect.getsourcefile(function)).resolve()
    root = Path(__file__).resolve().parent.parent
    shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    return f"{shown}#L{first}-L{first + len(lines) - 1}"
