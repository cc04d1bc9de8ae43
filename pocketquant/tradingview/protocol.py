"""TradingView's websocket framing: ``~m~<len>~m~<payload>`` frames, back to back.

``<len>`` counts UTF-16 code units (JavaScript ``String.length``), not bytes and not
code points: a character outside the Basic Multilingual Plane counts 2.
Pure code: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_MARK = "~m~"
_HEARTBEAT = "~h~"


class ProtocolError(ValueError):
    """A message that does not follow the framing."""


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as JavaScript's ``String.length``."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _advance_utf16(text: str, start: int, units: int) -> int:
    """Index in ``text`` that lies ``units`` UTF-16 code units after ``start``."""
    i = start
    remaining = units
    # Fast path: most payloads are within the BMP, where a unit is a character.
    chunk = text[i : i + remaining]
    if len(chunk) == remaining and utf16_len(chunk) == remaining:
        return i + remaining
    while remaining > 0:
        if i >= len(text):
            raise ProtocolError("frame length runs past the end of the message")
        remaining -= 2 if ord(text[i]) > 0xFFFF else 1
        i += 1
    if remaining < 0:
        raise ProtocolError("frame length splits a surrogate pair")
    return i


def split_frames(message: str) -> list[str]:
    """Split one websocket message into its frame payloads."""
    payloads: list[str] = []
    i = 0
    while i < len(message):
        if not message.startswith(_MARK, i):
            raise ProtocolError(f"expected {_MARK!r} at offset {i}")
        j = message.find(_MARK, i + 3)
        if j < 0:
            raise ProtocolError("unterminated frame header")
        length_text = message[i + 3 : j]
        if not length_text.isdigit():
            raise ProtocolError(f"bad frame length {length_text!r}")
        start = j + 3
        end = _advance_utf16(message, start, int(length_text))
        if end > len(message):
            raise ProtocolError("frame length runs past the end of the message")
        payloads.append(message[start:end])
        i = end
    return payloads


def frame(payload: str) -> str:
    return f"{_MARK}{utf16_len(payload)}{_MARK}{payload}"


def encode(method: str, params: list[Any]) -> str:
    """One framed JSON command."""
    return frame(json.dumps({"m": method, "p": params}, separators=(",", ":"), ensure_ascii=False))


def encode_many(*commands: tuple[str, list[Any]]) -> str:
    """Several framed commands in one websocket message."""
    return "".join(encode(method, params) for method, params in commands)


def heartbeat(n: int) -> str:
    return frame(f"{_HEARTBEAT}{n}")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    payload: str  # the whole "~h~N", echoed back verbatim


@dataclass(frozen=True, slots=True)
class Command:
    method: str
    params: list[Any]


@dataclass(frozen=True, slots=True)
class Greeting:
    fields: dict[str, Any]


Packet = Heartbeat | Command | Greeting


def parse_payload(payload: str) -> Packet:
    if payload.startswith(_HEARTBEAT):
        return Heartbeat(payload)
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"payload is neither JSON nor a heartbeat: {payload[:80]!r}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"payload is not a JSON object: {payload[:80]!r}")
    if "m" not in data:
        return Greeting(data)
    params = data.get("p", [])
    return Command(str(data["m"]), params if isinstance(params, list) else [params])


def parse_message(message: str) -> list[Packet]:
    return [parse_payload(p) for p in split_frames(message)]
