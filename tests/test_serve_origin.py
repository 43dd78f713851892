"""`minicnn serve`: who may use the server (its Host names, its page's Origin), its time limits, the form's limits.

Every test here is fast: no model is trained (the page's own POSTs reach the
application, and a stand-in for ``read_digit`` answers them); the real servers
listen on free loopback ports, and every socket waits at most a few seconds.
The page itself, in a real browser, is tested in test_serve_browser.py.
"""
import io
import json
import socket
import threading
import time
import uuid

import pytest
from PIL import Image

import minicnn
from minicnn import cli, models

pytest.importorskip("flask", reason="Flask is not installed (pip install -e '.[web]' for minicnn serve)")

from minicnn.web import server  # noqa: E402  (needs Flask)


@pytest.fixture
def client():
    return server.create_app(None).test_client()


def png_bytes():
    buffer = io.BytesIO()
    Image.new("L", (40, 40), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def one_line(response, status):
    """The refusal's text, after checking that it is ``status`` and one line of plain text."""
    assert response.status_code == status and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert text.endswith("\n") and "\n" not in text[:-1]
    return text[:-1]


# --- Origin: a page on another site may not post (Flask's test client: Host "localhost") ---------

@pytest.mark.parametrize("headers, shown", [
    ({"Origin": "http://evil.example"}, "a page from 'http://evil.example'"),
    ({"Origin": "http://localhost:7860"}, "a page from 'http://localhost:7860'"),   # another port, another page
    ({"Origin": "https://localhost"}, "a page from 'https://localhost'"),
    ({"Origin": "null"}, "a page from 'null'"),                                      # a sandboxed frame, a file
    ({"Sec-Fetch-Site": "cross-site"}, "a page from another site (Sec-Fetch-Site: cross-site)"),
    ({"Sec-Fetch-Site": "same-site"}, "a page from another site (Sec-Fetch-Site: same-site)"),
], ids=["other-site", "other-port", "other-scheme", "null", "cross-site", "same-site"])
def test_a_post_from_another_page_is_refused_in_one_line(client, headers, shown):
    data = {"image": (io.BytesIO(png_bytes()), "digit.png")}
    response = client.post("/predict", data=data, content_type="multipart/form-data", headers=headers)
    assert one_line(response, 403) == f"403 Forbidden: {shown} may not use this server; only its own page, " \
                                      f"http://localhost, may"


def test_only_the_page_itself_and_tools_without_an_origin_may_post(client, monkeypatch):
    monkeypatch.setattr(server, "read_digit", lambda model, image: {"digit": 7})
    for headers, status in [({"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}, 200),
                            ({"Origin": "HTTP://LOCALHOST:80"}, 200), ({}, 200),
                            ({"Origin": "http://localhost.evil.example"}, 403),
                            ({"Origin": "http://localhost/"}, 403), ({"Origin": "http://evil@localhost"}, 403)]:
        data = {"image": (io.BytesIO(png_bytes()), "digit.png")}
        response = client.post("/predict", data=data, content_type="multipart/form-data", headers=headers)
        assert response.status_code == status, headers
        if status == 200:
            assert response.get_json() == {"digit": 7}
    # Reading the page is not refused to anyone who names the server: the browser keeps it from other sites.
    assert client.get("/", headers={"Origin": "http://evil.example"}).status_code == 200


# --- Host: only the names of this server (DNS rebinding names another) -------------------------------

@pytest.mark.parametrize("method, path", [("GET", "/"), ("POST", "/predict"), ("GET", "/nothing-here")])
def test_a_request_for_another_host_name_is_refused_in_one_line(client, method, path):
    response = client.open(path, method=method, base_url="http://evil.example:7860/")
    assert one_line(response, 421) == ("421 Misdirected Request: this server answers to 127.0.0.1, [::1] or "
                                       "localhost, not to the Host 'evil.example:7860'")
    assert client.get("/", base_url="http://127.0.0.1:7860/").status_code == 200   # before listen: any port


@pytest.mark.parametrize("host, bound, accepted, refused", [
    ("127.0.0.1", "127.0.0.1", ["127.0.0.1:7860", "localhost:7860", "LOCALHOST:7860"],
     ["127.0.0.1:7861", "127.0.0.1", "evil.example:7860", "[::1]:7860", "127.0.0.2:7860", "localhost.:7860"]),
    ("localhost", "127.0.0.1", ["localhost:7860", "127.0.0.1:7860"], ["evil.example:7860", "localhost:80"]),
    ("::1", "::1", ["[::1]:7860", "[0:0:0:0:0:0:0:1]:7860", "localhost:7860"], ["::1:7860", "127.0.0.1:7860"]),
    ("192.168.1.20", "192.168.1.20", ["192.168.1.20:7860"], ["localhost:7860", "evil.example:7860"]),
    ("0.0.0.0", "0.0.0.0", ["192.168.1.20:7860", "10.0.0.5:7860", "[fe80::1]:7860", "localhost:7860"],
     ["evil.example:7860", "192.168.1.20:7861", "192.168.1.20.evil.example:7860"]),
])
def test_which_host_headers_a_listening_server_answers_to(host, bound, accepted, refused):
    rule = server.HostRule.listening_on(host, bound, 7860)
    for value in accepted:
        assert rule.accepts(value), value
    for value in refused + [None, "", "127.0.0.1:7860:1", "127.0.0.1:http", "127.0.0.1:99999",
                            "127.0.0.1:7860,evil.example", "evil@127.0.0.1:7860", "[127.0.0.1]:7860"]:
        assert not rule.accepts(value), value


# --- the same on a real server, through a socket ---------------------------------------------------

def exchange(port, request, wait=5.0):
    """The server's whole answer to the bytes ``request`` (it closes each connection), in at most ``wait`` s."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        answer, start = b"", time.monotonic()
        while time.monotonic() - start < wait:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def multipart(data, name="digit.png"):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(port, host, origin=None):
    body, kind = multipart(png_bytes())
    extra = f"Origin: {origin}\r\n" if origin else ""
    return (f"POST /predict HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@pytest.fixture
def running(monkeypatch):
    """A real server for a stand-in model on a free loopback port; yields its port."""
    monkeypatch.setattr(server, "read_digit", lambda model, image: {"digit": 7})
    httpd = server.listen(server.create_app(None), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.port
    httpd.shutdown()
    thread.join(timeout=10)


def test_a_real_server_answers_its_own_page_and_refuses_other_hosts_and_origins(running):
    port = running
    own = f"127.0.0.1:{port}"
    status, page = exchange(port, f"GET / HTTP/1.1\r\nHost: {own}\r\n\r\n".encode())
    assert status == 200 and '<canvas id="pad"' in page
    for host in (own, f"localhost:{port}"):
        status, answer = exchange(port, post(port, host, origin=f"http://{host}"))
        assert status == 200 and json.loads(answer) == {"digit": 7}
    assert exchange(port, post(port, own)) == (200, '{"digit":7}\n')            # curl: no Origin

    assert exchange(port, post(port, own, origin="http://evil.example")) == (
        403, f"403 Forbidden: a page from 'http://evil.example' may not use this server; only its own page, "
             f"http://{own}, may\n")
    rule = f"this server answers to {own} or localhost:{port}"
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}"):
        assert exchange(port, post(port, host, origin=f"http://{host}")) == (
            421, f"421 Misdirected Request: {rule}, not to the Host '{host}'\n")
        assert exchange(port, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())[0] == 421
    assert exchange(port, b"GET / HTTP/1.0\r\n\r\n") == (
        421, f"421 Misdirected Request: {rule}, not to a request without a Host header\n")


# --- time: a slow client holds a connection for a bounded time ------------------------------------

def test_a_slow_client_is_cut_off():
    httpd = server.listen(server.create_app(None), "127.0.0.1", 0, idle_timeout_s=0.5, request_timeout_s=1.5)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        def closed_after(first, then):
            """Seconds until the server answers or closes, sending ``then`` every 0.2 s after ``first``; text."""
            with socket.create_connection(("127.0.0.1", httpd.port), timeout=5) as sock:
                start, answer = time.monotonic(), b""
                sock.sendall(first)
                sock.settimeout(0.2)
                while time.monotonic() - start < 6:
                    try:
                        chunk = sock.recv(65536)
                        if not chunk:
                            break
                        answer += chunk
                    except TimeoutError:
                        if then:
                            sock.sendall(then)
                return time.monotonic() - start, answer.decode()

        # Nothing at all: closed after the idle limit.
        seconds, answer = closed_after(b"", b"")
        assert 0.4 < seconds < 1.4 and answer == ""
        # Headers a line at a time, never idle for long (slowloris): closed at the request's limit.
        seconds, answer = closed_after(b"GET / HTTP/1.1\r\n", b"X-Slow: 1\r\n")
        assert 1.4 < seconds < 2.5 and answer == ""
        # A body a byte at a time: a 408 at the request's limit.
        seconds, answer = closed_after(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{httpd.port}\r\nContent-Type: "
                                       f"multipart/form-data; boundary=b\r\nContent-Length: 1000\r\n\r\n".encode(),
                                       b"x")
        assert 1.4 < seconds < 2.5 and answer.startswith("HTTP/1.1 408 ")
        assert answer.endswith('{"error":"the request took too long to arrive (not all of it within 1.5 s): '
                               'try again"}\n')
        # The server goes on serving.
        assert exchange(httpd.port, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{httpd.port}\r\n\r\n".encode())[0] == 200
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


# --- connections: a bounded number at once ----------------------------------------------------------

def test_connections_over_the_cap_are_turned_away_at_once_and_the_page_comes_back():
    httpd = server.listen(server.create_app(None), "127.0.0.1", 0, idle_timeout_s=1.0, max_connections=3)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    page = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{httpd.port}\r\n\r\n".encode()
    idle = []
    try:
        idle = [socket.create_connection(("127.0.0.1", httpd.port), timeout=5) for _ in range(3)]
        time.sleep(0.2)                                  # each now holds a thread, sending nothing
        start = time.monotonic()
        assert exchange(httpd.port, page) == (
            503, "503 Service Unavailable: this server is busy with 3 connections; try again\n")
        assert time.monotonic() - start < 0.5 and threading.active_count() < 3 + 3 + 2
        idle.pop().close()                               # one leaves: its place is free again
        time.sleep(0.2)
        assert exchange(httpd.port, page)[0] == 200
        time.sleep(1.3)                                  # the idle ones are dropped after 1 s
        assert [sock.recv(1) for sock in idle] == [b"", b""]
        assert [exchange(httpd.port, page)[0] for _ in range(5)] == [200] * 5
    finally:
        for sock in idle:
            sock.close()
        httpd.shutdown()
        thread.join(timeout=10)


def test_the_cap_leaves_room_under_a_low_limit_of_open_files(monkeypatch):
    import resource
    monkeypatch.setattr(resource, "getrlimit", lambda which: (128, 4096))
    assert server.connection_cap(32) == 32
    monkeypatch.setattr(resource, "getrlimit", lambda which: (100, 4096))
    assert server.connection_cap(32) == 18                                 # (100 - 64) // 2
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY,) * 2)
    assert server.connection_cap(500) == 500
    with pytest.raises(ValueError, match="^max_connections must be at least 1, got 0$"):
        server.listen(server.create_app(None), "127.0.0.1", 0, max_connections=0)


# --- the form: each of its limits says which it is -------------------------------------------------

def form(fields):
    """A multipart body of text fields (name, value) and its content type."""
    boundary = uuid.uuid4().hex
    body = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                   for name, value in fields) + f"--{boundary}--\r\n"
    return body.encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("fields, status, message", [
    ([("image", "iVBORw0KGgo=")], 400,
     "the form field 'image' is text, not a file: send the image as a file (a form part with a filename)"),
    ([(f"f{k}", "x") for k in range(1001)], 413,
     "the form has more than 1000 parts: send one image, as the file field 'image'"),
    ([("note", "x" * 600_000)], 413, "a text field of the form is larger than the limit of 500 kB for text: send "
                                     "the image as a file, in the file field 'image'"),
    ([("image", "x" * 600_000)], 413, "a text field of the form is larger than the limit of 500 kB for text: send "
                                      "the image as a file, in the file field 'image'"),
], ids=["image-as-text", "1001-parts", "600-kB-text", "600-kB-image-as-text"])
def test_each_limit_of_the_form_has_its_own_message(client, fields, status, message):
    body, kind = form(fields)
    assert len(body) < server.DEFAULT_MAX_UPLOAD_MB * 2**20
    response = client.post("/predict", data=body, content_type=kind)
    assert response.status_code == status and response.get_json() == {"error": message}


def test_a_body_that_is_not_a_form_says_so(client):
    response = client.post("/predict", data=png_bytes(), content_type="image/png")
    assert response.status_code == 400
    assert response.get_json()["error"] == ("no image was sent: /predict takes a form (multipart/form-data) with "
                                            "the image as the file field 'image', not a body of type 'image/png'")


# --- --max-upload-mb: a number of megabytes that can be --------------------------------------------

def test_an_impossible_upload_limit_is_one_line(tmp_path, monkeypatch, capsys):
    weights = minicnn.save(models.MnistCNN(seed=0), tmp_path / "model.npz")   # untrained: only loaded here

    def never(*args, **kwargs):
        raise AssertionError("the server must not start")

    monkeypatch.setattr(server, "listen", never)
    for value, message in [("inf", "must be at most 1024 megabytes, got inf"),
                           ("1e300", "must be at most 1024 megabytes, got 1e+300"),
                           ("2048", "must be at most 1024 megabytes, got 2048"),
                           ("nan", "must be a positive number of megabytes, got nan"),
                           ("-inf", "must be a positive number of megabytes, got -inf")]:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["serve", str(weights), f"--max-upload-mb={value}"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "Traceback" not in err, err
        assert err.strip().splitlines()[-1] == f"minicnn serve: error: --max-upload-mb {message}"   # after the usage


def test_create_app_refuses_an_impossible_upload_limit():
    for value in (float("inf"), float("nan"), 1e300):
        with pytest.raises(ValueError, match=r"^max_upload_mb must be (at most 1024|a positive number of) megabytes"):
            server.create_app(None, max_upload_mb=value)


@pytest.mark.parametrize("option, message", [
    *[(f"--max-connections={value}", f"--max-connections must be 1-1024, got {value}") for value in ("0", "-3", "5000")],
    *[(f"--host={value}", "--host must name an address (127.0.0.1, 0.0.0.0, a name of this machine), got an empty one")
      for value in ("", " ")],
])
def test_an_impossible_connection_cap_or_host_is_one_line(option, message, tmp_path, monkeypatch, capsys):
    weights = minicnn.save(models.MnistCNN(seed=0), tmp_path / "model.npz")
    monkeypatch.setattr(server, "listen", lambda *args, **kwargs: pytest.fail("the server must not start"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", str(weights), option])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"minicnn serve: error: {message}"
