"""The page's two questions to :mod:`minicnn.explain`: where did this cell come from, and why this digit?

    POST /explain/cell    form: image (the file /predict was sent), block ("pool1"), channel, row, col
                          -> 200 JSON from :func:`cell_answer`: the pooling window and its winner, each
                             layer between the convolution and the pool, the convolution term by term
    POST /explain/class   form: image, class (0-9; absent: the digit read)
                          -> 200 JSON from :func:`class_answer`: saliency and Grad-CAM, as pictures
                             and as numbers, and a line saying what each is
    errors                400 a field missing or out of range (a cell outside its map, a class outside 0-9,
                              no image: no digit yet), 422 an image that cannot be read: {"error": "..."}

Stateless: the page sends its image again with each question, and the server
reads it as /predict did (:func:`minicnn.web.reading.prepare`), so it keeps
nothing per user. Each answer is one forward pass of one image (and for a
class one backward pass), under the model's lock; the upload limits, the
Host and Origin checks and the time limits of :mod:`minicnn.web.server`
apply as to /predict.

Heat maps are drawn as :mod:`minicnn.web.reading` draws feature maps, on a
scale from 0 to their largest value: saliency ``magma(s / max s)``; Grad-CAM
``0.5 * input + 0.5 * jet(heat / max heat)`` over the gray input.

Docs: docs/serve.md#explaining-a-cell, docs/explain.md
"""
from __future__ import annotations

import math

import numpy as np
from flask import jsonify, request
from matplotlib import colormaps

from minicnn import explain, nn
from minicnn.backend import get_backend
from minicnn.data.transforms import MNIST_MEAN, MNIST_STD
from minicnn.nn import functional as F
from minicnn.nn.fused import conv2d_relu_maxpool2d
from minicnn.nn.fusion import describe
from minicnn.web.form import NoImage, uploaded_image
from minicnn.web.reading import _png_data_url, open_upload, prepare

__all__ = ["TOP_CHANNELS", "cell_answer", "class_answer", "register"]

TOP_CHANNELS = 4   # the input channels of a convolution shown term by term; the others by their sums
INPUT_NOTE = (f"x is the 28x28 input normalised as in training, (pixel / 255 - {MNIST_MEAN}) / {MNIST_STD}: the "
              f"black background is {-MNIST_MEAN / MNIST_STD:.3f}; \"pad\" marks the zero padding around it.")

# What computes each class of step, and the page of docs/ that explains it; any other class (a subclass
# included: it may compute something else), its own forward.
STEPS = {
    nn.Conv2d: (F.conv2d, "conv2d", "docs/convolution.md#the-definition"),
    nn.BatchNorm2d: (None, "BatchNorm2d.forward", "docs/regularisation.md#batchnorm2d"),
    nn.ReLU: (F.relu_forward, "relu_forward", "docs/layers.md#relu"),
    nn.Dropout: (None, "Dropout.forward", "docs/regularisation.md#dropout"),
    nn.MaxPool2d: (F.maxpool2d_forward, "maxpool2d_forward", "docs/layers.md#forward"),
    nn.ConvReLUMaxPool2d: (conv2d_relu_maxpool2d, "conv2d_relu_maxpool2d", "docs/backends.md#convrelumaxpool2d"),
}


class BadField(ValueError):
    """A form field missing or not what it must be (answered 400)."""


def _numbers(a) -> list:
    """An array as nested lists of floats, NaN as None (JSON has no NaN)."""
    return [_numbers(v) for v in a] if np.ndim(a) else (None if math.isnan(a) else float(a))


def _code(kind: type, x=None) -> dict:
    """Where a step of class ``kind`` is written, and which function ran it on this backend."""
    function, name, docs = STEPS.get(kind, (None, f"{kind.__name__}.forward", None))
    where = {"step": kind.__name__, "function": name, "docs": docs}
    if function is None:
        where["where"] = explain.source_lines(kind.forward)
        return where
    where["where"] = explain.source_lines(function)
    ran = get_backend().kernel(name, x)
    if ran is not function.reference:
        where["ran"] = {"backend": get_backend().name, "where": explain.source_lines(ran)}
    return where


