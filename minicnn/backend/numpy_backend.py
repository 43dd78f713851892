"""The NumPy backend: host arrays and no overrides, so every kernel is the readable reference."""
import numpy as np

from minicnn.backend import Backend


def make_backend() -> Backend:
    return Backend(name="numpy", xp=np, device="cpu")
