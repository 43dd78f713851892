"""minicnn's thread policy, in one place: OpenBLAS's threads and Numba's, told to sleep soon after their work.

A training step alternates NumPy's matrix products (on OpenBLAS's threads) with the Numba
backend's parallel loops (on Numba's).  Threads that keep spinning after their part, waiting for
more, take the cores from the other part on a machine with few cores.  So by default minicnn sets
two things, each once per process, because each runtime reads its setting once, as it loads:

* **OpenBLAS's thread timeout.**  After each product OpenBLAS's threads spin for about 2^28
  processor cycles (a tenth of a second) by default.  ``import minicnn`` sets
  ``OPENBLAS_THREAD_TIMEOUT=4`` (2^4 cycles, then they sleep) in ``os.environ`` before the
  package imports NumPy, unless the environment names a value already (kept) or NumPy is
  imported already (then OpenBLAS has read its settings, and nothing is set).  The variable
  stays in ``os.environ``, so processes started from this one inherit it.
* **The Numba backend's threading layer.**  When the Numba backend loads, its loops are put on
  GNU OpenMP (libgomp) with passive threads: ``OMP_WAIT_POLICY=PASSIVE`` is in the environment
  only while Numba's OpenMP layer loads the runtime, and taken out again.  Where that cannot be
  done (no libgomp on the system, libgomp loaded already by another library, another
  ``OMP_WAIT_POLICY`` in the environment) the loops run on Numba's workqueue layer, whose
  threads sleep too; ``NUMBA_THREADING_LAYER`` in the environment is left to choose.

**PyTorch in the same process shares the policy.**  PyTorch's CPU build links the same
``libgomp.so.1``, and the runtime is loaded once per process: where minicnn's Numba backend loads
it first, PyTorch's threads sleep after each parallel region too.  Its effect goes both ways
(2026-12-07, a PyTorch training loop measured with and without minicnn's Numba backend
loaded first): on a quiet machine PyTorch ran at 0.66-0.76x its own rate; on a loaded 2-core
machine, 3-4x faster.  A program that imports PyTorch before minicnn's Numba
backend loads keeps PyTorch's runtime as PyTorch set it up (minicnn's loops then run on
workqueue).  ``minicnn bench`` runs its PyTorch reference in a process of its own for this reason.

**Opting out: ``MINICNN_THREADS=leave``.**  With ``MINICNN_THREADS=leave`` in the environment,
minicnn sets neither ``OPENBLAS_THREAD_TIMEOUT`` nor ``OMP_WAIT_POLICY`` and leaves Numba's
threading layer to Numba's own choice (``NUMBA_THREADING_LAYER``, else the first of TBB,
OpenMP, workqueue that loads, OpenMP with its own wait policy).  ``MINICNN_THREADS=minicnn``
(or unset, or empty) is the policy above; any other value is warned about, naming the
variable and both values, and the policy above applies.

When each part can still be chosen: the variable is read once, by ``import minicnn`` (this
module runs first, before the package imports NumPy).  Set it in the shell, or in
``os.environ`` before the first ``import minicnn`` of the process:

    MINICNN_THREADS=leave python train.py

    import os; os.environ["MINICNN_THREADS"] = "leave"   # before the first import minicnn
    import minicnn

After ``import minicnn`` OpenBLAS has read its timeout, and the Numba part is decided when the
Numba backend first loads (``set_backend("numba")``, or the first use with it as the default);
in a notebook, restart the kernel to change either.  :func:`describe` says in one line what
happened in this process (``minicnn train`` and the other commands print it as they start, on
a terminal, when the backend is numba).

Docs: docs/backends.md#the-thread-policy-pytorch-and-minicnn_threads
"""
from __future__ import annotations

import os
import sys
import warnings

#: The switch, read once by ``import minicnn``, and its values.
SWITCH = "MINICNN_THREADS"
POLICY = "minicnn"  # the default: the policy of the module docstring
LEAVE = "leave"     # the process left as it was
VALUES = (POLICY, LEAVE)

