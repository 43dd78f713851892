"""Exercise col2im: the adjoint of im2col, every column added back onto its window.

    image_pad[n, c, oh*SH + i, ow*SW + j] += col[n, (c, i, j), (oh, ow)]     for every row and column
    image = image_pad without its padded border

The learner writes ``col2im(col, x_shape, kernel_size, stride, padding)``, the signature of
:func:`minicnn.nn.unfold.col2im`.  A pixel inside several windows receives the sum of their
entries, which is why col2im is the backward pass of im2col: <im2col(x), col> = <x, col2im(col)>.
The gradient check holds the learner's col2im(G) against central differences of im2col.  The
cases have overlapping windows (a kernel wider than its stride), where overwriting and adding differ.

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn.exercises.catalog.im2col import draw_geometry
from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.exercises.gradients import central_differences
from minicnn.nn.unfold import col2im, im2col, window

REFERENCE = SimpleNamespace(col2im=col2im)


def run(f, c):
    return {"image": f.col2im(c.col, c.x_shape, c.kernel_size, c.stride, c.padding)}


def _case(rng, x_shape, kernel_size, stride, padding):
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x_shape, kernel_size, stride, padding)
    return Case(col=array(rng, (N, C * KH * KW, OH * OW)), x_shape=x_shape, kernel_size=kernel_size,
                stride=stride, padding=padding)


def cases():
    rng = np.random.default_rng(5)
    return [_case(rng, (1, 2, 5, 5), (3, 3), (1, 1), (1, 1)),
            _case(rng, (2, 1, 6, 5), (3, 2), (2, 1), (1, 0)),
            _case(rng, (1, 1, 4, 4), (2, 2), (2, 2), (0, 0))]


def draw(d):
    kernel_size, stride, padding, H, W = draw_geometry(d)
    return _case(np.random.default_rng(d.integer(0, 2**16)), (d.integer(1, 2), d.integer(1, 3), H, W),
                 kernel_size, stride, padding)


def gradients(f, c):
    x = np.zeros(c.x_shape)
    analytic = {"dx": f.col2im(c.col, c.x_shape, c.kernel_size, c.stride, c.padding)}
    return analytic, central_differences(lambda x: im2col(x, c.kernel_size, c.stride, c.padding), c.col, x=x)


def windows_back(col, x_shape, kernel_size, stride, padding, add=True, stride_in_offset=True):
    """The padded image that col's windows are put back onto: added (``add``) or each written over the last,
    at offsets (oh*SH + i, ow*SW + j), or (oh + i, ow + j) without ``stride_in_offset``."""
    N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW = window(x_shape, kernel_size, stride, padding)
    col = col.reshape(N, C, KH, KW, OH, OW)
    image = np.zeros((N, C, H + 2 * PH, W + 2 * PW), dtype=col.dtype)
    SH, SW = (SH, SW) if stride_in_offset else (1, 1)
    for i in range(KH):
        for j in range(KW):
            target = (slice(None), slice(None), slice(i, i + SH * OH, SH), slice(j, j + SW * OW, SW))
            if add:
                image[target] += col[:, :, i, j]
            else:
                image[target] = col[:, :, i, j]
    return image


def _cut(image, c):
    (PH, PW), (H, W) = c.padding, c.x_shape[2:]
    return image[:, :, PH:PH + H, PW:PW + W]


def _rows_ijc(c):
    N, C, H, W, KH, KW = window(c.x_shape, c.kernel_size, c.stride, c.padding)[:6]
    col = c.col.reshape(N, KH, KW, C, -1).transpose(0, 3, 1, 2, 4).reshape(c.col.shape)
    return {"image": col2im(col, c.x_shape, c.kernel_size, c.stride, c.padding)}


def _geometry(c):
    return c.x_shape, c.kernel_size, c.stride, c.padding


MISTAKES = (
    Mistake("overlapping windows overwrite each other: add every window's entries (+=), since a pixel inside "
            "several windows receives the sum of their entries", lambda c: {"image": _cut(windows_back(
                c.col, *_geometry(c), add=False), c)}),
    Mistake("the padded border is still there: cut PH rows from the top and from the bottom, PW columns from "
            "each side, image_pad[:, :, PH:PH + H, PW:PW + W]",
            lambda c: {"image": windows_back(c.col, *_geometry(c))}),
    Mistake("the padding is cut from one side only: the image is image_pad[:, :, PH:PH + H, PW:PW + W]",
            lambda c: {"image": windows_back(c.col, *_geometry(c))[:, :, :c.x_shape[2], :c.x_shape[3]]}),
    Mistake("window (oh, ow) is put back at (oh, ow): with a stride it sits at (oh*SH, ow*SW) of the padded "
            "image", lambda c: {"image": _cut(windows_back(c.col, *_geometry(c), stride_in_offset=False), c)}),
    Mistake("col's rows are read in (i, j, c) order: row (c, i, j) is c*KH*KW + i*KW + j, channel first, as "
            "im2col lays them out", _rows_ijc),
)

HINTS = (
    "A pixel of the image sits inside several windows, so it appears in several entries of col. "
    "What should its value in col2im's result be?",
    "image_pad = zeros (N, C, H + 2PH, W + 2PW); image_pad[n, c, oh*SH + i, ow*SW + j] += "
    "col[n, c*KH*KW + i*KW + j, oh*OW + ow] for every entry; return image_pad[:, :, PH:PH + H, PW:PW + W]. "
    "Looping over (i, j) only: image_pad[:, :, i:i + SH*OH:SH, j:j + SW*OW:SW] += col6[:, :, i, j].",
    "col (N, K, P) -> col6 = col.reshape(N, C, KH, KW, OH, OW); col6[:, :, i, j] is (N, C, OH, OW), as is the "
    "strided slice of image_pad it is added to; image_pad (N, C, H + 2PH, W + 2PW); the result (N, C, H, W).",
)

STARTER = '''"""Exercise col2im: the adjoint of im2col, every column added back onto its window.

Notation (that of im2col): x_shape = (N, C, H, W); kernel_size (KH, KW), stride (SH, SW), padding (PH, PW);
OH = (H + 2*PH - KH) // SH + 1,  OW likewise;  K = C*KH*KW,  P = OH*OW.  col is (N, K, P).

    image_pad = zeros (N, C, H + 2*PH, W + 2*PW)
    image_pad[n, c, oh*SH + i, ow*SW + j] += col[n, c*KH*KW + i*KW + j, oh*OW + ow]     for every entry of col
    image     = image_pad[:, :, PH:PH + H, PW:PW + W]                                     (N, C, H, W)

A pixel inside several overlapping windows receives the sum of their entries: col2im is the backward
pass of im2col, <im2col(x), col> = <x, col2im(col)>. The result has col's dtype.

The math:  {docs}
Check:     minicnn exercise check col2im          A hint:  minicnn exercise hint col2im
"""
import numpy as np


def col2im(col, x_shape, kernel_size, stride, padding):
    """Add every column of col (N, K, P) back onto its window of an (N, C, H, W) image."""
    raise NotImplementedError("col2im: replace this line with your code")
'''

EXERCISE = Exercise(
    name="col2im", title="col2im: the adjoint of im2col",
    functions={"col2im": ("image",)}, reference=REFERENCE, run=run, cases=cases, draw=draw,
    gradients=gradients, gradient_cases=lambda: cases()[1:2],
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/convolution.md#backward-the-input-col2im",
    builds_on=("im2col",), shapes={"image": "(N, C, H, W)"}, drawn="shapes, kernel sizes, strides, paddings")
