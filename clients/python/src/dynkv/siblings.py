"""Siblings as the native API shows them, parsed into :class:`Sibling`.

A read of a key with concurrent versions answers ``300 Multiple Choices``
and a write that left siblings answers ``200`` with them. The body is one
of two framings (DESIGN.md section 4):

- JSON (what this client asks for with ``Accept: application/json``)::

      {"context": "...", "siblings": [{"value": "...", "encoding": "utf8"|"base64",
                                       "content_type": "...", "deleted": false}]}

- ``multipart/mixed; boundary=B``: each sibling a part with its own
  ``Content-Type``, a tombstone a part with ``X-Dynkv-Deleted: true`` and an
  empty body.

Both parsers are pure functions of the body and its Content-Type, so they
are tested without a server; a body that does not parse raises
:class:`ProtocolError` rather than returning a wrong answer.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Sibling", "ProtocolError", "parse_json", "parse_multipart", "parse_siblings"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"


class ProtocolError(Exception):
    """A server answer this client cannot understand."""


@dataclass(frozen=True)
class Sibling:
    """One version of a key: its bytes, Content-Type, and whether it is a
    tombstone (a delete concurrent with other writes)."""

    value: bytes
    content_type: str = DEFAULT_CONTENT_TYPE
    deleted: bool = False

    @property
    def text(self) -> str:
        """The value decoded as UTF-8."""
        return self.value.decode("utf-8")

    def json(self) -> Any:
        """The value parsed as JSON."""
        return json.loads(self.value)


def parse_json(body: bytes) -> tuple[str, list[Sibling]]:
    """Parses the JSON framing: ``(context, siblings)``."""
    try:
        doc = json.loads(body)
        ctx = doc.get("context", "")
        out = []
        for s in doc["siblings"]:
            enc = s.get("encoding", "utf8")
            raw = s.get("value", "")
            if enc == "utf8":
                value = raw.encode("utf-8")
            elif enc == "base64":
                value = base64.b64decode(raw, validate=True)
            else:
                raise ProtocolError(f"unknown sibling encoding {enc!r}")
            out.append(
                Sibling(
                    value=value,
                    content_type=s.get("content_type") or DEFAULT_CONTENT_TYPE,
                    deleted=bool(s.get("deleted", False)),
                )
            )
    except ProtocolError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
        raise ProtocolError(f"the siblings are not the expected JSON: {e}") from e
    if not isinstance(ctx, str):
        raise ProtocolError("the siblings' context is not a string")
    return ctx, out


def _boundary(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if value:
                return value
    raise ProtocolError(f"multipart answer without a boundary: {content_type!r}")


def parse_multipart(body: bytes, content_type: str) -> list[Sibling]:
    """Parses the ``multipart/mixed`` framing (RFC 2046): every part between
    ``--B`` delimiters, headers then a blank line then the value."""
    delim = b"--" + _boundary(content_type).encode("ascii")
    # A delimiter is at the start of the body or after CRLF; the CRLF
    # before it belongs to the delimiter, not to the previous part.
    data = b"\r\n" + body
    sep = b"\r\n" + delim
    pieces = data.split(sep)
    if len(pieces) < 2:
        raise ProtocolError("multipart answer without a delimiter")
    out = []
    closed = False
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            closed = True
            break
        # The rest of the delimiter line (transport padding), then CRLF.
        line_end = piece.find(b"\r\n")
        if line_end < 0:
            raise ProtocolError("a multipart delimiter line does not end")
        part = piece[line_end + 2 :]
        if part.startswith(b"\r\n"):
            # No headers: the blank line comes at once.
            head, value = b"", part[2:]
        else:
            head, blank, value = part.partition(b"\r\n\r\n")
            if not blank:
                raise ProtocolError("a multipart part has no blank line after its headers")
        headers = {}
        for line in head.split(b"\r\n"):
            if not line:
                continue
            name, colon, v = line.partition(b":")
            if not colon:
                raise ProtocolError(f"bad part header {line[:80]!r}")
            headers[name.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        out.append(
            Sibling(
                value=value,
                content_type=headers.get("content-type", DEFAULT_CONTENT_TYPE),
                deleted=headers.get("x-dynkv-deleted", "").lower() == "true",
            )
        )
    if not closed:
        raise ProtocolError("multipart answer without its closing delimiter")
    return out


def parse_siblings(body: bytes, content_type: str) -> tuple[str | None, list[Sibling]]:
    """Parses either framing by its Content-Type: ``(context or None,
    siblings)`` (multipart carries the context only in the header)."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json":
        return parse_json(body)
    if media == "multipart/mixed":
        return None, parse_multipart(body, content_type)
    raise ProtocolError(f"siblings in an unexpected Content-Type {content_type!r}")
