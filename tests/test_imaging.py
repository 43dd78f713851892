"""Preparing drawn digits like MNIST, and predicting with a model."""
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from minicnn import nn
from minicnn.data.transforms import MNIST_MEAN, MNIST_STD
from minicnn.imaging import as_network_input, digit_to_mnist, otsu_threshold, preprocess_digit
from minicnn.inference import predict

BACKGROUND = (0 - MNIST_MEAN) / MNIST_STD   # a black MNIST pixel after normalising


def seven(draw, box, fill, width):
    """A '7': a top bar and a slanted stem inside ``box`` = (left, top, right, bottom)."""
    left, top, right, bottom = box
    draw.line([(left, top), (right, top), (left + (right - left) // 3, bottom)], fill=fill, width=width)


def centre_of_mass(raw):
    a = raw.astype(np.float64)
    rows, cols = np.indices(a.shape)
    return (a * rows).sum() / a.sum(), (a * cols).sum() / a.sum()


def bounding_box(raw):
    rows, cols = np.nonzero(raw > 0)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def check_mnist_like(raw):
    assert raw.shape == (28, 28) and raw.dtype == np.uint8
    cy, cx = centre_of_mass(raw)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1, (cy, cx)
    assert 19 <= max(bounding_box(raw)) <= 21
    # Bright ink on a dark background: the corners are black, the ink reaches full brightness.
    assert raw[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0
    assert raw.max() >= 250
    assert (raw > 0).mean() < 0.5


def dark_on_light_rgb():
    img = Image.new("RGB", (300, 200), (235, 230, 215))
    seven(ImageDraw.Draw(img), (30, 20, 110, 170), (25, 25, 60), 12)   # off-centre, to the left
    return img


def small_bright_on_dark_gray():
    img = Image.new("L", (40, 60), 0)
    seven(ImageDraw.Draw(img), (20, 30, 34, 55), 255, 2)               # a small 7, bottom right
    return img


def transparent_rgba():
    img = Image.new("RGBA", (120, 160), (0, 0, 0, 0))
    seven(ImageDraw.Draw(img), (15, 15, 100, 145), (0, 0, 0, 255), 10)  # black ink on nothing
    return img


@pytest.mark.parametrize("make", [dark_on_light_rgb, small_bright_on_dark_gray, transparent_rgba])
def test_drawings_land_centred_and_mnist_like(make):
    x, raw = preprocess_digit(make(), return_raw=True)
    check_mnist_like(raw)
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], (raw / 255 - MNIST_MEAN) / MNIST_STD, rtol=1e-5, atol=1e-6)
    assert x.min() == pytest.approx(BACKGROUND)


def test_paths_and_arrays_give_the_same_digit(tmp_path):
    img = dark_on_light_rgb()
    path = tmp_path / "seven.png"
    img.save(path)
    from_image = digit_to_mnist(img)
    np.testing.assert_array_equal(digit_to_mnist(path), from_image)
    np.testing.assert_array_equal(digit_to_mnist(str(path)), from_image)
    np.testing.assert_array_equal(digit_to_mnist(np.asarray(img)), from_image)
    np.testing.assert_array_equal(digit_to_mnist(np.asarray(img) / 255.0), from_image)
    np.testing.assert_array_equal(digit_to_mnist(np.asarray(img.convert("RGBA"))), from_image)


def test_grayscale_array_and_uneven_lighting():
    img = Image.new("L", (200, 200), 0)
    seven(ImageDraw.Draw(img), (110, 40, 180, 180), 255, 10)
    ink = np.asarray(img, dtype=np.float64) / 255
    paper = 150 + np.linspace(-60, 60, 200)[None, :] + np.zeros((200, 1))  # lit from the right
    photo = np.clip(paper * (1 - ink) + 30 * ink, 0, 255).astype(np.uint8)
    check_mnist_like(digit_to_mnist(photo))


def test_invert_can_be_forced():
    img = small_bright_on_dark_gray()
    np.testing.assert_array_equal(digit_to_mnist(img, invert=False), digit_to_mnist(img))
    with pytest.raises(ValueError, match="invert must be"):
        digit_to_mnist(img, invert="yes")


def test_fraction_threshold_and_no_threshold():
    img = dark_on_light_rgb()
    check_mnist_like(digit_to_mnist(img, threshold=0.5))
    check_mnist_like(digit_to_mnist(img, threshold=None))
    with pytest.raises(ValueError, match="threshold must be"):
        digit_to_mnist(img, threshold=1.5)


def test_otsu_splits_two_levels():
    gray = np.r_[np.full(900, 20.0), np.full(100, 200.0)]
    assert 20 <= otsu_threshold(gray) < 200


@pytest.mark.parametrize("image, message", [
    (np.full((50, 50), 255, dtype=np.uint8), "is blank"),
    (Image.new("RGB", (64, 64), "white"), "is blank"),
    (Image.new("RGBA", (64, 64), (0, 0, 0, 0)), "fully transparent"),
    (np.clip(200 + np.random.default_rng(0).normal(0, 8, (120, 160)), 0, 255).astype(np.uint8),
     "looks blank"),
    (np.zeros((28, 28, 7)), r"array of shape \(28, 28, 7\) is not an image"),
    (np.zeros(10), r"array of shape \(10,\) is not an image"),
    (np.full((28, 28), -0.42, dtype=np.float32), "before normalising"),
])
def test_bad_inputs_are_clear_errors(image, message):
    with pytest.raises(ValueError, match=message):
        preprocess_digit(image)


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="notes.png' cannot be read as an image"):
        preprocess_digit(bad)
    with pytest.raises(ValueError, match="does not exist"):
        preprocess_digit(tmp_path / "missing.png")


def tiny_model():
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10, generator=rng), nn.Dropout(0.5, generator=rng),
                         nn.LogSoftmax(dim=1))


