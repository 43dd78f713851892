"""`minicnn serve`'s questions: POST /explain/cell and /explain/class, through Flask's test client.

Each answer is checked against :mod:`minicnn.explain` on the input that `minicnn predict` makes
of the same file; the refusals (no image, a cell or class out of range, a page from elsewhere)
each have their message. The page that asks them is tested in test_serve_browser.py.
"""
import base64
import io
import json
from collections import OrderedDict

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

import minicnn
from drawings import photo_of_a_seven, small_model
from minicnn import explain, nn
from minicnn.imaging import preprocess_digit
from minicnn.nn.fusion import fuse

pytest.importorskip("flask", reason="Flask is not installed (pip install -e '.[web]' for minicnn serve)")

from flask import Flask  # noqa: E402
from minicnn.web import explain_api, server  # noqa: E402  (needs Flask)


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module", params=["layers", "fused"])
def served(request, model):
    """The model as `minicnn serve` serves it: its layers one by one (--no-fuse), or fused."""
    return model if request.param == "layers" else fuse(model)


@pytest.fixture(scope="module")
def seven():
    buffer = io.BytesIO()
    photo_of_a_seven().save(buffer, format="PNG")
    return buffer.getvalue()


def ask(app_or_client, path, image, **fields):
    """POST ``fields`` and the ``image`` bytes (None: no image) as the page does; the response."""
    client = app_or_client.test_client() if isinstance(app_or_client, Flask) else app_or_client
    data = dict(fields, **({"image": (io.BytesIO(image), "seven.png")} if image is not None else {}))
    return client.post(path, data=data, content_type="multipart/form-data")


def decode(url):
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(prefix):]))))


@pytest.mark.parametrize("block, channel, row, col", [("pool1", 12, 6, 7), ("pool2", 40, 3, 2)])
def test_a_cell_answer_is_explain_cell_on_the_input_predict_makes(served, seven, block, channel, row, col):
    response = ask(server.create_app(served), "/explain/cell", seven, block=block, channel=channel, row=row, col=col)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    assert "NaN" not in text and "Infinity" not in text          # JSON a browser parses
    answer = json.loads(text)
    x = preprocess_digit(photo_of_a_seven())
    cell = explain.explain_cell(served, x, block, channel, row, col)
    assert (answer["block"], answer["channel"], answer["row"], answer["col"]) == (block, channel, row, col)
    assert answer["value"] == cell.value and answer["pool"]["winner"] == list(cell.winner)
    assert answer["served"] == cell.served and (answer["fused"] is None) == (served is small_model())
    for shown, step in zip(answer["chain"], cell.chain, strict=True):
        np.testing.assert_array_equal(np.array(shown["values"], float), step.values)
    c = answer["conv"]
    assert (c["output"], c["total"], c["bias"], c["sum"]) == (cell.conv.output, cell.conv.total, cell.conv.bias,
                                                               cell.conv.sums.sum())
    assert c["output"] == pytest.approx(c["total"], rel=1e-5, abs=1e-5)
    shown = [t["channel"] for t in c["terms"]] + [k for k, _ in c["others"]]
    assert shown == list(cell.conv.order) and len(c["terms"]) == min(explain_api.TOP_CHANNELS, c["in_channels"])
    for term in c["terms"]:
        k = term["channel"]
        for name in ("inputs", "weights", "products"):
            np.testing.assert_array_equal(np.array(term[name]), getattr(cell.conv, name)[k], err_msg=name)
        assert term["sum"] == cell.conv.sums[k]
    steps = [step["step"] for step in answer["code"]]
    assert steps[:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert all(step["where"].startswith("minicnn/") and "#L" in step["where"] for step in answer["code"])


class ReLUOfMine(nn.ReLU):
    """A layer class that minicnn.nn does not export, between a convolution and its pooling."""

    def forward(self, x):
        return super().forward(x)


def tiny(features):
    """A model of one conv block, its layers ``features`` inside a nested Sequential (named "features")."""
    rng = np.random.default_rng(0)
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(OrderedDict([("conv1", nn.Conv2d(1, 4, 3, padding=1, generator=rng))] + features +
                                           [("pool1", nn.MaxPool2d(2))])),
        flat=nn.Flatten(), fc=nn.Linear(4 * 14 * 14, 10, generator=rng), log=nn.LogSoftmax(dim=1))).eval()


