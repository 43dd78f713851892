"""The NumPy backend: host arrays and the readable reference kernels."""
import numpy as np

from minicnn.backend import Backend
from minicnn.backend import numpy_kernels as k


def make_backend() -> Backend:
    return Backend(
        name="numpy",
        xp=np,
        device="cpu",
        im2col=k.im2col,
        col2im=k.col2im,
        maxpool2d_forward=k.maxpool2d_forward,
        maxpool2d_backward=k.maxpool2d_backward,
        transpose01=k.transpose01,
        relu_forward=k.relu_forward,
        relu_backward=k.relu_backward,
        adam_update=k.adam_update,
    )
