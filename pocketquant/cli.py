"""The `pocketquant` command."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pocketquant.domain import PROVIDER_MAX_BARS, Interval, InvalidSymbolError, SeriesKey, SymbolKey
from pocketquant.settings import Settings

if TYPE_CHECKING:
    from pocketquant.auth.keys import ApiKeys
    from pocketquant.history.export import ExportFormat

app = typer.Typer(
    help="PocketQuant: TradingView market data in MongoDB, served through GraphQL.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: option names, metavars and defaults, no <list[str]> type column
)
console = Console(stderr=True)


def _logging(verbose: bool) -> None:
    from pocketquant.logs import configure

    json_lines = os.environ.get("LOG_FORMAT", "text").strip().lower() == "json"
    configure(verbose=verbose, json_lines=json_lines)
    # tvdatafeed logs every error it swallows; we report them ourselves, once.
    logging.getLogger("tvDatafeed").setLevel(logging.CRITICAL)
    logging.getLogger("websockets").setLevel(logging.WARNING)


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]


@contextlib.asynccontextmanager
async def _embedded(settings: Settings, simulate: bool) -> AsyncIterator[Settings]:
    """Fill in what the environment left unset with embedded services."""
    from pocketquant.infra.embedded import embedded_redis, mongodb_process
    from pocketquant.simulator import TradingViewSimulator

    updates: dict[str, object] = {}
    async with contextlib.AsyncExitStack() as stack:
        if not settings.mongodb_url:
            # In a process of its own, as MongoDB runs in production: its work then never
            # holds up the API's or the stream's event loop.
            path = settings.data_dir.resolve() / "pocketquant.sqlite3"
            updates["mongodb_url"] = await stack.enter_async_context(mongodb_process(path))
        if not settings.redis_url:
            updates["redis_url"] = await stack.enter_async_context(embedded_redis())
        if simulate:
            sim = await stack.enter_async_context(TradingViewSimulator())
            sim.start_auto_ticks()
            updates["tradingview_websocket_url"] = sim.websocket_url
            updates["tradingview_search_url"] = sim.search_url
        yield settings.model_copy(update=updates)


# Settings `dev` turns on for exploring unless the environment sets them.
_DEV_DEFAULTS = {"graphiql": True, "introspection": True, "field_suggestions": True, "auth_required": False}


def dev_settings(settings: Settings) -> Settings:
    """``settings`` with dev's defaults for whatever the environment did not set."""
    return settings.model_copy(update={k: v for k, v in _DEV_DEFAULTS.items() if k not in settings.model_fields_set})


