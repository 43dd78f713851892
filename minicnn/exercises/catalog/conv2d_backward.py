"""Exercise conv2d_backward: dx, dweight and dbias of a convolution, from dY and the forward's col.

With dY (N, OC, P) and col (N, K, P), w_mat = weight.reshape(OC, K):

    dweight = sum over n of dY[n] @ col[n]^T       (OC, K) -> (OC, C, KH, KW): every image adds its share
    dbias   = sum over n and p of dY               (OC,)
    dx      = col2im(w_mat^T @ dY[n])              each window's gradient added back onto its pixels

The learner writes ``conv2d_backward(grad_output, col, weight, x_shape, stride, padding)``, the
signature of :func:`minicnn.nn.functional.conv2d_backward` (without its ``input_grad``); the starter
imports the learner's own col2im.  ``col`` is the reference's im2col of x, as the forward pass keeps it.
The gradient check holds the three gradients against central differences of the reference's forward.

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn.exercises.catalog.col2im import windows_back
from minicnn.exercises.catalog.im2col import draw_geometry
from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.exercises.gradients import central_differences
from minicnn.nn import functional as F
from minicnn.nn.unfold import im2col

REFERENCE = SimpleNamespace(conv2d_backward=F.conv2d_backward)


def _col(c):
    return im2col(c.x, c.weight.shape[2:], c.stride, c.padding)


def run(f, c):
    dx, dweight, dbias = f.conv2d_backward(c.dy, _col(c), c.weight, c.x.shape, c.stride, c.padding)
    return {"dx": dx, "dweight": dweight, "dbias": dbias}


def _case(rng, x_shape, OC, kernel_size, stride, padding):
    C = x_shape[1]
    OH, OW = F.window(x_shape, kernel_size, stride, padding)[-2:]
    return Case(x=array(rng, x_shape), weight=array(rng, (OC, C, *kernel_size)), bias=array(rng, (OC,)),
                dy=array(rng, (x_shape[0], OC, OH, OW)), stride=stride, padding=padding)


def cases():
    rng = np.random.default_rng(6)
    return [_case(rng, (2, 3, 5, 5), 4, (3, 3), (2, 2), (1, 1)),
            _case(rng, (3, 2, 4, 5), 3, (2, 3), (1, 2), (0, 1))]


def draw(d):
    kernel_size, stride, padding, H, W = draw_geometry(d)
    rng = np.random.default_rng(d.integer(0, 2**16))
    return _case(rng, (d.integer(1, 3), d.integer(1, 3), H, W), d.integer(1, 3), kernel_size, stride, padding)


def gradients(f, c):
    dx, dweight, dbias = f.conv2d_backward(c.dy, _col(c), c.weight, c.x.shape, c.stride, c.padding)
    numeric = central_differences(lambda x, weight, bias: F.conv2d(x, weight, bias, c.stride, c.padding)[0],
                                  c.dy, x=c.x, weight=c.weight, bias=c.bias)
    return {"dx": dx, "dweight": dweight, "dbias": dbias}, numeric


def _parts(c):
    """dY (N, OC, P), col (N, K, P) and w_mat (OC, K)."""
    N, OC = c.dy.shape[:2]
    return c.dy.reshape(N, OC, -1), _col(c), c.weight.reshape(OC, -1)


def _dweight(c, images):
    dy, col, _ = _parts(c)
    return {"dweight": sum(dy[n] @ col[n].T for n in images).reshape(c.weight.shape)}


def _dx_overwritten(c):
    dy, _, w_mat = _parts(c)
    image = windows_back(w_mat.T @ dy, c.x.shape, c.weight.shape[2:], c.stride, c.padding, add=False)
    (PH, PW), (H, W) = c.padding, c.x.shape[2:]
    return {"dx": image[:, :, PH:PH + H, PW:PW + W]}


MISTAKES = (
    Mistake("dweight is averaged over the batch (divided by N): the weight is shared by every image, so the "
            "images' gradients add up", lambda c: {"dweight": F.conv2d_backward(
                c.dy, _col(c), c.weight, c.x.shape, c.stride, c.padding)[1] / len(c.x)}),
    Mistake("dweight holds the last image's gradient alone: add every image's dY[n] @ col[n]^T (+=, not =), "
            "or do the whole batch in one product", lambda c: _dweight(c, [len(c.x) - 1])),
    Mistake("dweight holds the first image's gradient alone: sum dY[n] @ col[n]^T over the batch",
            lambda c: _dweight(c, [0])),
    Mistake("dweight is the transposed product col @ dY^T, (K, OC), reshaped: the product is dY @ col^T, "
            "(OC, K), then reshaped to (OC, C, KH, KW)", lambda c: {"dweight": sum(
                _parts(c)[1][n] @ _parts(c)[0][n].T for n in range(len(c.x))).reshape(c.weight.shape)}),
    Mistake("dbias is averaged over the batch: the bias is added to every image at every position, so dbias "
            "is the sum of dY over n and over the positions", lambda c: {"dbias": c.dy.sum(axis=(2, 3)).mean(axis=0)}),
    Mistake("dbias keeps the batch axis: sum over n as well, dY.sum(axis=(0, 2, 3))",
            lambda c: {"dbias": c.dy.sum(axis=(2, 3))}),
    Mistake("dbias keeps the positions: the bias is added at every (oh, ow), so sum over them too, "
            "dY.sum(axis=(0, 2, 3))", lambda c: {"dbias": c.dy.sum(axis=0)}),
    Mistake("dx: overlapping windows overwritten instead of added (col2im must add, +=): a pixel inside "
            "several windows receives the sum of their gradients", _dx_overwritten),
    Mistake("dx is still in columns, (N, K, P): fold it back into an image with col2im(w_mat.T @ dY, x_shape, ...)",
            lambda c: {"dx": _parts(c)[2].T @ _parts(c)[0]}),
)

HINTS = (
    "The same weight is used at every position of every image: how do the gradients of all those uses "
    "combine? And a pixel inside several windows: where does its gradient come from?",
    "With dY = grad_output.reshape(N, OC, P) and w_mat = weight.reshape(OC, K): dweight = the sum over n of "
    "dY[n] @ col[n].T, reshaped to weight.shape; dbias = dY.sum(axis=(0, 2)); "
    "dx = col2im(w_mat.T @ dY, x_shape, (KH, KW), stride, padding).",
    "dY (N, OC, P); col (N, K, P), col.transpose(0, 2, 1) (N, P, K); dY @ col^T (N, OC, K), summed over n "
    "(OC, K), reshaped (OC, C, KH, KW); dbias (OC,); w_mat.T (K, OC) @ dY (N, OC, P) = dcol (N, K, P); "
    "col2im(dcol) (N, C, H, W).",
)

STARTER = '''"""Exercise conv2d_backward: dx, dweight and dbias of a convolution.

