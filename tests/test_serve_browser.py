"""The page of `minicnn serve` in a real headless Chromium: draw, upload, clear, on a desktop and a phone;
click a cell of a feature map and another digit's heat maps.

A server runs on a free loopback port in a thread; Selenium drives Debian's
chromium through chromedriver. What the page shows is checked against
`minicnn predict` on the same image. Screenshots are kept in the folder
named by ``MINICNN_TEST_ARTIFACTS`` (default ``test-artifacts/`` at the top
of the checkout). Skips, saying why, without Selenium, Chromium or chromedriver.
"""
import base64
import io
import math
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matplotlib import colormaps

from minicnn import cli, explain, load, models
from minicnn.imaging import digit_to_mnist, preprocess_digit
from minicnn.inference import predict
from minicnn.nn.fusion import fuse
from minicnn.plots import feature_maps

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
def fused_url(model):
    """The page of the model fused, as `minicnn serve` serves it on a backend with fused kernels (Numba)."""
    httpd = server.listen(server.create_app(fuse(model), title="MnistCNN from model.npz"), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
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


def screenshot_path(name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


def save_region(browser, first, last, name):
    """Save the part of the page from the top of ``first`` to the bottom of ``last`` (CSS selectors), across
    the answer's width, as a PNG in the artifacts folder."""
    box = browser.execute_script(
        "const a = document.getElementById('answer').getBoundingClientRect(),"
        "  top = document.querySelector(arguments[0]).getBoundingClientRect().top - 8,"
        "  bottom = document.querySelector(arguments[1]).getBoundingClientRect().bottom + 8;"
        "return {x: a.left + scrollX, y: top + scrollY, width: a.width, height: bottom - top, scale: 1}", first, last)
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": box,
                                                              "captureBeyondViewport": True})
    path = screenshot_path(name)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def screenshot(browser, name):
    path = screenshot_path(name)
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


# --- the explanations: a cell of a feature map, and why this digit ------------------------------

def explained(browser, kind, after=0, timeout=30):
    """Wait for the answer to the latest question of ``kind`` ("why" or "cell") asked after the ``after``-th."""
    WebDriverWait(browser, timeout).until(lambda d: d.execute_script(
        "const data = document.body.dataset, asked = Number(data[arguments[0] + 'Asked'] || 0);"
        "return asked > arguments[1] && Number(data[arguments[0] + 'Answered']) === asked", kind, after))
    return int(browser.execute_script("return Number(document.body.dataset[arguments[0] + 'Asked'])", kind))


TILE = {"pool1": 15, "pool2": 8}      # a map's side and the pixel between two maps, in the picture of a block


def maps_picture(browser, block):
    """The picture of ``block``'s maps, scrolled into view; its content box (where its pixels are drawn: the
    element's rect less its borders and padding) in viewport pixels, and its natural size."""
    picture = browser.find_element(By.CSS_SELECTOR, f'figure[data-block="{block}"] img')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", picture)
    box, edges, natural = browser.execute_script(
        "const p = arguments[0], r = p.getBoundingClientRect(), s = getComputedStyle(p);"
        "return [[r.left, r.top, r.width, r.height], ['Left', 'Top', 'Right', 'Bottom'].map(side =>"
        "  parseFloat(s[`border${side}Width`]) + parseFloat(s[`padding${side}`])), [p.naturalWidth, p.naturalHeight]]",
        picture)
    left, top, width, height = box
    content = (left + edges[0], top + edges[1], width - edges[0] - edges[2], height - edges[1] - edges[3])
    return picture, content, natural


