"""Helpers to talk GraphQL over HTTP, as a client would."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def raw(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post("/graphql", json={"query": query, "variables": variables or {}})
        assert response.status_code in (200, 400), response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``data`` of a response that must have no errors."""
        body = await self.raw(query, variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def errors(self, query: str, variables: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The ``errors`` of a response that must have some."""
        body = await self.raw(query, variables)
        assert body.get("errors"), f"expected errors, got {body}"
        errors: list[dict[str, Any]] = body["errors"]
        return errors

    async def wait_for_job(self, job_id: str, within: float = 30.0) -> dict[str, Any]:
        """Poll ``syncJob`` until the job is complete; return it."""
        query = """query($id: ID!) { syncJob(id: $id) { id state attempt result {
            ok error errorKind attempts barsFetched barsInserted barsUpdated barsUnchanged chunksWritten
            barCount firstBar lastBar } } }"""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            job = (await self.data(query, {"id": job_id}))["syncJob"]
            if job is not None and job["state"] == "COMPLETE":
                return dict(job)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} did not complete in {within}s: {job}")
            await asyncio.sleep(0.05)


SYNC_SYMBOL = """
mutation($input: SyncSymbolInput!) {
  syncSymbol(input: $input) {
    __typename
    ... on SyncEnqueued { jobId deduplicated exchange symbol interval }
    ... on InvalidInput { message field }
  }
}"""

BARS_COLUMNS = """
query($exchange: String!, $symbol: String!, $interval: Interval!, $first: Int, $after: String,
      $from: DateTime, $to: DateTime, $order: BarOrder! = OLDEST_FIRST) {
  bars(exchange: $exchange, symbol: $symbol, interval: $interval, first: $first, after: $after,
       from: $from, to: $to, order: $order) {
    count hasNextPage endCursor
    columns { t o h l c v }
  }
}"""

BARS_OBJECTS = """
query($exchange: String!, $symbol: String!, $interval: Interval!, $first: Int, $after: String) {
  bars(exchange: $exchange, symbol: $symbol, interval: $interval, first: $first, after: $after) {
    count hasNextPage endCursor
    bars { time timestamp open high low close volume }
  }
}"""
