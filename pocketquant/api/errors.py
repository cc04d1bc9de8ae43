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
    """Mask exceptions raised by our code unless they are meant for the user.
    Errors without an original exception (parse and validation errors) are the
    client's own and stay visible."""
    original = error.original_error
    if original is None:
        return False
    return not isinstance(original, UserFacingError)
