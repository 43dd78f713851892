"""Comparing the learner's tensors with the expected ones, and saying where and how they differ.

The measure is CS231n's relative error, entry by entry, with a floor for entries near zero:

    rel = |computed - expected| / max(|computed| + |expected|, floor)

A tensor passes when its largest ``rel`` is at most ``tol``; both numbers are printed with every
check (:class:`Tolerance`).  A tensor that fails is shown with its worst entry (index, expected,
computed) in a table of every tensor (:func:`table`), and :func:`pattern` names what the error
looks like when nothing more specific does: a transpose, a constant factor, the opposite sign,
all zeros, NaN.

Docs: docs/exercises.md
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    tol: float
    floor: float
    scaled: bool = False  # floor times the largest |expected| of the tensor (float32 networks)

    def __str__(self) -> str:
        floor = f"{self.floor:g} * max|expected|" if self.scaled else f"{self.floor:g}"
        return f"relative error |a - b| / max(|a| + |b|, {floor}) at most {self.tol:g}"


@dataclass
class Row:
    """One tensor's comparison."""

    name: str
    expected: np.ndarray
    computed: np.ndarray
    rel: np.ndarray | None = None    # entry by entry, None when the shapes differ

    @property
    def same_shape(self) -> bool:
        return self.expected.shape == self.computed.shape

    def max_abs(self) -> float:
        return float(_abs_error(self.computed, self.expected).max(initial=0.0)) if self.same_shape else float("inf")

    def max_rel(self) -> float:
        return float(self.rel.max(initial=0.0)) if self.rel is not None else float("inf")

    def worst(self) -> tuple:
        """The index of the largest relative error."""
        return tuple(int(i) for i in np.unravel_index(int(np.argmax(self.rel)), self.rel.shape)) \
            if self.rel is not None and self.rel.size else ()


def _abs_error(computed, expected) -> np.ndarray:
    c, e = np.asarray(computed, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(c - e)
    both_nan = np.isnan(c) & np.isnan(e)
    same_inf = np.isinf(c) & (c == e)
    err = np.where(both_nan | same_inf, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


def relative_error(computed, expected, tolerance: Tolerance) -> np.ndarray:
    """``|c - e| / max(|c| + |e|, floor)``, entry by entry; inf where one is NaN and the other is not."""
    c, e = np.asarray(computed, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    floor = tolerance.floor
    if tolerance.scaled:
        finite = np.abs(e[np.isfinite(e)])
        floor *= float(finite.max(initial=0.0)) or 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        scale = np.maximum(np.abs(c) + np.abs(e), floor)
        rel = _abs_error(c, e) / np.where(np.isfinite(scale), scale, 1.0)
    return np.where(np.isfinite(scale) | (rel == 0), rel, np.inf)


def compare(expected: dict, computed: dict, tolerance: Tolerance) -> list[Row]:
    """One Row per expected tensor, in order."""
    rows = []
    for name, e in expected.items():
        e, c = np.asarray(e), np.asarray(computed[name])
        row = Row(name, e, c)
        if row.same_shape:
            row.rel = relative_error(c, e, tolerance)
        rows.append(row)
    return rows


def failed(rows: list[Row], tolerance: Tolerance) -> list[Row]:
    return [r for r in rows if not r.same_shape or r.max_rel() > tolerance.tol]


def close(a, b, rtol=1e-5, atol=1e-7) -> bool:
    """Whether two tensors agree closely (a learner's tensor and a mistake's), NaN matching NaN."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        scale = float(np.abs(b[np.isfinite(b)]).max(initial=0.0)) if b.size else 0.0
        return bool(np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol,
                                atol=atol * max(scale, 1.0), equal_nan=True))
    return bool(np.array_equal(a, b))


def _value(v) -> str:
    return f"{float(v):.6g}" if np.asarray(v).dtype.kind in "fc" else str(v)


def worst_entry(row: Row) -> str:
    """``worst at [2, 1, 0, 2]: expected 1.60317, computed 0.400793``."""
    index = row.worst()
    where = f"[{', '.join(map(str, index))}]" if index else "(the scalar)"
    return f"worst at {where}: expected {_value(row.expected[index])}, computed {_value(row.computed[index])}"


def table(rows: list[Row], tolerance: Tolerance, shapes: dict | None = None) -> list[str]:
    """The error of every tensor, one line each; the wrong ones say where they are worst."""
    width = max(len("tensor"), *(len(r.name) for r in rows))
    lines = [f"{'tensor':<{width}}  {'shape':<16} {'max abs error':>13}  {'max rel error':>13}"]
    for r in rows:
        shape = str(tuple(r.expected.shape))
        if not r.same_shape:
            symbolic = f" = {shapes[r.name]}" if shapes and r.name in shapes else ""
            lines.append(f"{r.name:<{width}}  {shape:<16} {'-':>13}  {'-':>13}   wrong shape "
                         f"{tuple(r.computed.shape)}, expected {tuple(r.expected.shape)}{symbolic}")
            continue
        ok = r.max_rel() <= tolerance.tol
        note = "ok" if ok else worst_entry(r)
        lines.append(f"{r.name:<{width}}  {shape:<16} {r.max_abs():>13.2g}  {r.max_rel():>13.2g}   {note}")
    return lines


def pattern(row: Row) -> str | None:
    """What a wrong tensor looks like, when no specific mistake matched: None if nothing simple."""
    e, c = row.expected, row.computed
    if not row.same_shape:
        if c.ndim == e.ndim >= 2 and c.shape == e.shape[::-1]:
            return f"{row.name} has the reversed shape {tuple(c.shape)}: a transposed product?"
        if c.size == e.size:
            return f"{row.name} has the right number of entries in the wrong shape: a reshape or a transpose missing?"
        return None
    if e.dtype.kind not in "fc" or not np.isfinite(e).all():
        return None
    if not np.isfinite(c).all():
        return (f"{row.name} holds NaN or inf where every expected value is finite: an overflow (exp of a large "
                f"number?) or a division by zero")
    if not c.any() and e.any():
        return f"{row.name} is all zeros: nothing was added into it (or the result went to a copy)"
    if close(c, -e):
        return f"{row.name} has the opposite sign"
    if e.ndim == 2 and e.shape[0] == e.shape[1] and close(c, e.T):
        return f"{row.name} is the transpose of the expected: a transposed product?"
    big = np.abs(e) > 1e-3 * np.abs(e).max(initial=0.0)
    if big.any():
        ratio = c[big] / e[big]
        factor = float(np.median(ratio))
        if abs(factor - 1) > 1e-3 and np.allclose(ratio, factor, rtol=1e-5) and close(c, factor * e):
            return (f"{row.name} is the expected times {factor:.6g} everywhere: a missing or an extra factor "
                    f"(a mean where a sum belongs, or a scale?)")
    return None
