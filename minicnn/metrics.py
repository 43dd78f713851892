"""Classification metrics, computed by hand from integer labels.

Notation
--------
K        number of classes, labelled 0 .. K-1
C        the K x K confusion matrix: C[i, j] = samples of true class i predicted as j
TP_k     C[k, k]                   (class k, predicted k)
FP_k     sum_i C[i, k] - TP_k      (predicted k, but another class)
FN_k     sum_j C[k, j] - TP_k      (class k, predicted as another class)
support  sum_j C[k, j]             (how many samples are truly of class k)

Per class::

    precision_k = TP_k / (TP_k + FP_k)      "of the images called k, how many were k"
    recall_k    = TP_k / (TP_k + FN_k)      "of the images of k, how many were found"
    F1_k        = 2 * precision_k * recall_k / (precision_k + recall_k)

and overall::

    accuracy     = sum_k TP_k / N
    macro avg    = plain mean over the K classes (every class counts the same)
    weighted avg = mean over the classes weighted by their support

Zero division: a class that is never predicted has precision 0, a class that
never occurs has recall 0, and F1 is 0 when precision + recall is 0. This is
scikit-learn's ``zero_division=0`` behaviour. Such a class still counts in the
macro average, pulling it down: a report that lists a class nobody drew is
telling you something.

When ``num_classes`` is not given, K is the largest label plus one, up to
:data:`MAX_CLASSES`: a larger label is far more likely a mistake (a pixel
value, an index) than a class, and its matrix would not fit in memory.
"""
from __future__ import annotations

import numpy as np

from minicnn.backend import to_numpy

__all__ = ["MAX_CLASSES", "accuracy", "classification_report", "confusion_matrix",
           "precision_recall_f1"]

#: The most classes inferred from the labels; pass ``num_classes`` for more.
MAX_CLASSES = 10_000


