"""Pictures of training and of what a network has learned.

Every function builds a :class:`matplotlib.figure.Figure` with the Agg
(PNG) canvas attached directly, never through ``pyplot``: no window opens,
no global figure list grows, and it works on a machine without a display.
Every function returns the figure and, given ``path``, also saves it there
(format from the suffix, ``.png`` when there is none) atomically: the image
is written to a temporary file in the same folder and then renamed, so a
reader never sees half a file. Figures are drawn at :data:`DPI` dots per
inch, so a 10 x 4 inch figure is a 1000 x 400 pixel PNG.

Images may be uint8 (H, W) or (N, H, W) as loaded, or normalised float
network inputs (1, H, W) or (N, 1, H, W); each is shown with its own gray
scale, ink bright on black as the network sees it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from minicnn.backend import get_backend, to_numpy
from minicnn.explain import explain_class
from minicnn.imaging import as_network_input
from minicnn.nn.conv import Conv2d
from minicnn.nn.fused import ConvReLU, ConvReLUMaxPool2d
from minicnn.nn.grad_mode import no_grad
from minicnn.nn.module import Module
from minicnn.nn.parameter import Parameter
from minicnn.nn.pooling import MaxPool2d
from minicnn.serialization import write_atomic

__all__ = ["DPI", "feature_maps", "mosaic", "plot_confusion_matrix", "plot_explanations", "plot_feature_maps",
           "plot_filters", "plot_history", "plot_misclassified", "plot_predictions", "new_figure", "save_figure"]

DPI = 100
WRONG = "#d62728"   # red for mistakes
RIGHT = "#222222"


# --- figures and files ---------------------------------------------------------

def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` x ``height`` inches, drawn off screen, for :func:`save_figure`."""
    # Whole pixels, so that the saved PNG is exactly figsize * DPI.
    width, height = round(width * DPI) / DPI, round(height * DPI) / DPI
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def save_figure(fig: Figure, path) -> Path:
    """Write ``fig`` to ``path`` atomically (see :func:`minicnn.serialization.write_atomic`)."""
    fmt = Path(path).suffix[1:].lower() or "png"
    return write_atomic(path, lambda f: fig.savefig(f, format=fmt, dpi=DPI))


def finish_figure(fig: Figure, path) -> Figure:
    """Save ``fig`` to ``path`` (atomically) when a path is given; return it."""
    if path is not None:
        save_figure(fig, path)
    return fig


# --- images -----------------------------------------------------------------------

def _image_stack(images) -> np.ndarray:
    """(N, H, W) host array from (N, H, W), (N, 1, H, W), (H, W) or (1, H, W) input."""
    a = to_numpy(images)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 2 or (a.ndim == 3 and a.shape[0] == 1 and np.issubdtype(a.dtype, np.floating)):
        a = a.reshape((1,) + a.shape[-2:])
    if a.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (N, 1, H, W), got shape {a.shape}")
    return a


def _chosen_probability(probs, y_pred) -> np.ndarray | None:
    """The probability of each predicted class: from an (N,) vector or an (N, K) matrix."""
    if probs is None:
        return None
    p = to_numpy(probs).astype(np.float64)
    if p.ndim == 2:
        return p[np.arange(len(p)), y_pred]
    if p.ndim != 1:
        raise ValueError(f"probs must be (N,) or (N, K), got shape {p.shape}")
    return p


def _label_arrays(images, y_true, y_pred, probs):
    images = _image_stack(images)
    y_true = to_numpy(y_true).astype(np.int64).ravel()
    y_pred = to_numpy(y_pred).astype(np.int64).ravel()
    probs = _chosen_probability(probs, y_pred)
    lengths = {len(images), len(y_true), len(y_pred)} | ({len(probs)} if probs is not None else set())
    if len(lengths) != 1:
        raise ValueError(f"images, y_true, y_pred (and probs) differ in length: images {len(images)}, "
                         f"y_true {len(y_true)}, y_pred {len(y_pred)}"
                         + (f", probs {len(probs)}" if probs is not None else ""))
    return images, y_true, y_pred, probs