def test_predict_shapes_and_probabilities():
    model = tiny_model()
    model.train()
    images = np.random.default_rng(1).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    digits, confidence = predict(model, images, batch_size=3)
    assert digits.shape == (7,) and digits.dtype == np.int64
    assert confidence.shape == (7,) and np.all((confidence >= 0) & (confidence <= 1))
    digits2, confidence2, probs = predict(model, images, return_all_probs=True)
    assert probs.shape == (7, 10)
    assert np.all((probs >= 0) & (probs <= 1))
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(digits2, probs.argmax(axis=1))
    np.testing.assert_allclose(confidence2, probs.max(axis=1))
    # Eval mode (dropout off): the same answer every time, and batching does not matter.
    np.testing.assert_array_equal(digits, digits2)
    np.testing.assert_allclose(confidence, confidence2, rtol=1e-5)
    assert model.training  # the mode is restored


def test_predict_equals_exp_of_log_softmax_outputs():
    model = tiny_model().eval()
    x = as_network_input(np.random.default_rng(2).integers(0, 256, size=(4, 28, 28), dtype=np.uint8))
    _, _, probs = predict(model, x, return_all_probs=True)
    np.testing.assert_allclose(probs, np.exp(model(x)), rtol=1e-5)


def test_predict_one_preprocessed_digit():
    digits, confidence = predict(tiny_model(), preprocess_digit(dark_on_light_rgb()))
    assert digits.shape == confidence.shape == (1,)


def test_as_network_input_shapes():
    assert as_network_input(np.zeros((28, 28), np.uint8)).shape == (1, 1, 28, 28)
    assert as_network_input(np.zeros((5, 28, 28), np.uint8)).shape == (5, 1, 28, 28)
    assert as_network_input(np.zeros((1, 28, 28), np.float32)).shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="float images must be"):
        as_network_input(np.zeros((28, 28), np.float32))


def test_exif_orientation_is_applied(tmp_path):
    upright = dark_on_light_rgb()
    # Stored turned a quarter left, with Orientation 6 ("turn 90 degrees clockwise to show"),
    # as a phone held upright stores its photos.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.png"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    expected = digit_to_mnist(upright)
    np.testing.assert_array_equal(digit_to_mnist(path), expected)
    with Image.open(path) as opened:
        np.testing.assert_array_equal(digit_to_mnist(opened), expected)


def test_too_many_pixels_is_a_value_error_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    dark_on_light_rgb().save(path)  # 300 x 200 = 0.06 megapixels
    # Pillow refuses images above 2 * MAX_IMAGE_PIXELS, and warns above MAX_IMAGE_PIXELS.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(ValueError, match=r"^image file '.*huge\.png' is too large to read \(Image size \(60000 "
                                         r"pixels\) exceeds limit of 20000 pixels.*\); resize it first"):
        digit_to_mnist(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ValueError, match=r"is too large to read \(Image size \(60000 pixels\) exceeds "
                                             r"limit of 40000 pixels"):
            digit_to_mnist(path)


