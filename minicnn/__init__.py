"""minicnn: a convolutional network written by hand.

Every layer's forward and backward pass is plain array code in one short
file; the same layers run on NumPy, Numba-compiled kernels or CuPy (GPU),
switched with :func:`set_backend`.
"""
from minicnn import threads  # noqa: F401  (first: it must run before NumPy loads OpenBLAS; the thread policy)
from minicnn.backend import BackendUnavailableError, available_backends, get_backend, set_backend
from minicnn.gradcheck import GradcheckError, gradcheck
from minicnn import models, nn, optim
from minicnn.nn.grad_mode import is_grad_enabled, no_grad
from minicnn.serialization import CheckpointError, load, load_checkpoint, save, save_checkpoint
from minicnn.tracing import trace

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError", "GradcheckError", "available_backends", "get_backend", "gradcheck",
    "models", "nn", "optim", "set_backend", "__version__",
    "CheckpointError", "load", "load_checkpoint", "save", "save_checkpoint", "is_grad_enabled", "no_grad",
    "trace",
]
