"""Generated GraphQL operations against the running app (hypothesis-graphql): valid
queries and mutations with arbitrary argument values, and invalid documents. None may
get a 5xx or a masked internal error: every refusal must say what was wrong."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import graphql
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema

from pocketquant.api.schema import schema_sdl

SDL = schema_sdl()
SCALARS: dict[str, st.SearchStrategy[graphql.ValueNode]] = {
    "DateTime": st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: graphql.StringValueNode(value=d.isoformat())),
    "EpochSeconds": st.integers(-(2**31), 2**31 - 1).map(lambda n: graphql.IntValueNode(value=str(n))),
    "FloatArray": st.just(graphql.ListValueNode(values=())),
    "EpochSecondsArray": st.just(graphql.ListValueNode(values=())),
}
ALLOWED_STATUS = {200, 400, 401, 403, 413, 415, 429}


def _fuzz(api_url: str, key: str, mode: Mode, examples: int) -> dict[str, int]:
    """Run ``examples`` generated operations (in a thread: hypothesis is synchronous)."""
    seen = {"operations": 0, "refused": 0}
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        @given(document=from_schema(SDL, custom_scalars=SCALARS, mode=mode))
        def run(document: Any) -> None:
            response = http.post("/graphql", json={"query": str(document)})
            seen["operations"] += 1
            assert response.status_code in ALLOWED_STATUS, (response.status_code, str(document), response.text)
            assert "Internal server error" not in response.text, (str(document), response.text)
            if response.status_code != 200 or "errors" in response.json():
                seen["refused"] += 1

        run()
    return seen


async def test_generated_operations_never_fail_internally(api_url: str, admin_key: str) -> None:
    valid = await asyncio.to_thread(_fuzz, api_url, admin_key, Mode.POSITIVE, 800)
    invalid = await asyncio.to_thread(_fuzz, api_url, admin_key, Mode.NEGATIVE, 300)
    assert valid["operations"] + invalid["operations"] >= 1_000
    assert invalid["refused"] == invalid["operations"]  # an invalid document is always refused, with a reason
