"""The GraphQL schema: every slice's queries and mutations merged, with limits on."""

from __future__ import annotations

import logging
from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from pocketquant.api.errors import outage, should_mask_error
from pocketquant.api.guard import GuardExtension
from pocketquant.api.scalars import SCALAR_MAP
from pocketquant.history.graphql.gaps import GapsMutation, GapsQuery
from pocketquant.history.graphql.mutations import HistoryMutation
from pocketquant.history.graphql.queries import HistoryQuery
from pocketquant.realtime.graphql.resolvers import RealtimeMutation, RealtimeQuery, RealtimeSubscription
from pocketquant.settings import Settings

log = logging.getLogger("pocketquant.graphql")

Query = merge_types("Query", (HistoryQuery, GapsQuery, RealtimeQuery))
Mutation = merge_types("Mutation", (HistoryMutation, GapsMutation, RealtimeMutation))
Subscription = merge_types("Subscription", (RealtimeSubscription,))


class PocketQuantSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Internal failures are logged with their traceback (clients see them masked);
        outages of MongoDB or Redis in one line at WARNING; the client's own mistakes in
        one line, at INFO."""
        for error in errors:
            where = ".".join(str(p) for p in error.path or ())
            if outage(error.original_error) is not None:
                log.warning("%s failed: %s: %s", where, type(error.original_error).__name__, error.original_error)
            elif should_mask_error(error):
                log.error(
                    "internal error in %s: %s", where or "(operation)", error.message, exc_info=error.original_error
                )
            else:
                code = (error.extensions or {}).get("code", "GRAPHQL_VALIDATION")
                log.info("client error %s: %s", code, " ".join(error.message.split())[:300])


class MaskInternalErrors(MaskErrors):
    """Masks what is not meant for clients; an outage of MongoDB or Redis is told as
    such (STORE_UNAVAILABLE or QUEUE_UNAVAILABLE), without its address."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=should_mask_error, error_message="Internal server error.")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        told = outage(error.original_error)
        if told is None:
            return super().anonymise_error(error)
        return GraphQLError(
            str(told), nodes=error.nodes, source=error.source, positions=error.positions, path=error.path,
            extensions=told.extensions,
        )  # fmt: skip


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    # The limits' validation rules are built once: the validation cache below keys on
    # them, and a limiter built per request would make a new rule class each time.
    rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
    ]
    if not settings.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    # Factories: each request gets fresh extension instances.
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        # Clients send the same few documents again and again: parse and validate each
        # once (validation cost ~6 ms a request under load before these).
        lambda: ParserCache(maxsize=1_024),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=1_024),
        GuardExtension,
        MaskInternalErrors,
    ]
    return PocketQuantSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALAR_MAP, disable_field_suggestions=not settings.field_suggestions),
        extensions=extensions,
    )


def schema_sdl() -> str:
    """The schema in SDL, as committed in schema.graphql."""
    return build_schema().as_str() + "\n"


__all__ = ["build_schema", "schema_sdl"]
