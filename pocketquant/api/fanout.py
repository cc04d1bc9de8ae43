"""Fan-out of live subscriptions: one execution and one encoding per event and operation.

Front ends usually send the same generated document, so most subscribers of a symbol
share (document, variables, operation name). Per API process, such subscribers form a
*group*: the group runs one Strawberry stream, encodes each result's ``next`` payload
once, and hands the encoded text to every member. Strawberry's per-operation streaming
(per-result extension hooks, result wrapping, JSON encoding) ran once per subscriber
before, and cost about three quarters of the API's CPU per message.

A group keeps the newest encoded message per key (the quote of each ticker; the newest
bar of each interval, in progress or just closed): that is the snapshot a member gets
when it joins, copied in the same step that registers it, so it misses nothing and sees
nothing twice. A member's update is written straight away when nothing is pending for
it; otherwise it waits in the member's own bounded queue, newest per key (a closed bar
has a key of its own): a slow member only delays itself (see :class:`Member`).

Only ``liveQuotes`` and ``liveBars`` operations are grouped; everything else runs through
Strawberry's own handler unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from graphql import FieldNode, GraphQLError, GraphQLSyntaxError, OperationDefinitionNode, OperationType, parse
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry import Schema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.graphql import OperationType as StrawberryOperationType

from pocketquant.api.prepared_frames import frame_writer, text_frame
from pocketquant.graphql.errors import UserFacingError
from pocketquant.realtime.hub import LatestQueue
from pocketquant.realtime.tap import EventTap

if TYPE_CHECKING:
    from pocketquant.graphql.context import Context

log = logging.getLogger(__name__)

GROUPED_FIELDS = frozenset({"liveQuotes", "liveBars"})
_END: Hashable = ("__end__",)

GroupKey = tuple[str, str, str | None]


def _snapshot_key(event: dict[str, Any]) -> Hashable:
    """What a joining member needs the newest of: each quote, and each series' bar."""
    return (event["ticker"], event.get("interval"))


def _newer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Is bar/quote entry ``a`` newer state than ``b`` (same snapshot key)?"""
    if "start" in a and "start" in b and a["start"] != b["start"]:
        return bool(a["start"] > b["start"])
    if a.get("closed") != b.get("closed"):
        return bool(a.get("closed"))  # the close supersedes the last in-progress version
    return bool(a["seq"] > b["seq"])


class Member:
    """One subscriber in a group.

    An update is written as soon as it is offered when nothing is pending for this
    member: as a prepared frame where the server offers that (:mod:`prepared_frames`),
    else through ASGI in an eager task, which a socket that takes the bytes finishes in
    that same step (no task switch per member and update). A write the socket has to
    wait for (its buffer is full) stays a task of its own; until it finishes, updates
    wait in the member's bounded queue, newest per key, and are written in order when it
    does. So a slow member only delays itself, and holds at most one write plus
    ``capacity`` updates.
    """

    def __init__(self, group: FanoutGroup, handler: FanoutTransportWSHandler, operation: Operation[Any, Any]):
        self.queue = LatestQueue(group.capacity, event_of=lambda entry: entry["event"])
        self.done = asyncio.Event()  # set when this member ends: group over, or client gone
        self.group_ended = False
        self._writing: asyncio.Task[bool] | None = None
        self._loop = asyncio.get_running_loop()
        websocket = handler.starlette_websocket
        self._send_text = websocket.send_text
        self._write_frame = frame_writer(websocket.scope)
        self._prefix = f'{{"id":{json.dumps(operation.id)},"type":"next","payload":'
        self._prefix_bytes = self._prefix.encode()

    def offer(self, entry: dict[str, Any], frames: dict[bytes, bytes] | None = None) -> bool:
        """Take an update; True if it was written as a prepared frame. ``frames``
        shares the encoded frames of one update between members (by operation id)."""
        if self.done.is_set():
            return False
        if self._writing is not None or self.queue:
            self.queue.put_event(entry["event"], entry)
            return False
        if self._write_frame is not None and frames is not None:
            frame = frames.get(self._prefix_bytes)
            if frame is None:
                frame = frames[self._prefix_bytes] = text_frame(self._prefix_bytes, entry["bytes"], b"}")
            if self._write_frame(frame):
                return True
        self._write_from(entry)
        return False

    def end(self) -> None:
        """The group is over: end after what is pending has been written."""
        if self._writing is None and not self.queue:
            self._finish(group_ended=True)
        else:
            self.queue.put(_END, {"seq": 2**63, "end": True})

    def close(self) -> None:
        """The subscription is over (completed, or its connection closed)."""
        self.done.set()
        if self._writing is not None:
            self._writing.cancel()

    def _write_from(self, entry: dict[str, Any] | None) -> None:
        """Write ``entry``, then what is queued, until a write has to wait (its
        completion carries on from there) or nothing is left."""
        while entry is not None:
            if entry.get("end"):
                self._finish(group_ended=True)
                return
            task = asyncio.Task(self._write(entry["json"]), loop=self._loop, eager_start=True)
            if not task.done():
                self._writing = task
                task.add_done_callback(self._written)
                return
            if not task.result():
                self._finish(group_ended=False)
                return
            entry = self.queue.pop()

    def _written(self, task: asyncio.Task[bool]) -> None:
        self._writing = None
        if task.cancelled() or not task.result():
            self._finish(group_ended=False)
            return
        self._write_from(self.queue.pop())

    async def _write(self, payload: str) -> bool:
        try:
            await self._send_text(self._prefix + payload + "}")
        except (WebSocketDisconnect, RuntimeError, OSError):
            return False  # the client is gone; Strawberry's handler cleans the operation up
        except Exception:
            log.exception("live update write failed; ending the subscription")
            return False
        return True

    def _finish(self, *, group_ended: bool) -> None:
        if not self.done.is_set():
            self.group_ended = group_ended
            self.done.set()


async def _end(operation: Operation[Any, Any], failure: ExecutionResult | PreExecutionError | None) -> None:
    """End a subscription the way Strawberry's own handler would: initial errors, or the
    failing result, or just ``complete``."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        if isinstance(failure, PreExecutionError):
            await operation.send_initial_errors(list(failure.errors or []))
            return
        if failure is not None:
            await operation.send_next(failure)
        await operation.send_operation_message({"id": operation.id, "type": "complete"})


