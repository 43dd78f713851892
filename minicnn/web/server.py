"""The web application behind ``minicnn serve`` (the server that runs it: listening.py; who may use it: hosts.py).

    GET  /          the page (templates/index.html): draw, upload, see what the network reads
    POST /predict   form field ``image``: a PNG of the drawing or an uploaded photo
                    -> 200 JSON from :func:`minicnn.web.reading.read_digit`
                    -> 4xx/5xx JSON ``{"error": "one line a person can act on"}``
    POST /explain/cell, /explain/class   the image again, and a cell of a feature map or a class:
                    where that number came from, or why this digit (minicnn/web/explain_api.py)

The model is shared by every request and runs one request at a time (a lock),
on the current backend. Safe defaults: the server listens on loopback
(127.0.0.1) unless told otherwise; an upload larger than ``max_upload_mb``
is refused before it is read, an image of more than
:data:`~minicnn.web.reading.MAX_PIXELS` pixels before it is decoded; a
request that fails is answered with its error and logged, and the server
goes on serving; the page loads nothing from any other host
(Content-Security-Policy ``default-src 'self'``).

Who may use it (checked before anything else, answered in one line of plain text):

- every request must name, in its ``Host`` header, an address the server
  answers to (:class:`HostRule`; :func:`listen` sets it to the address and
  port it listens on, plus ``localhost`` on a loopback address): 421
  otherwise. A page on another site that points its own name at this
  machine (DNS rebinding) names itself, and is refused.
- a ``POST`` must come from the page itself: an ``Origin`` header, when
  sent, must be the page's own ``http://HOST:PORT``, and ``Sec-Fetch-Site``
  must not be ``cross-site`` or ``same-site``: 403 otherwise. Browsers send
  ``Origin`` with every POST; tools such as curl send neither and are let in.

Time and connections: :func:`listen`'s server drops a connection that sends
nothing for ``idle_timeout_s`` (20 s) and answers 408 to a request that has
not fully arrived ``request_timeout_s`` (120 s) after it connected; the
model's lock is taken only once the whole upload is in. It serves at most
``max_connections`` (32) connections at once, a thread each: one more is
answered ``503`` at once and closed, so idle sockets cannot use up the
server's threads or its file descriptors.

Docs: docs/serve.md
"""
from __future__ import annotations

import threading

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from minicnn.backend import get_backend
from minicnn.web import explain_api
from minicnn.web.form import (MAX_FORM_PARTS, MAX_FORM_TEXT_BYTES, FormRequest, NoImage, TextFieldTooLarge,
                              TooManyParts, shown, uploaded_image)
from minicnn.web.hosts import LOOPBACK_NAMES, HostRule, is_loopback, same_origin
from minicnn.web.listening import (DEFAULT_HOST, DEFAULT_PORT, IDLE_TIMEOUT_S, MAX_CONNECTIONS, REQUEST_TIMEOUT_S,
                                   TooSlow, connection_cap, listen)
from minicnn.web.reading import MAX_PIXELS, open_upload, read_digit

# The server (listening.py) and the Host rule (hosts.py) are named here too: minicnn serve and the tests
# reach them as minicnn.web.server.listen, .is_loopback, .HostRule...
__all__ = ["DEFAULT_HOST", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_PORT", "HostRule", "IDLE_TIMEOUT_S", "MAX_CONNECTIONS",
           "MAX_UPLOAD_MB", "REQUEST_TIMEOUT_S", "connection_cap", "create_app", "is_loopback", "listen"]

DEFAULT_MAX_UPLOAD_MB = 16
MAX_UPLOAD_MB = 1024          # the largest --max-upload-mb: an upload is read into memory whole