def _digit_grid(images, y_true, y_pred, probs, order, title) -> Figure:
    """A grid of the images at ``order``, each titled with its prediction; mistakes in red."""
    n = len(order)
    cols = min(n, 5) if n <= 25 else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = new_figure(1.55 * cols + 0.2, 1.75 * rows + 0.5)
    fig.suptitle(title, fontsize=12)
    for k, i in enumerate(order):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(images[i], cmap="gray", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        wrong = y_pred[i] != y_true[i]
        colour = WRONG if wrong else RIGHT
        confidence = f" ({probs[i]:.0%})" if probs is not None else ""
        ax.set_title(f"pred {y_pred[i]}{confidence}\ntrue {y_true[i]}", fontsize=9, color=colour,
                     fontweight="bold" if wrong else "normal")
        for spine in ax.spines.values():
            spine.set_edgecolor(colour if wrong else "#bbbbbb")
            spine.set_linewidth(3 if wrong else 0.8)
    return fig


def plot_predictions(images, y_true, y_pred, probs=None, n: int = 25, path=None) -> Figure:
    """The first ``n`` images with predicted and true labels; wrong ones titled and framed in red.

    ``probs``: the probability of each prediction, (N,), or the full (N, K)
    matrix; shown as a percentage when given.
    """
    images, y_true, y_pred, probs = _label_arrays(images, y_true, y_pred, probs)
    order = np.arange(min(n, len(images)))
    if len(order) == 0:
        raise ValueError("plot_predictions: there are no images to show")
    wrong = int((y_pred[order] != y_true[order]).sum())
    fig = _digit_grid(images, y_true, y_pred, probs, order,
                      f"Predictions: {len(order) - wrong} of {len(order)} right")
    return finish_figure(fig, path)


def _most_confident_mistakes(y_true, y_pred, probs, n: int, who: str) -> tuple[np.ndarray, np.ndarray]:
    """The indices of every mistake, and of the ``n`` the model was most sure of, most confident first."""
    if probs is None:
        raise ValueError(f"{who} needs probs to rank the mistakes by confidence")
    wrong = np.flatnonzero(y_pred != y_true)
    return wrong, wrong[np.argsort(-probs[wrong], kind="stable")][:n]


def _no_mistakes(text: str, path) -> Figure:
    """A small figure that says there is nothing to show."""
    fig = new_figure(4, 2)
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
    return finish_figure(fig, path)


def plot_misclassified(images, y_true, y_pred, probs, n: int = 25, path=None) -> Figure:
    """The ``n`` mistakes the model was most sure of, most confident first.

    ``probs`` as in :func:`plot_predictions` (required: it orders the mistakes).
    """
    images, y_true, y_pred, probs = _label_arrays(images, y_true, y_pred, probs)
    wrong, order = _most_confident_mistakes(y_true, y_pred, probs, n, "plot_misclassified")
    if len(order) == 0:
        return _no_mistakes(f"No misclassified images\n(all {len(images)} right)", path)
    fig = _digit_grid(images, y_true, y_pred, probs, order,
                      f"The {len(order)} most confident of {len(wrong)} mistakes "
                      f"({len(wrong) / len(images):.2%} of {len(images)} images)")
    return finish_figure(fig, path)


# --- training curves and the confusion matrix ------------------------------------------

def _columns(history) -> dict:
    """The history as a dict of equally long lists, one value per epoch."""
    if hasattr(history, "to_dict"):
        history = history.to_dict()
    elif isinstance(history, (list, tuple)):
        keys = list(dict.fromkeys(k for r in history for k in r))
        history = {k: [r.get(k) for r in history] for k in keys}
    if not isinstance(history, dict) or not any(len(v) for v in history.values()):
        raise ValueError("plot_history needs a History, a dict of columns or a list of epoch "
                         "records, with at least one epoch")
    history = {k: list(v) for k, v in history.items()}  # lists, also from NumPy arrays
    lengths = {len(v) for v in history.values()}
    if len(lengths) > 1:
        found = ", ".join(f"{k} {len(v)}" for k, v in history.items())
        raise ValueError(f"plot_history needs columns of one length (one value per epoch), "
                         f"found lengths {found}")
    return history


def plot_history(history, path=None) -> Figure:
    """Loss (left) and accuracy (right) per epoch, training and, when present, validation.

    ``history``: a :class:`minicnn.training.History`, its ``to_dict()``
    columns (lists or NumPy arrays of one length), or a list of per-epoch
    records. The best validation accuracy is marked.
    """
    cols = _columns(history)
    n = len(next(iter(cols.values())))
    epochs = cols.get("epoch") or list(range(1, n + 1))
    fig = new_figure(10, 4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    marker = "o" if n <= 30 else None
    for ax, metric, label in ((loss_ax, "loss", "Loss"), (acc_ax, "accuracy", "Accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            values = cols.get(f"{split}_{metric}")
            if values is None or all(v is None for v in values):
                continue
            y = [np.nan if v is None else float(v) for v in values]
            ax.plot(epochs, y, style, marker=marker, markersize=4,
                    label="training" if split == "train" else "validation")
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=1))
    val_acc = cols.get("val_accuracy")
    if val_acc and any(v is not None for v in val_acc):
        best = int(np.nanargmax([np.nan if v is None else v for v in val_acc]))
        acc_ax.plot(epochs[best], val_acc[best], "*", color="0.2", markersize=12, zorder=3,
                    label=f"best validation {val_acc[best]:.2%} (epoch {epochs[best]})")
    for ax in (loss_ax, acc_ax):
        if ax.lines:
            ax.legend(loc="best")
    return finish_figure(fig, path)


def _percent(fraction: float) -> str:
    """0 -> "0", 0.004 -> "0.4%", 0.987 -> "99%": small shares keep a digit, exact zeros stand out."""
    if fraction == 0:
        return "0"
    return f"{fraction:.0%}" if fraction >= 0.095 else f"{fraction:.1%}"


def plot_confusion_matrix(cm, class_names=None, normalize: bool = False, path=None) -> Figure:
    """The confusion matrix as an annotated heat map: rows the true class, columns the prediction.

    ``normalize=True`` divides each row by its total, so a cell reads "the
    fraction of class i predicted as j", shown in percent, and the diagonal
    holds each class's recall (a class with no samples keeps a row of zeros).
    Otherwise the cells show counts as integers, and a matrix with fractions
    (normalised already) with two decimals.
    """
    cm = to_numpy(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (K, K) matrix, got shape {cm.shape}")
    K = cm.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(K))]
    if len(names) != K:
        raise ValueError(f"{len(names)} class names for a {K} x {K} matrix")
    if normalize:
        totals = cm.sum(axis=1, keepdims=True).astype(np.float64)
        values = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals != 0)
    else:
        values = cm
    counts = bool(np.all(values == np.round(values)))  # whole numbers, also in a float matrix
    side = max(4.5, 0.55 * K + 2.5)
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(values.max(), 1))
    colourbar = fig.colorbar(image, ax=ax, shrink=0.85)
    colourbar.set_label("fraction of the true class" if normalize else "images" if counts else "value")
    if max(map(len, names)) > 2:  # long names slant, anchored at their end under the column
        ax.set_xticks(range(K), names, rotation=40, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticks(range(K), names)
    ax.set_yticks(range(K), names)
    ax.set_xlabel("predicted", fontsize=11)
    ax.set_ylabel("true", fontsize=11)
    ax.set_title("Confusion matrix" + (" (rows normalised)" if normalize else ""))
    if K <= 30:
        fontsize = 9 if K <= 12 else 7
        bright = 0.5 * (1 if normalize else values.max())
        for i in range(K):
            for j in range(K):
                v = values[i, j]
                text = _percent(v) if normalize else f"{int(v):d}" if counts else f"{v:.2f}"
                colour = "white" if v > bright else ("0.55" if v == 0 else "black")
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour)
    return finish_figure(fig, path)