@app.command()
def dev(
    simulate: Annotated[bool, typer.Option(help="Serve TradingView from the local simulator (offline demo).")] = False,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.", metavar="HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.", metavar="PORT")] = None,
    open_access: Annotated[
        bool, typer.Option("--open", help="Let anyone run mutations without an API key (local experiments only).")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """API + worker + stream in one process, on embedded MongoDB and Redis unless MONGODB_URL / REDIS_URL are set.

    GraphiQL, introspection and field suggestions are on; reads need no key (AUTH_REQUIRED=false) unless the
    environment says otherwise; mutations need the admin key dev writes to DATA_DIR/dev-api-key, or --open."""
    _logging(verbose)
    settings = dev_settings(Settings())
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": settings.port if port is None else port}
    )
    asyncio.run(_dev(settings, simulate, open_access))


async def _dev(settings: Settings, simulate: bool, open_access: bool) -> None:
    from pocketquant.api.app import create_app
    from pocketquant.api.serving import uvicorn_options
    from pocketquant.infra import devfiles
    from pocketquant.realtime.stream import run_stream
    from pocketquant.resources import open_resources
    from pocketquant.worker import WorkerRunner, stop_worker

    async with _embedded(settings, simulate) as settings, open_resources(settings) as resources:
        runner = WorkerRunner(settings, resources=resources, handle_signals=False)
        worker_task = asyncio.create_task(runner.run(), name="arq-worker")
        stream_task = asyncio.create_task(run_stream(resources, instance=_instance_name()), name="stream")
        config = uvicorn.Config(
            create_app(settings, resources, open_access=open_access),
            host=settings.host,
            port=settings.port,
            **uvicorn_options(settings),
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
        key_file, _ = await devfiles.ensure_dev_key(resources.keys, settings.data_dir)
        shared = {
            "MONGODB_URL": settings.required_mongodb_url(),
            "MONGODB_DATABASE": settings.mongodb_database,
            "REDIS_URL": settings.required_redis_url(),
        }
        if simulate:
            shared["TRADINGVIEW_WEBSOCKET_URL"] = settings.tradingview_websocket_url
            shared["TRADINGVIEW_SEARCH_URL"] = settings.tradingview_search_url
        env_file = devfiles.write_env(settings.data_dir, shared)
        base = f"http://{settings.host}:{settings.port}"
        console.print(f"[bold]PocketQuant[/bold] at {base}: GraphiQL at {base}/graphql", soft_wrap=True)
        if open_access:
            console.print(
                "[bold red]OPEN MODE: anyone who can reach this port can run every mutation without a key "
                "(syncs, the watch list). Use it on a trusted machine only.[/bold red]",
                soft_wrap=True,
            )
        else:
            console.print(
                f"Mutations need an API key: the admin key of this instance is in {key_file} "
                "(send it as `Authorization: Bearer <key>`; `pocketquant keys` makes others).",
                soft_wrap=True,
                markup=False,
            )
        access = "need a read key (AUTH_REQUIRED=true)" if settings.auth_required else "are open (AUTH_REQUIRED=false)"
        console.print(f"Reads and subscriptions {access}.", soft_wrap=True, markup=False)
        console.print(
            f"Other commands share these services: set -a; . {env_file}; set +a", soft_wrap=True, markup=False
        )
        for name, value in shared.items():  # passwords masked: the full values are in the file
            console.print(f"  {name}={devfiles.mask_url(value)}", soft_wrap=True, markup=False, highlight=False)
        try:
            await server.serve()
        finally:
            devfiles.remove_env(settings.data_dir)
            stream_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a failure was logged above
                await stream_task
            if runner.worker is not None:
                await stop_worker(runner.worker, worker_task)


def _instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@app.command()
def stream(verbose: Verbose = False) -> None:
    """The stream process: live quotes, bars, fan-out through Redis (needs MONGODB_URL and REDIS_URL).

    Start as many as you like: one streams, the others wait and take over if it dies."""
    _logging(verbose)
    from pocketquant.realtime.stream import run_stream
    from pocketquant.resources import open_resources

    settings = _shared_settings()
    settings.required_mongodb_url()
    settings.required_redis_url()

    async def main() -> None:
        _cancel_on_sigterm()
        async with open_resources(settings) as resources:
            await run_stream(resources, instance=_instance_name())

    # SIGTERM (docker stop, a rolling restart) and SIGINT stop it the same way: no more
    # ticks, the closed bars still waiting are stored, the lock is released at once, so
    # a standby takes over without waiting for the lock to expire.
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main())
    console.print("stream stopped")


def _cancel_on_sigterm() -> None:
    """Make SIGTERM cancel the running main task, as asyncio.run does for SIGINT."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


@app.command()
def api(verbose: Verbose = False) -> None:
    """The API process (needs MONGODB_URL and REDIS_URL)."""
    _logging(verbose)
    from pocketquant.api.app import create_app
    from pocketquant.api.serving import uvicorn_options

    settings = _shared_settings()
    settings.required_mongodb_url()
    settings.required_redis_url()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        **uvicorn_options(settings),
    )


@app.command()
def worker(verbose: Verbose = False) -> None:
    """The arq worker: sync jobs and scheduled re-syncs (needs MONGODB_URL and REDIS_URL)."""
    _logging(verbose)
    from pocketquant.worker import WorkerRunner

    settings = _shared_settings()
    settings.required_mongodb_url()
    settings.required_redis_url()

    async def main() -> None:
        await WorkerRunner(settings).run()  # waits out Redis outages

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
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
    tickers: Annotated[list[str], typer.Argument(help="e.g. NASDAQ:AAPL BINANCE:BTCUSDT", metavar="EXCHANGE:SYMBOL")],
    interval: Annotated[
        list[str], typer.Option("--interval", "-i", help="Repeatable: 1m 5m 1h 1d 1W ...", metavar="INTERVAL")
    ] = ["1d"],  # noqa: B006
    bars: Annotated[
        int, typer.Option(min=1, max=PROVIDER_MAX_BARS, help="Newest bars to fetch per series.", metavar="N")
    ] = PROVIDER_MAX_BARS,
    simulate: Annotated[bool, typer.Option(help="Fetch from the local simulator instead of TradingView.")] = False,
    verbose: Verbose = False,
) -> None:
    """Sync symbols now, in this process, with a progress bar. Exits 1 if any failed."""
    _logging(verbose)
    if not verbose:  # each result is printed once, below the progress bar, not logged too
        logging.getLogger("pocketquant.history.service").setLevel(logging.WARNING)
    keys = _parse_tickers(tickers)
    intervals = _parse_intervals(interval)
    series = [SeriesKey.of(k, i) for k in keys for i in intervals]
    failures = asyncio.run(_sync(_shared_settings(), series, bars, simulate))
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


class ExportAs(enum.StrEnum):
    csv = "csv"
    parquet = "parquet"


def _when(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    from pocketquant.history.graphql.inputs import epoch

    try:
        return epoch(datetime.fromisoformat(text))
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time (2026-11-20 or 2026-11-20T14:30)", param_hint=option
        ) from exc


@app.command()
def export(
    ticker: Annotated[str, typer.Argument(help="e.g. NASDAQ:AAPL", show_default=False, metavar="EXCHANGE:SYMBOL")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The file to write.", show_default=False, metavar="FILE")
    ],
    interval: Annotated[
        str, typer.Option("--interval", "-i", help="1m 5m 1h 1d 1W ...: resampled if not stored", metavar="INTERVAL")
    ] = "1d",
    start: Annotated[
        str | None, typer.Option("--from", help="Earliest bar, ISO 8601 (no offset: UTC).", metavar="TIME")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Latest bar (inclusive), ISO 8601.", metavar="TIME")] = None,
    fmt: Annotated[ExportAs | None, typer.Option("--format", "-f", help="Default: from the file's suffix.")] = None,
    verbose: Verbose = False,
) -> None:
    """Write a stored series to a CSV or Parquet file, with a progress bar."""
    from pocketquant.history.export import ExportFormat

    _logging(verbose)
    key = _parse_tickers([ticker])[0]
    series = SeriesKey.of(key, _parse_intervals([interval])[0])
    lo, hi = _when(start, "--from"), _when(end, "--to")
    if lo is not None and hi is not None and hi < lo:
        raise typer.BadParameter("--to is before --from")
    chosen = fmt.value if fmt is not None else output.suffix.lstrip(".").lower()
    if chosen not in ("csv", "parquet"):
        raise typer.BadParameter(
            "give --format csv|parquet, or a file ending in .csv or .parquet", param_hint="--format"
        )
    written = asyncio.run(_export(_shared_settings(), series, lo, hi, ExportFormat(chosen), output))
    console.print(f"{written} {series.interval.value} bars of {key} written to {output}")
    if not written:
        raise typer.Exit(1)


async def _export(
    settings: Settings, series: SeriesKey, lo: int | None, hi: int | None, fmt: ExportFormat, path: Path
) -> int:
    from pocketquant.history.export import export_series
    from pocketquant.resources import open_resources

    async with _embedded(settings, False) as settings, open_resources(settings) as resources:
        stats = await resources.store.stats(series)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(f"exporting {series}", total=stats.bar_count or None)
            return await export_series(resources.series, series, lo, hi, fmt, path, lambda n: progress.advance(task, n))


class Process(enum.StrEnum):
    worker = "worker"
    stream = "stream"


@app.command()
def health(process: Annotated[Process, typer.Argument(help="Which process of this host to check.")]) -> None:
    """Exit 0 if a worker (or stream process) of this host said within 6 s that it is alive: a container health
    check. Needs REDIS_URL."""
    import redis.asyncio

    from pocketquant.realtime import wire
    from pocketquant.worker import ALIVE_PREFIX

    prefix = wire.ALIVE_PREFIX if process is Process.stream else ALIVE_PREFIX
    pattern = f"{prefix}{socket.gethostname()}:*"

    async def main() -> bool:
        client = redis.asyncio.Redis.from_url(_shared_settings().required_redis_url(), socket_timeout=3)
        try:
            async for _ in client.scan_iter(match=pattern, count=100):
                return True
            return False
        finally:
            await client.aclose()

    try:
        alive = asyncio.run(main())
    except Exception as exc:  # unreachable Redis is unhealthy, said in one line
        console.print(f"unhealthy: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    if not alive:
        console.print(f"unhealthy: no {process} of {socket.gethostname()} said it is alive in the last 6 s")
        raise typer.Exit(1)
    console.print(f"{process} alive")


keys_app = typer.Typer(
    help="API keys: create, list and revoke (stored hashed in MongoDB).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(keys_app, name="keys")


class KeyScope(enum.StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


@contextlib.asynccontextmanager
async def _key_store(settings: Settings) -> AsyncIterator[ApiKeys]:
    """The API keys collection: MONGODB_URL, or the embedded database in DATA_DIR."""
    from beanie import init_beanie
    from pymongo import AsyncMongoClient

    from pocketquant.auth.keys import AUTH_DOCUMENTS, ApiKeys
    from pocketquant.infra.embedded import embedded_mongodb

    async with contextlib.AsyncExitStack() as stack:
        url = settings.mongodb_url or await stack.enter_async_context(
            embedded_mongodb(settings.data_dir.resolve() / "pocketquant.sqlite3")
        )
        mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            url, serverSelectionTimeoutMS=5_000, tz_aware=True
        )
        stack.push_async_callback(mongo.close)
        await init_beanie(database=mongo[settings.mongodb_database], document_models=AUTH_DOCUMENTS)
        yield ApiKeys()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for (a person, a script).", metavar="NAME")],
    scope: Annotated[
        KeyScope,
        typer.Option(help="read: queries and subscriptions; write: also mutations; admin: also operator details."),
    ] = KeyScope.read,
) -> None:
    """Create a key and print it, once: only its hash is stored."""
    from pocketquant.auth.keys import Scope, validate_name

    try:
        validate_name(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--name") from exc

    async def main() -> str:
        async with _key_store(_shared_settings()) as keys:
            record, plain = await keys.create(name, Scope(scope.value))
            console.print(f"created key {record.key_id} ({record.name}, {record.scope}); it is shown only now:")
            return plain

    print(asyncio.run(main()))


@keys_app.command("list")
def keys_list() -> None:
    """Every key: id, name, scope, when it was created and last used, and whether it is revoked."""

    async def main() -> None:
        async with _key_store(_shared_settings()) as keys:
            records = await keys.all()

        def when(moment: datetime | None) -> str:
            return f"{moment:%Y-%m-%d %H:%M}Z" if moment else "-"

        rows = [("id", "scope", "created", "last used", "revoked", "name")] + [
            (r.key_id, str(r.scope), when(r.created_at), when(r.last_used_at), when(r.revoked_at), r.name)
            for r in records
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:  # one key per line, names last: nothing wraps or is cut
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[5])

    asyncio.run(main())


@keys_app.command("revoke")
def keys_revoke(
    ident: Annotated[
        str, typer.Argument(help="A key's id, or a name (revokes every key of that name).", metavar="ID_OR_NAME")
    ],
) -> None:
    """Revoke keys. API processes stop accepting them within 10 seconds."""

    async def main() -> int:
        async with _key_store(_shared_settings()) as keys:
            revoked = await keys.revoke(ident)
        for r in revoked:
            console.print(f"revoked {r.key_id} ({r.name}, {r.scope})")
        return len(revoked)

    if not asyncio.run(main()):
        console.print(f"no active key has the id or name {ident!r}")
        raise typer.Exit(1)


def _shared_settings() -> Settings:
    """Settings, with the services of a `pocketquant dev` running on this DATA_DIR
    filling in MONGODB_URL and REDIS_URL when the environment leaves them unset: a
    command beside a running dev works on dev's data (a `sync` on embedded services of
    its own left dev serving a stale cache)."""
    from pocketquant.infra import devfiles

    settings = Settings()
    recorded = devfiles.read_env(settings.data_dir)
    updates: dict[str, object] = {}
    if not settings.mongodb_url and "MONGODB_URL" in recorded:
        updates["mongodb_url"] = recorded["MONGODB_URL"]
        updates["mongodb_database"] = recorded.get("MONGODB_DATABASE", settings.mongodb_database)
    if not settings.redis_url and "REDIS_URL" in recorded:
        updates["redis_url"] = recorded["REDIS_URL"]
    if updates:
        console.print(f"using the services of `pocketquant dev` recorded in {settings.data_dir / devfiles.ENV_FILE}")
    return settings.model_copy(update=updates)


@app.command("export-schema")
def export_schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).", metavar="FILE")
    ] = None,
) -> None:
    """Print (or write) the GraphQL schema in SDL."""
    from pocketquant.api.schema import schema_sdl

    sdl = schema_sdl()
    if output is None:
        sys.stdout.write(sdl)
    else:
        output.write_text(sdl, encoding="utf-8")
        console.print(f"wrote {output}")


@app.command()
def bench(
    section: Annotated[str, typer.Option(help="Which measurements to run.", metavar="SECTION")] = "all",
    runs: Annotated[int, typer.Option(min=1, max=5, help="Symbols to store (one run each).", metavar="N")] = 5,
    requests: Annotated[int, typer.Option(min=5, help="HTTP requests per GraphQL measurement.", metavar="N")] = 60,
    subscribers: Annotated[int, typer.Option(min=1, help="Fan-out: subscribers of one symbol.", metavar="N")] = 1_000,
    rate: Annotated[float, typer.Option(min=0.1, help="Fan-out: updates per second.", metavar="RATE")] = 10.0,
    seconds: Annotated[
        float, typer.Option(min=1, help="Fan-out, stream and load: measured duration.", metavar="SECONDS")
    ] = 10.0,
    clients: Annotated[int, typer.Option(min=1, help="Load: concurrent clients reading bars.", metavar="N")] = 200,
) -> None:
    """Measure on this machine, on embedded services, each figure beside a baseline of the same run.

    SECTION is one of history, sync, aggregator, stream, fanout, subscriptions, load, all."""
    import importlib.util

    if importlib.util.find_spec("uvloop") is None:  # the measuring clients run on it
        console.print("[red]pocketquant bench needs the bench extra: pip install 'pocketquant[bench]'[/red]")
        raise typer.Exit(1)
    from pocketquant.benchmarks import report

    try:
        chosen = report.Section(section)
    except ValueError:
        choices = ", ".join(s.value for s in report.Section)
        raise typer.BadParameter(f"{section!r} is not a section ({choices})", param_hint="--section") from None
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("tvDatafeed").setLevel(logging.CRITICAL)
    options = report.Options(runs, requests, subscribers, rate, seconds, clients)
    print(report.render(report.run(chosen, options, say=console.print)))


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Interface to listen on.", metavar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", metavar="PORT")] = 8765,
    ticks: Annotated[bool, typer.Option(help="Tick every quoted symbol twice a second.")] = True,
    fault: Annotated[
        list[str] | None,
        typer.Option(help="Repeatable: that symbol's history requests fail so.", metavar="EXCHANGE:SYMBOL=FAULT"),
    ] = None,
    stall: Annotated[
        float, typer.Option(min=0, help="Answer history requests this many seconds late.", metavar="SECONDS")
    ] = 0.0,
    verbose: Verbose = False,
) -> None:
    """Run the local TradingView simulator alone (point TRADINGVIEW_*_URL at it).

    Faults can also be set while it runs: GET /control/drop, /control/fault?symbol=EX:SYM&fault=F[&times=N],
    /control/stall?seconds=S, /control/clear, /control/status on its port."""
    _logging(verbose)
    from pocketquant.simulator import Fault, TradingViewSimulator

    faults: dict[SymbolKey, Fault] = {}
    for spec in fault or []:
        ticker, _, name = spec.partition("=")
        try:
            faults[SymbolKey.from_ticker(ticker)] = Fault(name)
        except (InvalidSymbolError, ValueError) as exc:
            choices = ", ".join(f.value for f in Fault)
            raise typer.BadParameter(f"{spec!r}: {exc} (faults: {choices})", param_hint="--fault") from exc

    async def main() -> None:
        async with TradingViewSimulator(host=host, port=port, series_delay=stall) as sim:
            sim.faults.update(faults)
            if ticks:
                sim.start_auto_ticks()
            print(f"TRADINGVIEW_WEBSOCKET_URL={sim.websocket_url}", flush=True)
            print(f"TRADINGVIEW_SEARCH_URL={sim.search_url}", flush=True)
            print(f"control: http://{host}:{sim.port}/control/status", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
