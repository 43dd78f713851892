"""``minicnn serve WEIGHTS [--host 127.0.0.1] [--port 7860] [--max-upload-mb 16] [--max-connections 32]``: the page.

Loads the weights as ``minicnn predict`` does, then serves the page of
:mod:`minicnn.web.server` until Ctrl+C. On loopback only unless ``--host``
names another address, and then it says so in one line. Without Flask (the
``web`` extra) it stops at once with one line naming the ``pip install``.
The server answers only to its own address (the ``Host`` header) and takes
POSTs only from its own page (the ``Origin`` header); see
:mod:`minicnn.web.server` for those rules and its time limits.

Docs: docs/serve.md
"""
from __future__ import annotations

import argparse
import sys

from minicnn.commands.common import add_model_arguments, load_model

HELP = "a web page to draw or upload a digit and see what the network reads"

# The packages of the `web` extra: a missing one means the extra is not installed.
WEB_EXTRA = {"flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "click", "blinker"}
INSTALL_HINT = "pip install 'minicnn[web]' (in a clone of minicnn: pip install -e \".[web]\")"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from minicnn.web.reading import MAX_PIXELS

    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network "
                        "this machine is on)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860; 0: any free port)")
    p.add_argument("--max-upload-mb", type=float, default=16, metavar="MB",
                   help=f"largest upload accepted, in megabytes (default 16, at most 1024; images of more than "
                        f"{MAX_PIXELS / 1e6:g} million pixels are refused too)")
    p.add_argument("--max-connections", type=int, default=32, metavar="N",
                   help="connections served at once (default 32, at most 1024); one more is answered "
                        "'503 busy' and closed")


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run(args, parser: argparse.ArgumentParser) -> None:
    """Check the options, load the model, listen, print where, and serve until interrupted.

    The model is loaded as ``minicnn predict`` loads it (:func:`minicnn.commands.common.load_model`); the
    line naming what was fused in it goes to standard error, since the first line of standard output says
    where the page is.
    """
    if not args.host.strip():
        parser.error("--host must name an address (127.0.0.1, 0.0.0.0, a name of this machine), got an empty one")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, got {args.port}")
    if not args.max_upload_mb > 0:
        parser.error(f"--max-upload-mb must be a positive number of megabytes, got {args.max_upload_mb:g}")
    if not 1 <= args.max_connections <= 1024:
        parser.error(f"--max-connections must be 1-1024, got {args.max_connections}")
    try:
        from minicnn.web import server
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in WEB_EXTRA:
            raise
        parser.exit(2, f"{parser.prog}: error: the web page needs Flask ({exc.name} is not installed): "
                       f"{INSTALL_HINT}\n")
    if not args.max_upload_mb <= server.MAX_UPLOAD_MB:   # inf, or more than an upload read into memory should be
        parser.error(f"--max-upload-mb must be at most {server.MAX_UPLOAD_MB} megabytes, got {args.max_upload_mb:g}")
    model, say_fused = load_model(args)
    say_fused(sys.stderr)
    title = f"{type(model).__name__} from {args.weights.name}"
    httpd = server.listen(server.create_app(model, title, args.max_upload_mb), args.host, args.port,
                          max_connections=args.max_connections)
    if httpd.max_connections < args.max_connections:
        print(f"{parser.prog}: warning: serving {httpd.max_connections} connections at once, not "
              f"{args.max_connections}: this process may open few files (ulimit -n)", file=sys.stderr)
    if not server.is_loopback(args.host):
        print(f"{parser.prog}: warning: listening on {args.host}, not only on this machine: anyone who can "
              f"reach port {httpd.port} of it can use the page", file=sys.stderr)
    print(f"Serving {title} at {_url(args.host, httpd.port)} (Ctrl+C to stop)", flush=True)
    httpd.serve_forever()  # returns on Ctrl+C and closes the socket
