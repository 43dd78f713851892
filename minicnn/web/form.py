"""The form a request to ``minicnn serve`` sends, read with a message of its own for each way it can be wrong.

The page sends one form (``multipart/form-data``) whose file field ``image`` holds the picture; the
questions to ``/explain/...`` add a few short text fields.  Werkzeug parses it within the limits
:func:`minicnn.web.server.create_app` sets (``MAX_CONTENT_LENGTH``, ``MAX_FORM_PARTS``,
``MAX_FORM_MEMORY_SIZE``); :class:`FormRequest` makes its too-many-parts and too-large-text refusals
say which they are, and :func:`uploaded_image` says what came where the image should be (nothing, a
text field, a body that is not a form), for every route alike.

Docs: docs/serve.md#what-the-server-accepts
"""
from __future__ import annotations

from flask import Request, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

__all__ = ["MAX_FORM_PARTS", "MAX_FORM_TEXT_BYTES", "FormRequest", "NoImage", "TextFieldTooLarge", "TooManyParts",
           "shown", "uploaded_image"]

MAX_FORM_PARTS = 1000         # the page sends one part; Werkzeug's (and Flask's) default limit
MAX_FORM_TEXT_BYTES = 500_000  # the largest text (not file) field of a form; Flask's default


def shown(value: str, limit: int = 80) -> str:
    """A header's value, quoted for a message: printable ASCII only, at most ``limit`` characters."""
    text = "".join(c if " " <= c <= "~" else "?" for c in value)
    return repr(text if len(text) <= limit else text[:limit] + "...")


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


class FormRequest(Request):
    form_data_parser_class = _FormParser


class NoImage(ValueError):
    """A request without the file field ``image``; the message says what came instead (answered 400)."""


def uploaded_image(missing: str) -> FileStorage:
    """The current request's file field ``image``; :class:`NoImage` saying what was sent in its place: a
    text field of that name, a body that is not a form, or, when the form has no ``image`` at all, ``missing``."""
    upload = request.files.get("image")
    if upload is not None:
        return upload
    if "image" in request.form:
        raise NoImage("the form field 'image' is text, not a file: send the image as a file (a form part with a "
                      "filename)")
    if request.mimetype != "multipart/form-data":
        sent = f"a body of type {shown(request.mimetype)}" if request.mimetype else "a body of no type"
        raise NoImage(f"no image was sent: {request.path} takes a form (multipart/form-data) with the image as "
                      f"the file field 'image', not {sent}")
    raise NoImage(missing)
