"""Errors a GraphQL client may see in full. Everything else is masked."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from pymongo.errors import ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class UserFacingError(Exception):
    """An error whose message is safe and useful to show to the client."""

    code = "INTERNAL"
    http_status: int | None = None  # set for errors that decide an HTTP response's status

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    @property
    def extensions(self) -> dict[str, Any]:
        ext: dict[str, Any] = {"code": self.code}
        if self.field:
            ext["field"] = self.field
        return ext


class BadUserInputError(UserFacingError):
    code = "BAD_USER_INPUT"


class UpstreamUnavailableError(UserFacingError):
    code = "UPSTREAM_UNAVAILABLE"


class StoreUnavailableError(UserFacingError):
    code = "STORE_UNAVAILABLE"


class QueueUnavailableError(UserFacingError):
    code = "QUEUE_UNAVAILABLE"


def outage(error: BaseException | None) -> UserFacingError | None:
    """What a client may be told about an outage of MongoDB or Redis behind ``error``:
    which store is unavailable (never its address), or None if it is no outage."""
    if isinstance(error, ConnectionFailure | ServerSelectionTimeoutError | NetworkTimeout):
        return StoreUnavailableError("the database (MongoDB) is unavailable; retry in a few seconds")
    if isinstance(error, RedisConnectionError | RedisTimeoutError | BusyLoadingError):
        return QueueUnavailableError("the queue and live data store (Redis) is unavailable; retry in a few seconds")
    return None


def should_mask_error(error: GraphQLError) -> bool:
    """Mask what our resolvers raised unless it is meant for the user. Errors outside
    execution (syntax, validation, variable coercion: they have no ``path``) are the
    client's own mistakes and stay visible."""
    if error.path is None:
        return False
    return not isinstance(error.original_error, UserFacingError)


class WrongTransportError(UserFacingError):
    """An operation sent where it cannot run (a subscription over HTTP): HTTP 400."""

    code = "BAD_REQUEST"
    http_status = 400


class UnauthenticatedError(UserFacingError):
    """No key, or not a current one, where one is needed (HTTP 401)."""

    code = "UNAUTHENTICATED"
    http_status = 401


class ForbiddenError(UserFacingError):
    """The key's scope does not allow this (HTTP 403)."""

    code = "FORBIDDEN"
    http_status = 403


class QueryTooCostlyError(UserFacingError):
    code = "QUERY_TOO_COSTLY"

    def __init__(self, message: str, *, cost: int, limit: int) -> None:
        super().__init__(message)
        self.cost = cost
        self.limit = limit

    @property
    def extensions(self) -> dict[str, Any]:
        return super().extensions | {"cost": self.cost, "maxCost": self.limit}


class RateLimitedError(UserFacingError):
    """Too many requests from this client for now (HTTP 429, with Retry-After)."""

    code = "RATE_LIMITED"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def extensions(self) -> dict[str, Any]:
        return super().extensions | {"retryAfterSeconds": round(self.retry_after, 1)}
