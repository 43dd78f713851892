"""Pictures of the kernels, drawn from what the reference kernels return on small inputs.

im2col    col[(c, i, j), (u, v)] = x_pad[c, u*SH + i, v*SW + j]: every window becomes a column
col2im    its adjoint: dx[c, h, w] = sum of the col entries copied from pixel (h, w), so
          col2im(ones) counts the windows that contain each pixel; offset (i, j) adds its
          row of col onto the slice x_pad[:, :, i:i+SH*OH:SH, j:j+SW*OW:SW]
max-pool  y[u, v] = max of window (u, v); dx = dy routed to each window's argmax (the first
          maximum on ties), summed where overlapping windows share a winner

Each ``*_example`` function runs the kernels and returns the arrays; each ``plot_*`` draws
one example from those arrays alone, so a picture shows exactly what the code computes.
``docs/figures.py`` saves them to ``docs/images/``; ``examples/walkthrough.ipynb`` shows them too.

Docs: docs/convolution.md#im2col-a-convolution-is-one-matrix-product, docs/layers.md#a-tie-and-overlapping-windows-worked
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields

import numpy as np
from matplotlib import colormaps
from matplotlib.patches import Rectangle

from minicnn.backend.numpy_kernels import col2im, im2col, maxpool2d_backward, maxpool2d_forward, output_size
from minicnn.plots import new_figure, save_figure

#: One colour per highlighted window (the tab10 colours of matplotlib).
_COLOURS = [colormaps["tab10"](k) for k in (0, 1, 2, 3, 4)]
_PLAIN, _FAINT = (1.0, 1.0, 1.0, 1.0), (0.93, 0.93, 0.93, 1.0)


def _tint(colour, alpha: float = 0.35):
    """``colour`` mixed with white: a cell background that keeps black text readable."""
    r, g, b, _ = colour
    return (1 - alpha + alpha * r, 1 - alpha + alpha * g, 1 - alpha + alpha * b, 1.0)


@dataclass(frozen=True)
class Example:
    """Arrays computed by the kernels for one picture, and a digest of them (see :meth:`digest`)."""

    def digest(self) -> str:
        """SHA-256 of every field (arrays by dtype, shape and bytes): it changes when the kernels' output does."""
        h = hashlib.sha256()
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                h.update(f"{f.name}:{value.dtype.str}:{value.shape}:".encode())
                h.update(np.ascontiguousarray(value).tobytes())
            else:
                h.update(f"{f.name}:{value!r};".encode())
        return h.hexdigest()


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig


# --- drawing a grid of numbers ---------------------------------------------------

