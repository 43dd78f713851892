"""OPENBLAS_THREAD_TIMEOUT: set by minicnn when it loads before NumPy, never over the user's value."""
import os
import subprocess
import sys

from minicnn import _blas_threads


def _timeout_in_a_fresh_process(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"],
                          env=environ, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_set_when_minicnn_loads_before_numpy():
    assert _timeout_in_a_fresh_process("import minicnn") == "4"


def test_the_users_value_stands():
    assert _timeout_in_a_fresh_process("import minicnn", OPENBLAS_THREAD_TIMEOUT="12") == "12"


def test_left_alone_once_numpy_is_loaded():
    """OpenBLAS has read its settings by then: a value set afterwards would claim an effect it has not."""
    assert _timeout_in_a_fresh_process("import numpy, minicnn") == "None"


def test_set_thread_timeout_decides_from_the_environment_and_the_loaded_modules():
    environ = {}
    assert _blas_threads.set_thread_timeout(environ, modules={}) and environ == {"OPENBLAS_THREAD_TIMEOUT": "4"}
    assert not _blas_threads.set_thread_timeout(environ, modules={})  # already set: kept
    environ = {}
    assert not _blas_threads.set_thread_timeout(environ, modules={"numpy": object()}) and environ == {}
