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
import pytest
import websockets

from pocketquant.infra import devfiles
from pocketquant.infra.embedded import free_port
from tests.utils.graphql import GraphQLClient
from tests.utils.live import raw_subscriber, until

CLI = Path(sys.executable).parent / "pocketquant"
SHOWN = re.compile(r"^\s{2}(\w+)=(\S+)\s*$")


@contextlib.asynccontextmanager
async def dev(
    tmp_path: Path, port: int, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str], list[str]]]:
    """Start `pocketquant dev --simulate`; yield it with the values it recorded in
    DATA_DIR/dev.env (checked against the lines it printed)."""
    env = {k: v for k, v in os.environ.items() if k not in {"MONGODB_URL", "REDIS_URL"}} | (env or {})
    env |= {"DATA_DIR": str(tmp_path), "COLUMNS": "60"}  # a narrow terminal must not break the lines
    proc = await asyncio.create_subprocess_exec(
        str(CLI), "dev", "--simulate", "--port", str(port), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    shown: dict[str, str] = {}
    try:
        async with asyncio.timeout(60):
            while "Application startup complete" not in (lines[-1] if lines else ""):
                line = (await proc.stdout.readline()).decode()
                assert line, "dev exited:\n" + "".join(lines)
                lines.append(line)
                if match := SHOWN.match(line):
                    shown[match[1]] = match[2]
        recorded = devfiles.read_env(tmp_path)
        assert oct((tmp_path / "dev.env").stat().st_mode & 0o777) == "0o600"
        assert set(shown) == set(recorded), lines
        for name, value in shown.items():  # each printed whole, passwords masked
            assert value == devfiles.mask_url(recorded[name]), lines
        yield proc, recorded, lines
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


def dev_key(tmp_path: Path) -> str:
    path = tmp_path / "dev-api-key"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return path.read_text().strip()


async def two_live_quotes(port: int, key: str | None = None) -> None:
    """Subscribe to live quotes of BINANCE:BTCUSDT (it trades around the clock, stocks
    only in their sessions) and get the snapshot and an update."""
    query = 'subscription { liveQuotes(tickers: ["BINANCE:BTCUSDT"]) { ticker price } }'
    ws = await raw_subscriber(f"ws://127.0.0.1:{port}/graphql", "q", query, {}, key=key)
    try:
        for _ in range(2):
            message = json.loads(await asyncio.wait_for(ws.recv(), 20))
            assert message["payload"]["data"]["liveQuotes"]["ticker"] == "BINANCE:BTCUSDT", message
    finally:
        await ws.close()


async def test_the_offline_demo_syncs_streams_and_shares_its_services(tmp_path: Path) -> None:
    port = free_port()
    async with dev(tmp_path, port) as (proc, exports, lines):
        # Every URL another process needs, recorded for it in DATA_DIR/dev.env.
        assert set(exports) == {
            "MONGODB_URL", "MONGODB_DATABASE", "REDIS_URL", "TRADINGVIEW_WEBSOCKET_URL", "TRADINGVIEW_SEARCH_URL",
        }, lines  # fmt: skip
        assert f"admin key of this instance is in {tmp_path / 'dev-api-key'}" in "".join(lines).replace("\n", "")
        headers = {"Authorization": f"Bearer {dev_key(tmp_path)}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as anonymous:
            assert (await anonymous.get("/ready")).status_code == 200
            refused = await anonymous.post(
                "/graphql", json={"query": "mutation { watchSymbols(tickers: []) { __typename } }"}
            )
            assert refused.status_code == 401  # mutations need the key, even in dev
            assert (await anonymous.get("/graphql", headers={"Accept": "text/html"})).status_code == 200  # GraphiQL
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as http:
            gql = GraphQLClient(http)
            sync = 'mutation { syncSymbol(input: {exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, bars: 50}) { __typename ... on SyncEnqueued { jobId } } }'
            await gql.wait_for_job((await gql.data(sync))["syncSymbol"]["jobId"])  # its own worker runs it
            bars = '{ bars(exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, first: 100) { count } }'
            assert (await gql.data(bars))["bars"]["count"] == 50

            # Its stream streams what is watched, from the simulator's ticks.
            await gql.data('mutation { watchSymbols(tickers: ["BINANCE:BTCUSDT"]) { __typename } }')
            await two_live_quotes(port)

        # Other commands, with the recorded values, work on the same services: another
        # API process relays the same stream (`pocketquant api`, as in docker-compose.yml,
        # where reads need a key),
        api_port = free_port()
        api = await asyncio.create_subprocess_exec(
            str(CLI), "api", env=os.environ | exports | {"PORT": str(api_port), "LOG_FORMAT": "json"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as http:

                async def ready() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        return (await http.get("/ready")).status_code == 200
                    return False

                await until(ready, within=30)
                with pytest.raises(websockets.ConnectionClosed) as refused_ws:
                    await two_live_quotes(api_port)
                assert refused_ws.value.rcvd is not None
                assert refused_ws.value.rcvd.code == 4403
                await two_live_quotes(api_port, key=dev_key(tmp_path))
                written = (await http.get("/health")).json()["live"]["updates_written"]
                assert written["prepared_frame"] > 0, written  # the production server's fast path
        finally:
            api.send_signal(signal.SIGINT)
            api_out, _ = await asyncio.wait_for(api.communicate(), 30)
        assert "Traceback" not in api_out.decode(), api_out.decode()
        # LOG_FORMAT=json: one JSON object per line, a request's lines with its id.
        events = [json.loads(line) for line in api_out.decode().splitlines() if line.startswith("{")]
        refusals = [e for e in events if e["message"] == "websocket refused: no API key"]
        assert refusals, api_out.decode()
        assert len(refusals[0]["request_id"]) == 16
        # and a sync from the command line.
        other = await asyncio.create_subprocess_exec(
            str(CLI), "sync", "NASDAQ:AAPL", "-i", "1h", "--bars", "10",
            env=os.environ | exports,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(other.communicate(), 60)
        assert other.returncode == 0, out.decode()
        assert "✓ NASDAQ:AAPL@1h: 10 fetched, 10 new" in out.decode()
        # Without the exports, beside a running dev on the same DATA_DIR, a command uses
        # dev's services (it used to start embedded ones of its own, and dev kept serving
        # a stale cache), and says so.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            # 5m: nothing stored it could be resampled from either (1h is longer).
            five_minutes = '{ bars(exchange: "NASDAQ", symbol: "AAPL", interval: MINUTE_5) { count } }'
            assert (await GraphQLClient(http).data(five_minutes))["bars"]["count"] == 0  # cached as empty now
            bare = {k: v for k, v in os.environ.items() if k not in {"MONGODB_URL", "REDIS_URL"}}
            beside = await asyncio.create_subprocess_exec(
                str(CLI), "sync", "NASDAQ:AAPL", "-i", "5m", "--bars", "7",
                env=bare | {"DATA_DIR": str(tmp_path), "TRADINGVIEW_WEBSOCKET_URL": exports["TRADINGVIEW_WEBSOCKET_URL"]},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(beside.communicate(), 60)
            assert beside.returncode == 0, out.decode()
            assert "using the services of `pocketquant dev`" in out.decode()
            assert (await GraphQLClient(http).data(five_minutes))["bars"]["count"] == 7  # the cache was invalidated
    assert proc.returncode in (0, -signal.SIGINT), "".join(lines)
    assert "SIGUSR1" not in "".join(lines)  # arq's misleading line after a SIGINT
    assert "worker stopped:" in "".join(lines)
    assert not (tmp_path / "dev.env").exists()  # a stopped dev leaves no stale URLs behind
    assert "Traceback" not in "".join(lines), "".join(lines)


async def test_dev_waits_out_a_redis_outage(tmp_path: Path) -> None:
    from pocketquant.infra.embedded import RedisServerProcess

    redis = RedisServerProcess(tmp_path / "redis")
    await redis.start()
    port = free_port()
    try:
        async with dev(tmp_path, port, env={"REDIS_URL": redis.url}) as (proc, _, lines):
            headers = {"Authorization": f"Bearer {dev_key(tmp_path)}"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as http:
                assert (await http.get("/ready")).status_code == 200
                await redis.stop()  # Redis goes away for a few seconds ...
                during = await http.get("/ready")
                assert during.status_code == 503  # not ready meanwhile
                assert during.json()["components"]["redis"]["ok"] is False
                await asyncio.sleep(2)
                assert proc.returncode is None, "".join(lines)  # ... and dev is still there
                await redis.start()  # ... and is back (empty: no AOF here)

                async def ready() -> bool:
                    return (await http.get("/ready")).status_code == 200

                await until(ready, within=30)
                # Its worker came back too: a sync is consumed.
                gql = GraphQLClient(http)
                sync = 'mutation { syncSymbol(input: {exchange: "NASDAQ", symbol: "AAPL", interval: DAY_1, bars: 5}) { ... on SyncEnqueued { jobId } } }'
                job = await gql.wait_for_job((await gql.data(sync))["syncSymbol"]["jobId"], within=60)
                assert job["result"]["ok"] is True
            assert proc.returncode is None
    finally:
        await redis.stop()
    text = "".join(lines)
    assert "worker lost Redis" in text, text
    assert "Traceback" not in text, text


async def test_dev_open_mode_is_announced_and_lets_mutations_through(tmp_path: Path) -> None:
    port = free_port()
    async with dev(tmp_path, port, "--open") as (_, _, lines):
        assert "OPEN MODE: anyone who can reach this port can run every mutation" in "".join(lines).replace("\n", " ")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            result = await GraphQLClient(http).data(
                'mutation { watchSymbols(tickers: ["BINANCE:BTCUSDT"]) { __typename } }'
            )
            assert result == {"watchSymbols": {"__typename": "WatchlistChanged"}}
