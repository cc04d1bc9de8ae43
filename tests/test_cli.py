"""The `pocketquant` command as an operator runs it: a real subprocess."""

import asyncio
import os
import sys
from pathlib import Path

from pocketquant.history.documents import SyncStatus
from pocketquant.resources import Resources
from pocketquant.settings import Settings

CLI = Path(sys.executable).parent / "pocketquant"


async def run(settings: Settings, *args: str) -> tuple[int, str]:
    env = os.environ | {
        "MONGODB_URL": settings.required_mongodb_url(),
        "MONGODB_DATABASE": settings.mongodb_database,
        "REDIS_URL": settings.required_redis_url(),
        "TRADINGVIEW_WEBSOCKET_URL": settings.tradingview_websocket_url,
        "TRADINGVIEW_SEARCH_URL": settings.tradingview_search_url,
    }
    proc = await asyncio.create_subprocess_exec(
        str(CLI), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_sync_command_stores_bars_and_reports_failures(settings: Settings, resources: Resources) -> None:
    code, out = await run(settings, "sync", "NASDAQ:AAPL", "nasdaq:nope", "-i", "1d", "-i", "1h", "--bars", "20")
    assert code == 1, out  # one symbol failed
    assert out.count("NASDAQ:AAPL@1d: 20 fetched, 20 new") == 1  # printed once, not logged too
    assert "✓ NASDAQ:AAPL@1h: 20 fetched, 20 new" in out
    assert "✗ NASDAQ:NOPE@1d: TradingView does not know NASDAQ:NOPE" in out
    statuses = {(s.symbol, s.interval): (s.state, s.bar_count) for s in await SyncStatus.find_all().to_list()}
    assert statuses[("AAPL", "1d")] == ("succeeded", 20)
    assert statuses[("NOPE", "1h")] == ("failed", 0)

    code, out = await run(settings, "sync", "NASDAQ:AAPL", "-i", "1d", "--bars", "20")
    assert code == 0, out
    assert "0 new, 0 updated, 0 chunks written, 20 stored" in out


async def test_sync_command_rejects_bad_arguments(settings: Settings) -> None:
    code, out = await run(settings, "sync", "AAPL")
    assert code == 2
    assert "expected EXCHANGE:SYMBOL" in out
    code, out = await run(settings, "sync", "NASDAQ:AAPL", "-i", "2m")
    assert code == 2
    assert "unknown interval '2m'" in out


def test_help_is_readable() -> None:
    from typer.testing import CliRunner

    from pocketquant.cli import app

    runner = CliRunner()
    for command, expected in [
        (["sync", "--help"], ["-i, --interval INTERVAL", "--bars N", "--simulate / --no-simulate"]),
        (["export", "--help"], ["-o, --output FILE", "--from TIME", "-f, --format <csv|parquet>"]),
        (["simulator", "--help"], ["--fault EXCHANGE:SYMBOL=FAULT", "--stall SECONDS"]),
    ]:
        result = runner.invoke(app, command, env={"COLUMNS": "120"})
        assert result.exit_code == 0, result.output
        for text in expected:
            assert text in result.output, (command, result.output)
        assert "<bool>" not in result.output
        assert "<list[str]>" not in result.output.split("Options:")[1]
