"""The web application behind ``minicnn serve``, and the local server that runs it.

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

import io
import ipaddress
import resource
import socket
import threading
import time
from dataclasses import dataclass

from flask import Flask, Request, Response, jsonify, render_template, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler, select_address_family

from minicnn.backend import get_backend
from minicnn.web import explain_api
from minicnn.web.reading import MAX_PIXELS, open_upload, read_digit

__all__ = ["DEFAULT_HOST", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_PORT", "HostRule", "IDLE_TIMEOUT_S", "MAX_CONNECTIONS",
           "MAX_UPLOAD_MB", "REQUEST_TIMEOUT_S", "create_app", "is_loopback", "listen"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 16
MAX_UPLOAD_MB = 1024          # the largest --max-upload-mb: an upload is read into memory whole
MAX_FORM_PARTS = 1000         # the page sends one part; Werkzeug's (and Flask's) default limit
MAX_FORM_TEXT_BYTES = 500_000  # the largest text (not file) field of a form; Flask's default
IDLE_TIMEOUT_S = 20           # the longest a connection may send (or take) nothing
REQUEST_TIMEOUT_S = 120       # the longest a whole request may take to arrive
MAX_CONNECTIONS = 32          # connections served at once; one more is answered 503 and closed

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


def _shown(value: str, limit: int = 80) -> str:
    """A header's value, quoted for a message: printable ASCII only, at most ``limit`` characters."""
    text = "".join(c if " " <= c <= "~" else "?" for c in value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --- Host and Origin ------------------------------------------------------------------------

def _normal_name(name: str) -> str:
    """A host name or address as compared: lower case; an IP address in its standard form, IPv6 without []."""
    name = name.lower()
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of ``host[:port]`` or ``[ipv6][:port]`` (port None when absent); None if malformed."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if ":" not in name or not _is_address(name) or (rest and not rest.startswith(":")):   # IPv6 only
            return None
        port = rest[1:] if rest else ""
    else:
        name, _, port = value.partition(":")
        if ":" in port:   # an IPv6 address without [], or two ports
            return None
    if not name or any(c in name for c in "/\\@?#, \t") or (port and not (port.isascii() and port.isdigit()
                                                                           and len(port) <= 5)):
        return None
    port_number = int(port) if port else None
    if port_number is not None and port_number > 65535:
        return None
    return _normal_name(name), port_number


def _bracketed(name: str) -> str:
    return f"[{name}]" if ":" in name else name


@dataclass(frozen=True)
class HostRule:
    """The ``Host`` headers a server answers to: ``names`` on ``port`` (None: any port).

    ``any_address``: also any IP address (a server listening on every address,
    0.0.0.0 or ::). A name that is not an address is accepted only when it is
    one of ``names``: a page on another site that points its own name at this
    machine (DNS rebinding) sends its own name, and is refused.
    """
    names: frozenset
    port: int | None = None
    any_address: bool = False

    @classmethod
    def listening_on(cls, host: str, bound: str, port: int) -> "HostRule":
        """The rule for a server told to listen on ``host`` that got the address ``bound``, port ``port``."""
        name = _normal_name(host.strip("[]"))
        if _is_address(name) and ipaddress.ip_address(name).is_unspecified:
            return cls(frozenset({"localhost", _normal_name(socket.gethostname())}), port, any_address=True)
        names = {name, _normal_name(bound)}
        if is_loopback(host) or is_loopback(bound):
            names.add("localhost")
        return cls(frozenset(names), port)

    def accepts(self, host: str | None, default_port: int = 80) -> bool:
        """Whether a ``Host`` header's value (None: absent) names this server."""
        parts = _split_host(host) if host else None
        if parts is None:
            return False
        name, port = parts
        if self.port is not None and (default_port if port is None else port) != self.port:
            return False
        return name in self.names or (self.any_address and _is_address(name))

    def describe(self) -> str:
        """``127.0.0.1:7860 or localhost:7860``: the accepted names, for a message."""
        suffix = "" if self.port is None else f":{self.port}"
        names = [f"{_bracketed(name)}{suffix}" for name in sorted(self.names)]
        if self.any_address:
            names.insert(0, f"any IP address of this machine{suffix}")
        return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]


LOOPBACK_NAMES = HostRule(frozenset({"localhost", "127.0.0.1", "::1"}))  # create_app's rule until listen's


