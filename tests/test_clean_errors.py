"""Malformed requests get a clear, specific refusal: a 4xx over HTTP, BAD_USER_INPUT or
InvalidInput in GraphQL, a 4400 close on a websocket. Never a 500, a masked internal
error, a dropped connection or a traceback. Each case here was seen on an earlier build."""

import asyncio
import base64
import json
import logging
from typing import Any

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from pocketquant.domain import InvalidSymbolError, SymbolKey
from tests.utils.graphql import BARS_COLUMNS, GraphQLClient
from tests.utils.live import raw_subscriber


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        pytest.param(b'"x"', "application/json", 400, "must be a JSON object", id="json-string"),
        pytest.param(b"5", "application/json", 400, "must be a JSON object", id="json-number"),
        pytest.param(b"null", "application/json", 400, "must be a JSON object", id="json-null"),
        pytest.param(b"\xff\xfe{", "application/json", 400, "not valid UTF-8", id="undecodable"),
        pytest.param(b"[" * 20_000 + b"]" * 20_000, "application/json", 400, "nested too deeply", id="deep-json"),
        pytest.param(b'{"query": "{ __typename }"}', "application/jsonx", 415, "application/json", id="jsonx"),
        pytest.param(b'{"query": "{ __typename }"}', "text/plain", 415, "application/json", id="text-plain"),
        pytest.param(b"{", "application/json", 400, "JSON", id="truncated-json"),
    ],
)
async def test_malformed_http_bodies_get_a_4xx(
    api_url: str, body: bytes, content_type: str, status: int, message: str | None
) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        response = await http.post("/graphql", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    if message:
        assert message in response.text


async def test_a_json_body_that_is_a_batch_is_refused(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        response = await http.post("/graphql", json=[{"query": "{ __typename }"}])
    assert response.status_code == 400
    assert "must be a JSON object" in response.text


async def test_an_oversized_body_gets_413(api_url: str) -> None:
    query = "{ __typename }" + " " * 200_000
    async with httpx.AsyncClient(base_url=api_url) as http:
        response = await http.post("/graphql", json={"query": query})
        assert response.status_code == 413
        assert "at most" in response.text
        # Without a Content-Length (chunked), the limit holds while reading.

        async def chunks() -> Any:
            for _ in range(50):
                yield b" " * 10_000

        response = await http.post("/graphql", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_subscription_over_http_gets_400(api_url: str, method: str) -> None:
    document = 'subscription { liveQuotes(tickers: ["NASDAQ:AAPL"]) { price } }'
    async with httpx.AsyncClient(base_url=api_url) as http:
        if method == "GET":
            response = await http.get("/graphql", params={"query": document})
        else:
            response = await http.post("/graphql", json={"query": document})
    assert response.status_code == 400, response.text
    assert "subscription" in response.text.lower()
    assert "websocket" in response.text.lower()


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param(_cursor("bars:v1:asc:١٢٣"), id="arabic-indic-digits"),
        pytest.param(_cursor("bars:v1:asc:" + "9" * 30), id="beyond-int64"),
        pytest.param(_cursor("bars:v1:asc:-" + "9" * 25), id="beyond-int64-negative"),
        pytest.param(base64.urlsafe_b64encode(b"bars:v1:asc:\xff").decode(), id="not-utf8"),
        pytest.param("A" * 500, id="long"),
    ],
)
async def test_bad_cursors_are_bad_user_input(gql: GraphQLClient, cursor: str) -> None:
    variables = {"exchange": "NASDAQ", "symbol": "AAPL", "interval": "DAY_1", "after": cursor}
    errors = await gql.errors(BARS_COLUMNS, variables)
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
    assert "malformed cursor" in errors[0]["message"]


async def test_bad_tracked_symbols_cursor_is_bad_user_input(gql: GraphQLClient) -> None:
    errors = await gql.errors("query($a: String) { trackedSymbols(after: $a) { hasNextPage } }", {"a": "x" * 500})
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}


async def test_deeply_nested_ticker_is_invalid_input(gql: GraphQLClient) -> None:
    mutation = (
        "mutation($t: [String!]!) { watchSymbols(tickers: $t) { __typename ... on InvalidInput { message field } } }"
    )
    nested = "=" + "[" * 499 + "]" * 499  # within the input string limit
    result = (await gql.data(mutation, {"t": [nested]}))["watchSymbols"]
    assert result["__typename"] == "InvalidInput", result
    assert result["field"] == "tickers"
    assert len(result["message"]) < 200  # refused, not echoed
    deeper = "=" + "[" * 5_000 + "]" * 5_000  # past it: refused before anything parses it
    errors = await gql.errors(mutation, {"t": [deeper]})
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "at most 1,000" in errors[0]["message"]


