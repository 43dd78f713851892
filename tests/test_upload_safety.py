"""What `minicnn predict` and `minicnn serve` give to an image decoder, and how much it may cost.

Only PNG, JPEG, GIF, BMP, WebP and TIFF files are decoded, recognised by their first bytes before any of
Pillow's decoders sees them (Ghostscript, the EPS decoder, above all); a large image is reduced as it is
decoded by both; a path that is not a regular file is refused before it is opened.
"""
import io
import os
import stat
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw, UnidentifiedImageError

import minicnn
from minicnn import cli, imaging, models
from minicnn.imaging import digit_to_mnist

FORMATS = "PNG, JPEG, GIF, BMP, WebP or TIFF"
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 60 40\n"
       b"newpath 10 30 moveto 50 30 lineto 25 5 lineto 6 setlinewidth stroke showpage\n%%EOF\n")


def seven(size=(300, 200), mode="RGB", paper="white", ink="black"):
    image = Image.new(mode, size, paper)
    w, h = size
    ImageDraw.Draw(image).line([(w // 10, h // 10), (w * 6 // 10, h // 10), (w // 4, h * 9 // 10)],
                               fill=ink, width=max(3, w // 25))
    return image


def encoded(image, format, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def other_formats():
    """Files of formats Pillow decodes but minicnn does not: ``{name: bytes}``."""
    rgb, gray = seven((64, 48)), seven((64, 48), "L")
    files = {"eps": EPS, "text": b"these are notes, not a picture\n"}
    for format, image in [("PCX", rgb), ("TGA", rgb), ("PPM", gray), ("SGI", rgb), ("DDS", rgb.convert("RGBA")),
                          ("QOI", rgb), ("XBM", gray.convert("1")), ("ICO", rgb), ("MSP", gray.convert("1"))]:
        files[format.lower()] = encoded(image, format)
    return files


OTHER_FORMATS = other_formats()


@pytest.fixture
def decoder_calls(monkeypatch):
    """Every ``Image.open`` call's ``formats`` argument; the call itself answers that it cannot identify the file
    (a decoder reached is the failure these tests look for, not what it would do)."""
    calls = []

    def refusing_open(fp, mode="r", formats=None):
        calls.append(formats)
        raise UnidentifiedImageError("a decoder was reached")

    monkeypatch.setattr(Image, "open", refusing_open)
    return calls


@pytest.fixture
def recorded_opens(monkeypatch):
    """Every ``Image.open`` call's ``formats`` argument, the call going on to Pillow."""
    calls, real_open = [], Image.open

    def recording_open(fp, mode="r", formats=None):
        calls.append(formats)
        return real_open(fp, mode, formats)

    monkeypatch.setattr(Image, "open", recording_open)
    return calls


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("flask", reason="Flask is not installed (pip install -e '.[web]' for minicnn serve)")
    from minicnn.web import server
    return server.create_app(models.MnistCNN(seed=0)).test_client()


def post(client, data, name="digit.png"):
    return client.post("/predict", data={"image": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def open_upload(data, max_pixels=None):
    pytest.importorskip("flask", reason="Flask is not installed (pip install -e '.[web]' for minicnn serve)")
    from minicnn.web.reading import open_upload
    return open_upload(data, max_pixels)


# --- only the named formats reach a decoder ---------------------------------------------------

@pytest.mark.parametrize("kind", sorted(OTHER_FORMATS))
def test_predict_refuses_other_formats_before_any_decoder_sees_them(kind, tmp_path, decoder_calls):
    path = tmp_path / f"digit.{kind}"
    path.write_bytes(OTHER_FORMATS[kind])
    with pytest.raises(ValueError) as caught:
        digit_to_mnist(path)
    assert decoder_calls == []
    assert str(caught.value) == (f"image file {str(path)!r} cannot be read as an image: it is not a {FORMATS} file "
                                 f"(the formats minicnn reads)")


@pytest.mark.parametrize("kind", sorted(OTHER_FORMATS))
def test_serve_refuses_other_formats_before_any_decoder_sees_them(kind, client, decoder_calls):
    # The file's name, and the type the browser gives, count for nothing.
    response = post(client, OTHER_FORMATS[kind], name="digit.png")
    assert decoder_calls == []
    assert response.status_code == 422
    assert response.get_json() == {"error": f"the upload is not an image that can be read here ({FORMATS})"}


def test_ghostscript_is_never_run(tmp_path, client, monkeypatch):
    # A stand-in `gs` first on PATH leaves a marker when anything runs it, as Pillow's EPS decoder would.
    from PIL import EpsImagePlugin

    bin_dir, marker = tmp_path / "bin", tmp_path / "gs-was-run"
    bin_dir.mkdir()
    gs = bin_dir / "gs"
    gs.write_text(f"#!/bin/sh\necho \"$@\" >> '{marker}'\nexit 1\n")
    gs.chmod(gs.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # found again on PATH, if asked
    path = tmp_path / "digit.eps"
    path.write_bytes(EPS)
    for name in ("digit.eps", "digit.png"):
        response = post(client, EPS, name=name)
        assert response.status_code == 422, response.get_json()
        assert response.get_json()["error"] == f"the upload is not an image that can be read here ({FORMATS})"
    with pytest.raises(ValueError, match=r"^image file '.*digit\.eps' cannot be read as an image: it is not a PNG"):
        digit_to_mnist(path)
    assert not marker.exists()


def test_a_file_that_starts_as_one_format_is_given_to_that_decoder_alone(tmp_path, monkeypatch):
    # The second guard: were the first bytes misread, Image.open(formats=[...]) still tries no other decoder.
    path = tmp_path / "digit.eps"
    path.write_bytes(EPS)
    monkeypatch.setattr(imaging, "image_format", lambda head: "PNG")
    with pytest.raises(ValueError, match=r"^image file '.*digit\.eps' cannot be read as an image: it starts as a "
                                         r"PNG file, but its header is damaged$"):
        digit_to_mnist(path)


def test_a_damaged_header_is_named_as_such():
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    with pytest.raises(ValueError, match=r"^the image file is damaged and cannot be decoded: it starts as a PNG "
                                         r"file, but its header cannot be read$"):
        open_upload(data)


@pytest.mark.parametrize("format, options", [
    ("PNG", {}), ("JPEG", {"quality": 95}), ("GIF", {}), ("BMP", {}), ("WEBP", {"lossless": True}),
    ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}),
    ("MPO", {"quality": 95, "save_all": True, "append_images": [seven()]}),  # a phone's JPEG with two pictures
], ids=["png", "jpeg", "gif", "bmp", "webp", "tiff", "tiff-lzw", "mpo"])
def test_the_named_formats_are_read_by_their_own_decoder_alike_by_predict_and_serve(format, options, tmp_path,
                                                                                      recorded_opens):
    path = tmp_path / f"seven.{format.lower()}"
    path.write_bytes(encoded(seven(), format, **options))
    expected = digit_to_mnist(seven())
    raw = digit_to_mnist(path)
    served = digit_to_mnist(open_upload(path.read_bytes()))
    np.testing.assert_array_equal(served, raw)
    assert np.abs(raw.astype(int) - expected).max() <= (8 if format in ("JPEG", "MPO") else 0)
    decoder = "JPEG" if format == "MPO" else format  # Pillow's JPEG decoder opens an MPO as one
    assert recorded_opens == [[decoder], [decoder]]


# --- large images: reduced as they are decoded, by serve as by predict ------------------------

def test_serve_reduces_a_large_upload_as_predict_reduces_the_file(tmp_path, monkeypatch):
    path = tmp_path / "large.png"
    seven(mode="RGBA", paper=(0, 0, 0, 0), ink=(0, 0, 0, 255)).save(path)  # 300 x 200 stands for 5000 x 5000
    monkeypatch.setattr(imaging, "MAX_WORKING_PIXELS", 10_000)
    image = open_upload(path.read_bytes())
    assert image.width * image.height <= 10_000
    np.testing.assert_array_equal(digit_to_mnist(image), digit_to_mnist(path))


def test_a_5000_pixel_square_upload_takes_a_few_hundred_megabytes(tmp_path):
    # 5000 x 5000 RGBA, 0.1 MB compressed: read whole, as Flask's upload was, it took 1.8 GB and seconds in
    # the model's lock; reduced as it is decoded, about 250 MB in all (the interpreter and its modules ~70 MB).
    if sys.platform != "linux":
        pytest.skip("the peak memory is read from Linux's /proc/self/status")
    pytest.importorskip("flask", reason="Flask is not installed (pip install -e '.[web]' for minicnn serve)")
    image = Image.new("LA", (5000, 5000), (0, 0))
    ImageDraw.Draw(image).line([(1000, 1000), (4000, 1000), (2000, 4200)], fill=(0, 255), width=300)
    path = tmp_path / "large.png"
    image.convert("RGBA").save(path)
    # VmHWM, the peak of this process's own memory: ru_maxrss would carry the parent's peak across the
    # fork and exec (a pytest process that imported PyTorch reads 1.4 GB before the child does anything).
    script = ("import sys\n"
              "from minicnn.web.reading import open_upload\n"
              "from minicnn.imaging import preprocess_digit\n"
              "preprocess_digit(open_upload(open(sys.argv[1], 'rb').read()))\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
              "print(int(hwm.split()[1]) // 1024)\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 600, f"peak {done.stdout.strip()} MB"


@pytest.mark.parametrize("mode, suffix", [("1", ".png"), ("1", ".tif"), ("P", ".gif"), ("P", ".png")],
                         ids=["bilevel-png", "bilevel-tiff", "palette-gif", "palette-png"])
def test_large_bilevel_and_palette_images_are_read(mode, suffix, tmp_path, monkeypatch):
    # A 300-dpi bilevel scan (2550 x 3300, mode "1") is over MAX_WORKING_PIXELS; 300 x 200 stands for it here.
    plain = seven()
    image = plain.convert("1") if mode == "1" else plain.convert("P")
    path, same = tmp_path / f"scan{suffix}", tmp_path / "same.png"
    image.save(path, **({"transparency": 0} if suffix == ".png" and mode == "P" else {}))
    image.convert("L" if mode == "1" else "RGBA").save(same)  # the pixels as step 1 reads them, in another mode
    monkeypatch.setattr(imaging, "MAX_WORKING_PIXELS", 10_000)
    raw = digit_to_mnist(path)
    np.testing.assert_array_equal(raw, digit_to_mnist(same))
    np.testing.assert_array_equal(digit_to_mnist(open_upload(path.read_bytes())), raw)


# --- what is not a regular file -------------------------------------------------------------

@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return minicnn.save(models.MnistCNN(seed=0), tmp_path_factory.mktemp("weights") / "model.npz")


def _unblock_a_waiting_reader(fifo, done):
    """Write to ``fifo`` if something opens it for reading (the old predict did, and waited for ever)."""
    deadline = time.monotonic() + 5
    while not done.is_set() and time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader yet
            time.sleep(0.05)
            continue
        os.write(fd, b"not an image")
        os.close(fd)
        return


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_predict_refuses_a_fifo_a_device_and_a_folder_before_opening_them(weights, tmp_path, capsys):
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    done = threading.Event()
    writer = threading.Thread(target=_unblock_a_waiting_reader, args=(fifo, done), daemon=True)
    writer.start()
    try:
        status = cli.main(["predict", str(weights), str(fifo), os.devnull, str(tmp_path)])
    finally:
        done.set()
        writer.join()
    assert status == 1
    err = capsys.readouterr().err.splitlines()
    expected = f"not an image file: expected a {FORMATS} file"
    for line in (f"minicnn predict: error: image file {str(fifo)!r} is a FIFO (named pipe), {expected}",
                 f"minicnn predict: error: image file {os.devnull!r} is a character device, {expected}",
                 f"minicnn predict: error: image file {str(tmp_path)!r} is a folder, {expected}"):
        assert line in err, err


# --- messages: the file named, once ---------------------------------------------------------

def test_pillows_warnings_about_a_file_are_given_once_naming_it(tmp_path):
    import struct

    # EXIF whose ImageDescription tag points past the end of the block: Pillow warns as it opens the file and
    # again as it is turned upright, naming no file.
    ifd = (struct.pack("<H", 2) + struct.pack("<HHLHH", 0x0112, 3, 1, 1, 0) + struct.pack("<HHLL", 0x010E, 2, 100, 500)
           + struct.pack("<L", 0))
    path = tmp_path / "exif.jpg"
    seven().save(path, quality=95, exif=b"Exif\0\0II*\0" + struct.pack("<L", 8) + ifd)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        digit_to_mnist(path)
    assert [str(w.message) for w in caught] == [f"image file {str(path)!r}: Tag data larger than file. "
                                                f"Skipping tag 270"]


def test_a_lab_tiff_is_read_by_its_lightness(tmp_path):
    gray = seven(mode="L")
    path = tmp_path / "lab.tif"
    Image.merge("LAB", (gray, Image.new("L", gray.size, 128), Image.new("L", gray.size, 128))).save(path)
    np.testing.assert_array_equal(digit_to_mnist(path), digit_to_mnist(gray))