@pytest.mark.parametrize("image, message", [
    (Image.new("L", (0, 5)), r"^PIL image \(L, 0x5\) is too small to hold a digit$"),
    (Image.new("RGBA", (5, 0)), r"^PIL image \(RGBA, 5x0\) is too small to hold a digit$"),
    (np.zeros((1, 1)), r"^array of shape \(1, 1\) is too small to hold a digit$"),
])
def test_empty_images_are_too_small(image, message):
    with pytest.raises(ValueError, match=message):
        digit_to_mnist(image)


@pytest.mark.parametrize("image, kind", [(None, "NoneType"), (b"digit.png", "bytes")])
def test_what_is_not_an_image_is_a_type_error(image, kind):
    with pytest.raises(TypeError, match=rf"^expected a path \(str or pathlib\.Path\), a PIL image or an "
                                        rf"array \(H, W\), \(H, W, 3\) or \(H, W, 4\), got {kind}$"):
        digit_to_mnist(image)


def test_a_corrupt_exif_block_is_read_as_stored_with_a_warning(tmp_path):
    plain, corrupt = tmp_path / "plain.jpg", tmp_path / "corrupt.jpg"
    dark_on_light_rgb().save(plain, quality=95)
    dark_on_light_rgb().save(corrupt, quality=95, exif=b"Exif\0\0" + b"\xff" * 40)
    with pytest.warns(UserWarning, match=r"^image file '.*corrupt\.jpg': its EXIF data cannot be read \(not a TIFF "
                                         r"file.*\); read as stored, not turned upright by its orientation tag$"):
        raw = digit_to_mnist(corrupt)
    np.testing.assert_array_equal(raw, digit_to_mnist(plain))


def _record_decoding(monkeypatch):
    from PIL import ImageFile

    decoded, load = [], ImageFile.ImageFile.load

    def recording_load(self):
        decoded.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    return decoded


def test_images_between_pillows_warning_and_its_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; in between it decodes at full
    # size (a 12,500 x 12,500 PNG of 0.76 MB took 6.3 GB). 300 x 200 stands for such a file here.
    path = tmp_path / "huge.png"
    dark_on_light_rgb().save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000)
    decoded = _record_decoding(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=r"^image file '.*huge\.png' is too large to read \(Image size \(60000 "
                                             r"pixels\) exceeds limit of 40000 pixels.*\); resize it first"):
            digit_to_mnist(path)
    assert caught == [] and decoded == []


@pytest.mark.parametrize("suffix, orientation", [(".png", None), (".png", 6), (".jpg", None)])
def test_large_files_are_reduced_as_they_are_decoded(suffix, orientation, tmp_path, monkeypatch):
    from minicnn import imaging

    upright = dark_on_light_rgb()  # 300 x 200
    path = tmp_path / f"large{suffix}"
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    (upright.transpose(Image.Transpose.ROTATE_90) if orientation else upright).save(path, exif=exif)
    monkeypatch.setattr(imaging, "MAX_WORKING_PIXELS", 10_000)
    decoded = _record_decoding(monkeypatch)
    gray = imaging._to_gray(path)
    rows, cols = gray.shape
    assert rows * cols <= 10_000 and cols > rows  # reduced, and upright (wider than tall)
    if suffix == ".jpg":
        assert decoded[0][0] * decoded[0][1] < 300 * 200  # decoded at a reduced scale
    check_mnist_like(imaging.digit_to_mnist(path))


def test_float_tiffs_are_read_as_float_arrays_are(tmp_path):
    gray = np.asarray(dark_on_light_rgb().convert("L"), dtype=np.float32) / 255  # floats in [0, 1]
    path = tmp_path / "float.tif"
    Image.fromarray(gray).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "F"
    np.testing.assert_array_equal(digit_to_mnist(path), digit_to_mnist(gray))
    gray[5, 5] = np.nan
    Image.fromarray(gray).save(path)
    with pytest.raises(ValueError, match=r"^image file '.*float\.tif' contains NaN or infinite values$"):
        digit_to_mnist(path)


# --- tight crops: strokes that run into the image's edges --------------------------

def border_values(a):
    return np.r_[a[0], a[-1], a[1:-1, 0], a[1:-1, -1]].astype(np.float64)


