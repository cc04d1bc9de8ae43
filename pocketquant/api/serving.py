"""Serve an ASGI app with uvicorn on a free loopback port for the length of a block
(tests and the benchmark use it; the CLI runs uvicorn itself)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette

from pocketquant.infra.embedded import free_port

# Every PocketQuant API server runs without permessage-deflate: live messages are a few
# hundred bytes, and compressing each one for each subscriber was the largest cost of
# the fan-out path (1,000 subscribers: p50 115 ms with deflate, 39 ms without).
WS_PER_MESSAGE_DEFLATE = False


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", ws_per_message_deflate=WS_PER_MESSAGE_DEFLATE
        )
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
