"""Every planted mistake fails its exercise's check with the diagnosis written for it.

The mistakes (tests/exercise_solutions/planted.py) are small edits of the worked solutions: a mean
where a sum belongs, a transposed product, windows overwritten instead of added, the wrong winner
on ties, a missing bias correction, dropout not scaled, and more, at least three per backward pass.
"""
import numpy as np
import pytest

from exercise_solutions.planted import PLANTED, solved
from minicnn.exercises import check
from minicnn.exercises.compare import Row, Tolerance, compare, pattern, relative_error, table


@pytest.mark.parametrize("target, old, new, diagnosis", PLANTED, ids=[f"{p[0]}: {p[3]}" for p in PLANTED])
def test_a_planted_mistake_gets_its_diagnosis(target, old, new, diagnosis, tmp_path):
    name, _, other = target.partition(" <- ")
    folder = solved(tmp_path, (other or f"{name}.py", old, new))
    result = check(name, folder / f"{name}.py", examples=10)
    assert not result.passed
    failure = result.stages[-1]
    said = [line for line in failure.lines if line.startswith("diagnosis: ")]
    assert any(diagnosis in line for line in said), str(result)


def test_a_small_error_gets_no_mistake_that_equals_the_reference_here(tmp_path):
    """With eps = 1e-8, eps inside the square root barely moves Adam's step: that mistake explains no error of this
    case, and an update off by a factor 1 + 2e-5 is not diagnosed as it."""
    folder = solved(tmp_path, ("adam.py", "param -= lr * m_hat", "param -= (1 + 2e-5) * lr * m_hat"))
    result = check("adam", folder / "adam.py", examples=3)
    assert not result.passed and "param (by step) differs" in str(result)
    assert "eps is inside the square root" not in str(result)


def test_a_failure_names_the_worst_entry_with_both_values():
    rows = compare({"dw": np.array([[1.0, 2.0], [3.0, 4.0]])}, {"dw": np.array([[1.0, 2.0], [3.0, 5.0]])},
                   Tolerance(1e-7, 1e-6))
    lines = table(rows, Tolerance(1e-7, 1e-6))
    assert "worst at [1, 1]: expected 4, computed 5" in lines[1]


@pytest.mark.parametrize("computed, expected, words", [
    (np.ones((2, 3)) * 2, np.ones((2, 3)), "times 2"),
    (-np.arange(1.0, 7.0).reshape(2, 3), np.arange(1.0, 7.0).reshape(2, 3), "opposite sign"),
    (np.zeros((2, 3)), np.ones((2, 3)), "all zeros"),
    (np.arange(9.0).reshape(3, 3).T, np.arange(9.0).reshape(3, 3), "transpose"),
    (np.ones((3, 2)), np.ones((2, 3)), "reversed shape"),
    (np.array([np.nan, 1.0]), np.array([1.0, 1.0]), "NaN or inf"),
])
def test_the_patterns_seen_when_no_mistake_matches(computed, expected, words):
    tolerance = Tolerance(1e-7, 1e-6)
    row = Row("t", expected, computed)
    if row.same_shape:
        row.rel = relative_error(computed, expected, tolerance)
    assert words in pattern(row)
