"""The API process: Starlette app with GraphQL (HTTP and graphql-transport-ws),
GraphiQL, and health and readiness routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypedDict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from pocketquant.api.context import Context
from pocketquant.api.fanout import FanoutRegistry, FanoutTransportWSHandler
from pocketquant.api.schema import build_schema
from pocketquant.realtime.hub import LiveHub
from pocketquant.resources import Resources, open_resources
from pocketquant.settings import Settings
from pocketquant.worker import health_check_key

log = logging.getLogger(__name__)

_CHECK_TIMEOUT = 2.0


class State(TypedDict):
    resources: Resources
    hub: LiveHub
    fanout: FanoutRegistry


class PocketQuantGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = FanoutTransportWSHandler

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        return Context(resources=request.state.resources, hub=request.state.hub, fanout=request.state.fanout)


async def component_checks(resources: Resources) -> dict[str, dict[str, Any]]:
    async def mongodb() -> dict[str, Any]:
        await resources.mongo.admin.command("ping")
        return {"ok": True}

    async def redis() -> dict[str, Any]:
        await resources.redis.ping()
        return {"ok": True}

    async def worker() -> dict[str, Any]:
        report = await resources.redis.get(health_check_key(resources.settings))
        if report is None:
            return {"ok": False, "error": "no worker has reported recently"}
        return {"ok": True, "report": report.decode() if isinstance(report, bytes) else str(report)}

    async def run(check: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await asyncio.wait_for(check(), _CHECK_TIMEOUT)
            return result
        except Exception as exc:  # a health check reports failures, it does not raise them
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    names = ("mongodb", "redis", "worker")
    results = await asyncio.gather(run(mongodb), run(redis), run(worker))
    return dict(zip(names, results, strict=True))


async def health(request: Request) -> JSONResponse:
    """Liveness: the process answers. Component states are reported, not required,
    with this process's live subscribers."""
    checks = await component_checks(request.state.resources)
    hub: LiveHub = request.state.hub
    members = request.state.fanout.members
    live = {
        "subscribers": len(members),
        "groups": request.state.fanout.groups,
        "listeners": hub.listener_count,
        "channels": hub.channel_count,
        "pending_updates": hub.pending_updates + sum(len(m.queue) for m in members),
        "dropped_updates": hub.dropped_updates + sum(m.queue.dropped for m in members),
        # Grouped updates so far: written as prepared frames, or handed to the ASGI send.
        "updates_written": dict(request.state.fanout.writes),
    }
    return JSONResponse({"status": "ok", "components": checks, "live": live})


async def ready(request: Request) -> JSONResponse:
    """Readiness: MongoDB and Redis answer. A missing worker is reported (syncs would
    wait in the queue) but does not take the API out of rotation: reads still work."""
    checks = await component_checks(request.state.resources)
    is_ready = checks["mongodb"]["ok"] and checks["redis"]["ok"]
    return JSONResponse(
        {"status": "ready" if is_ready else "unavailable", "components": checks}, status_code=200 if is_ready else 503
    )


def create_app(settings: Settings, resources: Resources | None = None) -> Starlette:
    """Build the app. With ``resources`` the app borrows open clients (``pocketquant
    dev``); without, its lifespan opens and closes its own."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with contextlib.AsyncExitStack() as stack:
            opened = resources if resources is not None else await stack.enter_async_context(open_resources(settings))
            hub = LiveHub(opened.redis)
            stack.push_async_callback(hub.close)
            fanout = FanoutRegistry()
            fanout.schema = graphql_app.schema
            stack.push_async_callback(fanout.close)
            yield {"resources": opened, "hub": hub, "fanout": fanout}

    graphql_app = PocketQuantGraphQL(
        build_schema(settings),
        graphql_ide="graphiql" if settings.graphiql else None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
    )
    return Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql_app),
        ],
        lifespan=lifespan,
    )