class FanoutGroup:
    def __init__(self, registry: FanoutRegistry, key: GroupKey, variables: dict[str, Any] | None, context: Context):
        self.registry = registry
        self.key = key
        self.capacity = context.settings.subscriber_queue_size
        self.members: set[Member] = set()
        self.snapshot: dict[Hashable, dict[str, Any]] = {}
        self.tap = EventTap()  # which event each result comes from (realtime/tap.py)
        self.failure: ExecutionResult | PreExecutionError | None = None
        self._variables = variables
        self._context = context.for_shared_run(self.tap)
        self.task: asyncio.Task[None] | None = None

    async def settled(self) -> None:
        """Until the run listens (the group can take members) or has ended."""
        listening = asyncio.ensure_future(self.tap.listening.wait())
        try:
            assert self.task is not None
            await asyncio.wait((listening, self.task), return_when=asyncio.FIRST_COMPLETED)
        finally:
            listening.cancel()

    async def run(self) -> None:
        query, _, operation_name = self.key
        try:
            stream = await self.registry.schema.stream(
                query, variable_values=self._variables, context_value=self._context, operation_name=operation_name
            )
            async with contextlib.aclosing(stream):
                async for result in stream:
                    if isinstance(result, PreExecutionError) or not isinstance(result, ExecutionResult):
                        self.failure = result if isinstance(result, PreExecutionError) else None
                        break
                    if result.errors and result.data is None:
                        self.failure = result
                        break
                    self._publish(result)
        except Exception as exc:  # reported to the members as an error, and logged
            log.exception("live group %s failed", self.key[2] or "(anonymous)")
            self.failure = ExecutionResult(
                data=None, errors=[GraphQLError("Internal server error.", original_error=exc)]
            )
        finally:
            self.registry.forget(self)
            for member in list(self.members):
                member.end()

    def _publish(self, result: ExecutionResult) -> None:
        event = self.tap.result_source()
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [e.formatted for e in result.errors]
        if result.extensions:
            payload["extensions"] = result.extensions
        text = json.dumps(payload, separators=(",", ":"))
        entry = {"seq": event["seq"], "event": event, "json": text, "bytes": text.encode()}
        snapshot_key = _snapshot_key(event)
        held = self.snapshot.get(snapshot_key)
        if held is None or _newer(event, held["event"]):
            self.snapshot[snapshot_key] = entry  # joiners get these in sequence order
        frames: dict[bytes, bytes] = {}
        prepared = 0
        for member in self.members:
            prepared += member.offer(entry, frames)
        self.registry.writes["prepared_frame"] += prepared
        self.registry.writes["asgi"] += len(self.members) - prepared

    def join(self, handler: FanoutTransportWSHandler, operation: Operation[Any, Any]) -> Member:
        member = Member(self, handler, operation)
        for entry in sorted(self.snapshot.values(), key=lambda e: int(e["seq"])):
            member.offer(entry)
        self.members.add(member)
        return member

    def leave(self, member: Member) -> None:
        self.members.discard(member)
        if not self.members and self.task is not None:
            # Unregister now, not when the task unwinds: a subscriber arriving in
            # between must start a new group, not join one that is ending.
            self.registry.forget(self)
            self.task.cancel()


