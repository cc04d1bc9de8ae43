"""Helpers for waiting on the running service and subscribing the way a raw
graphql-transport-ws client does."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import websockets
from websockets.typing import Subprotocol


async def until(predicate: Any, within: float = 10.0) -> Any:
    """Poll the async ``predicate`` until it returns something truthy; return that."""
    async with asyncio.timeout(within):
        while True:
            value = await predicate()
            if value:
                return value
            await asyncio.sleep(0.05)


async def raw_subscriber(
    url: str, op_id: str, document: str, variables: dict[str, Any], key: str | None = None, **connect: Any
) -> Any:
    """A websocket to ``url`` that has been acknowledged (with API ``key`` in the
    connection_init payload, if given) and has subscribed ``document`` under ``op_id``
    (``connect`` goes to ``websockets.connect``)."""
    ws = await websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], **connect)
    init: dict[str, Any] = {"type": "connection_init"}
    if key is not None:
        init["payload"] = {"Authorization": f"Bearer {key}"}
    await ws.send(json.dumps(init))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(
        json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": document, "variables": variables}})
    )
    return ws


def small_buffer_socket(api_url: str) -> socket.socket:
    """A connected, non-blocking socket to the API with a small, fixed receive buffer
    (autotuning goes to 32 MB here): a client on it that stops reading really makes
    the server's writes wait."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
    sock.connect(("127.0.0.1", int(api_url.rsplit(":", 1)[1])))
    sock.setblocking(False)
    return sock
