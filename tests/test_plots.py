"""Every plot writes a real, non-blank PNG of the figure's size, with no display."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

from minicnn import plots
from minicnn.models import MnistCNN
from minicnn.training import History


@pytest.fixture(scope="module")
def model():
    return MnistCNN(seed=0)


@pytest.fixture(scope="module")
def digits():
    """Twelve fake 'digits' (a bright bar at a random place), labels and predictions."""
    rng = np.random.default_rng(0)
    images = np.zeros((12, 28, 28), dtype=np.uint8)
    for img in images:
        r, c = rng.integers(4, 18, size=2)
        img[r:r + 8, c:c + 3] = 255
    y_true = np.arange(12) % 10
    y_pred = y_true.copy()
    y_pred[[1, 5, 7]] = (y_true[[1, 5, 7]] + 1) % 10
    probs = rng.dirichlet(np.ones(10), size=12)
    return images, y_true, y_pred, probs


def check_png(path, fig):
    """The file is a PNG of the figure's pixel size whose pixels are not all alike."""
    assert os.path.getsize(path) > 0
    width, height = (fig.get_size_inches() * plots.DPI).round().astype(int)
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (width, height)
        gray = np.asarray(img.convert("L"))
    assert gray.std() > 5, "the image is blank"
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]


def test_figures_use_agg_and_stay_out_of_pyplot():
    pyplot = sys.modules.get("matplotlib.pyplot")  # loaded only if something else imported it
    before = pyplot.get_fignums() if pyplot else None
    fig = plots.plot_confusion_matrix(np.eye(3, dtype=np.int64))
    assert type(fig.canvas).__name__ == "FigureCanvasAgg"
    if pyplot:
        assert pyplot.get_fignums() == before


def test_plot_history(tmp_path):
    history = History()
    for epoch in range(1, 6):
        history.append({"epoch": epoch, "train_loss": 1 / epoch, "train_accuracy": 1 - 0.1 / epoch,
                        "val_loss": 1.2 / epoch, "val_accuracy": 1 - 0.12 / epoch, "lr": 1e-3,
                        "seconds": 1.0})
    fig = plots.plot_history(history, path=tmp_path / "history.png")
    check_png(tmp_path / "history.png", fig)
    assert len(fig.axes) == 2
    # A dict of columns without validation works too.
    fig = plots.plot_history({"train_loss": [1.0, 0.5], "train_accuracy": [0.6, 0.8]},
                             path=tmp_path / "train_only.png")
    check_png(tmp_path / "train_only.png", fig)
    with pytest.raises(ValueError, match="at least one epoch"):
        plots.plot_history({})


@pytest.mark.parametrize("normalize", [False, True])
def test_plot_confusion_matrix(tmp_path, normalize):
    cm = np.array([[50, 2, 0], [3, 40, 1], [0, 0, 0]])  # the last class never occurs
    path = tmp_path / "cm.png"
    fig = plots.plot_confusion_matrix(cm, class_names=["zero", "one", "two"], normalize=normalize,
                                      path=path)
    check_png(path, fig)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 9
    assert ("96%" if normalize else "50") in texts
    assert len(fig.axes) == 2  # the matrix and its colour bar


def test_plot_predictions(tmp_path, digits):
    images, y_true, y_pred, probs = digits
    fig = plots.plot_predictions(images, y_true, y_pred, probs, n=9, path=tmp_path / "pred.png")
    check_png(tmp_path / "pred.png", fig)
    assert len(fig.axes) == 9
    red = [ax.title.get_text() for ax in fig.axes if ax.title.get_color() == plots.WRONG]
    assert len(red) == 3  # samples 1, 5 and 7 are wrong
    assert red[0].startswith(f"pred {y_pred[1]} (")


def test_plot_predictions_takes_normalised_float_images(tmp_path, digits):
    images, y_true, y_pred, _ = digits
    x = (images[:, None].astype(np.float32) / 255 - 0.1307) / 0.3081
    fig = plots.plot_predictions(x, y_true, y_pred, path=tmp_path / "float.png")
    check_png(tmp_path / "float.png", fig)


def test_plot_misclassified_most_confident_first(tmp_path, digits):
    images, y_true, y_pred, probs = digits
    fig = plots.plot_misclassified(images, y_true, y_pred, probs, path=tmp_path / "wrong.png")
    check_png(tmp_path / "wrong.png", fig)
    assert len(fig.axes) == 3
    chosen = probs[[1, 5, 7], y_pred[[1, 5, 7]]]
    shown = [float(ax.title.get_text().split("(")[1].split("%")[0]) / 100 for ax in fig.axes]
    assert shown == sorted(shown, reverse=True)
    assert sorted(shown) == pytest.approx(sorted(np.round(chosen, 2)), abs=0.006)


