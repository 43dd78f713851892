"""The web application behind ``minicnn serve``, and the local server that runs it.

    GET  /          the page (templates/index.html): draw, upload, see what the network reads
    POST /predict   form field ``image``: a PNG of the drawing or an uploaded photo
                    -> 200 JSON from :func:`minicnn.web.reading.read_digit`
                    -> 4xx/5xx JSON ``{"error": "one line a person can act on"}``

The model is shared by every request and runs one request at a time (a lock),
on the current backend. Safe defaults: the server listens on loopback
(127.0.0.1) unless told otherwise; an upload larger than ``max_upload_mb``
is refused before it is read, an image of more than
:data:`~minicnn.web.reading.MAX_PIXELS` pixels before it is decoded; a
request that fails is answered with its error and logged, and the server
goes on serving; the page loads nothing from any other host
(Content-Security-Policy ``default-src 'self'``).

Docs: docs/serve.md
"""
from __future__ import annotations

import ipaddress
import socket
import threading

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.serving import make_server, select_address_family

from minicnn.backend import get_backend
from minicnn.web.reading import MAX_PIXELS, open_upload, read_digit

__all__ = ["DEFAULT_HOST", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_PORT", "create_app", "is_loopback", "listen"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 16

SECURITY_HEADERS = {
    # Everything the page uses comes from this server, or is a data: or blob: picture it made.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _answer_error(message: str, status: int):
    return jsonify(error=message), status


def create_app(model, title: str = "minicnn", max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_pixels: int = MAX_PIXELS) -> Flask:
    """The Flask application serving the page and ``/predict`` for ``model``.

    ``title`` is shown at the top of the page (the model and its weights file,
    say). Uploads above ``max_upload_mb`` megabytes or ``max_pixels`` pixels
    are refused. Any WSGI server can run the result; :func:`listen` starts Werkzeug's.
    """
    if not (isinstance(max_upload_mb, (int, float)) and max_upload_mb > 0):
        raise ValueError(f"max_upload_mb must be a positive number of megabytes, got {max_upload_mb!r}")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 2**20)
    lock = threading.Lock()  # layers keep per-call state, so one forward pass at a time

    @app.get("/")
    def page():
        return render_template("index.html", title=title, backend=get_backend().name,
                               max_upload_bytes=app.config["MAX_CONTENT_LENGTH"], max_upload_mb=max_upload_mb,
                               max_pixels=max_pixels)

    @app.post("/predict")
    def predict():
        upload = request.files.get("image")
        if upload is None:
            return _answer_error("no image was sent: the form field 'image' is missing", 400)
        try:
            image = open_upload(upload.read(), max_pixels)
            with lock:
                return jsonify(read_digit(model, image))
        except ValueError as exc:  # not an image, too many pixels, blank
            return _answer_error(str(exc), 422)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        return _answer_error(f"the upload is larger than the limit of {max_upload_mb:g} MB: choose a smaller "
                             f"image (a digit needs a few hundred pixels a side)", 413)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return _answer_error(f"{exc.code} {exc.name}: {exc.description}", exc.code)

    @app.errorhandler(Exception)
    def failure(exc):
        # A bug or a resource problem in one request: log it, answer it, keep serving.
        app.logger.exception("%s %s failed", request.method, request.path)
        return _answer_error(f"the server failed on this image ({type(exc).__name__}: {exc}); it keeps "
                             f"running, so try again or another image", 500)

    @app.after_request
    def headers(response):
        response.headers.update(SECURITY_HEADERS)
        if request.path == "/predict":
            response.headers["Cache-Control"] = "no-store"
        return response

    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) reaches this machine only: 127.0.0.0/8, ::1, localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen(app: Flask, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT):
    """A threaded Werkzeug server for ``app`` bound to ``host:port`` (port 0: any free port).

    Call ``serve_forever()`` on it; its ``port`` is the port it got. An
    address that cannot be used (taken, not on this machine, an unknown name)
    is an ``OSError`` whose message names it.
    """
    try:
        # The address family Werkzeug will take the socket to be (IPv6 for a host with ':').
        family = select_address_family(host, port)
        family, kind, proto, _, address = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        problem = exc.strerror or str(exc)
        raise OSError(f"cannot listen on {host} port {port}: {problem}"
                      + ("; choose another with --port" if "in use" in problem else "")) from None
    try:
        return make_server(host, port, app, threaded=True, fd=sock.fileno())
    finally:
        sock.close()  # the server holds its own duplicate of the socket