def marker_seven(paper, pen, spot=None, noise=3.0, margin=0):
    """A soft marker-drawn 7 (a 34 px stroke, blurred) on noisy paper, cropped to the stroke's core.

    The crop cuts 6 px into the bounding box of the stroke's darker half, so
    the bar runs out of the top edge and the stem out of the bottom one.
    ``spot``: a 20 x 20 patch of that gray inside the paper (a glare or a
    shadow), brighter or darker than anything else. ``margin``: that many
    pixels of paper around the crop, the same strokes not touching the edges.
    """
    img = Image.new("L", (200, 240), 0)
    ImageDraw.Draw(img).line([(30, 40), (170, 40), (80, 210)], fill=255, width=34)
    ink = np.asarray(img.filter(ImageFilter.GaussianBlur(2)), dtype=np.float64) / 255
    rows, cols = np.nonzero(ink > 0.5)
    ink = np.pad(ink[rows.min() + 6:rows.max() - 5, cols.min() + 6:cols.max() - 5], margin)
    a = paper * (1 - ink) + pen * ink + np.random.default_rng(0).normal(0, noise, ink.shape)
    if spot is not None:
        a[60:80, 20:40] = spot
    return np.clip(a, 0, 255).astype(np.uint8)


def canvas_seven(ink, paper, size=280):
    """A 7 drawn on a page's canvas with a round 24 px pen, its bar along the canvas's top edge."""
    img = Image.new("L", (size, size), paper)
    ImageDraw.Draw(img).line([(0, 8), (size - 1, 8), (size // 3, size - 1)], fill=ink, width=24, joint="curve")
    return img


def close_to(raw, expected):
    """Two 28x28 inputs that put the same strokes in the same places (MNIST scale: 0..255)."""
    a, b = raw.astype(np.float64), expected.astype(np.float64)
    return np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9 and np.abs(a - b).mean() < 20


@pytest.mark.parametrize("paper, pen", [(225, 35), (20, 230)], ids=["dark-on-light", "light-on-dark"])
def test_a_tightly_cropped_marker_digit_is_read_like_one_with_margins(paper, pen):
    tight = marker_seven(paper, pen, noise=6)
    assert border_values(tight).max() - border_values(tight).min() > 150  # strokes do cross the border
    raw = digit_to_mnist(tight)
    check_mnist_like(raw)
    assert close_to(raw, digit_to_mnist(marker_seven(paper, pen, noise=6, margin=30)))


@pytest.mark.parametrize("ink, paper", [(0, 255), (255, 0)], ids=["black-on-white", "white-on-black"])
def test_a_canvas_drawing_that_touches_the_border_is_read(ink, paper):
    drawing = canvas_seven(ink, paper)
    raw = digit_to_mnist(drawing)
    check_mnist_like(raw)
    padded = ImageOps.expand(drawing, border=40, fill=paper)  # the same strokes with paper around them
    assert close_to(raw, digit_to_mnist(padded))


def test_both_canvas_polarities_give_the_same_input():
    np.testing.assert_array_equal(digit_to_mnist(canvas_seven(0, 255)), digit_to_mnist(canvas_seven(255, 0)))


@pytest.mark.parametrize("image", [
    np.clip(150 + np.linspace(-50, 50, 160)[None, :] + np.random.default_rng(1).normal(0, 6, (120, 160)),
            0, 255).astype(np.uint8),                                                   # paper lit from one side
    np.clip(20 + np.random.default_rng(2).normal(0, 4, (90, 60)), 0, 255).astype(np.uint8),  # a dark board
    np.clip(np.random.default_rng(3).normal(128, 40, (64, 64)), 0, 255).astype(np.uint8),   # noise alone
], ids=["lit-paper", "dark-board", "noise"])
def test_truly_blank_images_are_still_refused(image):
    with pytest.raises(ValueError, match=r"looks blank: its brightest marks are \d+ gray levels above the "
                                         r"paper, whose noise is \+-\d+; no digit found"):
        digit_to_mnist(image)


@pytest.mark.parametrize("paper, pen, spot", [(150, 30, 255), (110, 255, 0)],
                         ids=["dark-ink-and-a-glare", "light-ink-and-a-shadow"])
def test_invert_decision_takes_the_median_of_a_border_that_strokes_cross(paper, pen, spot):
    # The spot, not the paper, is the picture's brightest (or darkest) thing, so the
    # midpoint of min and max moves towards the paper; the strokes on the border pull
    # the border's mean across that midpoint, its median stays with the paper.
    photo = marker_seven(paper, pen, spot=spot)
    border, midpoint = border_values(photo), (int(photo.min()) + int(photo.max())) / 2
    dark_ink = pen < paper
    assert (np.median(border) > midpoint) == dark_ink
    assert (border.mean() > midpoint) != dark_ink  # the mean would decide wrongly here
    raw = digit_to_mnist(photo)
    np.testing.assert_array_equal(raw, digit_to_mnist(photo, invert=dark_ink))
    assert close_to(raw, digit_to_mnist(marker_seven(paper, pen)))  # the same 7 without the spot
