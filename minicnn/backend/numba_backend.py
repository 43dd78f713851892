"""The Numba backend: host NumPy arrays, kernels compiled by Numba (fast CPU).

Arrays are plain NumPy arrays, so the layers' matrix products still go to
NumPy's BLAS; only the loops of :mod:`minicnn.backend.numba_kernels` change.
Kernels compile on first use and are cached on disk (``cache=True``), so a
fresh interpreter only pays the compile once per machine.
"""
import numpy as np

from minicnn.backend import Backend, BackendUnavailableError


def make_backend() -> Backend:
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'numba' cannot be loaded: Numba is not importable ({exc}); "
            f"install it with 'pip install numba'") from exc
    from minicnn.backend import numba_kernels as k
    return Backend(
        name="numba",
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