SECURITY_HEADERS = {
    # Everything the page uses comes from this server, or is a data: or blob: picture it made.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _answer_error(message: str, status: int):
    return jsonify(error=message), status


def _refuse(status: int, message: str) -> Response:
    """A refusal before the application looks at the request: one line of plain text."""
    return Response(f"{status} {message}\n", status, mimetype="text/plain")


# --- the application -------------------------------------------------------------------------

def create_app(model, title: str = "minicnn", max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               max_pixels: int = MAX_PIXELS) -> Flask:
    """The Flask application serving the page and ``/predict`` for ``model``.

    ``title`` is shown at the top of the page (the model and its weights file,
    say). Uploads above ``max_upload_mb`` megabytes or ``max_pixels`` pixels
    are refused. Any WSGI server can run the result; :func:`listen` starts
    Werkzeug's, and narrows the ``Host`` names answered to its own address
    (until then, ``localhost``, ``127.0.0.1`` and ``[::1]`` on any port:
    under another server, set ``app.config["MINICNN_HOSTS"]`` to a
    :class:`HostRule`).
    """
    if not (isinstance(max_upload_mb, (int, float)) and max_upload_mb > 0):
        raise ValueError(f"max_upload_mb must be a positive number of megabytes, got {max_upload_mb!r}")
    if not max_upload_mb <= MAX_UPLOAD_MB:
        raise ValueError(f"max_upload_mb must be at most {MAX_UPLOAD_MB} megabytes, got {max_upload_mb!r}")
    app = Flask(__name__)
    app.request_class = FormRequest
    app.config.update(MAX_CONTENT_LENGTH=int(max_upload_mb * 2**20), MAX_FORM_PARTS=MAX_FORM_PARTS,
                      MAX_FORM_MEMORY_SIZE=MAX_FORM_TEXT_BYTES, MINICNN_HOSTS=LOOPBACK_NAMES)
    lock = threading.Lock()  # layers keep per-call state, so one forward pass at a time

    @app.before_request
    def only_this_server_and_its_page():
        host, rule = request.environ.get("HTTP_HOST"), app.config["MINICNN_HOSTS"]
        if not rule.accepts(host, 443 if request.scheme == "https" else 80):
            named = "a request without a Host header" if host is None else f"the Host {shown(host)}"
            return _refuse(421, f"Misdirected Request: this server answers to {rule.describe()}, not to {named}")
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        own = f"{request.scheme}://{host}"
        origin = request.headers.get("Origin")
        if origin is not None and not same_origin(origin, request.scheme, host):
            return _refuse(403, f"Forbidden: a page from {shown(origin)} may not use this server; only its own "
                                f"page, {own}, may")
        site = request.headers.get("Sec-Fetch-Site", "").lower()
        if site in ("cross-site", "same-site"):
            return _refuse(403, f"Forbidden: a page from another site (Sec-Fetch-Site: {site}) may not use this "
                                f"server; only its own page, {own}, may")
        return None

    @app.get("/")
    def page():
        return render_template("index.html", title=title, backend=get_backend().name,
                               max_upload_bytes=app.config["MAX_CONTENT_LENGTH"], max_upload_mb=max_upload_mb,
                               max_pixels=max_pixels)

    @app.post("/predict")
    def predict():
        try:
            upload = uploaded_image("no image was sent: the form field 'image' is missing")
        except NoImage as exc:
            return _answer_error(str(exc), 400)
        try:
            image = open_upload(upload.read(), max_pixels)
            with lock:
                return jsonify(read_digit(model, image))
        except ValueError as exc:  # not an image, too many pixels, blank
            return _answer_error(str(exc), 422)

    explain_api.register(app, model, lock, max_pixels)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        if isinstance(exc, TooManyParts):
            return _answer_error(f"the form has more than {app.config['MAX_FORM_PARTS']} parts: send one "
                                 f"image, as the file field 'image'", 413)
        if isinstance(exc, TextFieldTooLarge):
            return _answer_error(f"a text field of the form is larger than the limit of "
                                 f"{app.config['MAX_FORM_MEMORY_SIZE'] / 1000:g} kB for text: send the image "
                                 f"as a file, in the file field 'image'", 413)
        return _answer_error(f"the upload is larger than the limit of {max_upload_mb:g} MB: choose a smaller "
                             f"image (a digit needs a few hundred pixels a side)", 413)

    @app.errorhandler(TooSlow)
    def too_slow(exc):
        return _answer_error(f"the request took too long to arrive ({exc}): try again", 408)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if isinstance(exc, ClientDisconnected) and isinstance(exc.__context__, TooSlow):
            return too_slow(exc.__context__)   # Werkzeug's body stream turns a read's error into this
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
        if request.path == "/predict" or request.path.startswith("/explain/"):   # answers about one image
            response.headers["Cache-Control"] = "no-store"
        return response

    return app
