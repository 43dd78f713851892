"""Exercise im2col: every window of an image as one column, so that a convolution is one matrix product.

    col[n, (c, i, j), (oh, ow)] = x_pad[n, c, oh*SH + i, ow*SW + j]
    row (c, i, j) = c*KH*KW + i*KW + j        column (oh, ow) = oh*OW + ow
    x_pad: x with PH rows of pad_value above and below, PW columns left and right

The learner writes ``im2col(x, kernel_size, stride, padding, pad_value=0.0)``, the signature of
:func:`minicnn.nn.unfold.im2col`; ``pad_value`` is -inf for max-pooling, whose windows the
padding must never win.  Every planted mistake here is one of geometry: the row order, the
column order, a window's offset for a stride or a padding, the border's value.

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.nn.unfold import im2col, output_size

REFERENCE = SimpleNamespace(im2col=im2col)


def run(f, c):
    return {"col": f.im2col(c.x, c.kernel_size, c.stride, c.padding, c.pad_value)}


def _case(rng, x_shape, kernel_size, stride, padding, pad_value=0.0):
    return Case(x=array(rng, x_shape), kernel_size=kernel_size, stride=stride, padding=padding, pad_value=pad_value)


def cases():
    rng = np.random.default_rng(3)
    return [_case(rng, (2, 3, 5, 4), (3, 2), (2, 1), (1, 0)),
            _case(rng, (1, 2, 4, 4), (2, 2), (2, 2), (0, 0)),
            _case(rng, (1, 1, 3, 3), (2, 2), (1, 1), (1, 1), -np.inf)]


def draw_geometry(d):
    """(kernel_size, stride, padding, H, W) of a valid window: the padded image holds at least one window."""
    KH, KW = d.integer(1, 3), d.integer(1, 3)
    SH, SW = d.integer(1, 3), d.integer(1, 3)
    PH, PW = d.integer(0, KH - 1), d.integer(0, KW - 1)
    H, W = d.integer(max(1, KH - 2 * PH), 6), d.integer(max(1, KW - 2 * PW), 6)
    return (KH, KW), (SH, SW), (PH, PW), H, W


def draw(d):
    kernel_size, stride, padding, H, W = draw_geometry(d)
    x_shape = (d.integer(1, 2), d.integer(1, 3), H, W)
    return Case(x=d.array(x_shape), kernel_size=kernel_size, stride=stride, padding=padding,
                pad_value=d.pick((0.0, -np.inf)))


def _col(c):
    """The reference's col, and its sizes N, C, KH, KW, OH, OW."""
    col = im2col(c.x, c.kernel_size, c.stride, c.padding, c.pad_value)
    (N, C, H, W), (KH, KW) = c.x.shape, c.kernel_size
    OH, OW = (output_size(s, k, st, p) for s, k, st, p in zip((H, W), c.kernel_size, c.stride, c.padding))
    return col, (N, C, KH, KW, OH, OW)


def _rows_ijc(c):
    col, (N, C, KH, KW, OH, OW) = _col(c)
    return {"col": col.reshape(N, C, KH, KW, -1).transpose(0, 2, 3, 1, 4).reshape(col.shape)}


def _columns_down_first(c):
    col, (N, C, KH, KW, OH, OW) = _col(c)
    return {"col": col.reshape(N, -1, OH, OW).transpose(0, 1, 3, 2).reshape(col.shape)}


def _stride_missing(c):
    col, (N, C, KH, KW, OH, OW) = _col(c)
    stride1 = im2col(c.x, c.kernel_size, (1, 1), c.padding, c.pad_value)
    H1, W1 = (output_size(s, k, 1, p) for s, k, p in zip(c.x.shape[2:], c.kernel_size, c.padding))
    return {"col": stride1.reshape(N, -1, H1, W1)[:, :, :OH, :OW].reshape(col.shape)}


def _padded_after(c):
    (PH, PW), value = c.padding, c.pad_value
    x = np.pad(c.x, ((0, 0), (0, 0), (0, 2 * PH), (0, 2 * PW)), constant_values=value)
    return {"col": im2col(x, c.kernel_size, c.stride, (0, 0))}