def test_plot_misclassified_without_mistakes(tmp_path, digits):
    images, y_true, _, probs = digits
    fig = plots.plot_misclassified(images, y_true, y_true, probs, path=tmp_path / "none.png")
    check_png(tmp_path / "none.png", fig)


def test_plot_filters(tmp_path, model):
    fig = plots.plot_filters(model, path=tmp_path / "filters.png")
    check_png(tmp_path / "filters.png", fig)
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 32
    assert images[0].images[0].get_array().shape == (3, 3)
    fig = plots.plot_filters(model.conv1.weight.data, path=tmp_path / "weights.png")
    check_png(tmp_path / "weights.png", fig)


def test_plot_feature_maps(tmp_path, model, digits):
    images = digits[0]
    fig = plots.plot_feature_maps(model, images[0], path=tmp_path / "maps.png")
    check_png(tmp_path / "maps.png", fig)
    shapes = [ax.images[0].get_array().shape for ax in fig.axes if ax.images]
    # The input, then each block's maps tiled 16 to a row with 1-pixel gaps:
    # 32 maps of 14x14 in 2 rows, 64 maps of 7x7 in 4 rows.
    assert shapes == [(28, 28), (2 * 15 - 1, 16 * 15 - 1), (4 * 8 - 1, 16 * 8 - 1)]
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles[1] == "after pool1: 32 feature maps of 14x14"
    assert titles[2] == "after pool2: 64 feature maps of 7x7"
    assert model.training  # the mode is restored


def test_feature_maps_are_the_outputs_of_each_conv_block(model, digits):
    from minicnn.imaging import as_network_input

    image = digits[0][0]
    stages = plots.feature_maps(model, image)
    assert [(name, maps.shape) for name, maps in stages] == [("pool1", (32, 14, 14)), ("pool2", (64, 7, 7))]
    x = as_network_input(image)
    pool1 = model.pool1(model.relu1(model.conv1(x)))
    np.testing.assert_allclose(stages[0][1], pool1[0], rtol=1e-6)
    np.testing.assert_allclose(stages[1][1], model.pool2(model.relu2(model.conv2(pool1)))[0], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="feature maps are drawn for one image, got 2"):
        plots.feature_maps(model, digits[0][:2])


def test_save_creates_the_folder_and_replaces_the_file(tmp_path):
    path = tmp_path / "new" / "cm.png"
    plots.plot_confusion_matrix(np.eye(2, dtype=int), path=path)
    first = path.read_bytes()
    plots.plot_confusion_matrix(np.eye(2, dtype=int) * 7, path=path)
    assert path.read_bytes() != first
    assert os.listdir(path.parent) == ["cm.png"]


def test_plot_history_takes_numpy_columns(tmp_path):
    columns = {"epoch": np.arange(1, 4), "train_loss": np.array([1.0, 0.6, 0.4]),
               "train_accuracy": np.array([0.7, 0.8, 0.9]), "val_accuracy": np.array([0.6, 0.85, 0.8])}
    fig = plots.plot_history(columns, path=tmp_path / "arrays.png")
    check_png(tmp_path / "arrays.png", fig)
    acc_ax = fig.axes[1]
    assert acc_ax.lines[1].get_ydata().tolist() == [0.6, 0.85, 0.8]
    assert acc_ax.get_legend_handles_labels()[1][-1] == "best validation 85.00% (epoch 2)"


def test_plot_history_refuses_columns_of_different_lengths():
    with pytest.raises(ValueError) as info:
        plots.plot_history({"train_loss": np.array([1.0, 0.5]), "train_accuracy": [0.6]})
    assert str(info.value) == ("plot_history needs columns of one length (one value per epoch), "
                               "found lengths train_loss 2, train_accuracy 1")


@pytest.mark.parametrize("cm, texts, label", [
    (np.array([[0.9, 0.1], [0.25, 0.75]]), ["0.90", "0.10", "0.25", "0.75"], "value"),
    (np.array([[5.0, 1.0], [0.0, 7.0]]), ["5", "1", "0", "7"], "images"),  # counts held as floats
    (np.array([[5, 1], [0, 7]]), ["5", "1", "0", "7"], "images"),
])
def test_confusion_matrix_cells_show_fractions_and_counts(cm, texts, label):
    fig = plots.plot_confusion_matrix(cm)
    assert [t.get_text() for t in fig.axes[0].texts] == texts
    assert fig.axes[1].get_ylabel() == label
