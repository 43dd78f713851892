"""Grad mode: whether forward passes keep what ``backward`` needs (per thread).

``is_grad_enabled()`` is True except inside ``with no_grad():``, where every
module drops what its forward saved for backward as soon as the forward
returns (inference: less memory), and max-pooling skips its argmax.

Docs: docs/overview.md
"""
from __future__ import annotations

import contextlib
import threading

_grad_state = threading.local()


def is_grad_enabled() -> bool:
    """False inside a :func:`no_grad` block of the calling thread, else True."""
    return getattr(_grad_state, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Forward passes for inference only: modules keep nothing for ``backward``.

    Inside ``with no_grad():`` (or in a function decorated ``@no_grad()``),
    every module drops what its forward cached for backward as soon as the
    forward returns, so memory holds only the arrays in flight
    (:func:`minicnn.training.forward_in_blocks` also runs a large batch in
    blocks).  Max-pooling also skips
    recording its argmax.  A ``backward`` after such a forward raises, as if
    no forward had run.  Blocks nest; leaving one restores the previous
    state.  The state is per thread.
    """
    previous = is_grad_enabled()
    _grad_state.enabled = False
    try:
        yield
    finally:
        _grad_state.enabled = previous
