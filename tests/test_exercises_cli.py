"""`minicnn exercise`: list, start, check, hint and train from the command line, and bad workspace files in one line.

A check runs the learner's file in a child process with a time limit per stage, so a file with a
syntax error, a failed import, a missing function or an endless loop ends in one line
``minicnn exercise: error: ...`` (exit status 1), never in a traceback of minicnn's own.
"""
import sys
import time

import pytest

from exercise_solutions.planted import solved
from minicnn import cli
from minicnn.exercises import EXERCISES, sandbox, workspace


@pytest.fixture(autouse=True)
def forget_workspaces(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in EXERCISES:
        sys.modules.pop(name, None)


def run(capsys, *argv):
    status = cli.main(["exercise", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minicnn exercise: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_from_start_to_a_passing_check(tmp_path, capsys):
    folder = tmp_path / "ws"
    status, out, _ = run(capsys, "list", "--dir", str(folder))
    assert status == 0 and "0 of 12 done" in out and f"Next: minicnn exercise start relu --dir {folder}" in out
    status, out, _ = run(capsys, "start", "relu", "--dir", str(folder))
    assert status == 0 and f"Wrote {folder / 'relu.py'}" in out and "docs/layers.md#relu" in out

    status, out, _ = run(capsys, "check", "relu", "--dir", str(folder))
    assert status == 1 and "relu_forward is not implemented yet" in out

    solved(tmp_path / "solutions")
    (folder / "relu.py").write_text((tmp_path / "solutions" / "relu.py").read_text())
    status, out, _ = run(capsys, "check", "relu", "--dir", str(folder), "--examples", "5")
    assert status == 0, out
    assert [line.split(":")[0].strip() for line in out.splitlines() if line.startswith("  ok")] == \
        ["ok    shapes and dtypes", "ok    fixed inputs", "ok    drawn cases", "ok    gradient check",
         "ok    in the network"]
    assert "relu: passed" in out and "Next: minicnn exercise start linear" in out
    status, out, _ = run(capsys, "list", "--dir", str(folder))
    assert "1 of 12 done" in out and "relu             -                done" in out


def test_start_keeps_existing_work_unless_forced(tmp_path, capsys):
    run(capsys, "start", "im2col", "--dir", str(tmp_path))
    (tmp_path / "im2col.py").write_text("mine")
    status, _, err = run(capsys, "start", "im2col", "--dir", str(tmp_path))
    assert status == 1 and "exists (your work is kept); --force" in one_line_error(err)
    assert (tmp_path / "im2col.py").read_text() == "mine"
    assert run(capsys, "start", "im2col", "--dir", str(tmp_path), "--force")[0] == 0
    assert "NotImplementedError" in (tmp_path / "im2col.py").read_text()


def test_start_names_what_an_exercise_builds_on(tmp_path, capsys):
    status, out, _ = run(capsys, "start", "conv2d_backward", "--dir", str(tmp_path))
    assert status == 0 and "It builds on col2im, not done yet: minicnn exercise start col2im" in out


def test_hints_come_one_tier_at_a_time(tmp_path, capsys):
    run(capsys, "start", "adam", "--dir", str(tmp_path))
    outs = [run(capsys, "hint", "adam", "--dir", str(tmp_path))[1] for _ in range(3)]
    assert "Hint 1 of 3 for adam (a question)" in outs[0] and "?" in outs[0]
    assert "Hint 2 of 3 for adam (the key formula)" in outs[1] and "1 - beta1**step" in outs[1]
    assert "Hint 3 of 3 for adam (the shapes of every array)" in outs[2] and "The next hint" not in outs[2]
    assert all("docs/optimizers.md#adam" in out for out in outs)
    out = run(capsys, "hint", "adam", "--dir", str(tmp_path), "--tier", "1")[1]
    assert "Hint 1 of 3" in out and f"The next hint: minicnn exercise hint adam --dir {tmp_path} --tier 2" in out


@pytest.mark.parametrize("source, words", [
    ("import numpy as np\ndef relu_forward(x)\n    return x\n", "relu.py, line 2: expected ':'"),
    ("import numpyy\n", "No module named 'numpyy' (relu.py, line 1: `import numpyy`)"),
    ("def relu_forward(x):\n    return x\n", "defines no function relu_backward"),
    ("raise RuntimeError('at import')\n", "importing it raised RuntimeError: at import (relu.py, line 1"),
], ids=["syntax error", "import error", "missing function", "raises when imported"])
def test_a_file_that_cannot_be_imported_is_one_line(source, words, tmp_path, capsys):
    (tmp_path / "relu.py").write_text(source)
    status, _, err = run(capsys, "check", "relu", "--dir", str(tmp_path))
    assert status == 1 and words in one_line_error(err)


def test_an_import_of_a_missing_exercise_says_what_to_write_first(tmp_path, capsys):
    run(capsys, "start", "conv2d_forward", "--dir", str(tmp_path))
    status, _, err = run(capsys, "check", "conv2d_forward", "--dir", str(tmp_path))
    line = one_line_error(err)
    assert status == 1 and "No module named 'im2col'" in line and "minicnn exercise start im2col" in line


def test_a_function_that_runs_forever_is_stopped(tmp_path, capsys):
    (tmp_path / "relu.py").write_text("def relu_forward(x):\n    while True:\n        pass\n\n"
                                      "def relu_backward(grad_output, y):\n    return grad_output\n")
    status, out, err = run(capsys, "check", "relu", "--dir", str(tmp_path), "--time-limit", "1")
    line = one_line_error(err)
    assert status == 1 and "stopped after 1 s in the stage 'shapes and dtypes'" in line and "endless loop" in line


def test_a_function_that_starts_processes_is_stopped_with_them(tmp_path, capsys):
    """A process the learner's code starts (here a fork, which holds the check's pipe) ends with the check."""
    ticks = tmp_path / "ticks"
    (tmp_path / "relu.py").write_text(
        "import os, time\n\ndef relu_forward(x):\n    if os.fork() == 0:\n        for _ in range(400):\n"
        f"            open({str(ticks)!r}, 'a').write('.')\n            time.sleep(0.05)\n        os._exit(0)\n"
        "    while True:\n        pass\n\ndef relu_backward(grad_output, y):\n    return grad_output\n")
    began = time.monotonic()
    status, _, err = run(capsys, "check", "relu", "--dir", str(tmp_path), "--time-limit", "1")
    assert status == 1 and "stopped after 1 s" in one_line_error(err)
    assert time.monotonic() - began < 15  # not the 20 s the forked process would run
    time.sleep(0.3)
    size = ticks.stat().st_size
    time.sleep(0.3)
    assert ticks.stat().st_size == size  # the forked process ended too


def test_a_slow_start_is_not_called_an_endless_loop(tmp_path):
    """Before the first stage no code of the learner's has run: a start that takes too long says so."""
    solved(tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sandbox, "STARTUP", 0.0)
        with pytest.raises(ValueError) as failure:
            sandbox.check_in_child("relu", tmp_path, 3, 0.001, print)
    assert "did not start" in str(failure.value) and "before any of your code ran" in str(failure.value)
    assert "endless loop" not in str(failure.value)


def test_writing_to_standard_output_cannot_disturb_or_fake_a_check(tmp_path, capsys):
    """The learner's code writes to file descriptor 1 itself (a line that looks like a pass, bytes that are not
    UTF-8): the check is not fooled, and says what it says of the stub."""
    workspace.start(EXERCISES["relu"], tmp_path)
    relu = tmp_path / "relu.py"
    relu.write_text("import os\nos.write(1, b'{\"passed\": true}\\n\\xff not json\\n')\n" + relu.read_text())
    status, out, err = run(capsys, "check", "relu", "--dir", str(tmp_path))
    assert status == 1 and not err and "relu_forward is not implemented yet" in out


def test_an_edit_saved_during_the_check_is_not_recorded_as_checked(tmp_path, capsys):
    folder = solved(tmp_path)
    relu = folder / "relu.py"
    relu.write_text(relu.read_text() + "\nopen(__file__, 'a').write('# saved during the check')\n")
    status, out, _ = run(capsys, "check", "relu", "--dir", str(folder), "--examples", "3")
    assert status == 0 and "relu: passed" in out
    assert workspace.status(EXERCISES["relu"], folder) == "changed"


def test_a_wrong_type_is_one_failing_line(tmp_path, capsys):
    (tmp_path / "relu.py").write_text("def relu_forward(x):\n    return x.tolist()\n\n"
                                      "def relu_backward(grad_output, y):\n    return grad_output\n")
    status, out, err = run(capsys, "check", "relu", "--dir", str(tmp_path))
    assert status == 1 and not err
    assert "FAIL  shapes and dtypes: relu_forward returned a list for y; expected a NumPy array" in out


def test_an_exception_in_the_learners_code_names_their_line(tmp_path, capsys):
    (tmp_path / "relu.py").write_text("import numpy as np\n\ndef relu_forward(x):\n    return np.maximum(x, 0)\n\n"
                                      "def relu_backward(grad_output, y):\n    return grad_output[y > 0, 5]\n")
    status, out, err = run(capsys, "check", "relu", "--dir", str(tmp_path))
    assert status == 1 and not err and "Traceback" not in out
    assert "relu_backward raised IndexError" in out and "(relu.py, line 7: `return grad_output[y > 0, 5]`)" in out


def test_the_learners_prints_do_not_disturb_the_check(tmp_path, capsys):
    (tmp_path / "relu.py").write_text("import numpy as np\n\ndef relu_forward(x):\n    print('forward', x.shape)\n"
                                      "    return np.maximum(x, 0)\n\n"
                                      "def relu_backward(grad_output, y):\n    return grad_output * (y > 0)\n")
    status, out, _ = run(capsys, "check", "relu", "--dir", str(tmp_path), "--examples", "3")
    assert status == 0 and "relu: passed" in out


def test_train_runs_the_learners_layers_beside_the_reference(tmp_path, capsys):
    """Every exercise done: the network is the learner's (print(model) says so), their functions really run, and
    the accuracy on a small slice is within a point of the reference's on the same run."""
    folder = solved(tmp_path / "ws")
    marker = tmp_path / "relu-ran"
    relu = folder / "relu.py"
    relu.write_text(relu.read_text().replace("    return np.maximum(x, 0)",
                                              f"    open({str(marker)!r}, 'a').write('.')\n    return np.maximum(x, 0)"))
    for exercise in EXERCISES.values():
        workspace.record_pass(exercise, folder)
    status, out, _ = run(capsys, "train", "--dir", str(folder), "--limit", "192", "--test-limit", "300")
    assert status == 0, out
    assert "Yours: relu, linear, log_softmax_nll, im2col, conv2d_forward, col2im, conv2d_backward, maxpool2d, adam" in out
    assert "(conv1): YourConv2d(1, 32, kernel_size=(3, 3)" in out and "forward: conv2d_forward.py" in out
    assert "(relu1): YourReLU(relu.py)" in out and "optimizer: YourAdam (adam.py)" in out
    assert "The reference's: flatten" in out and "Reached: the two are" in out
    assert marker.read_text().count(".") >= 3 * 3  # three ReLUs in each of three batches, and more to evaluate


def test_train_uses_the_reference_where_an_exercise_is_not_done(tmp_path, capsys):
    folder = solved(tmp_path / "ws")
    workspace.record_pass(EXERCISES["relu"], folder)
    status, out, _ = run(capsys, "train", "--dir", str(folder), "--limit", "64", "--test-limit", "100")
    assert status == 0
    assert "Yours: relu\n" in out and "linear (its check has not passed yet)" in out
    assert "(conv1): Conv2d(1, 32" in out and "(relu1): YourReLU(relu.py)" in out


def test_unknown_names_and_bad_numbers_get_usage(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["exercise", "check", "reul"])
    assert exit.value.code == 2 and "invalid choice: 'reul'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        cli.main(["exercise", "train", "--limit", "0"])
    assert exit.value.code == 2 and "--limit: must be more than 0" in capsys.readouterr().err