MISTAKES = (
    Mistake("the rows are in (i, j, c) order: row (c, i, j) is c*KH*KW + i*KW + j, the channel first, the order "
            "in which weight.reshape(OC, K) lays out a filter", _rows_ijc),
    Mistake("the columns run down before across: column (oh, ow) is oh*OW + ow, the windows row by row",
            _columns_down_first),
    Mistake("window (oh, ow) starts at (oh, ow): with a stride it starts at (oh*SH, ow*SW) of the padded image",
            _stride_missing),
    Mistake("the padding is all after the image: pad PH rows above and below and PW columns on both sides, "
            "np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))", _padded_after),
    Mistake("the border holds 0 where pad_value was asked for (-inf for max-pooling, which the border must "
            "never win): np.pad(..., constant_values=pad_value)",
            lambda c: {"col": im2col(c.x, c.kernel_size, c.stride, c.padding, 0.0)}),
    Mistake("col is (N, P, K): a column is one window, so col is (N, K, P), the K entries of a window down "
            "each column", lambda c: {"col": _col(c)[0].transpose(0, 2, 1)}),
    Mistake("KH and KW are swapped: kernel_size is (height, width)",
            lambda c: {"col": im2col(c.x, c.kernel_size[::-1], c.stride, c.padding, c.pad_value)}),
)

HINTS = (
    "Column (oh, ow) is one window. Which pixel of the padded image is row (c, i, j) of that column? "
    "Where is the window's top-left corner?",
    "x_pad = np.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)), constant_values=pad_value); "
    "col[n, c*KH*KW + i*KW + j, oh*OW + ow] = x_pad[n, c, oh*SH + i, ow*SW + j], "
    "OH = (H + 2*PH - KH) // SH + 1 (and OW alike). Looping over (i, j) only, "
    "x_pad[:, :, i:i + SH*OH:SH, j:j + SW*OW:SW] is offset (i, j) of every window at once.",
    "x (N, C, H, W) -> x_pad (N, C, H + 2PH, W + 2PW); each slice x_pad[:, :, i:i + SH*OH:SH, j:j + SW*OW:SW] "
    "is (N, C, OH, OW); stored at [:, :, i, j] of an (N, C, KH, KW, OH, OW) array, which reshapes to "
    "col (N, C*KH*KW, OH*OW) = (N, K, P).",
)

STARTER = '''"""Exercise im2col: every window of an image as one column.

Notation: x (N, C, H, W); kernel_size = (KH, KW), stride = (SH, SW), padding = (PH, PW), all pairs;
OH = (H + 2*PH - KH) // SH + 1,  OW = (W + 2*PW - KW) // SW + 1;  K = C*KH*KW,  P = OH*OW.

    x_pad = x with PH rows of pad_value above and below, PW columns of it left and right
    col[n, row, column] = x_pad[n, c, oh*SH + i, ow*SW + j]
        row    = c*KH*KW + i*KW + j       (c, i, j): channel c, offset (i, j) inside the window
        column = oh*OW + ow               (oh, ow): the window whose top-left corner is (oh*SH, ow*SW) in x_pad

col is (N, K, P), x's dtype. With it a convolution is one matrix product per image:
y[n] = weight.reshape(OC, K) @ col[n]. pad_value is 0.0 for a convolution and -inf for max-pooling.

The math:  {docs}
Check:     minicnn exercise check im2col          A hint:  minicnn exercise hint im2col
"""
import numpy as np


def im2col(x, kernel_size, stride, padding, pad_value=0.0):
    """Every KH x KW window of x as a column of col, (N, C*KH*KW, OH*OW)."""
    raise NotImplementedError("im2col: replace this line with your code")
'''

EXERCISE = Exercise(
    name="im2col", title="im2col: windows as columns",
    functions={"im2col": ("col",)}, reference=REFERENCE, run=run, cases=cases, draw=draw,
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/convolution.md#im2col-a-convolution-is-one-matrix-product",
    shapes={"col": "(N, C*KH*KW, OH*OW)"}, drawn="shapes, kernel sizes, strides, paddings, pad values")