def _number_grid(ax, values, colours=None, fmt="{:g}", title=None, fontsize=9):
    """``values`` (R, C) as a table of cells with their numbers; ``colours`` (R, C) RGBA cell backgrounds."""
    R, C = values.shape
    rgba = np.empty((R, C, 4))
    rgba[:] = _PLAIN if colours is None else np.asarray(colours, dtype=float)
    ax.imshow(rgba, interpolation="nearest", aspect="equal")
    for r in range(R):
        for c in range(C):
            v = values[r, c]
            text = "-inf" if np.isneginf(v) else fmt.format(v)
            ax.text(c, r, text, ha="center", va="center", fontsize=fontsize)
    ax.set_xticks(np.arange(-0.5, C, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, R, 1), minor=True)
    ax.grid(which="minor", color="0.55", linewidth=0.6)
    ax.tick_params(which="both", length=0, labelsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def _outline(ax, top, left, height, width, colour, inset=0.0, linewidth=2.5):
    """A coloured frame around the cells [top, top+height) x [left, left+width)."""
    ax.add_patch(Rectangle((left - 0.5 + inset, top - 0.5 + inset), width - 2 * inset, height - 2 * inset,
                           fill=False, edgecolor=colour, linewidth=linewidth))


# --- im2col ---------------------------------------------------------------------

@dataclass(frozen=True)
class Im2colExample(Example):
    x: np.ndarray          # (H, W), one image of one channel: the pixels numbered 1, 2, ...
    col: np.ndarray        # (KH*KW, OH*OW), im2col(x)[0]
    kernel: int
    stride: int


def im2col_example(size: int = 4, kernel: int = 2, stride: int = 1) -> Im2colExample:
    """A ``size`` x ``size`` image numbered 1, 2, ... row by row, unfolded by :func:`im2col`."""
    x = np.arange(1.0, size * size + 1).reshape(1, 1, size, size)
    col = im2col(x, (kernel, kernel), (stride, stride), (0, 0))[0]
    return Im2colExample(x=x[0, 0], col=np.ascontiguousarray(col), kernel=kernel, stride=stride)


def plot_im2col(example: Im2colExample | None = None, highlight=(0, 1, -1), path=None):
    """The image with some windows framed, beside ``col`` with the same windows' columns in their colours."""
    ex = example or im2col_example()
    H, W = ex.x.shape
    K, P = ex.col.shape
    KH = KW = ex.kernel
    OW = output_size(W, KW, ex.stride, 0)
    picked = [p % P for p in highlight]
    fig = new_figure(2.2 + 0.52 * (W + P), 0.45 * max(H, K) + 1.9)
    grid = fig.add_gridspec(1, 2, width_ratios=[W, P])
    left, right = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    cell_colours = np.empty((H, W, 4))
    cell_colours[:] = _PLAIN
    col_colours = np.empty((K, P, 4))
    col_colours[:] = _PLAIN
    for k, p in enumerate(picked):
        u, v = divmod(p, OW)
        colour = _COLOURS[k % len(_COLOURS)]
        col_colours[:, p] = _tint(colour)
        if k == 0:  # tint one window's pixels; the others are framed (windows overlap)
            cell_colours[u * ex.stride:u * ex.stride + KH, v * ex.stride:v * ex.stride + KW] = _tint(colour)
    _number_grid(left, ex.x, cell_colours, title=f"x: {H} x {W} pixels")
    for k, p in enumerate(picked):
        u, v = divmod(p, OW)
        colour = _COLOURS[k % len(_COLOURS)]
        _outline(left, u * ex.stride, v * ex.stride, KH, KW, colour, inset=0.06 * k)
        _outline(right, 0, p, K, 1, colour)
    _number_grid(right, ex.col, col_colours,
                 title=f"col = im2col(x): K = {KH}·{KW} = {K} rows, P = OH·OW = {P} columns")
    right.set_yticks(range(K), [f"(i, j) = {divmod(k, KW)}" for k in range(K)], fontsize=7)
    right.set_xticks(range(P), [f"{divmod(p, OW)}" for p in range(P)], fontsize=7)
    right.set_xlabel("column (u, v): the window whose top-left pixel is (u·SH, v·SW)", fontsize=8)
    fig.suptitle(f"im2col, {KH} x {KW} windows, stride {ex.stride}: each window becomes one column "
                 f"(same colour, same window)", fontsize=11)
    return _finish(fig, path)


# --- col2im ----------------------------------------------------------------------

@dataclass(frozen=True)
class Col2imExample(Example):
    slices: np.ndarray     # (KH*KW, H, W): what offset (i, j) alone adds (col2im of its row of ones)
    counts: np.ndarray     # (H, W): col2im(ones), the number of windows that contain each pixel
    kernel: int
    stride: int
    padding: int


def col2im_example(size: int = 4, kernel: int = 2, stride: int = 1, padding: int = 0) -> Col2imExample:
    """col2im of a column array of ones, offset by offset and all together, on one ``size`` x ``size`` image."""
    shape = (1, 1, size, size)
    ks, st, pd = (kernel, kernel), (stride, stride), (padding, padding)
    P = output_size(size, kernel, stride, padding) ** 2
    K = kernel * kernel
    slices = []
    for k in range(K):
        one_row = np.zeros((1, K, P))
        one_row[0, k] = 1.0
        slices.append(col2im(one_row, shape, ks, st, pd)[0, 0])
    counts = col2im(np.ones((1, K, P)), shape, ks, st, pd)[0, 0]
    return Col2imExample(slices=np.stack(slices), counts=counts, kernel=kernel, stride=stride, padding=padding)


def _count_colours(counts):
    """Background colours for a count map: white for 0, deeper blue for more windows."""
    blues = colormaps["Blues"]
    top = max(float(counts.max()), 1.0)
    colours = np.array([[blues(0.15 + 0.6 * c / top) if c > 0 else _FAINT for c in row] for row in counts])
    return colours


def plot_col2im(examples=None, path=None):
    """Each row: the slices that the window offsets add onto, then their sum, col2im(ones)."""
    examples = examples or [col2im_example(4, 2, 1, 0), col2im_example(6, 3, 2, 0)]
    width = max(len(ex.slices) for ex in examples) + 1
    fig = new_figure(1.35 * width + 0.6, 1.95 * len(examples) + 0.7)
    grid = fig.add_gridspec(len(examples), width)
    for row, ex in enumerate(examples):
        KW = ex.kernel
        for k, piece in enumerate(ex.slices):
            colours = np.where(piece[..., None] > 0, np.array(_tint(_COLOURS[0], 0.5)), np.array(_PLAIN))
            i, j = divmod(k, KW)
            _number_grid(fig.add_subplot(grid[row, k]), piece, colours, fontsize=6,
                         title=f"+ offset ({i}, {j})" if k else f"offset ({i}, {j})")
        H = ex.counts.shape[0]
        OH = output_size(H, ex.kernel, ex.stride, ex.padding)
        ax = _number_grid(fig.add_subplot(grid[row, len(ex.slices)]), ex.counts, _count_colours(ex.counts),
                          fmt="{:.0f}", fontsize=7, title="= col2im(ones)")
        ax.set_xlabel(f"{H} x {H}, {ex.kernel} x {ex.kernel}, stride {ex.stride}: "
                      f"OH = {OH}", fontsize=7)
    fig.suptitle("col2im adds every column back onto its window: offset (i, j) adds its row of col onto "
                 "x_pad[i : i+SH·OH : SH, j : j+SW·OW : SW]\n"
                 "col2im(ones) counts the windows that hold each pixel (0: the pixel is in no window)",
                 fontsize=10)
    return _finish(fig, path)


# --- max-pooling -------------------------------------------------------------------

@dataclass(frozen=True)
class MaxPoolExample(Example):
    x: np.ndarray          # (H, W)
    y: np.ndarray          # (OH, OW), the window maxima
    argmax: np.ndarray     # (OH*OW,), the winner's offset i*KW + j in its window
    dy: np.ndarray         # (OH, OW), the gradient arriving from above: 1, 2, 3, ...
    dx: np.ndarray         # (H, W), maxpool2d_backward(dy)
    kernel: int
    stride: int


#: A 4 x 4 input with two equal maxima side by side (row 1), so that ties show.
POOL_INPUT = np.array([[1.0, 3.0, 2.0, 0.0],
                       [4.0, 9.0, 9.0, 1.0],
                       [0.0, 5.0, 2.0, 6.0],
                       [7.0, 1.0, 8.0, 3.0]])


def maxpool_example(kernel: int = 2, stride: int = 2, x=POOL_INPUT) -> MaxPoolExample:
    """Max-pool ``x`` forward, then send the gradient dy = 1, 2, 3, ... back to the winners."""
    H, W = x.shape
    ks, st, pd = (kernel, kernel), (stride, stride), (0, 0)
    y, argmax = maxpool2d_forward(x.reshape(1, 1, H, W), ks, st, pd)
    dy = np.arange(1.0, y.size + 1).reshape(y.shape)
    dx = maxpool2d_backward(dy, argmax, (1, 1, H, W), ks, st, pd)
    return MaxPoolExample(x=np.array(x), y=y[0, 0], argmax=argmax[0], dy=dy[0, 0], dx=dx[0, 0],
                          kernel=kernel, stride=stride)


def plot_maxpool(examples=None, path=None):
    """Each row: the input with its winners tinted (disjoint windows framed), y, dy, and dx."""
    examples = examples or [maxpool_example(2, 2), maxpool_example(2, 1)]
    fig = new_figure(10.0, 2.75 * len(examples) + 0.5)
    rows = fig.subfigures(len(examples), 1, squeeze=False)[:, 0]
    for sub, ex in zip(rows, examples):
        # One grid per row, columns as wide as their arrays: every cell of the row has one size.
        grid = sub.add_gridspec(1, 4, width_ratios=[ex.x.shape[1], ex.y.shape[1], ex.y.shape[1], ex.x.shape[1]])
        H, W = ex.x.shape
        OH, OW = ex.y.shape
        KW = ex.kernel
        winners = np.zeros((H, W), dtype=int)
        ax = sub.add_subplot(grid[0])
        frames = []
        for p, k in enumerate(ex.argmax):
            u, v = divmod(p, OW)
            i, j = divmod(int(k), KW)
            winners[u * ex.stride + i, v * ex.stride + j] += 1
            frames.append((u * ex.stride, v * ex.stride, _COLOURS[p % len(_COLOURS)], 0.06))
        tinted = np.where(winners[..., None] > 0, np.array(_tint(_COLOURS[3], 0.45)), np.array(_PLAIN))
        _number_grid(ax, ex.x, tinted, title=f"x, {KW} x {KW} windows, stride {ex.stride}")
        if ex.stride >= ex.kernel:  # disjoint windows: frame each one
            for top, left, colour, inset in frames:
                _outline(ax, top, left, ex.kernel, ex.kernel, colour, inset=inset, linewidth=2)
        _number_grid(sub.add_subplot(grid[1]), ex.y, title="y: window maxima")
        _number_grid(sub.add_subplot(grid[2]), ex.dy, title="dy: from above")
        dx_colours = np.where(ex.dx[..., None] != 0, np.array(_tint(_COLOURS[3], 0.45)), np.array(_FAINT))
        ax = _number_grid(sub.add_subplot(grid[3]), ex.dx, dx_colours, title="dx: dy at each winner")
        if ex.stride < ex.kernel:
            ax.set_xlabel("overlapping windows: a pixel that wins several\n"
                          "gets the sum; a tie goes to the first maximum", fontsize=7)
    fig.suptitle("Max-pooling: each window's gradient goes to its winner (tinted), the others get 0",
                 fontsize=11)
    return _finish(fig, path)
