"""The API process: Starlette app with GraphQL (HTTP and graphql-transport-ws),
GraphiQL, and health and readiness routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any, TypedDict

from prometheus_client import CONTENT_TYPE_LATEST
from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from pocketquant.api.cost import CostModel
from pocketquant.api.export import export_csv
from pocketquant.api.fanout import FanoutRegistry
from pocketquant.api.guard import Guard
from pocketquant.api.http import (
    AccessRefusedError,
    BodyLimitMiddleware,
    PocketQuantGraphQL,
    authenticate,
    check_access,
    static_text,
)
from pocketquant.api.loopwatch import LoopWatch
from pocketquant.api.ratelimit import RateLimiter
from pocketquant.api.schema import build_schema
from pocketquant.auth.keys import InvalidApiKeyError, Scope
from pocketquant.history.dispatch import health_check_key
from pocketquant.logs import RequestIdMiddleware
from pocketquant.metrics import ApiMetrics
from pocketquant.realtime import wire
from pocketquant.realtime.hub import LiveHub
from pocketquant.resources import Resources, open_resources
from pocketquant.settings import Settings

log = logging.getLogger(__name__)

_CHECK_TIMEOUT = 2.0


class State(TypedDict):
    resources: Resources
    hub: LiveHub
    fanout: FanoutRegistry
    guard: Guard
    loop_watch: LoopWatch
    metrics: ApiMetrics


async def component_checks(resources: Resources, *, details: bool) -> dict[str, dict[str, Any]]:
    """Each component's state. Error texts and the worker's report can name internal
    hosts and ports: they are shown to admin keys only (``details``)."""

    async def mongodb() -> dict[str, Any]:
        await resources.mongo.admin.command("ping")
        return {"ok": True}

    async def redis() -> dict[str, Any]:
        await resources.redis.ping()
        return {"ok": True}

    async def worker() -> dict[str, Any]:
        report = await resources.redis.get(health_check_key(resources.settings.queue_name))
        if report is None:
            return {"ok": False, "error": "no worker has reported recently"}
        return {"ok": True, "report": report.decode() if isinstance(report, bytes) else str(report)}

    async def run(check: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await asyncio.wait_for(check(), _CHECK_TIMEOUT)
            return result
        except Exception as exc:  # a health check reports failures, it does not raise them
            if not details:
                return {"ok": False, "error": "unavailable" if isinstance(exc, TimeoutError | OSError) else "failing"}
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    names = ("mongodb", "redis", "worker")
    results = await asyncio.gather(run(mongodb), run(redis), run(worker))
    if not details:
        for result in results:
            result.pop("report", None)
    return dict(zip(names, results, strict=True))


async def _is_admin(request: Request) -> bool:
    try:
        principal = await authenticate(request.state.resources, request.headers.get("authorization"))
    except (InvalidApiKeyError, PyMongoError):  # a key that cannot be checked now shows no details
        return False
    return principal.can(Scope.ADMIN)


async def chart_page(request: Request) -> HTMLResponse:
    """The chart page: search, candles, the live bar, sync and watch (static/chart.js)."""
    return HTMLResponse(static_text("chart.html"))


async def health(request: Request) -> JSONResponse:
    """Liveness: the process answers. Component states are reported, not required,
    with this process's live subscribers (details for admin keys)."""
    checks = await component_checks(request.state.resources, details=await _is_admin(request))
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
    watch: LoopWatch = request.state.loop_watch
    loop = {"max_stall_ms_last_minute": round(watch.recent_max() * 1e3, 1)}
    return JSONResponse({"status": "ok", "components": checks, "live": live, "event_loop": loop})


async def ready(request: Request) -> JSONResponse:
    """Readiness: MongoDB and Redis answer. A missing worker is reported (syncs would
    wait in the queue) but does not take the API out of rotation: reads still work."""
    checks = await component_checks(request.state.resources, details=await _is_admin(request))
    is_ready = checks["mongodb"]["ok"] and checks["redis"]["ok"]
    return JSONResponse(
        {"status": "ready" if is_ready else "unavailable", "components": checks}, status_code=200 if is_ready else 503
    )


async def metrics_page(request: Request) -> Response:
    """Prometheus metrics (see pocketquant/metrics.py). With ``AUTH_REQUIRED`` a key with
    the read scope is needed: Prometheus sends it with ``authorization: credentials_file``."""
    settings: Settings = request.state.guard.settings
    needed = Scope.READ if settings.auth_required else None
    try:
        await check_access(request.state.resources, request.headers.get("authorization"), needed, "metrics")
    except AccessRefusedError as exc:
        return PlainTextResponse(f"{exc}\n", exc.status, headers=exc.headers)
    metrics: ApiMetrics = request.state.metrics
    body = await metrics.render(request.state.resources.redis, wire.STATUS_KEY, settings.queue_name)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, resources: Resources | None = None, *, open_access: bool = False) -> Starlette:
    """Build the app. With ``resources`` the app borrows open clients (``pocketquant
    dev``); without, its lifespan opens and closes its own. ``open_access`` lets
    mutations run without a key (``pocketquant dev --open`` only)."""

    schema = build_schema(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with contextlib.AsyncExitStack() as stack:
            opened = resources if resources is not None else await stack.enter_async_context(open_resources(settings))
            # Cached bar pages served without a Redis round trip while generations are followed.
            await stack.enter_async_context(opened.cache.watching())
            hub = LiveHub(opened.redis)
            stack.push_async_callback(hub.close)
            fanout = FanoutRegistry(schema)
            stack.push_async_callback(fanout.close)
            guard = Guard(
                settings,
                RateLimiter(opened.redis, settings),
                CostModel(schema._schema, settings),
                open_access=open_access,
            )
            loop_watch = LoopWatch()
            loop_watch.start()
            stack.push_async_callback(loop_watch.close)
            metrics = ApiMetrics()
            metrics.watch(
                lambda: {
                    "subscribers": len(fanout.members),
                    "groups": fanout.groups,
                    "pending": hub.pending_updates + sum(len(m.queue) for m in fanout.members),
                    "dropped": hub.dropped_updates + sum(m.queue.dropped for m in fanout.members),
                    "written": dict(fanout.writes),
                    "cache": dict(opened.bars.stats),
                    "generations": {"followed": opened.cache.following, **opened.cache.stats},
                    "stall": loop_watch.recent_max(),
                }
            )
            # What exists now (modules, the schema, clients) lives as long as the
            # process: keep it out of the collector's full passes, which otherwise
            # walked all of it and stopped the loop for 60-110 ms under load.
            gc.collect()
            gc.freeze()
            yield {
                "resources": opened,
                "hub": hub,
                "fanout": fanout,
                "guard": guard,
                "loop_watch": loop_watch,
                "metrics": metrics,
            }

    graphql_app = PocketQuantGraphQL(
        schema,
        graphql_ide="graphiql" if settings.graphiql else None,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        allowed_origins=settings.cors_allowed_origins,
    )
    return Starlette(
        routes=[
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", metrics_page),
            Route("/export/bars.csv", export_csv),
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql_app),
            Route("/", chart_page),
            Mount("/static", StaticFiles(packages=[("pocketquant.api", "static")]), name="static"),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_allowed_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type"],
                max_age=600,
            ),
            Middleware(BodyLimitMiddleware, limit=settings.max_request_bytes),
            Middleware(RequestIdMiddleware),
        ],
        lifespan=lifespan,
    )
