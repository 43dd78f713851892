"""Metrics against small cases worked by hand."""
import numpy as np
import pytest

from minicnn import metrics
from minicnn.metrics import accuracy, classification_report, confusion_matrix, precision_recall_f1

# Five samples of three classes (scikit-learn's documentation example):
#   true 0 1 2 2 2
#   pred 0 0 2 2 1
# class 0: TP 1, predicted twice, support 1 -> P 1/2, R 1,   F1 2/3
# class 1: TP 0, predicted once,  support 1 -> P 0,   R 0,   F1 0
# class 2: TP 2, predicted twice, support 3 -> P 1,   R 2/3, F1 4/5
Y_TRUE = [0, 1, 2, 2, 2]
Y_PRED = [0, 0, 2, 2, 1]


def test_accuracy():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(3 / 5)
    assert accuracy(np.array([1, 1]), np.array([1, 1])) == 1.0


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED)
    expected = [[1, 0, 0],
                [1, 0, 0],
                [0, 1, 2]]
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    assert cm.sum(axis=1).tolist() == [1, 1, 3]  # rows: support of each true class


def test_confusion_matrix_num_classes_pads_unseen_classes():
    cm = confusion_matrix([0, 1], [1, 1], num_classes=4)
    assert cm.shape == (4, 4)
    assert cm[0, 1] == 1 and cm[1, 1] == 1 and cm.sum() == 2


def test_precision_recall_f1_by_hand():
    p, r, f, s = precision_recall_f1(confusion_matrix(Y_TRUE, Y_PRED))
    np.testing.assert_allclose(p, [1 / 2, 0, 1])
    np.testing.assert_allclose(r, [1, 0, 2 / 3])
    np.testing.assert_allclose(f, [2 / 3, 0, 4 / 5])
    assert s.tolist() == [1, 1, 3]


