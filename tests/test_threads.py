"""minicnn's thread policy (minicnn/threads.py): OPENBLAS_THREAD_TIMEOUT set when minicnn loads before NumPy,
never over the user's value; the Numba backend's layer; MINICNN_THREADS=leave, which turns both off; and the
one line that says what happened."""
import argparse
import ctypes.util
import io
import os
import subprocess
import sys

import pytest

from minicnn import cli, threads

DEFAULT_LINE = ("threads: OpenBLAS sleeps after 2^4 cycles; Numba on GNU OpenMP with passive threads "
                "(MINICNN_THREADS=leave to keep the process's own)")
OURS = ("MINICNN_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER", "MINICNN_BACKEND")


def _backends():
    from minicnn import available_backends
    return available_backends()


def _fresh_process(code, **env):
    """Run ``code`` in a fresh interpreter, none of the thread settings in its environment but ``env``; then
    print the two variables and the description: every line printed, the last three those."""
    environ = {k: v for k, v in os.environ.items() if k not in OURS}
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", code + "\nimport os, minicnn.threads as t\n"
                           "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT')); print(os.environ.get('OMP_WAIT_POLICY'))\n"
                           "print(t.describe())"], env=environ, capture_output=True, text=True, check=True)
    return tuple(done.stdout.splitlines())


# --- in fresh processes: what import minicnn does ------------------------------------------------

def test_set_when_minicnn_loads_before_numpy():
    code = "import minicnn; minicnn.set_backend('numba')" if "numba" in _backends() else "import minicnn"
    timeout, policy, line = _fresh_process(code)
    assert (timeout, policy) == ("4", "None")  # OMP_WAIT_POLICY only while libgomp loads, then taken out
    assert line.startswith("threads: OpenBLAS sleeps after 2^4 cycles; ")
    if "numba" in _backends() and ctypes.util.find_library("gomp") is not None:
        assert line == DEFAULT_LINE


def test_the_users_value_stands():
    assert _fresh_process("import minicnn", OPENBLAS_THREAD_TIMEOUT="12") == (
        "12", "None", "threads: OpenBLAS with the environment's OPENBLAS_THREAD_TIMEOUT=12; Numba's threading layer "
        "chosen when its backend loads (MINICNN_THREADS=leave to keep the process's own)")


def test_left_alone_once_numpy_is_loaded():
    """OpenBLAS has read its settings by then: a value set afterwards would claim an effect it has not."""
    timeout, _, line = _fresh_process("import numpy, minicnn")
    assert timeout == "None"
    assert line.startswith("threads: OpenBLAS at its default timeout (NumPy was imported before minicnn, too late "
                           "to set it); ")


def test_minicnn_threads_leave_keeps_the_process_as_it_was():
    """Neither variable set, Numba's own layer choice (numba.config.THREADING_LAYER untouched), and the line
    says so."""
    code = ("import minicnn\n"
            "if 'numba' in minicnn.available_backends():\n"
            "    minicnn.set_backend('numba'); import numba; print(numba.config.THREADING_LAYER)\n"
            "else:\n"
            "    print('default')")
    layer, timeout, policy, line = _fresh_process(code, MINICNN_THREADS=" Leave ")
    assert (layer, timeout, policy) == ("default", "None", "None")
    assert line.startswith("threads: OpenBLAS at its default timeout; Numba")
    assert line.endswith("(MINICNN_THREADS=leave: the process's thread settings left as they were)")


# --- in this process: the decisions, with what they see handed to them -------------------------

def test_set_thread_timeout_decides_from_the_environment_and_the_loaded_modules():
    environ = {}
    assert threads.set_thread_timeout(environ, modules={}) == "set" and environ == {"OPENBLAS_THREAD_TIMEOUT": "4"}
    assert threads.set_thread_timeout(environ, modules={}) == "kept"  # already set: kept
    environ = {}
    assert threads.set_thread_timeout(environ, modules={"numpy": object()}) == "late" and environ == {}


@pytest.mark.parametrize("value, expected", [(None, "minicnn"), ("", "minicnn"), ("minicnn", "minicnn"),
                                             ("leave", "leave"), (" LEAVE\n", "leave")])