def _same_origin(origin: str, scheme: str, host: str) -> bool:
    """Whether an ``Origin`` header names the page at ``scheme://host`` (default ports made explicit)."""
    their_scheme, sep, rest = origin.partition("://")
    theirs = _split_host(rest) if sep else None
    ours = _split_host(host)
    if theirs is None or ours is None or their_scheme.lower() != scheme:
        return False
    default = 443 if scheme == "https" else 80
    return (theirs[0], theirs[1] or default) == (ours[0], ours[1] or default)


# --- the form: its own message for each of Werkzeug's limits ------------------------------------

class TooManyParts(RequestEntityTooLarge):
    """A form of more parts than ``MAX_FORM_PARTS``."""


class TextFieldTooLarge(RequestEntityTooLarge):
    """A text (not file) field of a form larger than ``MAX_FORM_MEMORY_SIZE``."""


class _CountingStream:
    """The request body as the form parser reads it, counting the parts' boundaries as they pass."""

    def __init__(self, stream, boundary: bytes):
        self.stream, self.delimiter, self.tail = stream, b"--" + boundary, b""
        self.delimiters, self.over_size = 0, False

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.stream.read(size)
        except RequestEntityTooLarge:
            self.over_size = True   # a body without a Content-Length that went past MAX_CONTENT_LENGTH
            raise
        seen = self.tail + data
        self.delimiters += seen.count(self.delimiter)
        self.tail = seen[-(len(self.delimiter) - 1):]
        return data


class _FormParser(FormDataParser):
    """Werkzeug's form parser, whose too-many-parts and too-large-text errors say which they are."""

    def parse(self, stream, mimetype, content_length, options=None):
        if mimetype != "multipart/form-data":
            return super().parse(stream, mimetype, content_length, options)
        counted = _CountingStream(stream, (options or {}).get("boundary", "").encode("ascii", "replace"))
        try:
            _, form, files = super().parse(counted, mimetype, content_length, options)
        except RequestEntityTooLarge:
            if counted.over_size:
                raise
            if self.max_form_parts is not None and counted.delimiters > self.max_form_parts:
                raise TooManyParts() from None
            raise TextFieldTooLarge() from None
        return stream, form, files


class _Request(Request):
    form_data_parser_class = _FormParser


class _TooSlow(TimeoutError):
    """A request that did not arrive in time (raised by :class:`_Deadline`, answered 408)."""


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
    app.request_class = _Request
    app.config.update(MAX_CONTENT_LENGTH=int(max_upload_mb * 2**20), MAX_FORM_PARTS=MAX_FORM_PARTS,
                      MAX_FORM_MEMORY_SIZE=MAX_FORM_TEXT_BYTES, MINICNN_HOSTS=LOOPBACK_NAMES)
    lock = threading.Lock()  # layers keep per-call state, so one forward pass at a time

    @app.before_request
    def only_this_server_and_its_page():
        host, rule = request.environ.get("HTTP_HOST"), app.config["MINICNN_HOSTS"]
        if not rule.accepts(host, 443 if request.scheme == "https" else 80):
            named = "a request without a Host header" if host is None else f"the Host {_shown(host)}"
            return _refuse(421, f"Misdirected Request: this server answers to {rule.describe()}, not to {named}")
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return None
        own = f"{request.scheme}://{host}"
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(origin, request.scheme, host):
            return _refuse(403, f"Forbidden: a page from {_shown(origin)} may not use this server; only its own "
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
        upload = request.files.get("image")
        if upload is None:
            if "image" in request.form:
                return _answer_error("the form field 'image' is text, not a file: send the image as a file "
                                     "(a form part with a filename)", 400)
            if request.mimetype != "multipart/form-data":
                sent = f"a body of type {_shown(request.mimetype)}" if request.mimetype else "a body of no type"
                return _answer_error(f"no image was sent: /predict takes a form (multipart/form-data) with the "
                                     f"image as the file field 'image', not {sent}", 400)
            return _answer_error("no image was sent: the form field 'image' is missing", 400)
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

    @app.errorhandler(_TooSlow)
    def too_slow(exc):
        return _answer_error(f"the request took too long to arrive ({exc}): try again", 408)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if isinstance(exc, ClientDisconnected) and isinstance(exc.__context__, _TooSlow):
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


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) reaches this machine only: 127.0.0.0/8, ::1, localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- the server ------------------------------------------------------------------------------

