"""Shared test configuration: hypothesis profiles, and skips that say why."""
import os
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# JIT compilation (Numba, CuPy) breaks per-example deadlines, so none is set.
settings.register_profile("default", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


@pytest.fixture
def torch():
    """PyTorch, the optional test-only reference; the test skips (saying why) when it is absent."""
    module = _torch()
    if module is None:
        pytest.skip("PyTorch is not installed (pip install -e '.[reference]' to compare against it)")
    module.set_default_dtype(module.float64)
    return module


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def without_cupy(monkeypatch, tmp_path):
    """CuPy made unimportable, in this process and (through the returned environment) in subprocesses.

    CI installs CuPy (for NVRTC) on machines without a GPU, so a test of the
    "CuPy is missing" message hides it rather than depending on the machine.
    """
    from minicnn import backend

    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    monkeypatch.setattr(backend, "_loaded", {k: v for k, v in backend._loaded.items() if k != "cupy"})
    monkeypatch.setattr(backend, "_failures", {k: v for k, v in backend._failures.items() if k != "cupy"})
    hidden = tmp_path / "hide-cupy"
    (hidden / "cupy").mkdir(parents=True)
    (hidden / "cupy" / "__init__.py").write_text("raise ImportError(\"No module named 'cupy'\")\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hidden), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def inflated(monkeypatch):
    """A list that collects the size of every read from a zip member (the bytes inflated)."""
    sizes, read = [], zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        data = read(self, n)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    return sizes
