"""Exercise maxpool2d: max-pooling forward, with the argmax of every window, and its backward routing.

    y[n, c, oh, ow] = max over (i, j) of x_pad[n, c, oh*SH + i, ow*SW + j]     x_pad: padded with -inf
    argmax          = the flat window offset i*KW + j of that maximum, the first one on ties
    dx              = dy routed to each window's argmax, summed where overlapping windows share a winner

The learner writes ``maxpool2d_forward(x, kernel_size, stride, padding) -> (y, argmax)`` and
``maxpool2d_backward(grad_output, argmax, x_shape, kernel_size, stride, padding)``, the signatures
of :func:`minicnn.nn.functional.maxpool2d_forward` and its backward; argmax is (N*C, OH*OW), as
the reference's.  The backward pass is given the reference's argmax.  The cases hold ties (small
integers), overlapping windows that share a winner, and all-negative inputs beside a padding
(where a border of zeros would win); the gradient check draws inputs without ties.

Docs: docs/exercises.md
"""
from types import SimpleNamespace

import numpy as np

from minicnn.exercises.catalog.col2im import windows_back
from minicnn.exercises.drawing import array
from minicnn.exercises.exercise import Case, Exercise, Mistake
from minicnn.exercises.gradients import central_differences
from minicnn.nn import functional as F
from minicnn.nn.unfold import col2im, im2col

REFERENCE = SimpleNamespace(maxpool2d_forward=F.maxpool2d_forward, maxpool2d_backward=F.maxpool2d_backward)


def run(f, c):
    y, argmax = f.maxpool2d_forward(c.x, c.kernel_size, c.stride, c.padding)
    reference_argmax = F.maxpool2d_forward(c.x, c.kernel_size, c.stride, c.padding)[1]
    dx = f.maxpool2d_backward(c.dy, reference_argmax, c.x.shape, c.kernel_size, c.stride, c.padding)
    return {"y": y, "argmax": argmax, "dx": dx}


def _case(rng, x_shape, kernel_size, stride, padding, kind="normal", shift=0.0):
    (N, C, H, W), (KH, KW), (SH, SW), (PH, PW) = x_shape, kernel_size, stride, padding
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    return Case(x=array(rng, x_shape, kind) + shift, dy=array(rng, (N, C, OH, OW)), kernel_size=kernel_size,
                stride=stride, padding=padding)


def cases():
    rng = np.random.default_rng(8)
    return [_case(rng, (1, 2, 4, 4), (2, 2), (2, 2), (0, 0), "ties"),
            _case(rng, (1, 1, 5, 5), (3, 3), (1, 1), (1, 1), "ties"),
            _case(rng, (2, 1, 4, 4), (3, 3), (2, 2), (1, 1), "normal", shift=-5.0)]