def test_a_fused_block_of_a_nested_model_is_said_to_be_fused(seven):
    for model, fused in ((tiny([("relu1", nn.ReLU())]), None), (fuse(tiny([("relu1", nn.ReLU())])),
                                                                  "conv1 -> relu1 -> pool1 as ConvReLUMaxPool2d")):
        answer = ask(server.create_app(model), "/explain/cell", seven, block="features.pool1", channel=1, row=6,
                     col=7).get_json()
        assert answer["fused"] == fused and (answer["served"] is None) == (fused is None)
        steps = ["Conv2d", "ReLU", "MaxPool2d"] + (["ConvReLUMaxPool2d"] if fused else [])
        assert [step["step"] for step in answer["code"]] == steps


def test_a_layer_of_a_class_of_ones_own_is_shown_with_its_own_code(seven):
    own = tiny([("relu1", ReLUOfMine())])
    answer = ask(server.create_app(own), "/explain/cell", seven, block="features.pool1", channel=1, row=6, col=7)
    assert answer.status_code == 200, answer.get_json()
    answer = answer.get_json()
    assert answer["served"] is None and answer["fused"] is None
    assert [step["step"] for step in answer["code"]] == ["Conv2d", "ReLUOfMine", "MaxPool2d"]
    assert answer["code"][1]["function"] == "ReLUOfMine.forward"
    assert answer["code"][1]["where"].startswith("tests/test_explain_serve.py#L")


def test_a_class_answer_is_saliency_and_grad_cam_as_explain_class_computes_them(model, seven):
    app = server.create_app(fuse(model))
    x, raw = preprocess_digit(photo_of_a_seven(), return_raw=True)
    answers = {}
    for target in (None, 1):
        response = ask(app, "/explain/class", seven, **({} if target is None else {"class": target}))
        assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
        answer = answers[target] = response.get_json()
        why = explain.explain_class(model, x, target)
        assert answer["class"] == why.target and answer["digit"] == int(why.scores.argmax()) == 7
        np.testing.assert_allclose(answer["saliency_values"], why.saliency, rtol=1e-12, atol=0)
        np.testing.assert_allclose(answer["cam_values"], why.cam, rtol=1e-12, atol=0)
        assert (answer["layer"], answer["maps"], answer["height"], answer["width"]) == ("relu2", 64, 14, 14)
        saliency, gradcam = decode(answer["saliency"]), decode(answer["gradcam"])
        expected = np.round(colormaps["magma"](why.saliency / why.saliency.max())[..., :3] * 255)
        np.testing.assert_array_equal(saliency, expected)
        heat = colormaps["jet"](why.heat / why.heat.max())[..., :3]
        np.testing.assert_array_equal(gradcam, np.round((0.5 * raw[..., None] / 255 + 0.5 * heat) * 255))
        assert f"score z{why.target} of {why.target}" in answer["text"]["saliency"]
        assert answer["text"]["gradcam"].startswith("Grad-CAM: the 64 maps of relu2 (14x14)")
    assert answers[None]["class"] == 7 and answers[1]["class"] == 1
    assert answers[None]["saliency"] != answers[1]["saliency"] and answers[None]["gradcam"] != answers[1]["gradcam"]


