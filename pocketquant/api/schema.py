"""The GraphQL schema: every slice's queries and mutations merged, with limits on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import strawberry
from graphql import FieldNode, GraphQLError, OperationDefinitionNode
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from pocketquant.api.documents import DocumentCache, DocumentExtension
from pocketquant.api.guard import GuardExtension
from pocketquant.graphql.errors import outage, should_mask_error
from pocketquant.graphql.scalars import SCALAR_MAP
from pocketquant.history.graphql.gaps import GapsMutation, GapsQuery
from pocketquant.history.graphql.mutations import HistoryMutation
from pocketquant.history.graphql.queries import HistoryQuery
from pocketquant.metrics import ApiMetrics
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


def _root_field(ec: ExecutionContext) -> str:
    """The operation's root field, if it selects exactly one the schema has (a bounded label)."""
    document = ec.graphql_document
    if document is None:
        return "invalid"
    names = [
        selection.name.value
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
        and (ec.operation_name is None or (definition.name and definition.name.value == ec.operation_name))
        for selection in definition.selection_set.selections
        if isinstance(selection, FieldNode)
    ]
    if len(names) != 1:
        return "several" if names else "none"
    roots = [ec.schema._schema.query_type, ec.schema._schema.mutation_type, ec.schema._schema.subscription_type]
    return names[0] if any(root is not None and names[0] in root.fields for root in roots) else "unknown"


class OperationExtension(MaskErrors):
    """What each operation's outcome goes through: errors not meant for clients masked
    (an outage of MongoDB or Redis is told as such, STORE_UNAVAILABLE or
    QUEUE_UNAVAILABLE, without its address), then the operation timed (parse to result)
    by type and root field and its errors counted by code, as clients see them, into
    the API's metrics (``/metrics``)."""

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

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield from super().on_operation()  # masks the result's errors
        ec = self.execution_context
        metrics: ApiMetrics | None = getattr(ec.context, "metrics", None)
        if metrics is None:
            return
        try:
            operation = ec.operation_type.value
        except RuntimeError:  # the document did not parse
            operation = "invalid"
        metrics.requests.labels(operation, _root_field(ec)).observe(time.perf_counter() - started)
        for error in (ec.result.errors if ec.result is not None else None) or ():
            metrics.errors.labels(str((error.extensions or {}).get("code", "GRAPHQL_ERROR"))).inc()


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    # The limits' validation rules are built once (a limiter makes a new rule class each time).
    rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
    ]
    if not settings.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    # Clients send the same few documents again and again: parse and validate each once
    # (validation cost ~6 ms a request under load without a cache).
    documents = DocumentCache(rules, max_tokens=settings.max_query_tokens)
    # Factories: each request gets fresh extension instances. Few of them: every
    # extension's hooks are looked up and entered on every request (measured: seven
    # extensions instead of these three cost a cached 1,000-bar page ~10% more CPU).
    extensions: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        OperationExtension,  # outermost: it times everything and sees the errors as clients do
        lambda: DocumentExtension(documents),
        GuardExtension,
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