Notation: x_shape = (N, C, H, W), weight (OC, C, KH, KW); stride (SH, SW), padding (PH, PW);
K = C*KH*KW, P = OH*OW. The forward pass kept col = im2col(x), (N, K, P), and computed
y[n] = w_mat @ col[n] + bias with w_mat = weight.reshape(OC, K).

With dY = grad_output reshaped to (N, OC, P):
    dweight = sum over n of dY[n] @ col[n]^T       (OC, K), reshaped to (OC, C, KH, KW)
    dbias   = sum over n and p of dY               (OC,)
    dx      = col2im(w_mat^T @ dY)                 (N, C, H, W): each window's gradient added onto its pixels

The weight and the bias are used at every position of every image: their gradients are sums.
Return (dx, dweight, dbias), in grad_output's dtype.

The math:  {docs}
Check:     minicnn exercise check conv2d_backward          A hint:  minicnn exercise hint conv2d_backward
"""
import numpy as np

from col2im import col2im                   # your col2im.py, beside this file (minicnn exercise start col2im)
# from minicnn.nn.unfold import col2im      # the reference's, to go on before yours passes its check


def conv2d_backward(grad_output, col, weight, x_shape, stride, padding):
    """(dx, dweight, dbias) from grad_output = dY (N, OC, OH, OW) and the forward's col (N, K, P)."""
    raise NotImplementedError("conv2d_backward: replace this line with your code")
'''

EXERCISE = Exercise(
    name="conv2d_backward", title="Conv2d backward: dx, dweight, dbias",
    functions={"conv2d_backward": ("dx", "dweight", "dbias")}, reference=REFERENCE, run=run, cases=cases,
    draw=draw, gradients=gradients, gradient_cases=lambda: [_case(np.random.default_rng(7), (2, 2, 4, 4), 3, (3, 3),
                                                                  (1, 1), (1, 1))],
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/convolution.md#backward-weights-and-bias",
    builds_on=("col2im",), shapes={"dx": "(N, C, H, W)", "dweight": "(OC, C, KH, KW)", "dbias": "(OC,)"},
    drawn="shapes, kernel sizes, strides, paddings")
