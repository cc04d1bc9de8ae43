"""What `pocketquant dev` leaves in its data directory for other commands and for its
user: the URLs of the services it runs (``dev.env``) and an admin API key
(``dev-api-key``). Both files are readable by their owner only; what is printed on the
terminal has passwords masked and points at them instead."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pocketquant.auth.keys import ApiKeys, Scope

ENV_FILE = "dev.env"
KEY_FILE = "dev-api-key"


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``****``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:****@{host}"))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)  # an older file may have had wider permissions


def write_env(data_dir: Path, values: dict[str, str]) -> Path:
    """Write ``NAME='value'`` lines a shell can source (``set -a; . dev.env``)."""
    path = data_dir.resolve() / ENV_FILE
    lines = [f"{name}='{value}'" for name, value in values.items()]
    _write_private(
        path, "# Written by `pocketquant dev` while it runs; removed when it stops.\n" + "\n".join(lines) + "\n"
    )
    return path


def read_env(data_dir: Path) -> dict[str, str]:
    """The values a running `pocketquant dev` recorded, or {} if none is recorded."""
    path = data_dir.resolve() / ENV_FILE
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[name.strip()] = value.strip().strip("'")
    return values


def remove_env(data_dir: Path) -> None:
    (data_dir.resolve() / ENV_FILE).unlink(missing_ok=True)


async def ensure_dev_key(keys: ApiKeys, data_dir: Path) -> tuple[Path, bool]:
    """The path of the dev admin key, creating the key (and the file) when the file is
    missing or its key was revoked; also whether it was created now."""
    path = data_dir.resolve() / KEY_FILE  # noqa: ASYNC240 - a few bytes, once at start-up
    if path.exists():
        current = path.read_text(encoding="utf-8").strip()
        if current and await keys.is_active(current):
            return path, False
    _, plain = await keys.create("dev", Scope.ADMIN)
    _write_private(path, plain + "\n")
    return path, True
