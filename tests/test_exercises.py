"""minicnn.exercises: every exercise's checks pass a correct file, fail a stub and a wrong one, and train uses them.

The worked solutions live in tests/exercise_solutions/ (test data, never in the starter files); the
planted mistakes and their diagnoses are tests/test_exercises_diagnoses.py, the command line and
its bad inputs tests/test_exercises_cli.py.
"""
import ast
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from exercise_solutions.planted import solved
from minicnn.exercises import EXERCISES, calls, check, checking, get, workspace
from minicnn.exercises.catalog import EXERCISES as CATALOG
from minicnn.nn import functional as F

NAMES = list(EXERCISES)


def test_the_exercises_come_in_the_order_of_the_issue():
    assert NAMES == ["relu", "linear", "log_softmax_nll", "im2col", "conv2d_forward", "col2im", "conv2d_backward",
                     "maxpool2d", "dropout", "batchnorm2d", "adam", "sgd_momentum"]
    for exercise in EXERCISES.values():
        assert set(exercise.builds_on) <= set(NAMES[:NAMES.index(exercise.name)]), exercise.name
        assert len(exercise.hints) == 3 and exercise.docs.startswith("docs/")


@pytest.mark.parametrize("name", NAMES)
def test_a_worked_solution_passes_every_stage(name, tmp_path):
    result = check(name, solved(tmp_path) / f"{name}.py", examples=10)
    assert result.passed, str(result)
    stages = [s.name for s in result.stages]
    assert stages[:3] == ["shapes and dtypes", "fixed inputs", "drawn cases"] and stages[-1] == "in the network"
    assert ("gradient check" in stages) == (EXERCISES[name].gradients is not None)
    assert workspace.status(EXERCISES[name], tmp_path) == "done"


@pytest.mark.parametrize("name", NAMES)
def test_the_package_reference_passes_its_own_checks(name):
    assert check(name, EXERCISES[name].reference, examples=5).passed


@pytest.mark.parametrize("name", NAMES)
def test_a_fresh_stub_fails_as_not_implemented_yet(name, tmp_path):
    for exercise in EXERCISES.values():  # the stubs of what it builds on too
        workspace.start(exercise, tmp_path)
    result = check(name, tmp_path / f"{name}.py")
    assert not result.passed
    assert len(result.stages) == 1 and "not implemented yet" in result.stages[0].lines[0], str(result)
    assert workspace.status(EXERCISES[name], tmp_path) == "started"


@pytest.mark.parametrize("name", NAMES)
def test_the_starter_holds_signatures_formulas_and_no_solution(name):
    """Every function is a docstring and `raise NotImplementedError`; the file imports NumPy and the learner's
    own files it builds on, never minicnn (the reference it would replace)."""
    exercise = EXERCISES[name]
    text = workspace.starter_text(exercise)
    tree = ast.parse(text)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"numpy", *exercise.builds_on}, imported
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert list(functions) == list(exercise.functions)
    for node in functions.values():
        assert len(node.body) == 2 and ast.get_docstring(node), node.name
        assert isinstance(node.body[1], ast.Raise) and "NotImplementedError" in ast.unparse(node.body[1])
    doc = ast.get_docstring(tree)
    assert exercise.docs in doc and f"minicnn exercise check {name}" in doc and "=" in doc  # the formulas


def test_a_wrong_file_fails_although_the_package_layer_is_right(tmp_path):
    """The check runs the learner's functions, never the package's: the package's ReLU is right, this file is not."""
    folder = solved(tmp_path, ("relu.py", "return grad_output * (y > 0)", "return grad_output * (y >= 0)"))
    y = F.relu_forward(np.array([-1.0, 2.0]))
    assert F.relu_backward(np.ones(2), y).tolist() == [0.0, 1.0]  # the reference: right
    result = check("relu", folder / "relu.py")
    assert not result.passed and "dx" in str(result)
    assert workspace.status(EXERCISES["relu"], folder) == "started"


def test_a_wrong_helper_file_is_what_the_check_runs(tmp_path):
    """conv2d_forward.py imports the learner's im2col.py: a wrong im2col there fails conv2d_forward."""
    folder = solved(tmp_path, ("im2col.py", "constant_values=pad_value", "constant_values=1.0"))
    assert not check("conv2d_forward", folder / "conv2d_forward.py").passed
    assert check("conv2d_forward", solved(tmp_path / "right") / "conv2d_forward.py").passed


def test_a_workspace_named_like_the_package_is_still_the_learners(tmp_path, monkeypatch):
    """In a clone, ./minicnn-exercises lies beside the package minicnn/: the learner's frames are theirs all the same,
    so their line is quoted and a stub they build on is named."""
    monkeypatch.setattr(calls, "_MINICNN", str(tmp_path.resolve() / "minicnn"))  # the package, as in a clone
    folder = solved(tmp_path / "minicnn-exercises", ("relu.py", "return grad_output * (y > 0)",
                                                    "return grad_output[y > 0, 5]"))
    workspace.start(EXERCISES["im2col"], folder, force=True)
    assert "(relu.py, line 9: `return grad_output[y > 0, 5]`)" in str(check("relu", folder / "relu.py"))
    assert "conv2d calls im2col.py, which is not implemented yet" in \
        str(check("conv2d_forward", folder / "conv2d_forward.py"))


