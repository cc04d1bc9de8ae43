"""The GraphQL schema: every slice's queries and mutations merged, with limits on."""

from __future__ import annotations

import strawberry
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from pocketquant.api.errors import should_mask_error
from pocketquant.api.scalars import SCALAR_MAP
from pocketquant.history.graphql.mutations import HistoryMutation
from pocketquant.history.graphql.queries import HistoryQuery
from pocketquant.realtime.graphql.resolvers import RealtimeMutation, RealtimeQuery, RealtimeSubscription
from pocketquant.settings import Settings

Query = merge_types("Query", (HistoryQuery, RealtimeQuery))
Mutation = merge_types("Mutation", (HistoryMutation, RealtimeMutation))
Subscription = merge_types("Subscription", (RealtimeSubscription,))


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=[
            # Factories: each request gets fresh extension instances.
            lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
            lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
            lambda: MaxAliasesLimiter(max_alias_count=settings.max_query_aliases),
            lambda: MaskErrors(should_mask_error=should_mask_error, error_message="Internal server error."),
        ],
    )


def schema_sdl() -> str:
    """The schema in SDL, as committed in schema.graphql."""
    return build_schema().as_str() + "\n"
