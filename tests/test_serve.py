"""`minicnn serve`: the application's answers, the server's defaults and errors, and the command line.

The page itself, in a real browser, is tested in test_serve_browser.py.
"""
import base64
import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

import minicnn
from drawings import photo_of_a_seven, save_small_model
from strategies import fused_lines
from minicnn import cli, models
from minicnn.data import load_mnist
from minicnn.imaging import digit_to_mnist, preprocess_digit
from minicnn.inference import predict

pytest.importorskip("flask", reason="Flask is not installed (pip install -e '.[web]' for minicnn serve)")

from minicnn.web import reading, server  # noqa: E402  (needs Flask)


# --- a small trained model and images to show it ---------------------------------------

@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_small_model(tmp_path_factory.mktemp("weights") / "model.npz")


@pytest.fixture(scope="module")
def model(weights):
    return minicnn.load(models.MnistCNN(seed=1), weights)


@pytest.fixture(scope="module")
def client(model):
    return server.create_app(model, title="MnistCNN from model.npz").test_client()


def png_bytes(image, format="PNG"):
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def decode_data_url(url):
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(prefix):]))))


def post_image(client, data, name="digit.png"):
    return client.post("/predict", data={"image": (io.BytesIO(data), name)}, content_type="multipart/form-data")


# --- what the application answers ------------------------------------------------------

