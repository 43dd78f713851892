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

    # ReLU and Adam's step are written with the array module of their arguments: the
    # references run on CuPy arrays as they are, so only the window kernels are overridden.
    return Backend(name="cupy", xp=cupy, device="cuda", overrides={name: getattr(k, name) for name in k.__all__})
