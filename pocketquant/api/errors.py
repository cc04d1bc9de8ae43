"""Errors a GraphQL client may see in full. Everything else is masked."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError


class UserFacingError(Exception):
    """An error whose message is safe and useful to show to the client."""

    code = "INTERNAL"

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


def should_mask_error(error: GraphQLError) -> bool:
    """Mask what our resolvers raised unless it is meant for the user. Errors outside
    execution (syntax, validation, variable coercion: they have no ``path``) are the
    client's own mistakes and stay visible."""
    if error.path is None:
        return False
    return not isinstance(error.original_error, UserFacingError)
