"""OpenBLAS's threads told to sleep as soon as a matrix product is done, before NumPy loads OpenBLAS.

A training step alternates NumPy's matrix products (on OpenBLAS's threads) with the
Numba backend's parallel loops (on Numba's).  After each product OpenBLAS's threads
keep spinning, waiting for the next one, for about 2^28 processor cycles (a tenth of a
second) by default; on a machine with few cores the loop that follows then shares the
cores with them.  ``OPENBLAS_THREAD_TIMEOUT=4`` lets them spin for 2^4 cycles and
sleep.  OpenBLAS reads the variable once, when it is loaded, so this module sets it
before the package imports NumPy, unless the environment names a value already (which
is kept) or NumPy is already imported (then it is too late, and nothing changes).

``python benchmarks/bench_process.py`` measures it against OpenBLAS's default in
processes of their own; docs/backends.md#threads-and-host-memory has the figures.
"""
from __future__ import annotations

import os
import sys

#: The value set: 2^4 cycles of spinning (OpenBLAS takes 4 to 30).
THREAD_TIMEOUT = "4"


def set_thread_timeout(environ=os.environ, modules=sys.modules) -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` unless it is set or NumPy is loaded; whether it was set."""
    if "OPENBLAS_THREAD_TIMEOUT" in environ or "numpy" in modules:
        return False
    environ["OPENBLAS_THREAD_TIMEOUT"] = THREAD_TIMEOUT
    return True


set_thread_timeout()