class _Deadline(io.RawIOBase):
    """A connection's incoming bytes, each read waiting at most ``idle`` seconds and none past ``deadline``."""

    def __init__(self, sock: socket.socket, idle: float, total: float):
        self.sock, self.idle, self.total = sock, idle, total
        self.deadline = time.monotonic() + total

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _TooSlow(f"not all of it within {self.total:g} s")
        self.sock.settimeout(min(self.idle, left))
        try:
            return self.sock.recv_into(buffer)
        except TimeoutError:
            raise (_TooSlow(f"nothing for {self.idle:g} s") if left > self.idle
                   else _TooSlow(f"not all of it within {self.total:g} s")) from None
        finally:
            self.sock.settimeout(self.idle)   # what a write of the answer may wait


class _TimedHandler(WSGIRequestHandler):
    """Werkzeug's request handler, reading through a :class:`_Deadline` (each connection is one request)."""
    idle_timeout_s: float = IDLE_TIMEOUT_S
    request_timeout_s: float = REQUEST_TIMEOUT_S

    def setup(self) -> None:
        self.timeout = self.idle_timeout_s   # the socket's timeout, set by StreamRequestHandler.setup
        super().setup()
        self.rfile.close()
        self.rfile = io.BufferedReader(_Deadline(self.connection, self.idle_timeout_s, self.request_timeout_s))


class _CappedServer(ThreadedWSGIServer):
    """Werkzeug's threaded server, serving at most ``max_connections`` connections at once.

    A connection over the cap is answered ``503 Service Unavailable`` (with ``Retry-After``) and
    closed on the spot, in the accepting thread: it never gets a thread, and holds its file
    descriptor only for that moment.
    """
    max_connections: int = MAX_CONNECTIONS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(self.max_connections)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self._turn_away(request)
            return
        try:
            super().process_request(request, client_address)   # starts the connection's thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _turn_away(self, request: socket.socket) -> None:
        text = f"503 Service Unavailable: this server is busy with {self.max_connections} connections; try again\n"
        try:
            request.setblocking(False)     # a few bytes into an empty send buffer: never waits
            request.send((f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
                          f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(text)}\r\n\r\n"
                          f"{text}").encode())
        except OSError:
            pass
        self.shutdown_request(request)


def connection_cap(wanted: int = MAX_CONNECTIONS) -> int:
    """``wanted``, or fewer where this process may open too few files to hold that many connections
    beside what it has open already (``ulimit -n``): a server out of descriptors can no longer accept,
    not even to refuse."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (soft - 64) // 2))


def listen(app: Flask, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
           idle_timeout_s: float = IDLE_TIMEOUT_S, request_timeout_s: float = REQUEST_TIMEOUT_S,
           max_connections: int = MAX_CONNECTIONS):
    """A threaded Werkzeug server for ``app`` bound to ``host:port`` (port 0: any free port).

    Call ``serve_forever()`` on it; its ``port`` is the port it got. An
    address that cannot be used (taken, not on this machine, an unknown name)
    is an ``OSError`` whose message names it. The app then answers only to
    ``Host`` headers naming this address and port (:meth:`HostRule.listening_on`).
    A connection that sends nothing for ``idle_timeout_s`` seconds is closed;
    a request not fully arrived ``request_timeout_s`` seconds after its
    connection opened is answered 408 (or closed, when its headers are not in).
    At most ``max_connections`` connections are served at once (fewer under a
    low ``ulimit -n``: :func:`connection_cap`); one more is answered 503 and closed.
    """
    if max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, got {max_connections}")
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
    handler = type("Handler", (_TimedHandler,), {"idle_timeout_s": idle_timeout_s,
                                                 "request_timeout_s": request_timeout_s})
    server_class = type("Server", (_CappedServer,), {"max_connections": connection_cap(max_connections)})
    try:
        httpd = server_class(host, port, app, handler, fd=sock.fileno())
    finally:
        sock.close()  # the server holds its own duplicate of the socket
    app.config["MINICNN_HOSTS"] = HostRule.listening_on(host, httpd.server_address[0], httpd.port)
    return httpd
