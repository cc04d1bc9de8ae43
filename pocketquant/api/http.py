"""The GraphQL endpoint over HTTP and websockets: who is asking, and strict parsing.

Strawberry's view is kept; what it let through is refused here with a 4xx and a
specific message: bodies that are not one JSON object, undecodable or too deeply nested
JSON, a content type that is not exactly ``application/json``, oversized bodies
(:class:`BodyLimitMiddleware`), subscriptions over HTTP. Keys are read from the
``Authorization`` header, and on websockets from the ``connection_init`` payload.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import secrets
from collections.abc import MutableMapping
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from pymongo.errors import PyMongoError
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type
from strawberry.types.graphql import OperationType

from pocketquant.api.fanout import FanoutTransportWSHandler
from pocketquant.auth.keys import ANONYMOUS, InvalidApiKeyError, Principal, Scope, bearer_token
from pocketquant.graphql.context import Context
from pocketquant.graphql.errors import outage
from pocketquant.graphql.scalars import RawJSON
from pocketquant.resources import Resources

log = logging.getLogger(__name__)


class _UnreadableJSON(json.JSONDecodeError):
    """JSON that cannot be read at all: not UTF-8, or nested too deeply."""


def encode_json(data: object) -> str:
    """JSON with :class:`RawJSON` values spliced in as they are. Each is first encoded as
    a placeholder string with a per-call nonce and a NUL (which JSON escapes, so no text
    from elsewhere in the response can look like one), then replaced."""
    raws: list[str] = []
    nonce = secrets.token_hex(6)

    def placeholder(value: object) -> str:
        if isinstance(value, RawJSON):
            raws.append(value.text)
            return f"\x00{nonce}:{len(raws) - 1}"
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(data, separators=(",", ":"), default=placeholder)
    if not raws:
        return text
    parts = text.split(f'"\\u0000{nonce}:')
    out = [parts[0]]
    for part in parts[1:]:
        index, _, rest = part.partition('"')
        out.append(raws[int(index)])
        out.append(rest)
    return "".join(out)


def decode_json(data: str | bytes) -> object:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise _UnreadableJSON("the body is not valid UTF-8", "", 0) from exc
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise _UnreadableJSON("the JSON is nested too deeply", "", 0) from exc


class PocketQuantGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = FanoutTransportWSHandler

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            response = PlainTextResponse(exc.reason, status_code=exc.status_code)
            if exc.status_code == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="pocketquant"'
            log.info("refused %s %s: %d %s", scope.get("method"), scope.get("path"), exc.status_code, exc.reason)
        await response(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL from the assets shipped in the package (static/vendor), not a CDN."""
        return HTMLResponse(static_text("graphiql.html"))

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        state = request.state
        context = Context(
            resources=state.resources,
            hub=state.hub,
            settings=state.guard.settings,
            guard=state.guard,
            metrics=state.metrics,
            response=response if isinstance(response, Response) else None,
        )
        address = request.client.host if request.client else None
        try:
            principal = await authenticate(state.resources, request.headers.get("authorization"))
        except PyMongoError as exc:
            told = outage(exc)
            if told is None:
                raise
            log.warning("cannot check an API key: %s", exc)
            raise HTTPException(503, f"{told} (the API key could not be checked)") from exc
        except InvalidApiKeyError as exc:
            if isinstance(request, WebSocket):
                principal = ANONYMOUS  # refused at connection_init, the protocol's place for it
                context.connection_params["_invalid_key"] = str(exc)
            else:
                raise HTTPException(401, str(exc)) from exc
        context.identify(principal, address)
        return context

    async def on_ws_connect(self, context: Context) -> None:
        params = context.connection_params
        token = params.get("Authorization", params.get("authorization"))
        try:
            if token is not None:
                if not isinstance(token, str):
                    raise InvalidApiKeyError("`Authorization` in connection_init must be a string")
                try:
                    principal = await authenticate(context.resources, token)
                except PyMongoError as exc:
                    log.warning("cannot check an API key: %s", exc)
                    raise ConnectionRejectionError({"message": "the API key cannot be checked now; retry"}) from exc
                context.identify(principal, context.client.removeprefix("ip:"))
            elif "_invalid_key" in params:
                raise InvalidApiKeyError(str(params["_invalid_key"]))
        except InvalidApiKeyError as exc:
            log.info("websocket refused: %s", exc)
            raise ConnectionRejectionError({"message": str(exc)}) from exc
        needed = context.guard.required_scope(OperationType.QUERY) if context.guard is not None else None
        if needed is not None and not context.principal.can(needed):
            log.info("websocket refused: no API key")
            raise ConnectionRejectionError({"message": "an API key with the `read` scope is required"})

    def decode_json(self, data: str | bytes) -> object:
        return decode_json(data)

    def encode_json(self, data: object) -> str:
        return encode_json(data)

    def parse_json(self, data: str | bytes) -> Any:
        try:
            return decode_json(data)
        except _UnreadableJSON as exc:
            raise HTTPException(400, f"Unable to parse request body: {exc.msg}") from exc
        except json.JSONDecodeError as exc:
            raise HTTPException(400, "Unable to parse request body as JSON") from exc

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "GET":
            return await super().parse_http_body(request)
        content_type, _ = parse_content_type(request.content_type or "")
        if content_type != "application/json":
            raise HTTPException(415, "send the GraphQL request as JSON, with `Content-Type: application/json`")
        data = self.parse_json(await request.get_body())
        if not isinstance(data, dict):
            raise HTTPException(
                400, 'The request body must be a JSON object: {"query": ..., "variables": ..., "operationName": ...}'
            )
        fields = {"query": str, "operationName": str, "variables": dict, "extensions": dict}
        for name, kind in fields.items():
            if data.get(name) is not None and not isinstance(data[name], kind):
                expected = "a string" if kind is str else "an object"
                raise HTTPException(400, f"`{name}` must be {expected} or null")
        return GraphQLRequestData(
            query=data.get("query"),
            variables=data.get("variables"),
            operation_name=data.get("operationName"),
            extensions=data.get("extensions"),
        )


