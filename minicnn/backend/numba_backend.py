"""The Numba backend: host NumPy arrays, kernels compiled by Numba (fast CPU).

Arrays are plain NumPy arrays, so the layers' matrix products still go to
NumPy's BLAS; only the loops that :mod:`minicnn.backend.numba_kernels` overrides change, and
only for float32 and float64 arrays (other dtypes take the reference); the
convolution's own overrides are in :mod:`minicnn.backend.numba_conv`.
Kernels compile on first use and are cached on disk (``cache=True``), so a
fresh interpreter only pays the compile once per machine; on a terminal, the
first compile says so in one line (:class:`minicnn.backend.numba_kernels.CompileNotice`).
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
    from numba.core import event

    from minicnn.backend import numba_conv, numba_kernels

    event.register("numba:compile", numba_kernels.CompileNotice())

    overrides = {name: getattr(module, name) for module in (numba_kernels, numba_conv) for name in module.__all__}
    return Backend(name="numba", xp=np, device="cpu", dtypes=numba_kernels.DTYPES, overrides=overrides)
