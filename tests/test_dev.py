"""`pocketquant dev --simulate`, the README's first command, as a user meets it: one
subprocess with embedded MongoDB and Redis and the local TradingView, used over HTTP and
a websocket, and the services it prints shared with `pocketquant api` and `sync`."""

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from pocketquant.infra.embedded import free_port
from tests.utils.graphql import GraphQLClient
from tests.utils.live import raw_subscriber, until

CLI = Path(sys.executable).parent / "pocketquant"
EXPORT = re.compile(r"^\s*export (\w+)='([^']*)'\s*$")


@contextlib.asynccontextmanager
async def dev(tmp_path: Path, port: int) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str], list[str]]]:
    """Start `pocketquant dev --simulate`; yield it with the exports it printed."""
    env = {k: v for k, v in os.environ.items() if k not in {"MONGODB_URL", "REDIS_URL"}}
    env |= {"DATA_DIR": str(tmp_path), "COLUMNS": "60"}  # a narrow terminal must not break the lines
    proc = await asyncio.create_subprocess_exec(
        str(CLI), "dev", "--simulate", "--port", str(port), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    exports: dict[str, str] = {}
    try:
        async with asyncio.timeout(60):
            while "Application startup complete" not in (lines[-1] if lines else ""):
                line = (await proc.stdout.readline()).decode()
                assert line, "dev exited:\n" + "".join(lines)
                lines.append(line)
                if match := EXPORT.match(line):
                    exports[match[1]] = match[2]
        yield proc, exports, lines
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(30):
                    rest = await proc.stdout.read()
                    await proc.wait()
                lines.append(rest.decode())
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def two_live_quotes(port: int) -> None:
    """Subscribe to live quotes of NASDAQ:AAPL and get the snapshot and an update."""
    query = 'subscription { liveQuotes(tickers: ["NASDAQ:AAPL"]) { ticker price } }'
    ws = await raw_subscriber(f"ws://127.0.0.1:{port}/graphql", "q", query, {})
    try:
        for _ in range(2):
            message = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert message["payload"]["data"]["liveQuotes"]["ticker"] == "NASDAQ:AAPL", message
    finally:
        await ws.close()


async def test_the_offline_demo_syncs_streams_and_shares_its_services(tmp_path: Path) -> None:
    port = free_port()
    async with dev(tmp_path, port) as (proc, exports, lines):
        # Whole lines to copy: each variable with its own `export`.
        assert set(exports) == {"MONGODB_URL", "REDIS_URL", "TRADINGVIEW_WEBSOCKET_URL"}, lines
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert (await http.get("/ready")).status_code == 200
            gql = GraphQLClient(http)
            sync = 'mutation { syncSymbol(input: {exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, bars: 50}) { __typename ... on SyncEnqueued { jobId } } }'
            await gql.wait_for_job((await gql.data(sync))["syncSymbol"]["jobId"])  # its own worker runs it
            bars = '{ bars(exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, first: 100) { count } }'
            assert (await gql.data(bars))["bars"]["count"] == 50

            # Its stream streams what is watched, from the simulator's ticks.
            await gql.data('mutation { watchSymbols(tickers: ["NASDAQ:AAPL"]) { __typename } }')
            await two_live_quotes(port)

        # Other commands, with the printed exports, work on the same services: another
        # API process relays the same stream (`pocketquant api`, as in docker-compose.yml),
        api_port = free_port()
        api = await asyncio.create_subprocess_exec(
            str(CLI), "api", env=os.environ | exports | {"PORT": str(api_port)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as http:

                async def ready() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        return (await http.get("/ready")).status_code == 200
                    return False

                await until(ready, within=30)
                await two_live_quotes(api_port)
                written = (await http.get("/health")).json()["live"]["updates_written"]
                assert written["prepared_frame"] > 0, written  # the production server's fast path
        finally:
            api.send_signal(signal.SIGINT)
            api_out, _ = await asyncio.wait_for(api.communicate(), 30)
        assert "Traceback" not in api_out.decode(), api_out.decode()
        # and a sync from the command line.
        other = await asyncio.create_subprocess_exec(
            str(CLI), "sync", "NASDAQ:AAPL", "-i", "1h", "--bars", "10",
            env=os.environ | exports,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(other.communicate(), 60)
        assert other.returncode == 0, out.decode()
        assert "✓ NASDAQ:AAPL@1h: 10 fetched, 10 new" in out.decode()
    assert proc.returncode in (0, -signal.SIGINT), "".join(lines)
    assert "Traceback" not in "".join(lines), "".join(lines)