def test_a_ticker_nested_past_the_recursion_limit_is_invalid() -> None:
    with pytest.raises(InvalidSymbolError, match="at most 256 characters"):
        SymbolKey.from_ticker("=" + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidSymbolError, match="malformed ticker"):
        SymbolKey.from_ticker("=" + "[" * 127 + "]" * 127)


@pytest.mark.parametrize(("exchange", "symbol"), [("NASDAQ", "ıBM"), ("NASDAQ", "STRAßE"), ("ＮＡＳＤＡＱ", "AAPL")])
def test_unicode_names_are_refused_not_folded_to_ascii(exchange: str, symbol: str) -> None:
    with pytest.raises(InvalidSymbolError, match="ASCII"):
        SymbolKey.parse(exchange, symbol)


async def test_unicode_symbol_through_the_api_is_refused(gql: GraphQLClient) -> None:
    errors = await gql.errors('{ bars(exchange: "NASDAQ", symbol: "ıBM", interval: DAY_1) { count } }')
    assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "symbol"}


async def test_long_inputs_are_refused_not_echoed(gql: GraphQLClient) -> None:
    long = "A" * 5_000
    errors = await gql.errors(
        'query($s: String!) { bars(exchange: "NASDAQ", symbol: $s, interval: DAY_1) { count } }', {"s": long}
    )
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert long not in json.dumps(errors)


async def _ws(api_url: str) -> Any:
    ws = await websockets.connect(
        api_url.replace("http", "ws") + "/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
    )
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("[]", id="array"),
        pytest.param('"x"', id="string"),
        pytest.param("null", id="null"),
        pytest.param("5", id="number"),
        pytest.param('{"type": 5}', id="type-not-a-string"),
        pytest.param('{"id": "1", "type": "subscribe", "payload": "x"}', id="payload-not-an-object"),
        pytest.param('{"id": "1", "type": "subscribe", "payload": null}', id="payload-null"),
        pytest.param('{"id": 1, "type": "subscribe", "payload": {"query": "{ __typename }"}}', id="id-not-a-string"),
        pytest.param('{"type": "subscribe", "payload": {"query": "{ __typename }"}}', id="no-id"),
        pytest.param(
            json.dumps({"id": "x" * 10_000, "type": "subscribe", "payload": {"query": "{ __typename }"}}),
            id="id-too-long",
        ),
        pytest.param('{"id": "1", "type": "complete", "extra": ' + "[" * 20_000 + "]" * 20_000 + "}", id="deep-json"),
    ],
)
async def test_malformed_websocket_messages_close_with_4400(
    api_url: str, frame: str, caplog: pytest.LogCaptureFixture
) -> None:
    ws = await _ws(api_url)
    with caplog.at_level(logging.INFO):
        await ws.send(frame)
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        await asyncio.sleep(0.05)
    assert ws.close_code == 4400, (ws.close_code, ws.close_reason)
    assert ws.close_reason
    assert "x" * 200 not in ws.close_reason  # refused, not echoed
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


async def test_a_non_string_query_gets_an_error_and_frees_its_slot(api_url: str, gql: GraphQLClient) -> None:
    await gql.data('mutation { watchSymbols(tickers: ["NASDAQ:AAPL"]) { __typename } }')
    ws = await _ws(api_url)
    try:
        for i in range(120):  # past every per-connection limit (Strawberry's own is 100)
            await ws.send(json.dumps({"id": f"bad{i}", "type": "subscribe", "payload": {"query": {"not": "a string"}}}))
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert (message["type"], message["id"]) == ("error", f"bad{i}"), message
            assert "query" in message["payload"][0]["message"]
        await ws.send(json.dumps({"id": "good", "type": "subscribe", "payload": {"query": "{ watchedSymbols }"}}))
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert message == {"id": "good", "type": "next", "payload": {"data": {"watchedSymbols": ["NASDAQ:AAPL"]}}}
    finally:
        await ws.close()


async def test_a_websocket_subscription_with_valid_messages_still_works(api_url: str, gql: GraphQLClient) -> None:
    ws = await raw_subscriber(api_url.replace("http", "ws") + "/graphql", "q", "query { watchedSymbols }", {})
    try:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert message == {"id": "q", "type": "next", "payload": {"data": {"watchedSymbols": []}}}
    finally:
        await ws.close()


async def test_client_errors_are_logged_in_one_line_without_traceback(
    gql: GraphQLClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        await gql.errors('{ bars(exchange: "NAS;DAQ", symbol: "AAPL", interval: DAY_1) { count } }')
        await gql.errors("{ nope }")
    records = [r for r in caplog.records if "NAS;DAQ" in r.getMessage() or "nope" in r.getMessage()]
    assert records, caplog.text
    for record in records:
        assert record.levelno < logging.ERROR, record.getMessage()
        assert record.exc_info is None
        assert "\n" not in record.getMessage()
