"""Exports as users run them: `GET /export/bars.csv` over HTTP, and `pocketquant export`
as a process writing CSV and Parquet files."""

import asyncio
import csv
import io
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow.parquet as pq
from arq.worker import Worker

from pocketquant.api.app import create_app
from pocketquant.api.serving import serve
from pocketquant.auth.keys import Scope
from pocketquant.domain import Bar, Interval, SymbolKey
from pocketquant.resources import Resources
from pocketquant.settings import Settings
from pocketquant.simulator import TradingViewSimulator
from tests.utils.graphql import GraphQLClient

CLI = Path(sys.executable).parent / "pocketquant"
AAPL = SymbolKey("NASDAQ", "AAPL")


async def _synced(gql: GraphQLClient, interval: str, bars: int) -> None:
    sync = f'mutation {{ syncSymbol(input: {{exchange: "NASDAQ", symbol: "AAPL", interval: {interval}, bars: {bars}}}) {{ ... on SyncEnqueued {{ jobId }} }} }}'
    assert (await gql.wait_for_job((await gql.data(sync))["syncSymbol"]["jobId"]))["result"]["ok"]


def _rows(text: str) -> list[Bar]:
    reader = csv.reader(io.StringIO(text))
    assert next(reader) == ["time", "open", "high", "low", "close", "volume"]
    return [Bar(int(datetime.fromisoformat(r[0]).timestamp()), *map(float, r[1:])) for r in reader]


def _served(simulator: TradingViewSimulator, interval: Interval, n: int) -> list[Bar]:
    instrument = simulator.market.get(AAPL)
    assert instrument is not None
    return simulator.market.history(instrument, interval, n, int(simulator.clock()))


async def test_csv_over_http_with_auth_limits_and_resampling(
    settings: Settings, resources: Resources, gql: GraphQLClient, worker: Worker, simulator: TradingViewSimulator
) -> None:
    await _synced(gql, "HOUR_1", 300)
    guarded = settings.model_copy(update={"auth_required": True})
    _, reader_key = await resources.keys.create("reader", Scope.READ)
    async with serve(create_app(guarded, resources)) as url, httpx.AsyncClient(base_url=url) as http:
        path = "/export/bars.csv?symbol=NASDAQ:AAPL&interval=1h"
        anonymous = await http.get(path)
        assert anonymous.status_code == 401
        assert "read" in anonymous.text
        assert (await http.get(path, headers={"Authorization": "Bearer pq_nonsense"})).status_code == 401
        auth = {"Authorization": f"Bearer {reader_key}"}
        answer = await http.get(path, headers=auth)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        assert 'filename="NASDAQ_AAPL_1h.csv"' in answer.headers["content-disposition"]
        assert _rows(answer.text) == _served(simulator, Interval.HOUR_1, 300)
        # A range, and an interval that is not stored: resampled from 1h by the sessions.
        served_4h = _served(simulator, Interval.HOUR_4, 60)
        since = served_4h[-20].time
        window = {"symbol": "NASDAQ:AAPL", "interval": "4h", "from": datetime.fromtimestamp(since, UTC).isoformat()}
        ranged = await http.get("/export/bars.csv", params=window, headers=auth)
        assert _rows(ranged.text) == served_4h[-20:]
        for bad, message in [
            ("?interval=1h", "give `symbol`"),
            ("?symbol=AAPL", "EXCHANGE:SYMBOL"),
            ("?symbol=NASDAQ:AAPL&interval=7m", "unknown interval"),
            ("?symbol=NASDAQ:AAPL&from=yesterday", "`from` is not an ISO 8601 time"),
            ("?symbol=NASDAQ:AAPL&from=2026-11-20&to=2026-11-19", "`to` is before `from`"),
            ("?symbol=" + "X" * 2_000, "at most 1000"),
        ]:
            refused = await http.get("/export/bars.csv" + bad, headers=auth)
            assert refused.status_code == 400, bad
            assert message in refused.text, (bad, refused.text)


async def test_the_export_command_writes_csv_and_parquet(
    settings: Settings, gql: GraphQLClient, worker: Worker, simulator: TradingViewSimulator, tmp_path: Path
) -> None:
    await _synced(gql, "MINUTE_1", 5_000)
    env = os.environ | {
        "MONGODB_URL": settings.required_mongodb_url(),
        "MONGODB_DATABASE": settings.mongodb_database,
        "REDIS_URL": settings.required_redis_url(),
        "DATA_DIR": str(tmp_path),
        "COLUMNS": "120",
    }
    expected = _served(simulator, Interval.MINUTE_1, 5_000)
    for name in ("bars.csv", "bars.parquet"):
        out = tmp_path / name
        proc = await asyncio.create_subprocess_exec(
            str(CLI), "export", "NASDAQ:AAPL", "-i", "1m", "-o", str(out), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        text = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
        assert proc.returncode == 0, text
        assert "5000 1m bars of NASDAQ:AAPL written" in text
        if name.endswith(".csv"):
            assert _rows(out.read_text()) == expected
        else:
            table = pq.read_table(out).to_pydict()
            assert [int(t.timestamp()) for t in table["time"]] == [b.time for b in expected]
            assert table["close"] == [b.close for b in expected]
            assert table["volume"] == [b.volume for b in expected]
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]
    # Bad input: a clear message, no file.
    proc = await asyncio.create_subprocess_exec(
        str(CLI), "export", "NASDAQ:AAPL", "-o", str(tmp_path / "x.txt"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    text = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
    assert proc.returncode == 2
    assert "--format csv|parquet" in text
    assert not (tmp_path / "x.txt").exists()
