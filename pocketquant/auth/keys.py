"""API keys: created and revoked by operators (`pocketquant keys`), checked on every
request. Only a SHA-256 hash of each key is stored; the key itself is shown once, when
it is created.

A key reads ``pq_<id>_<secret>``: the id finds the stored record, the secret (256
random bits) is compared by hash in constant time. A plain hash is enough for secrets
of that entropy (what GitHub and Stripe do for tokens); a slow password hash would only
slow every request down.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from beanie import Document
from pymongo import ASCENDING, IndexModel
from pymongo.errors import PyMongoError

_KEY = re.compile(r"pq_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
MAX_NAME_LENGTH = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")


class Scope(enum.StrEnum):
    """What a key may do; each scope includes the ones before it."""

    READ = "read"  # queries and subscriptions
    WRITE = "write"  # mutations: syncs, tracking, the watch list
    ADMIN = "admin"  # operator details (/health internals)

    def includes(self, other: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(other)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request: a key's id, name and scope, or anonymous (no key)."""

    key_id: str | None
    name: str
    scope: Scope | None

    def can(self, needed: Scope) -> bool:
        return self.scope is not None and self.scope.includes(needed)


ANONYMOUS = Principal(None, "anonymous", None)


class InvalidApiKeyError(Exception):
    """A key was presented but is malformed, unknown or revoked."""


class ApiKey(Document):
    key_id: str
    name: str
    scope: Scope
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    class Settings:
        name = "api_keys"
        indexes: ClassVar = [IndexModel([("key_id", ASCENDING)], unique=True, name="key_id")]

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"a key name is 1-{MAX_NAME_LENGTH} letters, digits, spaces or . _ @ -, starting with a letter or digit"
        )
    return name


class ApiKeys:
    """Create, list, revoke and check keys. Checks are cached in this process for
    ``cache_seconds``, so a revoked key stops working within that time everywhere."""

    def __init__(self, cache_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Principal | None]] = OrderedDict()

    async def create(self, name: str, scope: Scope) -> tuple[ApiKey, str]:
        """A new key; the plain key is returned here and never again."""
        key_id = secrets.token_hex(6)
        plain = f"pq_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(
            key_id=key_id, name=validate_name(name), scope=scope, secret_hash=_hash(plain), created_at=datetime.now(UTC)
        )
        await record.insert()
        return record, plain

    async def all(self) -> list[ApiKey]:
        return await ApiKey.find_all().sort("+created_at").to_list()

    async def revoke(self, ident: str) -> list[ApiKey]:
        """Revoke the active key with this id, or every active key with this name."""
        found = await ApiKey.find({"$or": [{"key_id": ident}, {"name": ident}], "revoked_at": None}).to_list()
        now = datetime.now(UTC)
        for record in found:
            record.revoked_at = now
            await record.save()
        self._cache.clear()
        return found

    async def is_active(self, plain: str) -> bool:
        try:
            await self.authenticate(plain)
        except InvalidApiKeyError:
            return False
        return True

    async def authenticate(self, plain: str) -> Principal:
        """The principal of a presented key; :class:`InvalidApiKeyError` if it is not
        a current key. Never echoes the key."""
        digest = _hash(plain)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            try:
                principal = await self._lookup(plain, digest)
            except PyMongoError:
                if cached is None:
                    raise
                # MongoDB is away: a key that was good a moment ago stays good meanwhile.
                principal = cached[1]
            self._cache[digest] = (now + self._cache_seconds, principal)
            self._cache.move_to_end(digest)
            while len(self._cache) > 10_000:
                self._cache.popitem(last=False)
        if principal is None:
            raise InvalidApiKeyError("unknown or revoked API key")
        return principal

    async def _lookup(self, plain: str, digest: str) -> Principal | None:
        match = _KEY.fullmatch(plain)
        if match is None:
            return None
        record = await ApiKey.find_one(ApiKey.key_id == match[1])
        if record is None or not record.active or not hmac.compare_digest(record.secret_hash, digest):
            return None
        await ApiKey.get_pymongo_collection().update_one(
            {"_id": record.id}, {"$set": {"last_used_at": datetime.now(UTC)}}
        )
        return Principal(record.key_id, record.name, record.scope)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value, or None if absent.
    Raises :class:`InvalidApiKeyError` for another scheme or an empty token."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidApiKeyError("send the key as `Authorization: Bearer <key>`")
    return token.strip()


AUTH_DOCUMENTS: list[type[Document]] = [ApiKey]