#: The OpenBLAS thread timeout set: 2^4 cycles of spinning (OpenBLAS takes 4 to 30).
THREAD_TIMEOUT = "4"


def read_switch(environ=os.environ) -> str:
    """``POLICY`` or ``LEAVE`` from ``MINICNN_THREADS`` (unset or empty: ``POLICY``); another value is
    warned about and taken as ``POLICY``."""
    raw = environ.get(SWITCH, "")
    value = raw.strip().lower()
    if not value:
        return POLICY
    if value in VALUES:
        return value
    warnings.warn(f"{SWITCH}={raw!r} is not one of {POLICY!r} (the default: OpenBLAS's and OpenMP's threads "
                  f"sleep soon after their work) or {LEAVE!r} (the process's thread settings left as they are); "
                  f"minicnn's default policy applies", RuntimeWarning, stacklevel=2)
    return POLICY


def set_thread_timeout(environ=os.environ, modules=sys.modules) -> str:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` unless it is set or NumPy is loaded: ``"set"``, ``"kept"`` (the
    environment's value) or ``"late"`` (NumPy loaded first: OpenBLAS has read its settings)."""
    if "OPENBLAS_THREAD_TIMEOUT" in environ:
        return "kept"
    if "numpy" in modules:
        return "late"
    environ["OPENBLAS_THREAD_TIMEOUT"] = THREAD_TIMEOUT
    return "set"


# --- the Numba backend's threading layer ------------------------------------------------------

def openmp_loaded() -> bool:
    """Whether GNU OpenMP (libgomp.so.1) is mapped into this process already; True where that is
    unknown (no /proc/self/maps: not Linux), so its policy is never assumed."""
    try:
        with open("/proc/self/maps") as maps:
            return any("/libgomp.so.1" in line for line in maps)
    except OSError:
        return True


def openmp_or_workqueue(loaded=openmp_loaded) -> str:
    """``"omp"``, with GNU OpenMP loaded now with passive threads, where that can be set up; else
    ``"workqueue"``.  ``loaded()`` says whether libgomp is in the process already.

    GNU OpenMP's threads spin-wait after every parallel loop by default, competing for the cores
    with BLAS's threads in the product that follows (a MnistCNN training step ran at 0.5-0.8x the
    rate of sleeping threads on two cores).  ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep.  The
    runtime reads it once, as it loads, so it is put in the environment only while Numba's OpenMP
    layer is imported, and taken out again: a library loaded later sees the environment as it was.
    That needs a runtime nothing in the process has loaded yet, and no other policy chosen by the
    user.

    Why not workqueue, whose threads sleep too: its calling thread hands every loop to its workers and
    waits, so each loop wakes two sleeping threads on two cores, where OpenMP's calling thread takes a
    share itself and wakes one.  On the 2-core Intel Xeon (AVX-512) machine of 2026-12-07 a training
    step ran at 1.09-1.41x and inference at 1.04-1.61x the workqueue rate (four runs of
    benchmarks/bench_process.py); on the 2-core Zen 4 machine of 2026-12-02, 0.86-1.16x and 0.88-0.94x
    (docs/backends.md#threads-and-host-memory).
    """
    chosen = os.environ.get("OMP_WAIT_POLICY")
    if (chosen is not None and chosen.strip().upper() != "PASSIVE") or loaded():
        return "workqueue"
    if chosen is None:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from numba.np.ufunc import omppool  # noqa: F401  (loads libgomp, which reads the policy now)
    except ImportError:  # no OpenMP runtime on this system
        return "workqueue"
    finally:
        if chosen is None:
            del os.environ["OMP_WAIT_POLICY"]
    return "omp"


def numba_threading_layer(choose=openmp_or_workqueue) -> str | None:
    """The layer for ``numba.config.THREADING_LAYER`` as the Numba backend loads: ``choose()`` (the
    rule of :func:`openmp_or_workqueue`), or None where Numba's own choice stands (``MINICNN_THREADS=leave``,
    or ``NUMBA_THREADING_LAYER`` in the environment).  What happened is kept for :func:`describe`."""
    global _numba
    if _switch == LEAVE:
        _numba = ("left", None, None)
        return None
    if "NUMBA_THREADING_LAYER" in os.environ:
        _numba = ("layer", os.environ["NUMBA_THREADING_LAYER"], None)
        return None
    policy = os.environ.get("OMP_WAIT_POLICY")
    loaded_before = (policy is None or policy.strip().upper() == "PASSIVE") and openmp_loaded()
    layer = choose()
    if layer == "omp":
        why = "passive" if policy is None else "their passive"
    elif policy is not None and policy.strip().upper() != "PASSIVE":
        why = "their policy"
    else:
        why = "loaded" if loaded_before else "missing"
    _numba = (layer, why, policy)
    return layer


# --- what happened -----------------------------------------------------------------------------

def _running_layer() -> str | None:
    """The layer Numba's threads run on, once started; None before (or without Numba)."""
    numba = sys.modules.get("numba")
    try:
        return numba.threading_layer() if numba is not None else None
    except (ValueError, AttributeError):
        return None


def describe() -> str:
    """One line: the thread policy in use in this process and how it came about, for instance
    ``threads: OpenBLAS sleeps after 2^4 cycles; Numba on GNU OpenMP with passive threads
    (MINICNN_THREADS=leave to keep the process's own)``."""
    user_timeout = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    if _openblas == "set":
        blas = f"OpenBLAS sleeps after 2^{THREAD_TIMEOUT} cycles"
    elif _openblas == "late":
        blas = "OpenBLAS at its default timeout (NumPy was imported before minicnn, too late to set it)"
    elif user_timeout is not None:  # kept, or left
        blas = f"OpenBLAS with the environment's OPENBLAS_THREAD_TIMEOUT={user_timeout}"
    else:
        blas = "OpenBLAS at its default timeout"

    state, detail, policy = _numba
    chosen = {"layer": detail, "omp": "omp", "workqueue": "workqueue"}.get(state)
    if state is None:
        numba = ("Numba's own threading layer when its backend loads" if _switch == LEAVE
                 else "Numba's threading layer chosen when its backend loads")
    elif state == "left":
        numba = "Numba on its own choice of threading layer"
    elif state == "layer":
        numba = f"Numba on the environment's NUMBA_THREADING_LAYER={detail}"
    elif state == "omp":
        numba = "Numba on GNU OpenMP with passive threads"
        if detail == "their passive":
            numba += f" (the environment's OMP_WAIT_POLICY={policy})"
    else:
        numba = "Numba on its workqueue layer (" + {
            "their policy": f"the environment's OMP_WAIT_POLICY={policy}",
            "loaded": "GNU OpenMP was loaded before, by another library, with its own policy",
            "missing": "no GNU OpenMP runtime here"}[detail] + ")"
    running = _running_layer()
    if running is not None and state is not None and running != chosen:
        numba += f", running on {running}"

    if _switch == LEAVE:
        tail = f"({SWITCH}={LEAVE}: the process's thread settings left as they were)"
    else:
        tail = f"({SWITCH}={LEAVE} to keep the process's own)"
    return f"threads: {blas}; {numba} {tail}"


# What happened in this process, for describe(): the switch as read, then OpenBLAS's timeout ("set", "kept",
# "late" or "left"), once, as minicnn is imported; Numba's part when its backend loads.
_switch = read_switch()
_openblas = "left" if _switch == LEAVE else set_thread_timeout()
_numba: tuple = (None, None, None)  # (what numba_threading_layer did, why, the OMP_WAIT_POLICY seen)