def test_checking_a_file_leaves_no_trace_and_records_what_it_checked(tmp_path):
    """The workspace leaves sys.path and sys.modules as the check ends; an edit saved during the check is not
    recorded as checked."""
    folder = solved(tmp_path)
    relu = folder / "relu.py"
    relu.write_text(relu.read_text() + "\nopen(__file__, 'a').write('# saved during the check')\n")
    path = list(sys.path)
    assert check("relu", relu, examples=3).passed
    assert sys.path == path and "relu" not in sys.modules
    assert workspace.status(EXERCISES["relu"], folder) == "changed"


def test_a_failure_in_the_network_alone_names_what_differs_there(tmp_path):
    """The network's step runs in float64, as the stages before it: its advice does not send the learner to float32."""
    def relu_backward(grad_output, y):
        return grad_output * (y > 0) * (1.5 if y.shape[0] == 8 else 1.0)  # wrong for a batch of 8 alone

    f = calls.wrap_all(EXERCISES["relu"], SimpleNamespace(relu_forward=lambda x: np.maximum(x, 0),
                                                           relu_backward=relu_backward))
    f.label = "yours"
    with pytest.raises(checking.Mismatch) as failure:
        checking.in_the_network(EXERCISES["relu"], f)
    advice = failure.value.lines[-1]
    assert "a batch of 8" in advice and "float32" not in advice


def test_check_takes_functions_a_namespace_or_names():
    def relu_forward(x):
        return np.maximum(x, 0)

    def relu_backward(grad_output, y):
        return grad_output * (y > 0)

    assert check("relu", relu_forward, relu_backward, examples=3)
    assert check("relu", relu_forward=relu_forward, relu_backward=relu_backward, examples=3)
    assert check("relu", SimpleNamespace(relu_forward=relu_forward, relu_backward=relu_backward), examples=3)
    assert not check("relu", relu_forward, lambda grad_output, y: grad_output, examples=3)
    with pytest.raises(ValueError, match="no exercise 'reul'"):
        check("reul", relu_forward)
    with pytest.raises(ValueError, match="no function named relu_backward"):
        check("relu", relu_forward)
    with pytest.raises(ValueError, match="takes 2 function"):
        check("relu", relu_forward, relu_backward, relu_backward)


def test_a_result_reads_as_a_report():
    result = check("relu", np.abs, lambda grad_output, y: grad_output * (y > 0), examples=3)
    text = str(result)
    assert not result and text == repr(result)
    assert "FAIL" in text and "y = |x|" in text and "minicnn exercise hint relu" in text


def test_start_never_overwrites_without_force(tmp_path):
    exercise = get("relu")
    path = workspace.start(exercise, tmp_path)
    path.write_text("my work")
    with pytest.raises(ValueError, match="exists.*--force"):
        workspace.start(exercise, tmp_path)
    assert path.read_text() == "my work"
    workspace.start(exercise, tmp_path, force=True)
    assert "NotImplementedError" in path.read_text()


def test_status_follows_the_file_and_what_it_builds_on(tmp_path):
    folder = solved(tmp_path)
    conv, col2im = EXERCISES["conv2d_forward"], EXERCISES["col2im"]
    assert workspace.status(conv, folder) == "started"
    assert check("conv2d_forward", folder / "conv2d_forward.py", examples=3).passed
    assert check("col2im", folder / "col2im.py", examples=3).passed
    assert workspace.status(conv, folder) == workspace.status(col2im, folder) == "done"
    (folder / "im2col.py").write_text((folder / "im2col.py").read_text() + "\n# an edit\n")
    assert workspace.status(conv, folder) == "changed"  # it imports im2col.py, which changed
    assert workspace.status(col2im, folder) == "done"   # it builds on im2col's idea, not on its file
    assert workspace.status(EXERCISES["relu"], tmp_path / "nowhere") == "-"


def test_status_follows_every_exercise_file_imported(tmp_path):
    """Not only what an exercise builds on: any exercise file it imports, and what that file imports in turn."""
    folder = solved(tmp_path)
    backward, source = EXERCISES["conv2d_backward"], (folder / "conv2d_backward.py").read_text()
    for helper in ("im2col", "conv2d_forward"):  # conv2d_forward.py imports im2col.py in turn
        (folder / "conv2d_backward.py").write_text(f"from {helper} import {helper}\n{source}")
        workspace.record_pass(backward, folder)
        assert workspace.status(backward, folder) == "done"
        (folder / "im2col.py").write_text((folder / "im2col.py").read_text() + f"\n# an edit for {helper}\n")
        assert workspace.status(backward, folder) == "changed", helper


def test_hints_come_in_three_tiers_and_are_remembered(tmp_path):
    exercise = get("conv2d_backward")
    workspace.start(exercise, tmp_path)
    assert [workspace.next_hint(exercise, tmp_path) for _ in range(4)] == [1, 2, 3, 3]
    assert workspace.next_hint(exercise, tmp_path, tier=1) == 1
    assert workspace.next_hint(exercise, tmp_path) == 3  # showing tier 1 again does not forget tier 3
    question, formula, shapes = exercise.hints
    assert question.endswith("?") and "col2im" in formula and "(N, K, P)" in shapes


def test_the_catalog_is_the_exported_one():
    assert CATALOG is EXERCISES