# --- inside the network ---------------------------------------------------------------------

def _first_conv_weight(model_or_weights) -> tuple[np.ndarray, str]:
    if isinstance(model_or_weights, Module):
        for name, m in model_or_weights.named_modules():
            if isinstance(m, (Conv2d, ConvReLU)):  # a fused module holds its convolution's weight
                return to_numpy(m.weight.data), name or "conv"
        raise ValueError(f"{type(model_or_weights).__name__} has no Conv2d layer")
    if isinstance(model_or_weights, Parameter):
        model_or_weights = model_or_weights.data
    return to_numpy(model_or_weights), "conv"


def plot_filters(model_or_weights, path=None) -> Figure:
    """The first convolution's filters, one small image each, on one shared colour scale.

    ``model_or_weights``: a model (its first Conv2d, ``conv1``), a
    Parameter or an array of shape (OC, C, KH, KW). Red is a positive
    weight, blue a negative one, white 0; for C > 1 input channel 0 is shown.
    """
    w, name = _first_conv_weight(model_or_weights)
    if w.ndim != 4:
        raise ValueError(f"conv weights must be (OC, C, KH, KW), got shape {w.shape}")
    OC, C, KH, KW = w.shape
    w = w[:, 0].astype(np.float64)
    limit = float(np.abs(w).max()) or 1.0
    cols = min(OC, 8)
    rows = math.ceil(OC / cols)
    fig = new_figure(1.1 * cols + 1.3, 1.2 * rows + 0.6)
    channel = "" if C == 1 else ", input channel 0"
    fig.suptitle(f"{name}: {OC} filters of {KH}x{KW}{channel}", fontsize=12)
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= OC:
            ax.set_visible(False)
            continue
        image = ax.imshow(w[k], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(str(k), fontsize=8, pad=2)
    fig.colorbar(image, ax=axes, shrink=0.8, label="weight")
    return finish_figure(fig, path)


def _leaf_layers(model: Module) -> list[tuple[str, Module]]:
    leaves = [(name, m) for name, m in model.named_modules() if not m._modules]
    return leaves or [("", model)]


def mosaic(maps: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """(C, H, W) maps tiled ``cols`` to a row into one 2-D array, ``gap`` pixels of NaN between them
    and NaN after the last (a colormap draws NaN transparent, or in its "bad" colour)."""
    C, H, W = maps.shape
    rows = math.ceil(C / cols)
    out = np.full((rows * (H + gap) - gap, cols * (W + gap) - gap), np.nan)
    for k in range(C):
        r, c = divmod(k, cols)
        out[r * (H + gap):r * (H + gap) + H, c * (W + gap):c * (W + gap) + W] = maps[k]
    return out


def feature_maps(model: Module, image) -> list[tuple[str, np.ndarray]]:
    """What one image looks like inside the network: ``(name, maps)`` at the end of each conv block.

    The model's leaf layers are run one by one in registration order (the
    order a Sequential applies them; a model whose forward does something
    else is not supported), in eval mode, under :func:`minicnn.no_grad`. The
    output of every MaxPool2d that follows a Conv2d, the end of a conv block,
    is kept: ``name`` is that pooling layer's, ``maps`` its (C, H, W) host array (a fused
    Conv2d -> ReLU -> MaxPool2d module is a whole block, named by its pool).
    ``image``: uint8 (H, W) or a normalised float (1, H, W).
    """
    x = as_network_input(image)
    if len(x) != 1:
        raise ValueError(f"feature maps are drawn for one image, got {len(x)}")
    first = next(model.parameters(), None)
    x = get_backend().asarray(x, dtype=first.dtype if first is not None else np.float32)
    stages, conv_seen = [], False
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for name, layer in _leaf_layers(model):
                x = layer(x)
                if isinstance(layer, ConvReLUMaxPool2d):  # a whole conv block, named by its pool
                    stages.append((layer.names[-1], to_numpy(x)[0]))
                elif isinstance(layer, (Conv2d, ConvReLU)):
                    conv_seen = True
                elif isinstance(layer, MaxPool2d) and conv_seen:
                    stages.append((name, to_numpy(x)[0]))
                    conv_seen = False
    finally:
        model.train(was_training)
    if not stages:
        raise ValueError(f"{type(model).__name__} has no MaxPool2d after a Conv2d: no conv block "
                         f"to show")
    return stages


def plot_feature_maps(model: Module, image, max_maps: int = 64, path=None) -> Figure:
    """What one image looks like inside the network, after each convolution block.

    The blocks' outputs come from :func:`feature_maps`: each channel is one
    small image, bright where that channel's filter found its pattern (one
    colour scale per block, so channels can be compared).
    ``image``: uint8 (H, W) or a normalised float (1, H, W).
    """
    if not isinstance(max_maps, (int, np.integer)) or max_maps < 1:
        raise ValueError(f"max_maps must be a positive int, got {max_maps!r}")
    stages = feature_maps(model, image)

    # Each block's maps are tiled into one mosaic (one Axes, one colour scale, so
    # bright means strong compared with the block's other channels); NaN gaps separate the tiles.
    cols, width = 16, 11.0
    mosaics = [mosaic(maps[:max_maps], cols) for _, maps in stages]
    heights = [1.8] + [width * m.shape[0] / m.shape[1] + 0.5 for m in mosaics]
    fig = new_figure(width + 0.9, sum(heights))
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    ax = fig.add_subplot(grid[0])
    ax.imshow(_image_stack(image)[0], cmap="gray", interpolation="nearest")
    ax.set_axis_off()
    ax.set_title("input", fontsize=10)
    colours = colormaps["viridis"].with_extremes(bad="white")
    for k, ((name, maps), tiled) in enumerate(zip(stages, mosaics), start=1):
        C, H, W = maps.shape
        shown = f"the first {max_maps} of {C}" if C > max_maps else f"{C}"
        ax = fig.add_subplot(grid[k])
        low, high = min(0.0, float(maps.min())), max(float(maps.max()), 1e-12)
        picture = ax.imshow(tiled, cmap=colours, vmin=low, vmax=high, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"after {name}: {shown} feature maps of {H}x{W}", fontsize=10)
        fig.colorbar(picture, ax=ax, shrink=0.9, aspect=12, pad=0.01)
    return finish_figure(fig, path)


def plot_explanations(model: Module, images, y_true, y_pred, probs, n: int = 6, path=None) -> Figure:
    """Why the model made its ``n`` most confident mistakes: one row each, most confident first.

    Each row: the image; the saliency ``|dz_c/dx|`` of the class read; Grad-CAM of the class read and
    of the true class over the image (each on its own scale, 0 to its largest value), from
    :func:`minicnn.explain.explain_class`, the model's own backward pass. ``images`` as the network
    takes them (uint8 (N, 28, 28) or normalised), ``probs`` as in :func:`plot_misclassified`.
    """
    shown, y_true, y_pred, probs = _label_arrays(images, y_true, y_pred, probs)
    wrong, order = _most_confident_mistakes(y_true, y_pred, probs, n, "plot_explanations")
    if len(order) == 0:
        return _no_mistakes(f"No mistakes to explain\n(all {len(shown)} right)", path)
    network_input = as_network_input(to_numpy(images)[order])
    fig = new_figure(7.2, 1.75 * len(order) + 0.7)
    fig.suptitle(f"Why: the {len(order)} most confident of {len(wrong)} mistakes", fontsize=12)
    axes = fig.subplots(len(order), 4, squeeze=False)
    for row, (i, x) in enumerate(zip(order, network_input)):
        read, true = explain_class(model, x, int(y_pred[i])), explain_class(model, x, int(y_true[i]))
        ax = axes[row, 0]
        ax.imshow(shown[i], cmap="gray", interpolation="nearest")
        ax.set_title(f"read {y_pred[i]} ({probs[i]:.0%}), true {y_true[i]}", fontsize=8.5, color=WRONG)
        for ax, heat, over, title in ((axes[row, 1], read.saliency, False, f"saliency of {y_pred[i]}"),
                                      (axes[row, 2], read.heat, True, f"Grad-CAM of {y_pred[i]}"),
                                      (axes[row, 3], true.heat, True, f"Grad-CAM of {y_true[i]}")):
            if over:   # Grad-CAM over the image, half seen through
                ax.imshow(shown[i], cmap="gray", interpolation="nearest")
            ax.imshow(heat, cmap="jet" if over else "magma", vmin=0, vmax=max(float(heat.max()), 1e-12),
                      alpha=0.55 if over else None, interpolation="nearest")
            ax.set_title(title if heat.max() > 0 else f"{title}: 0", fontsize=8.5)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    return finish_figure(fig, path)
