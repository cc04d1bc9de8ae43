"""Serve an ASGI app with uvicorn on a free loopback port for the length of a block
(tests and the benchmark use it; the CLI runs uvicorn itself)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from pocketquant.api.prepared_frames import PreparedFrameProtocol
from pocketquant.infra.embedded import free_port
from pocketquant.settings import Settings


def uvicorn_options(settings: Settings | None = None) -> dict[str, Any]:
    """uvicorn settings for every PocketQuant API server.

    - asyncio's own event loop, the one the tests run on (uvicorn would pick uvloop
      whenever it is installed).
    - httptools (C) parses HTTP/1.1, not h11 (pure Python): measured with 200 clients
      reading cached 1,000-bar pages, h11 was a large share of the API's time per request.
    - The protocol with the prepared-frame extension (see ``prepared_frames``): the
      fan-out writes one encoded frame to many subscribers.
    - No permessage-deflate: live messages are a few hundred bytes, and compressing each
      one for each subscriber was the largest cost of the fan-out path (1,000
      subscribers: p50 115 ms with deflate, 39 ms without).
    - Websocket messages are bounded like HTTP bodies (``MAX_REQUEST_BYTES``).
    """
    limit = (settings or Settings(_env_file=None)).max_request_bytes
    return {
        "loop": "asyncio",
        "http": "httptools",
        "ws": PreparedFrameProtocol,
        "ws_per_message_deflate": False,
        "ws_max_size": limit,
    }


@contextlib.asynccontextmanager
async def serve(app: Starlette, **overrides: Any) -> AsyncIterator[str]:
    """Yields the base URL; ``overrides`` replace uvicorn settings (tests of other servers)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **(uvicorn_options() | overrides))
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # uvicorn offers no start-up event to wait on
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