def click_cell(browser, block, channel, row, col, touch=False):
    """Click (or tap) the middle of cell (row, col) of map ``channel`` in the picture of ``block``'s maps."""
    picture, (left, top, width, height), natural = maps_picture(browser, block)
    columns = round((natural[0] + 1) / TILE[block])
    x = (channel % columns) * TILE[block] + col + 0.5
    y = (channel // columns) * TILE[block] + row + 0.5
    # offsets from the middle of the element's border box, which is the middle of its content box too
    dx, dy = round(x * width / natural[0] - width / 2), round(y * height / natural[1] - height / 2)
    if touch:
        actions = ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
        actions.pointer_action.move_to(picture, dx, dy).pointer_down().pointer_up()
        actions.perform()
    else:
        ActionChains(browser).move_to_element_with_offset(picture, dx, dy).click().perform()


def brightest_cell(model, x, block):
    """(channel, row, col) of the largest value in ``block``'s maps: a cell on the digit's strokes."""
    maps = dict(feature_maps(model, x))[block]
    return tuple(int(i) for i in np.unravel_index(np.argmax(maps), maps.shape))


def shown_cell(browser):
    """The numbers of the detail view, as the page holds them (each cell's exact value in data-value)."""
    return browser.execute_script("""
        const view = document.getElementById("cell"), grids = role => [...view.querySelectorAll(
            `table[data-role="${role}"]`)].map(t => [...t.rows].map(r => [...r.cells].map(
            c => c.dataset.value === undefined ? null : Number(c.dataset.value))));
        const sum = [...view.querySelectorAll("p.sum")].pop(), head = view.querySelector("h2");
        return {value: head && Number(head.dataset.value), title: head && head.textContent,
                note: head && head.nextElementSibling.textContent,
                channels: [...view.querySelectorAll(".grids[data-channel]")].map(g => Number(g.dataset.channel)),
                inputs: grids("inputs"), weights: grids("weights"), products: grids("products"),
                windows: [...view.querySelectorAll('table[data-role^="window-"]')].map(t => t.dataset.role),
                conv: grids("window-conv1").concat(grids("window-conv2")),
                relu: grids("window-relu1").concat(grids("window-relu2")),
                winner: [...view.querySelectorAll('table[data-role^="window-relu"] td')].findIndex(
                        c => c.classList.contains("winner")),
                total: sum && {sum: Number(sum.dataset.sum), bias: Number(sum.dataset.bias),
                               total: Number(sum.dataset.total), output: Number(sum.dataset.output),
                               text: sum.textContent},
                message: document.getElementById("cell-message").hidden ? null
                         : document.getElementById("cell-message").textContent,
                asked: JSON.parse(document.body.dataset.cellFields || "null")};""")


def test_a_clicked_cell_of_each_block_shows_the_numbers_the_network_computed(browser, fused_url, model, tmp_path):
    open_page(browser, fused_url, height=1900)
    draw(browser, SEVEN)
    answered(browser, after=0)
    explained(browser, "why")
    x = preprocess_digit(pad_png(browser, tmp_path / "drawing.png"))
    asked = 0
    for block in ("pool1", "pool2"):
        channel, row, col = brightest_cell(model, x, block)
        click_cell(browser, block, channel, row, col)
        asked = explained(browser, "cell", after=asked)
        shown = shown_cell(browser)
        assert shown["asked"] == {"block": block, "channel": channel, "row": row, "col": col}
        cell = explain.explain_cell(fuse(model), x, block, channel, row, col)
        conv = cell.conv
        assert cell.value == explain.explain_cell(model, x, block, channel, row, col).value == cell.served
        assert shown["message"] is None
        assert f"the fused module computed {cell.served:.3f} for this cell" in shown["note"]
        assert shown["title"] == f"{block}, map {channel}, row {row}, column {col} = {cell.value:.3f}"
        assert shown["value"] == cell.value == dict(feature_maps(model, x))[block][channel, row, col]
        top = list(conv.order[:4])
        assert shown["channels"] == top
        np.testing.assert_array_equal(shown["inputs"], conv.inputs[top])
        np.testing.assert_array_equal(shown["weights"], conv.weights[top])
        np.testing.assert_array_equal(shown["products"], conv.products[top])
        np.testing.assert_array_equal(shown["conv"][0], cell.chain[0].values)
        np.testing.assert_array_equal(shown["relu"][0], cell.chain[1].values)
        assert shown["winner"] == 2 * cell.winner[0] + cell.winner[1]
        assert shown["total"]["output"] == conv.output == cell.chain[0].values[cell.winner]
        assert shown["total"]["total"] == pytest.approx(conv.output, rel=1e-5, abs=1e-5)
        assert shown["total"]["bias"] == conv.bias
        assert f"+ bias {conv.bias:.3f} = {conv.total:.3f}; the network computed {conv.output:.3f}." \
            in shown["total"]["text"]
        marker = browser.execute_script("const m = document.querySelector('.marker'); return m && "
                                        "m.closest('figure').dataset.block")
        assert marker == block
        browser.find_element(By.ID, "cell").screenshot(str(screenshot_path(f"serve_explain_{block}.png")))
        if block == "pool1":   # the maps, the clicked cell framed on them, and the detail view's steps
            save_region(browser, "#answer h2.inside", "#cell ol", "serve_explain.png")


def test_a_click_on_a_cells_last_or_first_screen_pixel_explains_that_cell(browser, url):
    open_page(browser, url, height=1900)
    draw(browser, SEVEN)
    answered(browser, after=0)
    explained(browser, "why")
    _, _, (nw, nh) = maps_picture(browser, "pool1")
    columns, size = round((nw + 1) / TILE["pool1"]), TILE["pool1"] - 1
    asked = 0
    # the last pixel of the screen inside the first cell of the first map (the picture's top left), and the
    # first pixel inside the last cell of the top row's last map (its top right): each within a pixel of
    # the cell's edge, where a click placed by the border box instead of the content box lands beside it
    for channel, row, col, corner in ((0, 0, 0, "last"), (columns - 1, 0, size - 1, "first")):
        _, (left, top, width, height), _ = maps_picture(browser, "pool1")    # the detail view may scroll the page
        u, v = (channel % columns) * TILE["pool1"] + col, (channel // columns) * TILE["pool1"] + row
        if corner == "last":
            x, y = math.ceil(left + (u + 1) * width / nw) - 1, math.ceil(top + (v + 1) * height / nh) - 1
        else:
            x, y = math.ceil(left + u * width / nw), math.ceil(top + v * height / nh)
        assert (math.floor((x - left) * nw / width), math.floor((y - top) * nh / height)) == (u, v)
        actions = ActionBuilder(browser)
        actions.pointer_action.move_to_location(x, y).click()
        actions.perform()
        asked = explained(browser, "cell", after=asked)
        assert shown_cell(browser)["asked"] == {"block": "pool1", "channel": channel, "row": row, "col": col}


def test_a_question_asked_while_a_new_drawing_is_read_is_about_the_answer_shown(browser, url, model, tmp_path):
    open_page(browser, url, height=1900)
    draw(browser, SEVEN[:4])            # the bar alone: its answer shown
    answered(browser, after=0)
    explained(browser, "why")
    shown = preprocess_digit(pad_png(browser, tmp_path / "bar.png"))
    browser.execute_script(             # the next answers of /predict wait until released
        "const real = window.fetch; window.held = [];"
        "window.fetch = (path, init) => path === 'predict' ? new Promise(go => held.push(() => go(real(path, init))))"
        "                                                   : real(path, init);")
    draw(browser, SEVEN[3:])            # then the stem: its image sent, its answer not yet there
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return held.length") == 1)
    drawn = preprocess_digit(pad_png(browser, tmp_path / "seven.png"))
    channel, row, col = brightest_cell(model, shown, "pool1")
    values = [explain.explain_cell(model, x, "pool1", channel, row, col).value for x in (shown, drawn)]
    assert values[0] != values[1]
    click_cell(browser, "pool1", channel, row, col)     # on the maps shown, those of the bar
    asked = explained(browser, "cell")
    assert shown_cell(browser)["value"] == values[0]
    browser.execute_script("held.forEach(go => go())")
    answered(browser, after=1)
    click_cell(browser, "pool1", channel, row, col)     # on the maps of the seven, now shown
    explained(browser, "cell", after=asked)
    assert shown_cell(browser)["value"] == values[1]


def test_another_class_changes_the_heat_maps_to_its_own(browser, url, model, tmp_path):
    open_page(browser, url, height=900)
    draw(browser, SEVEN)
    answered(browser, after=0)
    asked = explained(browser, "why")
    x, raw = preprocess_digit(pad_png(browser, tmp_path / "drawing.png"), return_raw=True)
    pictures = {}
    for target in (7, 2):
        if target != 7:
            browser.find_element(By.CSS_SELECTOR, f'#classes button[data-digit="{target}"]').click()
            asked = explained(browser, "why", after=asked)
        pressed = browser.execute_script("return [...document.querySelectorAll('#classes button')].map("
                                         "b => b.getAttribute('aria-pressed') === 'true')")
        assert pressed == [d == target for d in range(10)]
        assert browser.find_element(By.ID, "why-class").text == str(target)
        why = explain.explain_class(model, x, target)
        saliency, gradcam = (decode(browser.find_element(By.ID, name).get_attribute("src"))
                             for name in ("saliency", "gradcam"))
        np.testing.assert_array_equal(saliency, np.round(colormaps["magma"](why.saliency / why.saliency.max())
                                                         [..., :3] * 255))
        heat = colormaps["jet"](why.heat / why.heat.max())[..., :3]
        np.testing.assert_array_equal(gradcam, np.round((0.5 * raw[..., None] / 255 + 0.5 * heat) * 255))
        text = browser.find_element(By.ID, "saliency-text").text
        assert text.startswith(f"Saliency: |dz{target}/dx|")
        assert browser.find_element(By.ID, "gradcam-text").text.startswith("Grad-CAM: the 64 maps of relu2 (14x14)")
        pictures[target] = (saliency, gradcam)
        if target == 7:
            browser.find_element(By.ID, "why").screenshot(str(screenshot_path("serve_heatmaps.png")))
    assert not np.array_equal(pictures[7][0], pictures[2][0]) and not np.array_equal(pictures[7][1], pictures[2][1])


def test_a_question_out_of_range_shows_the_servers_message_on_the_page(browser, url):
    open_page(browser, url)
    draw(browser, SEVEN)
    answered(browser, after=0)
    asked = explained(browser, "why")
    browser.execute_script("explainCell('pool1', 99, 0, 0)")
    explained(browser, "cell")
    assert shown_cell(browser)["message"] == "channel 99 is out of range: pool1 has 32 feature maps (channels 0-31)"
    assert browser.find_element(By.ID, "cell-message").is_displayed()
    browser.execute_script("explainClass(12)")
    explained(browser, "why", after=asked)
    message = browser.find_element(By.ID, "why-message")
    assert message.is_displayed() and message.text == "class 12 is out of range: the network has 10 classes, 0-9"


def test_on_a_phone_the_explanations_fit_the_screen(browser, url, model, tmp_path):
    open_page(browser, url, width=390, height=844, mobile=True)
    draw(browser, SEVEN, touch=True)
    answered(browser, after=0)
    explained(browser, "why")
    overlaps = browser.execute_script(   # each picture of the heat-map row inside its own figure, side by side
        "const figures = [...document.querySelectorAll('#why figure')].map(f => f.getBoundingClientRect()),"
        "  pictures = [...document.querySelectorAll('#why figure img')].map(i => i.getBoundingClientRect());"
        "return pictures.map((p, k) => p.right > figures[k].right + 0.5 || (k > 0 && p.left < pictures[k - 1].right))")
    assert overlaps == [False, False, False]
    x = preprocess_digit(pad_png(browser, tmp_path / "finger.png"))
    asked = 0
    for block in ("pool1", "pool2"):
        channel, row, col = brightest_cell(model, x, block)
        click_cell(browser, block, channel, row, col, touch=True)
        asked = explained(browser, "cell", after=asked)
        shown = shown_cell(browser)
        assert shown["message"] is None and shown["asked"]["block"] == block
        widths = browser.execute_script(
            "return [document.documentElement.scrollWidth, Math.max(...[...document.querySelectorAll("
            "'#answer *')].map(e => e.getBoundingClientRect().right))]")
        assert all(w <= 390 for w in widths), (block, widths)
    browser.find_element(By.ID, "cell").screenshot(str(screenshot_path("serve_phone_explain.png")))
