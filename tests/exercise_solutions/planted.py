"""Planted mistakes: small edits of the worked solutions beside this file, and the diagnosis each must get.

Each entry is (exercise, the line or lines of the solution replaced, what replaces them, words of the
diagnosis).  Where a mistake lives in a file the exercise builds on (a col2im that overwrites, checked
through conv2d_backward), the entry names that file: ``"conv2d_backward <- col2im.py"``.
:func:`solved` writes a workspace of the worked solutions, with one mistake planted.
"""
import shutil
from pathlib import Path

SOLUTIONS = Path(__file__).resolve().parent


def solved(folder: Path, plant=None) -> Path:
    """``folder`` holding every worked solution; ``plant`` = (file, old, new) edits one of them first."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in SOLUTIONS.glob("*.py"):
        if path.name != "planted.py":
            shutil.copy(path, folder / path.name)
    if plant is not None:
        file, old, new = plant
        text = (folder / file).read_text()
        assert old in text, f"{file} has no {old!r} to plant a mistake in"
        (folder / file).write_text(text.replace(old, new))
    return folder

PLANTED = [
    # relu
    ("relu", "return grad_output * (y > 0)", "return grad_output * y", "dx = dy * y"),
    ("relu", "return grad_output * (y > 0)", "return (y > 0).astype(grad_output.dtype)", "the mask [y > 0] alone"),
    ("relu", "return grad_output * (y > 0)", "return grad_output", "dx = dy everywhere"),
    # linear
    ("linear", "dweight = grad_output.T @ x", "dweight = x.T @ grad_output", "is the transpose"),
    ("linear", "dbias = grad_output.sum(axis=0)", "dbias = grad_output.mean(axis=0)", "mean of dy over the batch"),
    ("linear", "dbias = grad_output.sum(axis=0)", "dbias = grad_output", "keeps the batch axis"),
    # log_softmax_nll
    ("log_softmax_nll", "m = x.max(axis=dim, keepdims=True)", "m = 0", "exp overflows"),
    ("log_softmax_nll", "return grad_output - np.exp(y) * grad_output.sum(axis=dim, keepdims=True)",
     "return grad_output - np.exp(y)", "dx = dy - softmax"),
    ("log_softmax_nll", "return -log_probs[np.arange(N), target].sum() / N",
     "return -log_probs[np.arange(N), target].sum()", "the loss is the sum over the batch"),
    ("log_softmax_nll", "grad[np.arange(N), target] = -1.0 / N", "grad[np.arange(N), target] = -1.0",
     "lacks the 1/N"),
    # im2col
    ("im2col", "x_pad[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW]", "x_pad[:, :, i:i + OH, j:j + OW]",
     "window (oh, ow) starts at (oh, ow)"),
    ("im2col", "((0, 0), (0, 0), (PH, PH), (PW, PW))", "((0, 0), (0, 0), (0, 2 * PH), (0, 2 * PW))",
     "the padding is all after the image"),
    ("im2col", "return col.reshape(N, C * KH * KW, OH * OW)",
     "return col.transpose(0, 2, 3, 1, 4, 5).reshape(N, C * KH * KW, OH * OW)", "(i, j, c) order"),
    ("im2col", "constant_values=pad_value", "constant_values=0", "the border holds 0"),
    # conv2d_forward
    ("conv2d_forward", ".transpose(1, 0, 2) + bias[:, None]", ".transpose(1, 0, 2)", "y has no bias"),
    ("conv2d_forward", "(weight.reshape(OC, K) @ cols)", "(weight[:, :, ::-1, ::-1].reshape(OC, K) @ cols)",
     "the kernel is flipped"),
    ("conv2d_forward", "(weight.reshape(OC, K) @ cols)", "(weight.transpose(0, 2, 3, 1).reshape(OC, K) @ cols)",
     "(i, j, c) order"),
    ("conv2d_forward", ".reshape(OC, N, P).transpose(1, 0, 2) + bias[:, None]", " + bias[:, None]",
     "swap its first two axes"),
    # col2im
    ("col2im", "+= col[:, :, i, j]", "= col[:, :, i, j]", "overlapping windows overwrite each other"),
    ("col2im", "return image[:, :, PH:PH + H, PW:PW + W]", "return image[:, :, :H, :W]", "cut from one side only"),
    ("col2im", "image[:, :, i:i + SH * OH:SH, j:j + SW * OW:SW]", "image[:, :, i:i + OH, j:j + OW]",
     "is put back at (oh, ow)"),
    ("col2im", "return image[:, :, PH:PH + H, PW:PW + W]", "return image", "the padded border is still there"),
    # conv2d_backward
    ("conv2d_backward", "return dx, dweight.reshape(weight.shape), dbias",
     "return dx, dweight.reshape(weight.shape) / N, dbias", "averaged over the batch (divided by N)"),
    ("conv2d_backward", "dweight += dy[n] @ col[n].T", "dweight = dy[n] @ col[n].T", "the last image's gradient alone"),
    ("conv2d_backward", "dweight += dy[n] @ col[n].T", "dweight += (col[n] @ dy[n].T).reshape(dweight.shape)",
     "transposed product"),
    ("conv2d_backward", "dbias = dy.sum(axis=(0, 2))", "dbias = dy.sum(axis=2)", "dbias keeps the batch axis"),
    ("conv2d_backward", "dbias = dy.sum(axis=(0, 2))", "dbias = dy.sum(axis=2).mean(axis=0)",
     "dbias is averaged over the batch"),
    ("conv2d_backward <- col2im.py", "+= col[:, :, i, j]", "= col[:, :, i, j]", "overwritten instead of added"),
    # maxpool2d
    ("maxpool2d", "argmax = col.argmax(axis=1)", "argmax = col.shape[1] - 1 - col[:, ::-1].argmax(axis=1)",
     "the wrong winner on ties"),
    ("maxpool2d", "pad_value=-np.inf", "pad_value=0.0", "the padding won a window"),
    ("maxpool2d <- col2im.py", "+= col[:, :, i, j]", "= col[:, :, i, j]", "overlapping windows overwritten"),
    ("maxpool2d", "np.put_along_axis(dcol, argmax[:, None, :], grad_output.reshape(N * C, 1, P), axis=1)",
     "dcol[...] = grad_output.reshape(N * C, 1, P) / (KH * KW)", "spread over the window"),
    # dropout
    ("dropout", "mask = keep.astype(x.dtype) / x.dtype.type(1 - p)", "mask = keep.astype(x.dtype)",
     "dropout not scaled"),
    ("dropout", "mask = keep.astype(x.dtype) / x.dtype.type(1 - p)", "mask = keep.astype(x.dtype) / x.dtype.type(p)",
     "scaled by 1/p"),
    ("dropout", "    if not training:\n        return x, None\n", "", "in evaluation dropout is the identity"),
    ("dropout", "return grad_output * mask", "return grad_output", "dx is not masked"),
    # batchnorm2d
    ("batchnorm2d", "momentum * var * M / (M - 1)", "momentum * var", "the biased variance"),
    ("batchnorm2d", "    if training:\n        M =", "    if True:\n        M =", "in evaluation use running_mean"),
    ("batchnorm2d", "dx = inv_std * (g - g.mean(axis=AXES, keepdims=True) - x_hat * (g * x_hat).mean(axis=AXES, "
     "keepdims=True))", "dx = inv_std * g", "dx ignores that mu and var depend on x"),
    ("batchnorm2d", " - x_hat * (g * x_hat).mean(axis=AXES, keepdims=True))", ")", "lacks the variance's term"),
    ("batchnorm2d", "running_mean[...] = ", "running_mean = ", "did not change"),
    # adam
    ("adam", "m_hat = exp_avg / (1 - beta1 ** step)\n    v_hat = exp_avg_sq / (1 - beta2 ** step)",
     "m_hat = exp_avg\n    v_hat = exp_avg_sq", "no bias correction"),
    ("adam", "(np.sqrt(v_hat) + eps)", "np.sqrt(v_hat + eps)", "eps is inside the square root"),
    ("adam", "param -= lr", "param = param - lr", "param did not change"),
    # sgd_momentum
    ("sgd_momentum", "buffer = momentum * momentum_buffer + grad", "buffer = momentum * momentum_buffer + "
     "(1 - momentum) * grad", "the buffer averages"),
    ("sgd_momentum", "param -= lr * buffer", "param -= lr * grad", "the step uses g"),
    ("sgd_momentum", "buffer = momentum * momentum_buffer + grad", "buffer = grad.copy()", "does not carry over"),
    ("sgd_momentum", "        buffer = grad.copy()\n    else:\n        buffer = momentum * momentum_buffer + grad\n"
     "    param -= lr * buffer", "        buffer = lr * grad\n    else:\n        buffer = momentum * momentum_buffer "
     "+ lr * grad\n    param -= buffer", "the buffer holds lr * g"),
]
