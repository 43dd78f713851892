"""The page of `minicnn serve` in a real headless Chromium: draw, upload, clear, on a desktop and a phone.

A server runs on a free loopback port in a thread; Selenium drives Debian's
chromium through chromedriver. What the page shows is checked against
`minicnn predict` on the same image. Screenshots are kept in the folder
named by ``MINICNN_TEST_ARTIFACTS`` (default ``test-artifacts/`` at the top
of the checkout). Skips, saying why, without Selenium, Chromium or chromedriver.
"""
import base64
import io
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicnn import cli, load, models
from minicnn.imaging import digit_to_mnist, preprocess_digit
from minicnn.inference import predict

pytest.importorskip("flask", reason="Flask is not installed (pip install -e '.[web]' for minicnn serve)")
webdriver = pytest.importorskip("selenium.webdriver", reason="Selenium is not installed (pip install -e '.[dev]')")

from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from drawings import photo_of_a_seven, save_small_model  # noqa: E402
from minicnn.web import server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("MINICNN_TEST_ARTIFACTS", ROOT / "test-artifacts"))
# Headless Chromium as root on a machine whose only network is loopback: no sandbox (root), no GPU,
# and none of the background connections (updates, sync, QUIC probes) that would be refused.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
# A 7 on the pad's 280 x 280 pixels: a bar and a stem, as a person draws it.
SEVEN = [(70, 60), (110, 58), (150, 57), (200, 58), (215, 62), (190, 120), (165, 180), (140, 240)]


def find(*names):
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_small_model(tmp_path_factory.mktemp("weights") / "model.npz")


@pytest.fixture(scope="module")
def model(weights):
    return load(models.MnistCNN(seed=1), weights)


