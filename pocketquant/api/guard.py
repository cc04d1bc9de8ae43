"""What every operation passes before it runs: access by API key scope, bounded input
strings, the cost limit and the per-client rate limits.

The checks run in a schema extension right after validation, so a refused operation
reads nothing and writes nothing. Live subscriptions served by a fan-out group run
once for many subscribers: each subscriber is admitted on its own (access and rate
limit, :meth:`Guard.admit`) before it joins, and the group's single run checks only
what depends on the document (strings and cost).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode, StringValueNode, visit
from graphql.language import Visitor
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from pocketquant.api.cost import CostModel
from pocketquant.api.ratelimit import Bucket, RateLimiter
from pocketquant.auth.keys import Principal, Scope
from pocketquant.graphql.errors import (
    BadUserInputError,
    ForbiddenError,
    QueryTooCostlyError,
    RateLimitedError,
    UnauthenticatedError,
    UserFacingError,
    WrongTransportError,
)

if TYPE_CHECKING:
    from pocketquant.graphql.context import Context
    from pocketquant.settings import Settings

log = logging.getLogger(__name__)

# Queries that may return this many values or more (a 200-bar page) are large reads.
LARGE_READ = 1_000


class _LongestString(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.longest = 0

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        self.longest = max(self.longest, len(node.value))


def _longest_string(value: object, depth: int = 0) -> int:
    if isinstance(value, str):
        return len(value)
    if depth > 32:
        return 0  # deeper input fails the schema's own input checks
    if isinstance(value, Mapping):
        return max((max(len(str(k)), _longest_string(v, depth + 1)) for k, v in value.items()), default=0)
    if isinstance(value, list):
        return max((_longest_string(v, depth + 1) for v in value), default=0)
    return 0


class Guard:
    """The checks, with their limits; one per API process."""

    def __init__(self, settings: Settings, limiter: RateLimiter, cost: CostModel, *, open_access: bool = False):
        self.settings = settings
        self.limiter = limiter
        self.cost_model = cost
        # `pocketquant dev --open`: mutations need no key either.
        self.open_access = open_access
        # Large reads run a few at a time; the others wait for a turn, which costs the
        # event loop nothing. Without this, 200 concurrent page reads interleaved on the
        # loop and every other request (and the stream in `dev`) waited behind them.
        self.large_reads = asyncio.Semaphore(settings.max_concurrent_large_reads)
        self._literal_lengths: OrderedDict[str, int] = OrderedDict()

    def required_scope(self, operation: OperationType) -> Scope | None:
        if operation is OperationType.MUTATION:
            return None if self.open_access else Scope.WRITE
        return Scope.READ if self.settings.auth_required else None

    def authorize(self, principal: Principal, operation: OperationType) -> None:
        needed = self.required_scope(operation)
        if needed is None or principal.can(needed):
            return
        what = "mutations" if operation is OperationType.MUTATION else "reads"
        if principal.scope is None:
            raise UnauthenticatedError(
                f"{what} need an API key with the `{needed}` scope: send `Authorization: Bearer <key>` "
                "(for subscriptions, in the connection_init payload)"
            )
        raise ForbiddenError(f"this key has the `{principal.scope}` scope; {what} need `{needed}`")

    async def admit(self, context: Context, operation: OperationType) -> None:
        """Access and the per-client rate limit of one operation."""
        self.authorize(context.principal, operation)
        bucket = self.limiter.mutations if operation is OperationType.MUTATION else self.limiter.queries
        await self.take(context, bucket, 1)

    async def take_sync_jobs(self, context: Context, count: int) -> None:
        await self.take(context, self.limiter.sync_jobs, count)

    async def take(self, context: Context, bucket: Bucket, cost: int) -> None:
        """Take ``cost`` tokens of ``bucket`` for this client, or refuse (HTTP 429)."""
        decision = await self.limiter.take(bucket, context.client, cost)
        if decision.allowed:
            return
        error = self._refusal(bucket, cost, decision.retry_after)
        context.refuse(error)
        raise error

    @staticmethod
    def _refusal(bucket: Bucket, cost: int, retry_after: float) -> RateLimitedError:
        if math.isinf(retry_after):
            return RateLimitedError(
                f"this request needs {cost} {bucket.name.replace('_', ' ')} at once; at most {bucket.burst} "
                "are allowed at a time",
                retry_after=bucket.burst / bucket.rate,
            )
        return RateLimitedError(
            f"too many {bucket.name.replace('_', ' ')} from this client; retry in {retry_after:.1f} s",
            retry_after=retry_after,
        )

    def _longest_literal(self, query: str, document: DocumentNode) -> int:
        """The longest string literal of a document, remembered per document text (clients
        send the same few documents again and again)."""
        longest = self._literal_lengths.get(query)
        if longest is None:
            literals = _LongestString()
            visit(document, literals)
            longest = self._literal_lengths[query] = literals.longest
            if len(self._literal_lengths) > 1_024:
                self._literal_lengths.popitem(last=False)
        return longest

    def check_document(
        self, query: str, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None
    ) -> int:
        """Bounded strings and the cost limit; returns the operation's cost."""
        limit = self.settings.max_input_string_length
        longest = max(self._longest_literal(query, document), _longest_string(variables or {}))
        if longest > limit:
            raise BadUserInputError(
                f"a string in the input is {longest:,} characters long; at most {limit:,} are allowed"
            )
        cost = self.cost_model.cost(document, operation_name, variables)
        if cost > self.settings.max_query_cost:
            raise QueryTooCostlyError(
                f"this operation may return {cost:,} values; at most {self.settings.max_query_cost:,} are allowed "
                "per request: ask for fewer bars (`first`), fewer fields or fewer aliases, and page with `after`",
                cost=cost,
                limit=self.settings.max_query_cost,
            )
        return cost


class GuardExtension(SchemaExtension):
    """Runs the :class:`Guard` once the operation is parsed and validated, before it
    executes; a refusal becomes the operation's error (over HTTP also its status:
    400, 401, 403 or 429). Raising from ``on_execute`` is how Strawberry lets an
    extension stop an operation, for queries, mutations and subscriptions alike."""

    async def on_execute(self) -> AsyncIterator[None]:
        ec = self.execution_context
        context = ec.context
        guard: Guard | None = getattr(context, "guard", None)
        if guard is not None and ec.graphql_document is not None:
            try:
                operation = ec.operation_type
                if operation is OperationType.SUBSCRIPTION and context.response is not None:
                    raise WrongTransportError(
                        "subscriptions run over a websocket (graphql-transport-ws) at /graphql, not over HTTP"
                    )
                if context.live_tap is None:  # a group's members were admitted one by one
                    await guard.admit(context, operation)
                cost = guard.check_document(ec.query or "", ec.graphql_document, ec.operation_name, ec.variables)
            except UserFacingError as exc:
                context.refuse(exc)
                raise
            if cost >= LARGE_READ and operation is OperationType.QUERY:
                async with guard.large_reads:
                    # One turn of the loop while holding the permit: a large read
                    # served from memory runs start to end without waiting on
                    # anything, and without this turn the permits would be taken and
                    # given back within one step, bounding nothing (measured: /health
                    # p50 11 -> 76 ms behind 200 clients reading cached pages).
                    await asyncio.sleep(0)
                    yield
                return
        yield
