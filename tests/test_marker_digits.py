"""Tightly cropped soft marker digits whose strokes cover much of the border are read, not refused as blank.

A 7 drawn with a 22-pixel marker and blurred (radius 6) on a 96x96 crop: its bar runs along the whole top
edge and its stem leaves through the bottom, so more than half the border is stroke.  The paper was fitted
to the whole border and ``minicnn predict`` said "looks blank: ... 196 gray levels above the paper, whose
noise is +-94".  The paper now comes from the border's paper part (minicnn.imaging._paper_part_of_border).
"""
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from minicnn import cli, imaging
from minicnn.imaging import digit_to_mnist
from minicnn.inference import predict


def soft_marker(lines, size=96, width=22, blur=6):
    """Black marker strokes on white paper, blurred: an (H, W) uint8 array."""
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    for start, end in lines:
        draw.line([start, end], fill=0, width=width)
    return np.asarray(image.filter(ImageFilter.GaussianBlur(blur)))


SEVEN = soft_marker([((0, 6), (90, 6)), ((90, 6), (40, 95))])
LEFT = SEVEN.T.copy()  # the same strokes mirrored on the diagonal: the long stroke runs along the left edge


def ink_share_of_border(gray):
    values = imaging._border(gray.astype(np.float64))[2]
    return float((values < 128).mean())


@pytest.mark.parametrize("image", [SEVEN, LEFT], ids=["bar-along-the-top", "stroke-along-the-left"])
def test_a_soft_marker_digit_covering_the_border_is_not_refused_as_blank(image):
    assert ink_share_of_border(image) > 0.35  # the strokes do cover much of the border (and half is blurred)
    raw = digit_to_mnist(image)
    assert raw.shape == (28, 28) and raw.max() == 255
    assert 0.1 < (raw > 128).mean() < 0.4  # a stroke, not a filled box nor a speck
    # The paper is black again: the corners of the canvas hold no ink.
    assert raw[:3, :3].max() == raw[-3:, -3:].max() == 0


def test_the_seven_keeps_its_shape():
    """The bar on top, the stem falling to the lower left."""
    raw = digit_to_mnist(SEVEN).astype(np.float64)
    rows, cols = np.nonzero(raw > 128)
    top = rows < rows.min() + 3
    assert np.ptp(cols[top]) >= 12  # a wide bar at the top
    bottom = rows > rows.max() - 3
    assert cols[bottom].max() < cols[top].max() - 5  # the stem ends left of the bar's right end
    middle = rows == (rows.min() + rows.max()) // 2
    assert np.ptp(cols[middle]) < 8  # one slanted stroke in the middle, not a filled shape


def test_the_same_seven_on_a_dark_board_is_read_the_same():
    np.testing.assert_array_equal(digit_to_mnist(SEVEN), digit_to_mnist(255 - SEVEN))


def test_predict_reads_the_seven(tmp_path, capsys):
    drawings = pytest.importorskip("drawings")
    weights = drawings.save_small_model(tmp_path / "model.npz")
    path = tmp_path / "seven.png"
    Image.fromarray(SEVEN).save(path)
    assert cli.main(["predict", str(weights), str(path)]) == 0
    out = capsys.readouterr()
    assert "blank" not in out.out + out.err
    digits, _ = predict(drawings.small_model(), digit_to_mnist(SEVEN)[None])
    assert digits[0] == 7


@pytest.mark.parametrize("image", [
    np.full((96, 96), 255, dtype=np.uint8),
    np.clip(200 + np.random.default_rng(0).normal(0, 8, (96, 96)), 0, 255).astype(np.uint8),
    np.clip(np.random.default_rng(3).normal(128, 40, (64, 64)), 0, 255).astype(np.uint8),
    np.clip(150 + np.linspace(-50, 50, 96)[None, :] + np.random.default_rng(1).normal(0, 6, (96, 96)),
            0, 255).astype(np.uint8),
], ids=["white", "noisy-paper", "noise", "lit-paper"])
def test_blank_images_are_still_refused(image):
    with pytest.raises(ValueError, match="blank"):
        digit_to_mnist(image)