def draw(d):
    KH, KW = d.integer(1, 3), d.integer(1, 3)
    PH, PW = d.integer(0, KH // 2), d.integer(0, KW // 2)
    x_shape = (d.integer(1, 2), d.integer(1, 2), d.integer(max(1, KH - 2 * PH), 6), d.integer(max(1, KW - 2 * PW), 6))
    return _case(np.random.default_rng(d.integer(0, 2**16)), x_shape, (KH, KW), (d.integer(1, 3), d.integer(1, 3)),
                 (PH, PW), d.pick(("ties", "normal")))


def gradient_cases():
    return [_case(np.random.default_rng(9), (1, 2, 4, 4), (2, 2), (1, 1), (0, 0), "distinct")]


def gradients(f, c):
    argmax = f.maxpool2d_forward(c.x, c.kernel_size, c.stride, c.padding)[1]
    analytic = {"dx": f.maxpool2d_backward(c.dy, argmax, c.x.shape, c.kernel_size, c.stride, c.padding)}
    numeric = central_differences(lambda x: f.maxpool2d_forward(x, c.kernel_size, c.stride, c.padding), c.dy, x=c.x)
    return analytic, numeric


def _windows(c, pad_value=-np.inf):
    """Every window as a column: (N*C, KH*KW, P)."""
    N, C, H, W = c.x.shape
    return im2col(c.x.reshape(N * C, 1, H, W), c.kernel_size, c.stride, c.padding, pad_value=pad_value)


def _last_winner(c):
    col = _windows(c)
    argmax = col.shape[1] - 1 - col[:, ::-1, :].argmax(axis=1)
    return {"argmax": argmax}


def _zero_padding(c):
    col = _windows(c, 0.0)
    return {"y": col.max(axis=1).reshape(c.dy.shape), "argmax": col.argmax(axis=1)}


def _routed(c, weights, add=True):
    """dx from per-window weights (N*C, KH*KW, P) times dy: added back (``add``) or written over."""
    N, C, H, W = c.x.shape
    dcol = weights * c.dy.reshape(N * C, 1, -1)
    if add:
        return {"dx": col2im(dcol, (N * C, 1, H, W), c.kernel_size, c.stride, c.padding).reshape(c.x.shape)}
    image = windows_back(dcol, (N * C, 1, H, W), c.kernel_size, c.stride, c.padding, add=False)
    (PH, PW) = c.padding
    return {"dx": image[:, :, PH:PH + H, PW:PW + W].reshape(c.x.shape)}


def _winners(c):
    col = _windows(c)
    return (np.arange(col.shape[1])[None, :, None] == col.argmax(axis=1)[:, None, :]).astype(np.float64)


MISTAKES = (
    Mistake("the wrong winner on ties: the first maximum in window order wins (np.argmax's rule, and "
            "PyTorch's); yours takes a later one", _last_winner),
    Mistake("the padding won a window: pad with -inf, not 0, so that the border never wins (here every input "
            "is negative)", _zero_padding),
    Mistake("overlapping windows overwritten instead of added: an input that wins several windows receives "
            "the sum of their gradients", lambda c: _routed(c, _winners(c), add=False)),
    Mistake("every tied maximum got the gradient: it goes to one winner per window, the argmax",
            lambda c: _routed(c, (_windows(c) == _windows(c).max(axis=1, keepdims=True)).astype(np.float64))),
    Mistake("the gradient is spread over the window (average pooling's backward): max-pooling routes it to "
            "the argmax alone", lambda c: _routed(c, np.isfinite(_windows(c)) / np.prod(c.kernel_size))),
    Mistake("argmax is (OH*OW, N*C): it is (N*C, OH*OW), one row per plane", lambda c: {
        "argmax": _windows(c).argmax(axis=1).T}),
)

HINTS = (
    "Which single input decides each output, and so which input should receive that output's gradient? "
    "And if two inputs of a window are equal, which one?",
    "col = im2col(x.reshape(N*C, 1, H, W), kernel_size, stride, padding, pad_value=-np.inf); "
    "argmax = col.argmax(axis=1) (the first maximum on ties); y = the max of each column. Backward: "
    "dcol = zeros, dcol[r, argmax[r, p], p] = dy[r, p]; dx = col2im(dcol, (N*C, 1, H, W), ...): col2im adds, "
    "so a shared winner gets the sum.",
    "x (N, C, H, W) -> (N*C, 1, H, W); col (N*C, KH*KW, P); argmax (N*C, P) integers in [0, KH*KW); "
    "y (N*C, P) -> (N, C, OH, OW); dy (N, C, OH, OW) -> (N*C, P); dcol (N*C, KH*KW, P); "
    "col2im gives (N*C, 1, H, W) -> dx (N, C, H, W). np.put_along_axis and np.take_along_axis index by argmax.",
)

STARTER = '''"""Exercise maxpool2d: max-pooling forward, with the argmax of every window, and its backward routing.

Notation: x (N, C, H, W); kernel_size (KH, KW), stride (SH, SW), padding (PH, PW), all pairs;
OH = (H + 2*PH - KH) // SH + 1,  OW likewise;  P = OH*OW.

    y[n, c, oh, ow] = max over (i, j) of x_pad[n, c, oh*SH + i, ow*SW + j]
                      x_pad: x padded with -inf, so that the border never wins
    argmax          = the window offset i*KW + j of that maximum, the FIRST one on ties, (N*C, OH*OW) ints
    dx              = zeros of x's shape, dy[n, c, oh, ow] added at the input that won window (oh, ow);
                      an input that wins several overlapping windows receives the sum of their gradients

Each plane (n, c) pools alone: x.reshape(N*C, 1, H, W) makes each window one column of im2col.

The math:  {docs}
Check:     minicnn exercise check maxpool2d          A hint:  minicnn exercise hint maxpool2d
"""
import numpy as np

from im2col import im2col                   # your im2col.py and col2im.py, beside this file
from col2im import col2im
# from minicnn.nn.unfold import col2im, im2col     # the reference's, to go on before yours pass their checks


def maxpool2d_forward(x, kernel_size, stride, padding):
    """(y, argmax): y (N, C, OH, OW), the max of every window; argmax (N*C, OH*OW), its offset i*KW + j."""
    raise NotImplementedError("maxpool2d_forward: replace this line with your code")


def maxpool2d_backward(grad_output, argmax, x_shape, kernel_size, stride, padding):
    """dx (N, C, H, W): every window's gradient at its argmax, summed where windows share a winner."""
    raise NotImplementedError("maxpool2d_backward: replace this line with your code")
'''

EXERCISE = Exercise(
    name="maxpool2d", title="MaxPool2d forward (argmax) and backward",
    functions={"maxpool2d_forward": ("y", "argmax"), "maxpool2d_backward": ("dx",)}, reference=REFERENCE,
    run=run, cases=cases, draw=draw, gradients=gradients, gradient_cases=gradient_cases,
    mistakes=MISTAKES, hints=HINTS, starter=STARTER, docs="docs/layers.md#maxpool2d",
    builds_on=("im2col", "col2im"), shapes={"y": "(N, C, OH, OW)", "argmax": "(N*C, OH*OW)", "dx": "(N, C, H, W)"},
    drawn="shapes, kernel sizes, strides, paddings, ties")