def _labels(name: str, y) -> np.ndarray:
    """``y`` as a 1-D int64 NumPy array of non-negative labels, or a ValueError naming ``name``."""
    y = to_numpy(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels, got shape {y.shape}")
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            bad = y[~np.isfinite(y) | (y != np.round(y))][0]
            raise ValueError(f"{name} must hold integer class labels, found {bad}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{name} must hold labels >= 0, found {y.min()}")
    return y


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = _labels("y_true", y_true), _labels("y_pred", y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} != {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("y_true and y_pred are empty: there is nothing to score")
    return y_true, y_pred


def _largest(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[str, int]:
    """The largest label of the two, and the name of the array that holds it."""
    if y_true.max() >= y_pred.max():
        return "y_true", int(y_true.max())
    return "y_pred", int(y_pred.max())


def _implied_classes(y_true: np.ndarray, y_pred: np.ndarray) -> int:
    """The largest label plus one, or a ValueError when that is more than MAX_CLASSES."""
    name, label = _largest(y_true, y_pred)
    if label >= MAX_CLASSES:
        raise ValueError(f"{name} holds label {label}, which would mean {label + 1} classes, more than "
                         f"the {MAX_CLASSES} inferred at most (MAX_CLASSES); pass num_classes if there "
                         f"really are that many, or check the labels")
    return label + 1


def accuracy(y_true, y_pred) -> float:
    """The fraction of predictions equal to the true label."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """The (K, K) int64 matrix ``C[true, predicted]`` of sample counts.

    ``num_classes`` defaults to the largest label seen plus one (at most
    :data:`MAX_CLASSES`); labels ``>= num_classes`` are an error. Row k sums
    to the support of class k, column k to the number of times k was predicted.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    if num_classes is None:
        num_classes = _implied_classes(y_true, y_pred)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.max() >= num_classes:
            raise ValueError(f"{name} holds label {int(y.max())}, but num_classes is {num_classes} "
                             f"(labels must be 0 .. {num_classes - 1})")
    K = int(num_classes)
    # Each (true, predicted) pair becomes one index true * K + predicted of a
    # flat K*K array; counting the indices fills the matrix in one pass.
    counts = np.bincount(y_true * K + y_pred, minlength=K * K)
    return counts.reshape(K, K).astype(np.int64)


def _divide(numerator, denominator) -> np.ndarray:
    """``numerator / denominator`` element-wise, 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def precision_recall_f1(cm) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 (float64) and support (int64) of a confusion matrix."""
    cm = np.asarray(cm)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)  # TP + FP: column sums
    support = cm.sum(axis=1)    # TP + FN: row sums
    precision = _divide(tp, predicted)
    recall = _divide(tp, support)
    f1 = _divide(2 * precision * recall, precision + recall)
    return precision, recall, f1, support.astype(np.int64)


_HEADERS = ("precision", "recall", "f1-score", "support")


def classification_report(y_true, y_pred, target_names=None, digits: int = 4,
                          output_dict: bool = False):
    """Precision, recall, F1 and support per class, then accuracy and the averages.

    The classes are 0 .. K-1 with K = ``len(target_names)`` when names are
    given, else the largest label plus one (at most :data:`MAX_CLASSES`);
    rows are named by ``target_names`` or by the label itself. The text uses
    scikit-learn's layout (``digits`` decimals)::

                      precision    recall  f1-score   support

                   0     0.5000    1.0000    0.6667         1
                 ...
            accuracy                         0.6000         5
           macro avg     0.5000    0.5556    0.4889         5
        weighted avg     0.7000    0.6000    0.6133         5

    With ``output_dict=True`` the same numbers come back as
    ``{name: {"precision", "recall", "f1-score", "support"}, ...,
    "accuracy": float, "macro avg": {...}, "weighted avg": {...}}``.
    See the module docstring for the formulas and the zero-division rule.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    if isinstance(target_names, str):
        raise TypeError(f"target_names must be a list of names, one per class, got the string "
                        f"{target_names!r}")
    if target_names is not None:
        target_names = [str(name) for name in target_names]
        if len(set(target_names)) != len(target_names):
            raise ValueError(f"target_names must be distinct, got {target_names}")
        num_classes = len(target_names)
        name, label = _largest(y_true, y_pred)
        if label >= num_classes:
            raise ValueError(f"{name} holds label {label}, so there are at least {label + 1} classes, "
                             f"but target_names has {num_classes} names; give one name per class "
                             f"0 .. {label}")
    else:
        num_classes = _implied_classes(y_true, y_pred)
        target_names = [str(k) for k in range(num_classes)]
    cm = confusion_matrix(y_true, y_pred, num_classes)
    precision, recall, f1, support = precision_recall_f1(cm)
    total = int(support.sum())

    rows = [(name, precision[k], recall[k], f1[k], int(support[k]))
            for k, name in enumerate(target_names)]
    acc = float(np.trace(cm) / total)
    macro = (precision.mean(), recall.mean(), f1.mean(), total)
    weights = support / total
    weighted = ((precision * weights).sum(), (recall * weights).sum(), (f1 * weights).sum(), total)

    if output_dict:
        report = {name: dict(zip(_HEADERS, (float(p), float(r), float(f), s)))
                  for name, p, r, f, s in rows}
        report["accuracy"] = acc
        report["macro avg"] = dict(zip(_HEADERS, (float(v) for v in macro[:3]))) | {"support": total}
        report["weighted avg"] = dict(zip(_HEADERS, (float(v) for v in weighted[:3]))) | {"support": total}
        return report

    width = max(len("weighted avg"), digits, *(len(name) for name in target_names))
    head = "{:>{width}s} " + " {:>9}" * 4
    row = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
    lines = head.format("", *_HEADERS, width=width) + "\n\n"
    for r in rows:
        lines += row.format(*r, width=width, digits=digits)
    lines += "\n"
    # The accuracy line leaves the precision and recall columns empty.
    lines += ("{:>{width}s} " + " {:>9}" * 2 + " {:>9.{digits}f} {:>9}\n").format(
        "accuracy", "", "", acc, total, width=width, digits=digits)
    lines += row.format("macro avg", *macro, width=width, digits=digits)
    lines += row.format("weighted avg", *weighted, width=width, digits=digits)
    return lines