@functools.cache
def static_text(name: str) -> str:
    """A page shipped in pocketquant/api/static."""
    return (importlib.resources.files("pocketquant.api") / "static" / name).read_text(encoding="utf-8")


class AccessRefusedError(Exception):
    """An HTTP endpoint outside GraphQL refuses the request: ``status`` and the reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.headers = {"WWW-Authenticate": 'Bearer realm="pocketquant"'} if status == 401 else {}


async def check_access(resources: Resources, header: str | None, needed: Scope | None, what: str) -> Principal:
    """The principal of an ``Authorization`` header, for an endpoint outside GraphQL
    that needs ``needed`` (None: anyone). The rules GraphQL follows: a key that is
    sent must be valid even where none is needed (401); no key where one is needed is
    401, a key without the scope 403; a key that cannot be checked because MongoDB is
    down is 503 (retry), never let through."""
    try:
        principal = await authenticate(resources, header)
    except InvalidApiKeyError as exc:
        raise AccessRefusedError(401, str(exc)) from exc
    except PyMongoError as exc:
        raise AccessRefusedError(
            503, f"{outage(exc) or 'the store is unavailable'} (the API key could not be checked)"
        ) from exc
    if needed is not None and not principal.can(needed):
        if principal.scope is None:
            raise AccessRefusedError(
                401, f"{what} need an API key with the `{needed}` scope: send `Authorization: Bearer <key>`"
            )
        raise AccessRefusedError(403, f"this key has the `{principal.scope}` scope; {what} need `{needed}`")
    return principal


async def authenticate(resources: Resources, header: str | None) -> Principal:
    """The principal of an ``Authorization`` value (``Bearer <key>``; in a
    connection_init payload the bare key is accepted too)."""
    if header is None:
        return ANONYMOUS
    token = header.strip() if header.strip().startswith("pq_") else bearer_token(header)
    return await resources.keys.authenticate(token or "")


class BodyLimitMiddleware:
    """Refuse HTTP bodies over ``limit`` bytes with 413, by Content-Length or while reading."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLargeError
            return message

        async def tracking_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLargeError:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        log.info("refused %s %s: body over %d bytes", scope.get("method"), scope.get("path"), self.limit)
        response = PlainTextResponse(f"the request body is too large: at most {self.limit:,} bytes", status_code=413)
        await response(scope, receive, send)


class _TooLargeError(Exception):
    pass
