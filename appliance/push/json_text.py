"""Pushed bytes -> one JSON object, leniently: the vendor's own examples are annotated, not strict JSON.

Accepted and repaired: a UTF-8 byte order mark, NUL bytes after the document,
``//`` and ``/* */`` comments, trailing commas before ``}`` or ``]``, and a
missing comma between a value and a quoted key that starts the next line. Not
accepted (ambiguous, so dead-lettered): single-quoted strings, bare words like
``[Region1, Region2]``, NaN/Infinity; :class:`BadMessage` then says what and
where. Snapshots (``snapshot*`` keys, base64 JPEG, HTTP only) are removed
before anything is stored, and a dead letter's preview shows a message without
them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .message import BadMessage

PREVIEW_CHARS = 1000


def _relaxed(text: str) -> str:
    """``text`` with the accepted leniencies repaired (comments, trailing and missing commas)."""
    out: list[str] = []
    last = ""  # last significant character outside strings and comments
    comma_at = -1  # index in out of a comma that may turn out to be trailing
    newline_since_value = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            if newline_since_value and (last in '"}]' or last.isalnum()):
                out.append(",")  # `"a": 1 <newline> "b": 2`, as in the vendor's examples
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            last, newline_since_value, i = '"', False, j + 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise BadMessage("not JSON: unterminated /* comment")
            i = end + 2
            continue
        if c in " \t\r\n":
            newline_since_value |= c == "\n"
            out.append(c)
            i += 1
            continue
        if c in "}]" and last == "," and comma_at >= 0:
            out[comma_at] = ""
        if c == ",":
            comma_at = len(out)
        out.append(c)
        last, newline_since_value = c, False
        i += 1
    return "".join(out)


def _no_constants(name: str) -> Any:
    raise BadMessage(f"not JSON: {name} is not a number")


def _finite(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise BadMessage(f"not JSON the cloud accepts: {text} is out of range")
    return value


def decode_payload(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``; raises :class:`BadMessage` naming what is wrong."""
    if not body or not body.strip(b"\x00 \t\r\n"):
        raise BadMessage("empty message")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessage(
            f"binary, not UTF-8 text (byte {exc.start} is 0x{body[exc.start]:02x})"
        ) from None
    text = text.lstrip("\ufeff").rstrip("\x00 \t\r\n")
    try:
        payload = json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except BadMessage:
        raise
    except json.JSONDecodeError as strict_error:
        try:
            payload = json.loads(_relaxed(text), parse_constant=_no_constants, parse_float=_finite)
        except BadMessage:
            raise
        except json.JSONDecodeError:
            raise BadMessage(_json_problem(text, strict_error)) from None
        except (RecursionError, ValueError) as exc:
            raise BadMessage(f"not JSON this bridge reads: {_why(exc)}") from None
    except (RecursionError, ValueError) as exc:  # nesting; Python's 4300-digit limit on integers
        raise BadMessage(f"not JSON this bridge reads: {_why(exc)}") from None
    if not isinstance(payload, dict):
        raise BadMessage(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def _json_problem(text: str, error: json.JSONDecodeError) -> str:
    """What a person fixes: the vendor's examples fail on bare words and typographic quotes."""
    at = f"at byte {len(text[: error.pos].encode())} (line {error.lineno} column {error.colno})"
    curly = re.compile("[\u201c\u201d\u2018\u2019]")
    quote = curly.match(text, error.pos)
    if quote is None and error.msg.startswith("Unterminated string"):
        quote = curly.search(text, error.pos)  # a string closed by a typographic quote runs on
    if quote is not None:
        return (
            f"not JSON: typographic quote {quote.group()} at byte {len(text[: quote.start()].encode())};"
            " JSON needs straight quotes"
        )
    word = re.match(r"[A-Za-z_][\w.-]*", text[error.pos :])
    if word and word.group() not in ("true", "false", "null"):
        inside = "in array " if text[: error.pos].rstrip().endswith(("[", ",")) else ""
        return f"not JSON: bare word {word.group()} {inside}{at}; text needs quotes"
    return f"not JSON: {error.msg} {at}"


def _why(exc: BaseException) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def strip_snapshots(node: Any) -> Any:
    """``node`` without any ``snapshot*`` key at any depth (images never leave the bridge)."""
    if isinstance(node, dict):
        return {
            k: strip_snapshots(v)
            for k, v in node.items()
            if not str(k).lower().startswith("snapshot")
        }
    if isinstance(node, list):
        return [strip_snapshots(v) for v in node]
    return node


def may_hold_snapshots(body: bytes) -> bool:
    """Whether ``body`` can hold a ``snapshot*`` key: it would be written out in ASCII letters
    unless escaped, so most messages are let through without walking them."""
    return b"\\u" in body or b"snapshot" in body.lower()


def preview(body: bytes) -> str:
    """What a person sees of an unreadable message: its text, or hex when it is binary."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"hex ({len(body)} bytes): " + body[: PREVIEW_CHARS // 2].hex(" ")
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + f"... ({len(body)} bytes)"


def folded(node: Any) -> dict[str, Any]:
    """A dict's keys lower-cased (firmware spells ``max_counted`` and ``Max_counted``)."""
    if not isinstance(node, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.setdefault(str(key).lower(), value)
    return out