def test_the_page_has_a_pad_a_clear_button_an_upload_and_loads_nothing_from_elsewhere(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for part in ('<canvas id="pad"', 'id="clear"', 'type="file"', 'id="bars"', 'id="input"', 'id="blocks"',
                 'name="viewport" content="width=device-width'):
        assert part in page, part
    assert f"MnistCNN from model.npz, running on the {minicnn.get_backend().name} backend" in page
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", page)  # no other host
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_an_upload_is_read_exactly_as_minicnn_predict_reads_the_file(client, model, weights, tmp_path, capsys):
    path = tmp_path / "seven.png"
    photo_of_a_seven().save(path)
    response = post_image(client, path.read_bytes())
    assert response.status_code == 200
    answer = response.get_json()

    digits, _, probs = predict(model, preprocess_digit(path), return_all_probs=True)
    assert answer["digit"] == digits[0]
    np.testing.assert_allclose(answer["probabilities"], probs[0], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(decode_data_url(answer["input"]), digit_to_mnist(path))
    assert cli.main(["predict", str(weights), str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: {answer['digit']} ({max(answer['probabilities']) * 100:.1f}%)"

    # The feature maps of both conv blocks, 8 tiles to a row with one transparent pixel between tiles.
    blocks = [(b["name"], b["channels"], b["height"], b["width"]) for b in answer["blocks"]]
    assert blocks == [("pool1", 32, 14, 14), ("pool2", 64, 7, 7)]
    pool1, pool2 = (decode_data_url(b["picture"]) for b in answer["blocks"])
    assert pool1.shape == (4 * 15 - 1, 8 * 15 - 1, 4) and pool2.shape == (8 * 8 - 1, 8 * 8 - 1, 4)
    assert pool1[14, :, 3].max() == 0 and pool1[:14, :14, 3].min() == 255   # a gap row, an opaque tile
    assert response.headers["Cache-Control"] == "no-store"


def test_feature_map_tiles_are_coloured_on_one_scale_per_block():
    maps = np.zeros((2, 3, 3))
    maps[0, 1, 1], maps[1, 0, 0] = 4.0, 2.0       # the block's maximum, and half of it
    picture = reading._block_picture(maps)
    viridis = colormaps["viridis"]
    np.testing.assert_array_equal(picture[1, 1], np.round(np.array(viridis(1.0)) * 255))
    np.testing.assert_array_equal(picture[0, 4], np.round(np.array(viridis(0.5)) * 255))  # tile 2 starts at column 4
    np.testing.assert_array_equal(picture[0, 0], np.round(np.array(viridis(0.0)) * 255))
    assert picture[0, 3, 3] == 0                     # the gap between the tiles is transparent


@pytest.mark.parametrize("data, message", [
    (b"", r"^the upload is empty: choose an image file"),
    (b"not an image at all", r"^the upload is not an image that can be read here \(PNG, JPEG"),
    (png_bytes(Image.new("RGB", (100, 80), "white")), r"^the image is blank: every pixel is about 255 of 255"),
    (png_bytes(Image.new("RGBA", (60, 60), (0, 0, 0, 0))), r"^the image is fully transparent"),
    (png_bytes(photo_of_a_seven())[:400], r"^the image file is damaged and cannot be decoded"),
], ids=["empty", "text", "white", "transparent", "truncated"])
def test_bad_uploads_are_answered_with_a_message(client, data, message):
    response = post_image(client, data)
    assert response.status_code == 422
    assert re.search(message, response.get_json()["error"]), response.get_json()


def test_a_noisy_blank_photo_is_refused_as_blank(client):
    paper = np.clip(np.random.default_rng(0).normal(200, 8, (120, 160)), 0, 255).astype(np.uint8)
    response = post_image(client, png_bytes(Image.fromarray(paper)))
    assert response.status_code == 422
    assert re.match(r"the image looks blank: its brightest marks are \d+ gray levels above the paper, "
                    r"whose noise is \+-\d+; no digit found$", response.get_json()["error"])


def test_uploads_over_the_limits_are_refused_before_they_are_read(model):
    small = server.create_app(model, max_upload_mb=0.01, max_pixels=20_000).test_client()
    response = post_image(small, png_bytes(Image.new("L", (200, 100), 255)))  # 20,000 pixels: allowed
    assert response.status_code == 422 and "blank" in response.get_json()["error"]
    response = post_image(small, png_bytes(Image.new("L", (201, 100), 255)))
    assert response.status_code == 422
    assert response.get_json()["error"] == ("the image is 201x100, 0.0201 million pixels, more than the limit of "
                                            "0.02 million: resize it first (a digit needs a few hundred pixels a side)")
    response = post_image(small, bytes(20_000))                                 # 20 kB > 0.01 MB
    assert response.status_code == 413
    assert response.get_json()["error"].startswith("the upload is larger than the limit of 0.01 MB")


def test_requests_without_an_image_and_unknown_pages_get_json_errors(client):
    response = client.post("/predict", data={}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.get_json()["error"] == "no image was sent: the form field 'image' is missing"
    response = client.get("/predict")
    assert response.status_code == 405 and response.get_json()["error"].startswith("405 Method Not Allowed")
    assert client.get("/nothing-here").status_code == 404


def test_bad_app_settings_are_refused(model):
    with pytest.raises(ValueError, match="max_upload_mb must be a positive number of megabytes, got 0"):
        server.create_app(model, max_upload_mb=0)


# --- the server: loopback, free ports, and failures that do not stop it -------------------

def multipart(data, name="digit.png"):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def ask(url, data=None):
    """(status, JSON or text) of a GET, or of a POST of ``data`` as the form's image."""
    request = urllib.request.Request(url)
    if data is not None:
        body, kind = multipart(data)
        request = urllib.request.Request(url, data=body, headers={"Content-Type": kind}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    return status, (json.loads(text) if data is not None else text)


@pytest.fixture
def running(model):
    """A real server on a free loopback port, in a thread; yields (url, httpd)."""
    httpd = server.listen(server.create_app(model), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.port}/", httpd
    httpd.shutdown()
    thread.join(timeout=10)


def test_a_request_that_fails_is_answered_and_the_server_goes_on(running, monkeypatch):
    url, _ = running
    seven = png_bytes(photo_of_a_seven())
    original = server.read_digit

    def broken(model, image):
        raise RuntimeError("out of memory while reading")

    monkeypatch.setattr(server, "read_digit", broken)
    status, answer = ask(url + "predict", seven)
    assert status == 500
    assert answer["error"] == ("the server failed on this image (RuntimeError: out of memory while reading); "
                               "it keeps running, so try again or another image")
    monkeypatch.setattr(server, "read_digit", original)
    status, answer = ask(url + "predict", seven)
    assert status == 200 and len(answer["probabilities"]) == 10
    assert ask(url)[0] == 200


def test_concurrent_requests_all_get_their_own_answer(running, model):
    url, _ = running
    images = [photo_of_a_seven(), Image.fromarray(255 - load_mnist("test")[0][1]).resize((84, 84))]
    expected = [predict(model, preprocess_digit(img), return_all_probs=True)[2][0] for img in images]
    answers = [None] * 8

    def one(k):
        answers[k] = ask(url + "predict", png_bytes(images[k % 2]))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for k, (status, answer) in enumerate(answers):
        assert status == 200
        np.testing.assert_allclose(answer["probabilities"], expected[k % 2], rtol=1e-12, atol=0)


def test_a_port_in_use_is_one_clear_error(running):
    _, httpd = running
    with pytest.raises(OSError, match=rf"^cannot listen on 127\.0\.0\.1 port {httpd.port}: Address already in use; "
                                      r"choose another with --port$"):
        server.listen(server.create_app(None), "127.0.0.1", httpd.port)


def test_a_host_that_is_not_here_is_one_clear_error():
    with pytest.raises(OSError, match=r"^cannot listen on no-such-host\.invalid port 0: "):
        server.listen(server.create_app(None), "no-such-host.invalid", 0)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                            ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.20", False), ("example.org", False)])
def test_which_hosts_are_this_machine_only(host, loopback):
    assert server.is_loopback(host) is loopback


# --- the command line -----------------------------------------------------------------------

def test_minicnn_serve_starts_on_loopback_says_where_and_stops_on_ctrl_c(weights, tmp_path):
    # A shell without job control starts background jobs with SIGINT ignored, and their children
    # inherit that (Python then never raises KeyboardInterrupt): give the server Ctrl+C back.
    process = subprocess.Popen([sys.executable, "-m", "minicnn.cli", "serve", str(weights), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = process.stdout.readline()
        match = re.fullmatch(r"Serving MnistCNN from model\.npz at (http://127\.0\.0\.1:(\d+)/) \(Ctrl\+C to stop\)\n",
                             line)
        assert match, (line, process.stderr.read() if process.poll() is not None else "")
        status, page = ask(match.group(1))
        assert status == 200 and '<canvas id="pad"' in page
        with socket.create_connection(("127.0.0.1", int(match.group(2))), timeout=5):
            pass
        process.send_signal(signal.SIGINT)  # as Ctrl+C
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_another_host_is_announced_in_one_line(weights, monkeypatch, capsys):
    class Listening:
        port = 7860

        def __init__(self, max_connections):
            self.max_connections = max_connections

        def serve_forever(self):
            pass

    monkeypatch.setattr(server, "listen", lambda app, host, port, max_connections: Listening(max_connections))
    assert cli.main(["serve", str(weights), "--host", "0.0.0.0"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [*fused_lines(), "minicnn serve: warning: listening on 0.0.0.0, not only on "
                                         "this machine: anyone who can reach port 7860 of it can use the page"]
    assert captured.out == "Serving MnistCNN from model.npz at http://0.0.0.0:7860/ (Ctrl+C to stop)\n"
    assert cli.main(["serve", str(weights), "--host", "::1"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == fused_lines() and "at http://[::1]:7860/" in captured.out
    # A cap lowered for a low `ulimit -n` (server.connection_cap) is one line too.
    monkeypatch.setattr(server, "listen", lambda app, host, port, max_connections: Listening(18))
    assert cli.main(["serve", str(weights), "--max-connections", "40"]) == 0
    assert capsys.readouterr().err.splitlines() == [*fused_lines(), "minicnn serve: warning: serving 18 connections "
                                                    "at once, not 40: this process may open few files (ulimit -n)"]


def test_without_flask_serve_names_the_pip_install(weights, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "flask", None)        # import flask now fails, as when it is absent
    monkeypatch.delitem(sys.modules, "minicnn.web.server")
    monkeypatch.delattr(minicnn.web, "server")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", str(weights)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("minicnn serve: error: the web page needs Flask (flask is not installed): "
                                       "pip install 'minicnn[web]' (in a clone of minicnn: pip install -e \".[web]\")\n")


@pytest.mark.parametrize("argv, status, message", [
    (["--port", "70000"], 2, "minicnn serve: error: --port must be 0-65535, got 70000"),
    (["--max-upload-mb", "0"], 2, "minicnn serve: error: --max-upload-mb must be a positive number of megabytes, got 0"),
    (["--port", "http"], 2, "minicnn serve: error: argument --port: invalid int value: 'http'"),
])
def test_bad_options_are_usage_errors(weights, argv, status, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", str(weights), *argv])
    assert exit_.value.code == status
    assert capsys.readouterr().err.strip().splitlines()[-1] == message


def test_missing_weights_are_one_line(tmp_path, capsys):
    assert cli.main(["serve", str(tmp_path / "none.npz")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("minicnn serve: error: ") and "none.npz" in err