def test_the_switch_takes_two_values(value, expected):
    assert threads.read_switch({} if value is None else {"MINICNN_THREADS": value}) == expected


@pytest.mark.parametrize("value", ["none", "off", "0", "leave it"])
def test_another_value_of_the_switch_is_warned_about_by_name(value):
    with pytest.warns(RuntimeWarning) as caught:
        assert threads.read_switch({"MINICNN_THREADS": value}) == "minicnn"  # the default policy applies
    message = str(caught[0].message)
    assert message.startswith(f"MINICNN_THREADS={value!r} is not one of 'minicnn' (the default")
    assert "or 'leave' (" in message and message.endswith("minicnn's default policy applies")


@pytest.fixture
def state(monkeypatch):
    """threads' record of this process, restored afterwards; a switch, a timeout and nothing chosen to start."""
    for name in ("_switch", "_openblas", "_numba"):
        monkeypatch.setattr(threads, name, getattr(threads, name))
    for name in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_running_layer", lambda: None)
    monkeypatch.setattr(threads, "openmp_loaded", lambda: False)
    return monkeypatch


def test_leave_asks_no_layer_rule(state):
    state.setattr(threads, "_switch", "leave")
    state.setattr(threads, "_openblas", "left")
    assert threads.numba_threading_layer(choose=lambda: pytest.fail("the rule ran")) is None
    assert threads.describe() == ("threads: OpenBLAS at its default timeout; Numba on its own choice of threading "
                                  "layer (MINICNN_THREADS=leave: the process's thread settings left as they were)")
    state.setenv("OPENBLAS_THREAD_TIMEOUT", "7")
    assert threads.describe().startswith("threads: OpenBLAS with the environment's OPENBLAS_THREAD_TIMEOUT=7; ")


@pytest.mark.parametrize("environ, chosen, loaded, numba_part", [
    ({}, "omp", False, "Numba on GNU OpenMP with passive threads"),
    ({"OMP_WAIT_POLICY": "passive"}, "omp", False,
     "Numba on GNU OpenMP with passive threads (the environment's OMP_WAIT_POLICY=passive)"),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "workqueue", False,
     "Numba on its workqueue layer (the environment's OMP_WAIT_POLICY=ACTIVE)"),
    ({}, "workqueue", True,
     "Numba on its workqueue layer (GNU OpenMP was loaded before, by another library, with its own policy)"),
    ({}, "workqueue", False, "Numba on its workqueue layer (no GNU OpenMP runtime here)"),
    ({"NUMBA_THREADING_LAYER": "tbb"}, None, False, "Numba on the environment's NUMBA_THREADING_LAYER=tbb"),
])
def test_the_line_says_which_layer_and_why(environ, chosen, loaded, numba_part, state):
    state.setattr(threads, "_switch", "minicnn")
    state.setattr(threads, "_openblas", "set")
    state.setattr(threads, "openmp_loaded", lambda: loaded)
    for name, value in environ.items():
        state.setenv(name, value)
    assert threads.numba_threading_layer(choose=lambda: chosen) == chosen
    assert threads.describe() == (f"threads: OpenBLAS sleeps after 2^4 cycles; {numba_part} "
                                  "(MINICNN_THREADS=leave to keep the process's own)")
    state.setattr(threads, "_running_layer", lambda: "workqueue")  # Numba started on another layer than asked
    assert (", running on workqueue (" in threads.describe()) == (chosen != "workqueue")


# --- the command line ---------------------------------------------------------------------------

@pytest.mark.skipif("numba" not in _backends(), reason="the Numba backend does not load here")
def test_the_command_line_says_it_on_a_terminal(monkeypatch, capsys):
    args = argparse.Namespace(backend="numba", command_parser=argparse.ArgumentParser(prog="minicnn train"))
    cli._select_backend(args)
    assert capsys.readouterr().err == ""  # captured, not a terminal: nothing added to the output

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    cli._select_backend(args)
    assert sys.stderr.getvalue() == f"minicnn train: {threads.describe()}\n"
    assert threads.describe().startswith("threads: ")