@pytest.fixture(scope="module")
def url(model):
    httpd = server.listen(server.create_app(model, title="MnistCNN from model.npz"), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    # The first forward pass compiles the Numba kernels: do it before any page waits for an answer.
    predict(model, preprocess_digit(photo_of_a_seven()))
    yield f"http://127.0.0.1:{httpd.port}/"
    httpd.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = find("chromium", "chromium-browser", "google-chrome")
    driver_path = find("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no Chromium and chromedriver here (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    except WebDriverException as exc:
        pytest.skip(f"Chromium ({chromium}) does not start under chromedriver ({driver_path}): {exc.msg}")
    yield driver
    driver.quit()


def open_page(browser, url, width=1100, height=820, mobile=False):
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
    browser.get(url)
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")


def sent(browser):
    """How many requests the page has sent so far."""
    return int(browser.execute_script("return document.body.dataset.asked || 0"))


def answered(browser, after, timeout=60):
    """Wait for the answer to a request sent after the ``after``-th; return what the page shows then."""
    WebDriverWait(browser, timeout).until(lambda d: d.execute_script(
        "const asked = Number(document.body.dataset.asked || 0);"
        "return asked > arguments[0] && Number(document.body.dataset.answered) === asked", after))
    shown = browser.execute_script("""
        const result = document.getElementById("result"), message = document.getElementById("message");
        return {result: !result.hidden, message: message.hidden ? null : message.textContent,
                digit: document.getElementById("digit").textContent,
                confidence: document.getElementById("confidence").textContent,
                bars: [...document.querySelectorAll("#bars li")].map(li => [li.dataset.digit, li.dataset.probability,
                        li.querySelector(".value").textContent, li.querySelector(".fill").style.width,
                        li.classList.contains("top")]),
                input: document.getElementById("input").src,
                blocks: [...document.querySelectorAll("#blocks figcaption")].map(c => c.textContent)};""")
    return shown


def draw(browser, points, touch=False):
    """Draw one stroke through ``points`` (pad pixels) with a mouse, or a finger when ``touch``."""
    pad = browser.find_element(By.ID, "pad")
    scale = pad.size["width"] / 280
    offsets = [(round((x - 140) * scale), round((y - 140) * scale)) for x, y in points]  # from the pad's centre
    if touch:
        actions = ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
        actions.pointer_action.move_to(pad, *offsets[0]).pointer_down()
        for dx, dy in offsets[1:]:
            actions.pointer_action.move_to(pad, dx, dy)
        actions.pointer_action.pointer_up()
        actions.perform()
        return
    chain = ActionChains(browser).move_to_element_with_offset(pad, *offsets[0]).click_and_hold()
    for dx, dy in offsets[1:]:
        chain.move_to_element_with_offset(pad, dx, dy)
    chain.release().perform()


def pad_png(browser, path):
    """Save the pad's pixels, exactly what the page sent for the drawing, as a PNG file."""
    url = browser.execute_script("return document.getElementById('pad').toDataURL('image/png')")
    path.write_bytes(base64.b64decode(url.split(",", 1)[1]))
    return path


def decode(url):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def check_against_minicnn_predict(shown, path, model, weights, capsys):
    """The page's digit, bars and 28x28 input are those of `minicnn predict` on the file at ``path``."""
    assert shown["result"] and shown["message"] is None
    digits, confidence, probs = predict(model, preprocess_digit(path), return_all_probs=True)
    assert int(shown["digit"]) == digits[0]
    assert [int(d) for d, *_ in shown["bars"]] == list(range(10))
    np.testing.assert_allclose([float(p) for _, p, *_ in shown["bars"]], probs[0], rtol=1e-12, atol=0)
    assert [value for _, _, value, *_ in shown["bars"]] == [f"{100 * p:.1f}%" for p in probs[0]]
    widths = [float(width.removesuffix("%")) for _, _, _, width, _ in shown["bars"]]  # of the bar's track
    np.testing.assert_allclose(widths, 100 * probs[0], rtol=0, atol=0.006)
    assert [top for *_, top in shown["bars"]] == [d == digits[0] for d in range(10)]
    np.testing.assert_array_equal(decode(shown["input"]), digit_to_mnist(path))
    assert shown["blocks"] == ["After pool1: 32 feature maps of 14x14, bright where a filter found its pattern",
                               "After pool2: 64 feature maps of 7x7, bright where a filter found its pattern"]
    capsys.readouterr()
    assert cli.main(["predict", str(weights), str(path)]) == 0
    printed = f"{path}: {digits[0]} ({confidence[0] * 100:.1f}%)"
    assert capsys.readouterr().out.strip() == printed
    assert shown["confidence"] == f"({confidence[0] * 100:.1f}% sure)"


def screenshot(browser, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert browser.save_screenshot(str(path)), f"no screenshot saved to {path}"
    return path


def test_a_drawn_seven_is_read_as_minicnn_predict_reads_the_pad(browser, url, model, weights, tmp_path, capsys):
    open_page(browser, url)
    assert browser.find_element(By.ID, "result").is_displayed() is False
    draw(browser, SEVEN)
    shown = answered(browser, after=0)
    check_against_minicnn_predict(shown, pad_png(browser, tmp_path / "drawing.png"), model, weights, capsys)
    assert shown["digit"] == "7"        # the small model reads a clear 7 right
    path = screenshot(browser, "serve_page.png")
    with Image.open(path) as shot:
        assert shot.size == (1100, 820)


def test_a_second_stroke_is_read_with_the_first(browser, url, model, weights, tmp_path, capsys):
    open_page(browser, url)
    draw(browser, SEVEN[:4])            # the bar alone
    answered(browser, after=0)
    draw(browser, SEVEN[3:])            # then the stem
    check_against_minicnn_predict(answered(browser, after=1), pad_png(browser, tmp_path / "two.png"), model, weights, capsys)


def test_an_uploaded_photo_is_read_as_minicnn_predict_reads_the_file(browser, url, model, weights, tmp_path,
                                                                       capsys):
    path = tmp_path / "photo.jpg"
    photo_of_a_seven().save(path, quality=90)
    open_page(browser, url)
    browser.find_element(By.ID, "file").send_keys(str(path))
    check_against_minicnn_predict(answered(browser, after=0), path, model, weights, capsys)
    # The upload is shown on the pad: its middle is no longer the pad's white.
    corner_and_ink = browser.execute_script(
        "const p = document.getElementById('pad').getContext('2d');"
        "return [p.getImageData(0, 0, 1, 1).data[0], p.getImageData(60, 10, 160, 30).data.reduce((a, b) => Math.min(a, b))];")
    assert corner_and_ink[0] == 255 and corner_and_ink[1] < 100


@pytest.mark.parametrize("content, message", [
    (b"these are notes, not a picture", "the upload is not an image that can be read here"),
    (None, "the image is blank: every pixel is about 255 of 255, there is no digit to read"),
], ids=["not-an-image", "blank"])
def test_a_bad_upload_shows_a_message_and_the_page_goes_on(browser, url, model, weights, tmp_path, capsys,
                                                          content, message):
    bad = tmp_path / "digit.png"
    if content is None:
        Image.new("RGB", (120, 120), "white").save(bad)
    else:
        bad.write_bytes(content)
    open_page(browser, url)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    shown = answered(browser, after=0)
    assert shown["result"] is False and shown["message"].startswith(message)
    assert browser.find_element(By.ID, "message").is_displayed()
    screenshot(browser, f"serve_message_{'blank' if content is None else 'not_an_image'}.png")
    browser.find_element(By.ID, "clear").click()
    before = sent(browser)
    draw(browser, SEVEN)                # the server is still there
    check_against_minicnn_predict(answered(browser, after=before), pad_png(browser, tmp_path / "after.png"), model, weights, capsys)


def test_clear_empties_the_pad_and_the_answer(browser, url):
    open_page(browser, url)
    draw(browser, SEVEN)
    assert answered(browser, after=0)["result"]
    browser.find_element(By.ID, "clear").click()
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert browser.find_element(By.ID, "waiting").is_displayed()
    lowest = browser.execute_script(
        "return document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280).data"
        ".reduce((a, b) => Math.min(a, b))")
    assert lowest == 255                # every pixel white again


def test_on_a_phone_a_finger_draws_and_nothing_is_wider_than_the_screen(browser, url, model, weights, tmp_path,
                                                                          capsys):
    open_page(browser, url, width=390, height=844, mobile=True)
    draw(browser, SEVEN, touch=True)
    shown = answered(browser, after=0)
    check_against_minicnn_predict(shown, pad_png(browser, tmp_path / "finger.png"), model, weights, capsys)
    widths = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.getElementById('pad').getBoundingClientRect().right,"
        " Math.max(...[...document.querySelectorAll('img, canvas, section')].map(e => e.getBoundingClientRect().right))]")
    assert all(w <= 390 for w in widths), widths
    assert re.fullmatch(r"\d", shown["digit"])
    screenshot(browser, "serve_phone.png")