@pytest.mark.parametrize("path, fields, status, message", [
    ("/explain/cell", dict(block="pool1", channel=32, row=0, col=0),
     400, "channel 32 is out of range: pool1 has 32 feature maps (channels 0-31)"),
    ("/explain/cell", dict(block="pool2", channel=0, row=7, col=0),
     400, "row 7 is out of range: pool2's maps are 7x7 (rows 0-6)"),
    ("/explain/cell", dict(block="pool9", channel=0, row=0, col=0), 400, "no block 'pool9': the blocks are pool1, pool2"),
    ("/explain/cell", dict(block="pool1", channel="a", row=0, col=0), 400, "channel must be a whole number, got 'a'"),
    ("/explain/cell", dict(block="pool1", row=0, col=0), 400, "the form field 'channel' is missing"),
    ("/explain/cell", dict(channel=0, row=0, col=0), 400, "the form field 'block' is missing"),
    ("/explain/class", {"class": 10}, 400, "class 10 is out of range: the network has 10 classes, 0-9"),
    ("/explain/class", {"class": -1}, 400, "class -1 is out of range: the network has 10 classes, 0-9"),
    ("/explain/class", {"class": "seven"}, 400, "class must be a whole number, got 'seven'"),
], ids=["channel", "row", "block", "not-a-number", "no-channel", "no-block", "class-10", "class-minus-1", "class-text"])
def test_a_question_out_of_range_is_answered_with_its_message(model, seven, path, fields, status, message):
    response = ask(server.create_app(model), path, seven, **fields)
    assert response.status_code == status
    assert response.get_json()["error"].startswith(message), response.get_json()


@pytest.mark.parametrize("path", ["/explain/cell", "/explain/class"])
def test_without_a_digit_it_says_to_draw_one_first(model, path):
    app = server.create_app(model)
    response = ask(app, path, None, block="pool1", channel=0, row=0, col=0)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("no digit yet: draw or upload a digit first")
    blank = io.BytesIO()
    Image.new("RGB", (60, 60), "white").save(blank, format="PNG")
    response = ask(app, path, blank.getvalue(), block="pool1", channel=0, row=0, col=0)
    assert response.status_code == 422 and response.get_json()["error"].startswith("the image is blank")


@pytest.mark.parametrize("path", ["/predict", "/explain/cell", "/explain/class"])
def test_an_image_sent_as_text_or_not_in_a_form_is_named_as_what_it_is(model, path):
    """Every route says what came where the image belongs, as /predict does (minicnn.web.form.uploaded_image)."""
    client = server.create_app(model).test_client()
    response = client.post(path, data={"image": "iVBORw0KGgo=", "block": "pool1", "channel": "0", "row": "0",
                                       "col": "0"}, content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json() == {
        "error": "the form field 'image' is text, not a file: send the image as a file (a form part with a filename)"}
    response = client.post(path, data=b"\x89PNG", content_type="image/png")
    assert response.status_code == 400 and response.get_json() == {
        "error": f"no image was sent: {path} takes a form (multipart/form-data) with the image as the file field "
                 f"'image', not a body of type 'image/png'"}


@pytest.mark.parametrize("path", ["/explain/cell", "/explain/class"])
def test_another_pages_question_is_refused_and_the_limits_hold(model, seven, path):
    app = server.create_app(model, max_upload_mb=0.001)
    client = app.test_client()
    response = client.post(path, data={"image": (io.BytesIO(seven), "seven.png"), "class": 1},
                           content_type="multipart/form-data", headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and response.mimetype == "text/plain"
    response = ask(client, path, b"\0" * 2000, block="pool1", channel=0, row=0, col=0)
    assert response.status_code == 413
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_no_answer_to_a_question_is_stored_and_one_hook_sets_every_header(model, seven):
    app = server.create_app(model)
    assert len(app.after_request_funcs[None]) == 1           # server.py's, for every route
    client = app.test_client()
    for response in (ask(client, "/explain/cell", seven, block="pool1", channel=0, row=0, col=0),
                     ask(client, "/explain/cell", seven, block="pool9", channel=0, row=0, col=0),
                     ask(client, "/explain/class", None)):
        assert response.headers["Cache-Control"] == "no-store", response.status_code
        assert response.headers["Content-Security-Policy"] == server.SECURITY_HEADERS["Content-Security-Policy"]
    assert "Cache-Control" not in client.get("/").headers


def test_the_page_carries_the_questions_and_loads_nothing_from_elsewhere(model):
    page = server.create_app(model).test_client().get("/").get_data(as_text=True)
    for part in ('id="why"', 'id="classes"', 'id="saliency"', 'id="gradcam"', 'id="cell"', '"explain/cell"',
                 '"explain/class"'):
        assert part in page, part
    assert "http://" not in page and "https://" not in page
    assert minicnn.get_backend().name in page
