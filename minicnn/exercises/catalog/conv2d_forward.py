"""Exercise conv2d_forward: a convolution as one matrix product over im2col's columns.

    col  = im2col(x)                          (N, K, P)
    y[n] = w_mat @ col[n] + bias[:, None]     w_mat = weight.reshape(OC, K)   ->  (N, OC, OH, OW)

The learner writes ``conv2d(x, weight, bias, stride, padding)``, the signature of
:func:`minicnn.nn.functional.conv2d`, which returns ``(y, col)``: y and what the backward pass
needs.  The starter imports the learner's own im2col (from im2col.py beside it).  The planted
mistakes: no bias, a flipped kernel (a true convolution, where a CNN's is a cross-correlation),
a weight matrix in another order than im2col's rows, and the product's axes left unswapped.

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn.exercises.catalog.im2col import draw_geometry
from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.nn import functional as F
from minicnn.nn.unfold import im2col

REFERENCE = SimpleNamespace(conv2d=F.conv2d)


def run(f, c):
    y, col = f.conv2d(c.x, c.weight, c.bias, c.stride, c.padding)
    return {"y": y, "col": col}


def _case(rng, x_shape, OC, kernel_size, stride, padding):
    C = x_shape[1]
    return Case(x=array(rng, x_shape), weight=array(rng, (OC, C, *kernel_size)), bias=array(rng, (OC,)),
                stride=stride, padding=padding)


def cases():
    rng = np.random.default_rng(4)
    return [_case(rng, (2, 3, 5, 4), 4, (3, 2), (2, 1), (1, 0)),
            _case(rng, (1, 1, 4, 4), 2, (3, 3), (1, 1), (1, 1))]


def draw(d):
    kernel_size, stride, padding, H, W = draw_geometry(d)
    rng = np.random.default_rng(d.integer(0, 2**16))
    return _case(rng, (d.integer(1, 2), d.integer(1, 3), H, W), d.integer(1, 3), kernel_size, stride, padding)


def _y(c, weight_matrix=None, bias=True, swap=True):
    """The reference's product with a (possibly wrong) weight matrix, bias, and axis swap."""
    N, (OC, _, KH, KW) = len(c.x), c.weight.shape
    col = im2col(c.x, (KH, KW), c.stride, c.padding)
    w_mat = c.weight.reshape(OC, -1) if weight_matrix is None else weight_matrix
    if swap:
        y = w_mat @ col + (c.bias[:, None] if bias else 0)
    else:  # the whole batch as one (OC, N*P) product, reshaped as if it were (N, OC, P)
        y = w_mat @ col.transpose(1, 0, 2).reshape(col.shape[1], -1) + c.bias[:, None]
    OH, OW = F.window(c.x.shape, (KH, KW), c.stride, c.padding)[-2:]
    return {"y": y.reshape(N, OC, OH, OW)}


MISTAKES = (
    Mistake("y has no bias: y[n] = w_mat @ col[n] + bias[:, None], one bias per output channel",
            lambda c: _y(c, bias=False)),
    Mistake("the kernel is flipped (a convolution in the textbook sense): a CNN's 'convolution' is a "
            "cross-correlation, y = sum of w[c, i, j] * x_pad[c, oh*SH + i, ow*SW + j], no flip",
            lambda c: _y(c, c.weight[:, :, ::-1, ::-1].reshape(len(c.weight), -1))),
    Mistake("the weight matrix is in (i, j, c) order: weight.reshape(OC, K) as it is gives (c, i, j), the order "
            "of im2col's rows", lambda c: _y(c, c.weight.transpose(0, 2, 3, 1).reshape(len(c.weight), -1))),
    Mistake("the product of the whole batch is (OC, N*P): swap its first two axes, to (N, OC, P), before "
            "reshaping to (N, OC, OH, OW)", lambda c: _y(c, swap=False)),
)

HINTS = (
    "Which numbers does y[n, o, oh, ow] multiply and add, and in which column of col and which row of the "
    "weight are they?",
    "col = im2col(x, (KH, KW), stride, padding); y = weight.reshape(OC, -1) @ col + bias[:, None], then "
    "reshape to (N, OC, OH, OW). The @ of an (OC, K) and an (N, K, P) array is (N, OC, P): one product per "
    "image. Return (y, col).",
    "x (N, C, H, W); weight (OC, C, KH, KW) -> w_mat (OC, K), K = C*KH*KW; col (N, K, P), P = OH*OW; "
    "w_mat @ col (N, OC, P); bias[:, None] (OC, 1) broadcasts over P; y (N, OC, OH, OW), "
    "OH = (H + 2*PH - KH) // SH + 1.",
)

STARTER = '''"""Exercise conv2d_forward: a convolution as one matrix product over im2col's columns.

Notation: x (N, C, H, W), weight (OC, C, KH, KW), bias (OC,); stride (SH, SW), padding (PH, PW);
OH = (H + 2*PH - KH) // SH + 1,  OW likewise;  K = C*KH*KW,  P = OH*OW.

    col  = im2col(x, (KH, KW), stride, padding)      (N, K, P), every window a column
    y[n] = w_mat @ col[n] + bias                     w_mat = weight.reshape(OC, K), (OC, K)
    y    : (N, OC, P) reshaped to (N, OC, OH, OW)

that is y[n, o, oh, ow] = sum over (c, i, j) of weight[o, c, i, j] * x_pad[n, c, oh*SH + i, ow*SW + j]
+ bias[o], with no flip of the kernel. Return (y, col): col is what the backward pass needs.

The math:  {docs}
Check:     minicnn exercise check conv2d_forward          A hint:  minicnn exercise hint conv2d_forward
"""
import numpy as np

from im2col import im2col                   # your im2col.py, beside this file (minicnn exercise start im2col)
# from minicnn.nn.unfold import im2col      # the reference's, to go on before yours passes its check


def conv2d(x, weight, bias, stride, padding):
    """(y, col): y (N, OC, OH, OW) = weight * x + bias, by im2col and one matrix product."""
    raise NotImplementedError("conv2d: replace this line with your code")
'''

EXERCISE = Exercise(
    name="conv2d_forward", title="Conv2d forward by im2col",
    functions={"conv2d": ("y", "col")}, reference=REFERENCE, run=run, cases=cases, draw=draw,
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/convolution.md#im2col-a-convolution-is-one-matrix-product",
    builds_on=("im2col",), shapes={"y": "(N, OC, OH, OW)", "col": "(N, C*KH*KW, OH*OW)"},
    drawn="shapes, kernel sizes, strides, paddings")