def test_class_never_predicted_and_class_never_occurring_score_zero():
    # Class 1 occurs but is never predicted; class 2 is predicted but never occurs.
    y_true = [0, 0, 1, 1]
    y_pred = [0, 2, 0, 0]
    p, r, f, s = precision_recall_f1(confusion_matrix(y_true, y_pred, num_classes=3))
    # class 0: TP 1, predicted 3 times, support 2
    np.testing.assert_allclose(p, [1 / 3, 0, 0])   # class 1 never predicted -> precision 0
    np.testing.assert_allclose(r, [1 / 2, 0, 0])   # class 2 never occurs -> recall 0
    np.testing.assert_allclose(f, [0.4, 0, 0])
    assert s.tolist() == [2, 2, 0]
    report = classification_report(y_true, y_pred, output_dict=True)
    assert report["2"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
    assert report["macro avg"]["precision"] == pytest.approx(1 / 9)  # the empty classes count


def test_report_text_layout():
    expected = (
        "              precision    recall  f1-score   support\n"
        "\n"
        "           0     0.5000    1.0000    0.6667         1\n"
        "           1     0.0000    0.0000    0.0000         1\n"
        "           2     1.0000    0.6667    0.8000         3\n"
        "\n"
        "    accuracy                         0.6000         5\n"
        "   macro avg     0.5000    0.5556    0.4889         5\n"
        "weighted avg     0.7000    0.6000    0.6133         5\n"
    )
    assert classification_report(Y_TRUE, Y_PRED) == expected


def test_report_with_names_and_two_digits():
    expected = (
        "              precision    recall  f1-score   support\n"
        "\n"
        "     class 0       0.50      1.00      0.67         1\n"
        "     class 1       0.00      0.00      0.00         1\n"
        "     class 2       1.00      0.67      0.80         3\n"
        "\n"
        "    accuracy                           0.60         5\n"
        "   macro avg       0.50      0.56      0.49         5\n"
        "weighted avg       0.70      0.60      0.61         5\n"
    )
    names = ["class 0", "class 1", "class 2"]
    assert classification_report(Y_TRUE, Y_PRED, target_names=names, digits=2) == expected


def test_report_dict():
    report = classification_report(Y_TRUE, Y_PRED, output_dict=True)
    assert list(report) == ["0", "1", "2", "accuracy", "macro avg", "weighted avg"]
    assert report["0"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1-score": 2 / 3, "support": 1})
    assert report["accuracy"] == pytest.approx(0.6)
    assert report["macro avg"] == pytest.approx(
        {"precision": 0.5, "recall": 5 / 9, "f1-score": (2 / 3 + 0.8) / 3, "support": 5})
    assert report["weighted avg"] == pytest.approx(
        {"precision": 0.7, "recall": 0.6, "f1-score": (2 / 3 + 2.4) / 5, "support": 5})
    assert isinstance(report["2"]["support"], int)


@pytest.mark.parametrize("y_true, y_pred, message", [
    ([0, 1, 2], [0, 1], "differ in length"),
    ([0, 1.5], [0, 1], "integer"),
    ([0, -1], [0, 1], ">= 0"),
    ([[0, 1]], [[0, 1]], "1-D"),
    (["a", "b"], [0, 1], "integer"),
    ([], [], "empty"),
])
def test_bad_labels(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(y_true, y_pred)


def test_label_beyond_num_classes():
    with pytest.raises(ValueError, match="num_classes is 3"):
        confusion_matrix([0, 1, 3], [0, 1, 2], num_classes=3)
    with pytest.raises(ValueError, match="y_pred holds label 5"):
        classification_report([0, 1], [0, 5], target_names=["a", "b"])


def test_whole_float_labels_are_accepted():
    assert accuracy(np.array([1.0, 2.0]), np.array([1, 2])) == 1.0


@pytest.mark.parametrize("y_true, y_pred, message", [
    ([0, 3], [0, 5], "y_true holds label 3, but num_classes is 3 (labels must be 0 .. 2)"),
    ([0, 1], [0, 5], "y_pred holds label 5, but num_classes is 3 (labels must be 0 .. 2)"),
    ([0, 7], [0, 1], "y_true holds label 7, but num_classes is 3 (labels must be 0 .. 2)"),
])
def test_out_of_range_label_names_its_own_array(y_true, y_pred, message):
    with pytest.raises(ValueError) as info:
        confusion_matrix(y_true, y_pred, num_classes=3)
    assert str(info.value) == message


@pytest.mark.parametrize("y_true, y_pred, which", [([0, 10**6], [0, 0], "y_true"),
                                                    ([0, 0], [0, 10**6], "y_pred")])
def test_absurd_label_without_num_classes(y_true, y_pred, which):
    message = (f"{which} holds label 1000000, which would mean 1000001 classes, more than the 10000 "
               f"inferred at most (MAX_CLASSES); pass num_classes if there really are that many, "
               f"or check the labels")
    for score in (confusion_matrix, classification_report):
        with pytest.raises(ValueError) as info:
            score(y_true, y_pred)
        assert str(info.value) == message


def test_max_classes_bounds_only_the_inferred_number(monkeypatch):
    monkeypatch.setattr(metrics, "MAX_CLASSES", 5)
    assert confusion_matrix([0, 4], [0, 0]).shape == (5, 5)       # MAX_CLASSES classes are fine
    with pytest.raises(ValueError, match="holds label 5, which would mean 6 classes, more than the 5 "):
        confusion_matrix([0, 5], [0, 0])
    assert confusion_matrix([0, 5], [0, 0], num_classes=6).shape == (6, 6)  # asked for: allowed
    report = classification_report([0, 5], [0, 0], target_names=list("abcdef"), output_dict=True)
    assert report["f"]["support"] == 1


@pytest.mark.parametrize("num_classes", [True, 2.0, "3", 0])
def test_num_classes_must_be_a_positive_int(num_classes):
    with pytest.raises(ValueError) as info:
        confusion_matrix([0, 1], [0, 1], num_classes=num_classes)
    assert str(info.value) == f"num_classes must be a positive int, got {num_classes!r}"


def test_too_few_target_names_says_how_many_classes_the_labels_imply():
    with pytest.raises(ValueError) as info:
        classification_report([0, 3], [0, 1], target_names=["a", "b"])
    assert str(info.value) == ("y_true holds label 3, so there are at least 4 classes, but target_names "
                               "has 2 names; give one name per class 0 .. 3")


def test_target_names_as_one_string_is_refused():
    with pytest.raises(TypeError) as info:
        classification_report([0, 1], [0, 1], target_names="ab")
    assert str(info.value) == "target_names must be a list of names, one per class, got the string 'ab'"