class FanoutRegistry:
    """The groups of one API process (created in the app's lifespan), executing on
    ``schema``: the schema the GraphQL view serves."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        # Live updates offered to members (for /health): written as prepared frames, or
        # not (sent through ASGI, queued behind a pending write, or dropped for a member
        # that is ending).
        self.writes = {"prepared_frame": 0, "asgi": 0}
        self._groups: dict[GroupKey, FanoutGroup] = {}
        self._documents: OrderedDict[str, OperationDefinitionNode | None] = OrderedDict()

    @property
    def groups(self) -> int:
        return len(self._groups)

    @property
    def members(self) -> list[Member]:
        return [m for g in self._groups.values() for m in g.members]

    def key_for(self, operation: Operation[Any, Any]) -> GroupKey | None:
        """The group of a live subscription, or None for anything else."""
        definition = self._operation(operation.query, operation.operation_name)
        if definition is None:
            return None
        try:
            variables = json.dumps(operation.variables or {}, sort_keys=True)
        except (TypeError, ValueError):
            return None
        return operation.query, variables, operation.operation_name

    def _operation(self, query: str, name: str | None) -> OperationDefinitionNode | None:
        if query not in self._documents:
            try:
                document = parse(query)
            except GraphQLSyntaxError:
                document = None
            found = None
            if document is not None:
                ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
                if len(ops) == 1:
                    op = ops[0]
                    selections = op.selection_set.selections
                    if (
                        op.operation is OperationType.SUBSCRIPTION
                        and len(selections) == 1
                        and isinstance(selections[0], FieldNode)
                        and selections[0].name.value in GROUPED_FIELDS
                        and not selections[0].directives
                    ):
                        found = op
            self._documents[query] = found
            if len(self._documents) > 512:
                self._documents.popitem(last=False)
        found = self._documents[query]
        if found is not None and name is not None and (found.name is None or found.name.value != name):
            return None
        return found

    async def group(self, key: GroupKey, operation: Operation[Any, Any], context: Context) -> FanoutGroup:
        group = self._groups.get(key)
        if group is None:
            group = FanoutGroup(self, key, operation.variables, context)
            self._groups[key] = group
            group.task = asyncio.create_task(group.run(), name="live-group")
        await group.settled()
        return group

    def forget(self, group: FanoutGroup) -> None:
        if self._groups.get(group.key) is group:
            del self._groups[group.key]

    async def close(self) -> None:
        tasks = [g.task for g in self._groups.values() if g.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class FanoutTransportWSHandler(BaseGraphQLTransportWSHandler["Context", None]):
    """graphql-transport-ws with live subscriptions served by groups, and every
    client message checked for its shape before it is acted on."""

    @property
    def starlette_websocket(self) -> WebSocket:
        """The connection's Starlette websocket, which members write to directly.
        Strawberry's ASGI adapter keeps it as ``ws`` (not public API: checked here once,
        and by the fan-out tests on every Strawberry upgrade)."""
        websocket = getattr(self.websocket, "ws", None)
        if not isinstance(websocket, WebSocket):
            raise TypeError(f"Strawberry's websocket adapter changed: {type(self.websocket).__name__} has no .ws")
        return websocket

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.handle_invalid_message("a message must be a JSON object with a string `type`")
            return
        kind = message["type"]
        if kind in ("subscribe", "complete"):
            op_id = message.get("id")
            limit = self.context.settings.max_operation_id_length
            if not isinstance(op_id, str) or not op_id:
                await self.handle_invalid_message(f"`id` of a {kind} message must be a non-empty string")
                return
            if len(op_id) > limit:
                await self.handle_invalid_message(f"`id` is longer than {limit} characters")
                return
        if kind == "subscribe":
            payload = message.get("payload")
            if not isinstance(payload, dict):
                await self.handle_invalid_message("`payload` of a subscribe message must be an object")
                return
            problem = _payload_problem(payload)
            if problem is not None and self.connection_acknowledged and message["id"] not in self.operations:
                # The operation is refused, not registered: it holds no slot.
                error = GraphQLError(problem, extensions={"code": "BAD_USER_INPUT"})
                await self.send_message({"id": message["id"], "type": "error", "payload": [error.formatted]})
                return
        await super().handle_message(message)  # type: ignore[arg-type]  # its shape was checked above

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        context = self.context
        registry = getattr(self.starlette_websocket.state, "fanout", None)  # the app's lifespan state
        key = registry.key_for(operation) if isinstance(registry, FanoutRegistry) else None
        if not isinstance(registry, FanoutRegistry) or key is None:
            await super().run_operation(operation)
            return
        try:
            if context.guard is not None:
                await context.guard.admit(context, StrawberryOperationType.SUBSCRIPTION)
            with context.subscription_slot():
                group = await registry.group(key, operation, context)
                if group.failure is not None or group.task is None or group.task.done():
                    await _end(operation, group.failure)
                    return
                member = group.join(self, operation)
                try:
                    await member.done.wait()
                    if member.group_ended:
                        await _end(operation, group.failure)
                finally:
                    member.close()
                    group.leave(member)
        except UserFacingError as exc:
            await operation.send_initial_errors([GraphQLError(str(exc), extensions=exc.extensions)])


def _payload_problem(payload: dict[str, Any]) -> str | None:
    """What is wrong with a subscribe payload's fields, if anything."""
    if not isinstance(payload.get("query"), str):
        return "`payload.query` must be a string holding a GraphQL document"
    if payload.get("variables") is not None and not isinstance(payload["variables"], dict):
        return "`payload.variables` must be an object or null"
    if payload.get("operationName") is not None and not isinstance(payload["operationName"], str):
        return "`payload.operationName` must be a string or null"
    return None
