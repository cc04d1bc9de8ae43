"""Embedded MongoDB (mongoeco's wire server) and Redis for a first try on one machine.

Production runs real MongoDB and Redis (docker-compose.yml); these exist so that
`pocketquant dev` and the tests need nothing installed but Python (and, preferably,
a ``redis-server`` binary).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from mongoeco.engines.memory import MemoryEngine
from mongoeco.engines.sqlite import SQLiteEngine
from mongoeco.wire.proxy import AsyncMongoEcoProxyServer

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def embedded_mongodb(path: Path | None) -> AsyncIterator[str]:
    """Run mongoeco's wire server in this process; yield its ``mongodb://`` URL.

    ``path`` is a SQLite file (persistent); ``None`` keeps everything in memory.
    """
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine: SQLiteEngine | MemoryEngine = SQLiteEngine(str(path))
    else:
        engine = MemoryEngine()
    server = AsyncMongoEcoProxyServer(engine=engine, host="127.0.0.1", port=0)
    address = await server.start()
    url = f"mongodb://{address.host}:{address.port}/?directConnection=true"
    log.info("embedded MongoDB (mongoeco, %s) at %s", path or "memory", url)
    try:
        yield url
    finally:
        await server.close()


class MongoServerProcess:
    """mongoeco's wire server as a child process (``python -m pocketquant.infra.embedded``)
    on a fixed port: it can be stopped and started again at the same URL (what the fault
    tests do to MongoDB)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        args = [sys.executable, "-m", "pocketquant.infra.embedded", "--port", str(self.port)]
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            args += ["--path", str(self.path)]
        self._proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await _wait_for_port(self.port, self._proc, "mongoeco")
        log.info(
            "embedded MongoDB (mongoeco, %s, own process %d) at %s", self.path or "memory", self._proc.pid, self.url
        )

    async def stop(self) -> None:
        if self._proc is not None:
            await _stop(self._proc)
            self._proc = None


@contextlib.asynccontextmanager
async def mongodb_process(path: Path | None) -> AsyncIterator[str]:
    """Run mongoeco's wire server in a child process; yield its URL.

    In its own process, the database's work (mongoeco answers each request in Python)
    no longer runs on the event loop of the API and the stream, as it does not in
    production. Measured with 200 clients reading pages: in-process, /health waited
    about 2 s and the loop stalled for up to a second."""
    server = MongoServerProcess(path)
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def embedded_redis(data_dir: Path | None = None) -> AsyncIterator[str]:
    """Start a local ``redis-server`` if one is on PATH, else fakeredis's TCP server."""
    binary = shutil.which("redis-server")
    if binary is not None:
        async with _redis_server_process(binary, data_dir) as url:
            yield url
        return
    log.warning("redis-server not found on PATH: using fakeredis's TCP server (for trying things out only)")
    async with _fakeredis_server() as url:
        yield url


class RedisServerProcess:
    """A ``redis-server`` child process on a fixed port, in ``workdir``: it can be stopped
    and started again at the same URL (what the fault tests do to Redis). With
    ``appendonly`` it keeps its data across restarts, as production's does."""

    def __init__(self, workdir: Path, *, binary: str = "redis-server", appendonly: bool = False) -> None:
        self.workdir = workdir
        self.binary = binary
        self.appendonly = appendonly
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if self.appendonly else "no", "--dir", str(self.workdir), "--protected-mode", "yes",
        ]  # fmt: skip
        self._proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await _wait_for_port(self.port, self._proc, "redis-server")
        log.info("embedded Redis (redis-server) at %s", self.url)

    async def stop(self) -> None:
        if self._proc is not None:
            await _stop(self._proc)
            self._proc = None


@contextlib.asynccontextmanager
async def _redis_server_process(binary: str, data_dir: Path | None) -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="pocketquant-redis-") as scratch:
        server = RedisServerProcess(data_dir if data_dir is not None else Path(scratch), binary=binary)
        await server.start()
        try:
            yield server.url
        finally:
            await server.stop()


async def _wait_for_port(port: int, proc: asyncio.subprocess.Process, name: str) -> None:
    for _ in range(400):
        if proc.returncode is not None:
            err = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{name} exited at start: {err.strip()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.025)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"{name} did not listen on port {port}")


def _register_fakeredis_info() -> None:
    """fakeredis implements no INFO, and arq's worker calls it once at start-up only to
    log the server's version, memory and clients (without it the worker dies there).
    Register a minimal INFO with fakeredis's own command decorator. fakeredis is pinned
    and a test runs a real arq worker against this server."""
    from fakeredis._commands import SUPPORTED_COMMANDS, command
    from fakeredis.commands_mixins.server_mixin import ServerCommandsMixin

    if "info" in SUPPORTED_COMMANDS:
        return

    def info(self: object, *sections: bytes) -> bytes:
        return (
            b"# Server\r\nredis_version:fakeredis\r\n"
            b"# Memory\r\nused_memory_human:n/a\r\n"
            b"# Clients\r\nconnected_clients:0\r\n"
        )

    ServerCommandsMixin.info = command((), (bytes,))(info)  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def _fakeredis_server() -> AsyncIterator[str]:
    from fakeredis import TcpFakeServer

    _register_fakeredis_info()
    port = free_port()
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main() -> None:
    """``python -m pocketquant.infra.embedded --port P [--path FILE]``: mongoeco's wire
    server until SIGTERM or SIGINT."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="mongoeco's MongoDB wire server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", type=Path, default=None, help="SQLite file (default: in memory)")
    args = parser.parse_args()

    async def serve() -> None:
        engine: SQLiteEngine | MemoryEngine = SQLiteEngine(str(args.path)) if args.path else MemoryEngine()
        server = AsyncMongoEcoProxyServer(engine=engine, host="127.0.0.1", port=args.port)
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
