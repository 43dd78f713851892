"""The CuPy backend: arrays in NVIDIA GPU memory, kernels in CUDA (see cupy_kernels)."""
from minicnn.backend import Backend, BackendUnavailableError

INSTALL_HINT = ('install CuPy for your CUDA version: pip install -e ".[gpu-cuda12]" (CUDA 12) '
                'or pip install -e ".[gpu-cuda13]" (CUDA 13)')


def make_backend() -> Backend:
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(f"backend 'cupy' needs CuPy, which cannot be imported ({exc}); "
                                      f"{INSTALL_HINT}") from None
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, missing driver libraries...
        raise BackendUnavailableError(f"backend 'cupy': CuPy is installed but no NVIDIA GPU was found "
                                      f"({exc})") from None
    if devices < 1:
        raise BackendUnavailableError("backend 'cupy': CuPy is installed but no NVIDIA GPU was found")
    from minicnn.backend import cupy_kernels as k
    from minicnn.backend import numpy_kernels

    return Backend(
        name="cupy",
        xp=cupy,
        device="cuda",
        array_type=cupy.ndarray,
        im2col=k.im2col,
        col2im=k.col2im,
        maxpool2d_forward=k.maxpool2d_forward,
        maxpool2d_backward=k.maxpool2d_backward,
        transpose01=k.transpose01,
        relu_backward=k.relu_backward,
        # Written with the array module of their arguments: these run on CuPy arrays as they are.
        relu_forward=numpy_kernels.relu_forward,
        adam_update=numpy_kernels.adam_update,
        adam_update_many=k.adam_update_many,
    )
