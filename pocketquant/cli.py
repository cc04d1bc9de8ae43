"""The `pocketquant` command."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pocketquant.domain import Interval, InvalidSymbolError, SeriesKey, SymbolKey
from pocketquant.settings import Settings

app = typer.Typer(help="PocketQuant: TradingView market data in MongoDB, served through GraphQL.", no_args_is_help=True)
console = Console(stderr=True)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # tvdatafeed logs every error it swallows; we report them ourselves, once.
    logging.getLogger("tvDatafeed").setLevel(logging.CRITICAL)
    logging.getLogger("websockets").setLevel(logging.WARNING)


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


@contextlib.asynccontextmanager
async def _embedded(settings: Settings, simulate: bool) -> AsyncIterator[Settings]:
    """Fill in what the environment left unset with embedded services."""
    from pocketquant.infra.embedded import embedded_mongodb, embedded_redis
    from pocketquant.simulator import TradingViewSimulator

    updates: dict[str, object] = {}
    async with contextlib.AsyncExitStack() as stack:
        if not settings.mongodb_url:
            path = settings.data_dir.resolve() / "pocketquant.sqlite3"
            updates["mongodb_url"] = await stack.enter_async_context(embedded_mongodb(path))
        if not settings.redis_url:
            updates["redis_url"] = await stack.enter_async_context(embedded_redis())
        if simulate:
            sim = await stack.enter_async_context(TradingViewSimulator())
            sim.start_auto_ticks()
            updates["tradingview_websocket_url"] = sim.websocket_url
            updates["tradingview_search_url"] = sim.search_url
        yield settings.model_copy(update=updates)


@app.command()
def dev(
    simulate: Annotated[bool, typer.Option(help="Serve TradingView from the local simulator (offline demo).")] = False,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    verbose: Verbose = False,
) -> None:
    """API + worker + stream in one process, on embedded MongoDB and Redis unless MONGODB_URL / REDIS_URL are set."""
    _logging(verbose)
    settings = Settings()
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": settings.port if port is None else port}
    )
    asyncio.run(_dev(settings, simulate))


async def _dev(settings: Settings, simulate: bool) -> None:
    from pocketquant.api.app import create_app
    from pocketquant.api.serving import uvicorn_options
    from pocketquant.realtime.stream import run_stream
    from pocketquant.resources import open_resources
    from pocketquant.worker import build_worker, stop_worker

    async with _embedded(settings, simulate) as settings, open_resources(settings) as resources:
        worker = build_worker(settings, resources=resources, handle_signals=False)
        worker_task = asyncio.create_task(worker.async_run(), name="arq-worker")
        stream_task = asyncio.create_task(run_stream(resources, instance=_instance_name()), name="stream")
        config = uvicorn.Config(
            create_app(settings, resources),
            host=settings.host,
            port=settings.port,
            **uvicorn_options(),
        )
        server = uvicorn.Server(config)

        def stop_if_failed(task: asyncio.Task[None]) -> None:
            # A dead worker or stream must not leave a half-working service behind.
            if not task.cancelled() and task.exception() is not None:
                logging.getLogger("pocketquant.dev").error(
                    "%s stopped: %r; shutting down", task.get_name(), task.exception()
                )
                server.should_exit = True

        worker_task.add_done_callback(stop_if_failed)
        stream_task.add_done_callback(stop_if_failed)
        console.print(f"[bold]PocketQuant[/bold] GraphiQL at http://{settings.host}:{settings.port}/graphql")
        console.print("Other commands can share these services:")
        exports = {"MONGODB_URL": settings.mongodb_url, "REDIS_URL": settings.redis_url}
        if simulate:
            exports["TRADINGVIEW_WEBSOCKET_URL"] = settings.tradingview_websocket_url
        for name, value in exports.items():  # one whole line each, to copy and paste
            console.print(f"  export {name}='{value}'", soft_wrap=True, markup=False, highlight=False)
        try:
            await server.serve()
        finally:
            stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a failure was logged above
                await stream_task
            await stop_worker(worker, worker_task)


def _instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@app.command()
def stream(verbose: Verbose = False) -> None:
    """The stream process: live quotes, bars, fan-out through Redis (needs MONGODB_URL and REDIS_URL).

    Start as many as you like: one streams, the others wait and take over if it dies."""
    _logging(verbose)
    from pocketquant.realtime.stream import run_stream
    from pocketquant.resources import open_resources

    settings = Settings()
    settings.required_mongodb_url()
    settings.required_redis_url()

    async def main() -> None:
        async with open_resources(settings) as resources:
            await run_stream(resources, instance=_instance_name())

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@app.command()
def api(verbose: Verbose = False) -> None:
    """The API process (needs MONGODB_URL and REDIS_URL)."""
    _logging(verbose)
    from pocketquant.api.app import create_app
    from pocketquant.api.serving import uvicorn_options

    settings = Settings()
    settings.required_mongodb_url()
    settings.required_redis_url()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        **uvicorn_options(),
    )


@app.command()
def worker(verbose: Verbose = False) -> None:
    """The arq worker: sync jobs and scheduled re-syncs (needs MONGODB_URL and REDIS_URL)."""
    _logging(verbose)
    from pocketquant.worker import build_worker

    settings = Settings()
    settings.required_mongodb_url()
    settings.required_redis_url()

    async def main() -> None:
        await build_worker(settings).async_run()

    asyncio.run(main())


def _parse_tickers(tickers: list[str]) -> list[SymbolKey]:
    keys = []
    for ticker in tickers:
        try:
            keys.append(SymbolKey.from_ticker(ticker))
        except InvalidSymbolError as exc:
            raise typer.BadParameter(str(exc), param_hint="TICKERS") from exc
    return keys


def _parse_intervals(values: list[str]) -> list[Interval]:
    try:
        return list(dict.fromkeys(Interval.parse(v) for v in values))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--interval") from exc


@app.command()
def sync(
    tickers: Annotated[list[str], typer.Argument(help="EXCHANGE:SYMBOL, e.g. NASDAQ:AAPL BINANCE:BTCUSDT")],
    interval: Annotated[list[str], typer.Option("--interval", "-i", help="Repeatable: 1m 5m 1h 1d 1W ...")] = ["1d"],  # noqa: B006
    bars: Annotated[int, typer.Option(min=1, max=5000, help="Newest bars to fetch per series.")] = 5000,
    simulate: Annotated[bool, typer.Option(help="Fetch from the local simulator instead of TradingView.")] = False,
    verbose: Verbose = False,
) -> None:
    """Sync symbols now, in this process, with a progress bar. Exits 1 if any failed."""
    _logging(verbose)
    keys = _parse_tickers(tickers)
    intervals = _parse_intervals(interval)
    failures = asyncio.run(_sync(Settings(), [SeriesKey.of(k, i) for k in keys for i in intervals], bars, simulate))
    raise typer.Exit(1 if failures else 0)


async def _sync(settings: Settings, series: list[SeriesKey], n_bars: int, simulate: bool) -> int:
    from pocketquant.resources import open_resources
    from pocketquant.tradingview.history import ProviderError

    failures = 0
    async with _embedded(settings, simulate) as settings, open_resources(settings) as resources:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("syncing", total=len(series))
            for key in series:
                progress.update(task, description=f"syncing {key}")
                try:
                    outcome = await resources.sync.sync(key, n_bars)
                except ProviderError as exc:
                    failures += 1
                    progress.console.print(f"[red]✗ {key}[/red]: {exc}")
                else:
                    w = outcome.write
                    progress.console.print(
                        f"[green]✓ {key}[/green]: {outcome.bars_fetched} fetched, {w.bars_inserted} new, "
                        f"{w.bars_updated} updated, {w.chunks_written} chunks written, {outcome.bar_count} stored"
                    )
                progress.advance(task)
    return failures


@app.command("export-schema")
def export_schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
) -> None:
    """Print (or write) the GraphQL schema in SDL."""
    from pocketquant.api.schema import schema_sdl

    sdl = schema_sdl()
    if output is None:
        sys.stdout.write(sdl)
    else:
        output.write_text(sdl, encoding="utf-8")
        console.print(f"wrote {output}")


class BenchSection(enum.StrEnum):
    history = "history"
    aggregator = "aggregator"
    fanout = "fanout"
    all = "all"


@app.command()
def bench(
    section: Annotated[BenchSection, typer.Option(help="Which measurements to run.")] = BenchSection.all,
    runs: Annotated[int, typer.Option(min=1, max=5, help="Symbols to store (one run each).")] = 5,
    requests: Annotated[int, typer.Option(min=5, help="HTTP requests per GraphQL measurement.")] = 60,
    subscribers: Annotated[int, typer.Option(min=1, help="Fan-out: subscribers of one symbol.")] = 1_000,
    rate: Annotated[float, typer.Option(min=0.1, help="Fan-out: updates per second.")] = 10.0,
    seconds: Annotated[float, typer.Option(min=1, help="Fan-out: measured duration.")] = 10.0,
) -> None:
    """Measure on this machine, on embedded services, each figure beside a baseline of the same run."""
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("tvDatafeed").setLevel(logging.CRITICAL)
    from pocketquant import bench as history_bench
    from pocketquant import bench_live

    rows: list[history_bench.Row] = []
    if section in (BenchSection.history, BenchSection.all):
        console.print(f"history: {runs} store runs, {requests} requests per query ...")
        rows += asyncio.run(history_bench.run(runs, requests))
    if section in (BenchSection.aggregator, BenchSection.all):
        console.print("aggregator: 1,000,000 ticks, 10 symbols, 6 intervals, best of 3 ...")
        agg, bare = bench_live.aggregator_throughput()
        rows.append(
            history_bench.Row("aggregator, 6 default intervals, all semantics", f"{agg:,.0f} ticks/s", ">= 1,000,000")
        )
        rows.append(
            history_bench.Row(
                "baseline: bare OHLC loop, 6 intervals", f"{bare:,.0f} ticks/s (aggregator: {agg / bare:.2f}x)"
            )
        )
    if section in (BenchSection.fanout, BenchSection.all):
        console.print(f"fan-out: {subscribers} subscribers, {rate}/s for {seconds}s ...")
        for r in asyncio.run(bench_live.run_fanout(subscribers, rate, seconds)):
            rows.append(
                history_bench.Row(
                    r.name,
                    f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms; delivered {r.received:,}/{r.expected:,}; "
                    f"peak RSS {r.peak_rss_mb:.0f} MB (+{r.peak_rss_mb - r.start_rss_mb:.0f} MB over the run)",
                    "p99 < 25 ms" if r.name.startswith("GraphQL") else "",
                )
            )
    print(history_bench.render(rows))


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    verbose: Verbose = False,
) -> None:
    """Run the local TradingView simulator alone (point TRADINGVIEW_*_URL at it)."""
    _logging(verbose)
    from pocketquant.simulator import TradingViewSimulator

    async def main() -> None:
        async with TradingViewSimulator(host=host, port=port) as sim:
            console.print(f"TRADINGVIEW_WEBSOCKET_URL={sim.websocket_url}")
            console.print(f"TRADINGVIEW_SEARCH_URL={sim.search_url}")
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
