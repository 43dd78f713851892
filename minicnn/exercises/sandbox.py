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

The learner's own ``print`` goes to standard error, which the child shares with the parent, so
printing from an exercise works as it does anywhere; the protocol keeps standard output to itself.

Docs: docs/exercises.md
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

#: Seconds a stage may run before the check stops it.
TIME_LIMIT = 60.0
#: Seconds the child may take to start Python and import minicnn, before the first stage (not the learner's time).
STARTUP = 120.0


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def check_in_child(name: str, folder, examples: int, time_limit: float, say) -> bool:
    """Check exercise ``name``'s file in ``folder`` in a child process; ``say(stage)`` for each stage.

    Returns whether it passed; raises ValueError (one line) for a file that cannot be imported or a
    stage that runs past ``time_limit`` seconds.
    """
    from minicnn.exercises.checking import Stage

    command = [sys.executable, "-m", "minicnn.exercises.sandbox", name, str(folder), str(examples)]
    # hypothesis keeps a cache in ./.hypothesis unless told otherwise: not in the learner's folder
    storage = os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY") or os.path.join(tempfile.gettempdir(), "minicnn-hypothesis")
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1", "MINICNN_BACKEND": "numpy",
                                  "HYPOTHESIS_STORAGE_DIRECTORY": storage})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(child.stdout, lines), daemon=True).start()
    stage, deadline = "starting Python", time.monotonic() + max(time_limit, STARTUP)
    try:
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise ValueError(f"{folder}/{name}.py: stopped after {time_limit:g} s in the stage '{stage}': "
                                 f"your code did not return (an endless loop?); --time-limit sets the limit") from None
            if line is None:
                break
            message = json.loads(line)
            if "begin" in message:
                stage, deadline = message["begin"], time.monotonic() + time_limit
            elif "stage" in message:
                say(Stage(**message["stage"]))
            elif "error" in message:
                raise ValueError(message["error"])
            elif "passed" in message:
                return bool(message["passed"])
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
    raise ValueError(f"{folder}/{name}.py: the check ended without a result in the stage '{stage}' "
                     f"(exit status {child.returncode}: did the exercise's code end the process?)")


def _child(name: str, folder: str, examples: int) -> None:
    """The child's side: load, check, and report each stage on the protocol stream."""
    protocol = sys.stdout
    sys.stdout = sys.stderr  # the learner's print() must not reach the protocol

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
