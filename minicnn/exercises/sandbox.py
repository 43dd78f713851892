"""A check of a workspace file in a child process, with a time limit on each stage.

A learner's function may loop forever, and Python cannot stop a function from outside.  So
``minicnn exercise check`` runs the check in a child process (``python -m minicnn.exercises.sandbox``),
which reports each stage as one JSON line as the stage begins and ends; the parent prints each
stage as it ends, and ends the child when a stage runs past the time limit:

    {"begin": "fixed inputs"}                        a stage begins (the clock starts; the first is
                                                     "loading the file", once Python and minicnn are in)
    {"stage": {"name": ..., "ok": ..., "lines": [...]}}   it ended
    {"error": "relu.py: relu.py, line 3: ..."}       the file could not be imported: one line
    {"passed": true}                                 the end

The protocol has the child's standard output to itself: before any of the learner's code runs, the
child keeps a copy of that pipe for the protocol and points file descriptor 1 at standard error, which
it shares with the parent.  So ``print``, ``os.write(1, ...)`` and the programs the learner's code
starts all write to standard error: printing from an exercise works as it does anywhere, and nothing
printed can end a check or fake a pass.  The child starts a session of its own, so that at
the end the parent ends it together with every process the learner's code started.

Docs: docs/exercises.md
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

#: Seconds a stage may run before the check stops it.
TIME_LIMIT = 60.0
#: Seconds the child may take to start Python and import minicnn, before the first stage (not the learner's time).
STARTUP = 120.0


#: The stage before the first: Python starts and imports minicnn; none of the learner's code runs yet.
_STARTING = "starting Python"


def _reader(stream, lines: queue.Queue) -> None:
    """Each line of ``stream`` into ``lines``, then None at its end; the stream is closed here, not by the parent,
    which would wait for as long as a process of the learner's holds the pipe."""
    try:
        for line in stream:
            lines.put(line)
    finally:
        lines.put(None)
        stream.close()


def _message(line: str, path: str) -> dict:
    """One line of the protocol, or ValueError (one line) for a line that is none."""
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        raise ValueError(f"{path}: the check's child wrote {line.strip()[:60]!r}, which is not a line of its report; "
                         f"this is a fault of minicnn's")
    return message


def _end(child: subprocess.Popen) -> None:
    """End the child and every process of its session (those the learner's code started), and wait for it."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(child.pid, signal.SIGKILL)  # the child leads its own session: its id is the group's
        else:  # Windows: no process groups
            child.kill()
    except (ProcessLookupError, PermissionError):  # the whole group has ended already
        pass
    child.wait()


def check_in_child(name: str, folder, examples: int, time_limit: float, say) -> bool:
    """Check exercise ``name``'s file in ``folder`` in a child process; ``say(stage)`` for each stage.

    Returns whether it passed; raises ValueError (one line) for a file that cannot be imported or a
    stage that runs past ``time_limit`` seconds.
    """
    from minicnn.exercises.checking import Stage

    path = f"{folder}/{name}.py"
    command = [sys.executable, "-m", "minicnn.exercises.sandbox", name, str(folder), str(examples)]
    # hypothesis keeps a cache in ./.hypothesis unless told otherwise: not in the learner's folder
    storage = os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY") or os.path.join(tempfile.gettempdir(), "minicnn-hypothesis")
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, encoding="utf-8",
                             errors="replace", start_new_session=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1", "MINICNN_BACKEND": "numpy",
                                  "HYPOTHESIS_STORAGE_DIRECTORY": storage})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(child.stdout, lines), daemon=True).start()
    startup = max(time_limit, STARTUP)
    stage, deadline = _STARTING, time.monotonic() + startup
    try:
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                if stage == _STARTING:
                    raise ValueError(f"{path}: Python and minicnn did not start within {startup:g} s, before any of "
                                     f"your code ran (a busy machine?); try again") from None
                raise ValueError(f"{path}: stopped after {time_limit:g} s in the stage '{stage}': "
                                 f"your code did not return (an endless loop?); --time-limit sets the limit") from None
            if line is None:
                break
            message = _message(line, path)
            if "begin" in message:
                stage, deadline = message["begin"], time.monotonic() + time_limit
            elif "stage" in message:
                say(Stage(**message["stage"]))
            elif "error" in message:
                raise ValueError(message["error"])
            elif "passed" in message:
                return bool(message["passed"])
    finally:
        _end(child)
    raise ValueError(f"{path}: the check ended without a result in the stage '{stage}' "
                     f"(exit status {child.returncode}: did the exercise's code end the process?)")


def _child(name: str, folder: str, examples: int) -> None:
    """The child's side: load, check, and report each stage on the protocol stream."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the pipe to the parent, for the protocol alone
    os.dup2(2, 1)  # whatever else writes to standard output (os.write(1, ...), a program started) goes to stderr
    sys.stdout = sys.stderr  # and print() with it, in the order it prints to standard error

    def send(message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    from minicnn.exercises import checking
    from minicnn.exercises.catalog import EXERCISES
    from minicnn.exercises.workspace import file_of, load

    exercise = EXERCISES[name]
    send({"begin": "loading the file"})
    try:
        module = load(exercise, file_of(folder, name))
        result = checking.check(exercise, module, examples=examples, begin=lambda stage: send({"begin": stage}),
                                say=lambda s: send({"stage": {"name": s.name, "ok": s.ok, "lines": s.lines}}))
    except ValueError as exc:  # the file could not be imported, or named no such function
        send({"error": str(exc)})
        return
    except Exception as exc:  # a fault of the check itself: still one line
        send({"error": f"the check itself failed ({type(exc).__name__}: {exc}); this is a fault of minicnn's"})
        return
    send({"passed": result.passed})


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
