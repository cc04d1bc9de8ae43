"""Ask TradingView whether symbols exist: ``resolve_symbol`` on a chart session.

One short websocket connection resolves a batch of symbols at once (each under its own
id), echoes heartbeats, and ends at the first answer for every symbol or at the
timeout. The answer for each symbol is its metadata (``symbol_resolved``) or None
(``symbol_error``); anything else (no connection, a fatal error, no answer in time) is
:class:`ProviderUnavailableError`, since it says nothing about the symbols.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
from collections.abc import Sequence

import websockets
from websockets.typing import Origin

from pocketquant.domain import SymbolKey
from pocketquant.tradingview import protocol
from pocketquant.tradingview.history import ProviderUnavailableError, SymbolMetadata


async def resolve_symbols(
    keys: Sequence[SymbolKey],
    *,
    url: str,
    origin: str,
    auth_token: str | None,
    within: float,
) -> dict[SymbolKey, SymbolMetadata | None]:
    if not keys:
        return {}
    session = "cs_" + "".join(random.choices(string.ascii_lowercase, k=12))
    ids = {f"symbol_{i}": key for i, key in enumerate(keys, start=1)}
    answers: dict[SymbolKey, SymbolMetadata | None] = {}
    try:
        async with asyncio.timeout(within):
            async with websockets.connect(url, origin=Origin(origin), max_size=2**22) as ws:
                commands: list[tuple[str, list[object]]] = [
                    ("set_auth_token", [auth_token or "unauthorized_user_token"]),
                    ("chart_create_session", [session, ""]),
                ]
                for symbol_id, key in ids.items():
                    resolve = json.dumps({"symbol": key.ticker, "adjustment": "splits", "session": "regular"})
                    commands.append(("resolve_symbol", [session, symbol_id, "=" + resolve]))
                for method, params in commands:
                    await ws.send(protocol.encode(method, params))
                while len(answers) < len(ids):
                    message = await ws.recv()
                    if not isinstance(message, str):
                        continue
                    for packet in protocol.parse_message(message):
                        if isinstance(packet, protocol.Heartbeat):
                            await ws.send(protocol.frame(packet.payload))
                        elif isinstance(packet, protocol.Command):
                            _answer(packet, ids, answers)
    except TimeoutError as exc:
        raise ProviderUnavailableError(f"TradingView did not answer a symbol check within {within:g} s") from exc
    except (OSError, websockets.WebSocketException, protocol.ProtocolError) as exc:
        raise ProviderUnavailableError(f"cannot check symbols with TradingView: {exc}") from exc
    return answers


def _answer(
    packet: protocol.Command, ids: dict[str, SymbolKey], answers: dict[SymbolKey, SymbolMetadata | None]
) -> None:
    p = packet.params
    if packet.method in ("critical_error", "protocol_error"):
        raise ProviderUnavailableError(f"TradingView {packet.method} during a symbol check")
    if len(p) < 2 or not isinstance(p[1], str) or p[1] not in ids:
        return
    key = ids[p[1]]
    if packet.method == "symbol_resolved":
        answers[key] = SymbolMetadata.from_resolved(p[2] if len(p) > 2 and isinstance(p[2], dict) else {})
    elif packet.method == "symbol_error":
        answers[key] = None
