"""The test-set reports that ``minicnn train --out`` and ``minicnn evaluate --out`` write.

    curves.png                  loss and accuracy per epoch (when there is a history)
    confusion_matrix.png        counts of (true digit, predicted digit)
    classification_report.txt   precision, recall and F1 of every digit
"""
from __future__ import annotations

from pathlib import Path

from minicnn.serialization import write_text_atomic

# The files that `minicnn train --out` writes its test-set reports to, and evaluate --out would replace.
TRAINING_REPORTS = ("curves.png", "confusion_matrix.png", "classification_report.txt")


def save_reports(out: Path, history: dict | None, targets, predictions) -> list[str]:
    """Training curves (when there is a history), confusion matrix and classification report; returns the file names."""
    from minicnn import metrics, plots

    names = []
    if history:
        plots.plot_history(history, path=out / "curves.png")
        names.append("curves.png")
    plots.plot_confusion_matrix(metrics.confusion_matrix(targets, predictions, num_classes=10),
                                path=out / "confusion_matrix.png")
    report = metrics.classification_report(targets, predictions, target_names=[str(d) for d in range(10)])
    write_text_atomic(out / "classification_report.txt", report + "\n")
    return names + ["confusion_matrix.png", "classification_report.txt"]
