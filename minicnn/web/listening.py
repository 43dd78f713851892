"""The local server behind ``minicnn serve``: Werkzeug's threaded server, bounded in time and in connections.

- A connection that sends nothing for ``idle_timeout_s`` (20 s) is closed; a request that has not fully
  arrived ``request_timeout_s`` (120 s) after it connected is answered 408 (:class:`_Deadline` reads
  every connection's bytes, :class:`TooSlow` says which limit it hit).
- At most ``max_connections`` (32) connections are served at once, a thread each; one more is answered
  ``503`` and closed by the thread that accepts connections (:class:`_CappedServer`), so idle sockets
  cannot use up the server's threads or its file descriptors (:func:`connection_cap` lowers the cap
  under a low ``ulimit -n``).
- :func:`listen` binds the address, names it in the application's :class:`~minicnn.web.hosts.HostRule`
  and returns the server; ``serve_forever()`` runs it.

To serve the page to many people, run the WSGI application of :func:`minicnn.web.server.create_app`
under a production WSGI server with its own limits instead.

Docs: docs/serve.md#what-the-server-accepts
"""
from __future__ import annotations

import io
import resource
import socket
import threading
import time

from flask import Flask
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler, select_address_family

from minicnn.web.hosts import HostRule

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "IDLE_TIMEOUT_S", "MAX_CONNECTIONS", "REQUEST_TIMEOUT_S", "TooSlow",
           "connection_cap", "listen"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
IDLE_TIMEOUT_S = 20           # the longest a connection may send (or take) nothing
REQUEST_TIMEOUT_S = 120       # the longest a whole request may take to arrive
MAX_CONNECTIONS = 32          # connections served at once; one more is answered 503 and closed


class TooSlow(TimeoutError):
    """A request that did not arrive in time (raised by :class:`_Deadline`; the application answers 408)."""


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
            raise TooSlow(f"not all of it within {self.total:g} s")
        self.sock.settimeout(min(self.idle, left))
        try:
            return self.sock.recv_into(buffer)
        except TimeoutError:
            raise (TooSlow(f"nothing for {self.idle:g} s") if left > self.idle
                   else TooSlow(f"not all of it within {self.total:g} s")) from None
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
