"""The GraphQL schema: every slice's queries and mutations merged, with limits on."""

from __future__ import annotations

import strawberry
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.tools import merge_types

from pocketquant.api.errors import should_mask_error
from pocketquant.history.graphql.mutations import HistoryMutation
from pocketquant.history.graphql.queries import HistoryQuery
from pocketquant.settings import Settings

Query = merge_types("Query", (HistoryQuery,))
Mutation = merge_types("Mutation", (HistoryMutation,))


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        extensions=[
            QueryDepthLimiter(max_depth=settings.max_query_depth),
            MaxTokensLimiter(max_token_count=settings.max_query_tokens),
            MaxAliasesLimiter(max_alias_count=settings.max_query_aliases),
            MaskErrors(should_mask_error=should_mask_error, error_message="Internal server error."),
        ],
    )


def schema_sdl() -> str:
    """The schema in SDL, as committed in schema.graphql."""
    return build_schema().as_str() + "\n"
