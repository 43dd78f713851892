"""Who may use ``minicnn serve``: the ``Host`` names it answers to and the page's own ``Origin``.

Any web page a person visits could try to use a server running on their machine: post to it (a form or
a ``fetch`` to ``http://127.0.0.1:7860``), or point a name of its own at this machine (DNS rebinding) and
read the answers.  So :func:`minicnn.web.server.create_app` checks, before anything else:

- the ``Host`` header against a :class:`HostRule`: the address and port the server listens on (plus
  ``localhost`` on a loopback address, every name of this machine on 0.0.0.0); a rebinding page names
  itself, and is refused (421);
- the ``Origin`` of a ``POST`` with :func:`same_origin`: only the page's own ``http://HOST:PORT`` (403).

Docs: docs/serve.md#what-the-server-accepts
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

__all__ = ["LOOPBACK_NAMES", "HostRule", "is_loopback", "same_origin", "split_host"]


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


def split_host(value: str) -> tuple[str, int | None] | None:
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
        parts = split_host(host) if host else None
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


def same_origin(origin: str, scheme: str, host: str) -> bool:
    """Whether an ``Origin`` header names the page at ``scheme://host`` (default ports made explicit)."""
    their_scheme, sep, rest = origin.partition("://")
    theirs = split_host(rest) if sep else None
    ours = split_host(host)
    if theirs is None or ours is None or their_scheme.lower() != scheme:
        return False
    default = 443 if scheme == "https" else 80
    return (theirs[0], theirs[1] or default) == (ours[0], ours[1] or default)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) reaches this machine only: 127.0.0.0/8, ::1, localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
