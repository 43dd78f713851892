"""Preparing drawn digits like MNIST, and predicting with a model."""
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw

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


def test_predict_keeps_its_old_address_in_imaging():
    import minicnn.imaging
    import minicnn.inference

    assert minicnn.imaging.predict is minicnn.inference.predict
    with pytest.raises(AttributeError, match="has no attribute 'not_there'"):
        minicnn.imaging.not_there  # noqa: B018