def cell_answer(model, x, block, channel, row, col) -> dict:
    """The JSON answer for one cell: :func:`minicnn.explain.explain_cell` with every number, NaN as null."""
    cell = explain.explain_cell(model, x, block, channel, row, col)
    conv = cell.conv
    top, rest = conv.order[:TOP_CHANNELS], conv.order[TOP_CHANNELS:]
    i, j = cell.winner
    layers = dict(explain.layers_one_by_one(model))
    pool = layers[cell.block]
    # the module that computed ``served``: the fused one whose last layer is this block's pooling layer
    fused = next((m for m in model.modules() if isinstance(m, nn.ConvReLU) and m.layers[-1] is pool), None)
    kinds = [type(layers[step.layer]) for step in cell.chain] + [type(pool)]
    code = [_code(kind, x) for kind in dict.fromkeys(kinds + ([type(fused)] if fused is not None else []))]
    return {
        "block": cell.block, "channel": cell.channel, "row": cell.row, "col": cell.col,
        "value": cell.value, "served": cell.served,
        "fused": None if fused is None else describe(fused)[0],
        "pool": {"layer": cell.block, "rows": cell.rows, "cols": cell.cols, "winner": [i, j]},
        "chain": [{"layer": s.layer, "kind": s.kind, "values": _numbers(s.values), "value": float(s.values[i, j])}
                  for s in cell.chain],
        "conv": {"layer": conv.layer, "reads": conv.reads, "note": INPUT_NOTE if not conv.reads else None,
                 "channel": conv.channel, "row": conv.row, "col": conv.col,
                 "rows": conv.rows, "cols": conv.cols, "in_channels": len(conv.sums),
                 "kernel": list(conv.weights.shape[1:]), "padding": conv.padding.tolist(),
                 "terms": [{"channel": int(c), "inputs": _numbers(conv.inputs[c]), "weights": _numbers(conv.weights[c]),
                            "products": _numbers(conv.products[c]), "sum": float(conv.sums[c])} for c in top],
                 "others": [[int(c), float(conv.sums[c])] for c in rest],
                 "sum": float(conv.sums.sum()), "bias": conv.bias, "total": conv.total, "output": conv.output},
        "code": code,
    }


def _heat_picture(values: np.ndarray, colours: str, under: np.ndarray | None = None) -> str:
    """``values`` (H, W) >= 0 coloured from 0 to their largest value, blended half and half over ``under`` (gray)."""
    high = float(values.max())
    rgb = colormaps[colours](values / high if high > 0 else values)[..., :3]
    if under is not None:
        rgb = 0.5 * (under[..., None] / 255.0) + 0.5 * rgb
    return _png_data_url(np.round(rgb * 255).astype(np.uint8))


def class_answer(model, x, raw, target=None) -> dict:
    """The JSON answer for one class: :func:`minicnn.explain.explain_class`, pictures and numbers."""
    why = explain.explain_class(model, x, target)
    c, (K, H, W) = why.target, why.maps.shape
    read = int(why.scores.argmax())
    return {
        "class": c, "digit": read, "score": float(why.scores[c]), "probability": float(why.probabilities[c]),
        "layer": why.layer, "maps": K, "height": H, "width": W,
        "saliency": _heat_picture(why.saliency, "magma"), "gradcam": _heat_picture(why.heat, "jet", raw),
        "saliency_values": _numbers(why.saliency), "cam_values": _numbers(why.cam), "weights": _numbers(why.weights),
        "text": {
            "saliency": f"Saliency: |dz{c}/dx|, how much each input pixel moves the score z{c} of {c} (the output "
                        f"before LogSoftmax), from the network's own backward pass started at dz = onehot({c}); "
                        f"bright pixels matter most.",
            "gradcam": f"Grad-CAM: the {K} maps of {why.layer} ({H}x{W}), each weighted by its mean gradient "
                       f"dz{c}/dA, summed and clipped at 0, over the input: where the evidence for {c} lies."
                       + ("" if why.cam.max() > 0 else f" It is 0 everywhere: no map speaks for {c}."),
        },
        "code": {"explain_class": explain.source_lines(explain.explain_class), "docs": "docs/explain.md"},
    }


def _whole(name: str, required: bool = True) -> int | None:
    """The form field ``name`` as an int; None when absent and not ``required``."""
    text = request.form.get(name, "")
    if not text:
        if not required:
            return None
        raise BadField(f"the form field {name!r} is missing: say which {name} to explain")
    try:
        return int(text)
    except ValueError:
        raise BadField(f"{name} must be a whole number, got {text[:20]!r}") from None


NO_DIGIT = "no digit yet: draw or upload a digit first, then ask (the form field 'image' is missing)"


def register(app, model, lock, max_pixels: int) -> None:
    """Add ``/explain/cell`` and ``/explain/class`` to ``app``, running ``model`` under ``lock``."""

    def answer(question, make):
        """The image is looked for first (what came instead of it is named, as /predict names it), then the
        question's fields are read (``question()``), then the image is decoded and ``make(x, raw, *fields)``
        answered under the model's lock."""
        try:
            upload = uploaded_image(NO_DIGIT)
            fields = question()
        except (BadField, NoImage) as exc:
            return jsonify(error=str(exc)), 400
        try:
            x, raw = prepare(open_upload(upload.read(), max_pixels))
        except ValueError as exc:             # not an image, too many pixels, blank
            return jsonify(error=str(exc)), 422
        try:
            with lock:
                return jsonify(make(x, raw, *fields))
        except ValueError as exc:             # a block, cell or class out of range
            return jsonify(error=str(exc)), 400

    def cell_question():
        if not request.form.get("block"):
            raise BadField("the form field 'block' is missing: say which block's map to explain (pool1, say)")
        return [request.form["block"], *(_whole(name) for name in ("channel", "row", "col"))]

    @app.post("/explain/cell")
    def explain_a_cell():
        return answer(cell_question, lambda x, raw, *cell: cell_answer(model, x, *cell))

    @app.post("/explain/class")
    def explain_a_class():
        return answer(lambda: [_whole("class", required=False)],
                      lambda x, raw, target: class_answer(model, x, raw, target))
