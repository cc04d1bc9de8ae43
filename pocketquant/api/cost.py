"""The cost of a GraphQL operation, computed before it runs.

Cost counts the values a response may hold: each selected field costs 1, and a list
multiplies what is selected inside it by the most items it can have. A page of bars
holds up to ``first`` bars, so ``bars(first: 5000) { columns { t o h l c v } }`` costs
about 30,000 and ``bars(first: 5000) { bars { time open high low close volume } }``
about 30,000 too; fifteen aliases of either are refused before anything is read.
Fragments count where they are spread. Introspection fields count 1 each (their size
is bounded by the schema, and they are off unless enabled).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_abstract_type,
    is_object_type,
)

from pocketquant.settings import Settings

# Lists whose size is known from the schema's own bounds.
_INTERVALS = 13


def _is_list(type_: GraphQLOutputType) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


class CostModel:
    def __init__(self, schema: GraphQLSchema, settings: Settings) -> None:
        self._schema = schema
        self._page_default = settings.page_size_default
        self._page_max = settings.page_size_max
        self._sizes: dict[tuple[str, str], int] = {
            ("Query", "syncStatus"): _INTERVALS,
            ("Symbol", "syncStatus"): _INTERVALS,
            ("Symbol", "trackedIntervals"): _INTERVALS,
            ("Query", "watchedSymbols"): settings.max_watched_symbols,
            ("StreamStatus", "watchedSymbols"): settings.max_watched_symbols,
            ("StreamStatus", "symbolErrors"): settings.max_watched_symbols,
            ("WatchlistChanged", "watched"): settings.max_watched_symbols,
            ("WatchlistChanged", "changed"): settings.max_symbols_per_subscription,
            ("SyncBatchEnqueued", "jobs"): settings.sync_many_max_series,
            ("SymbolTracked", "jobs"): _INTERVALS,
            ("GapsRepairQueued", "outOfReach"): 1_000,  # MAX_GAPS_LISTED
        }

    def cost(self, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None) -> int:
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is not None:
            operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
        if len(operations) != 1:
            return 0  # execution refuses an ambiguous or missing operation by itself
        operation = operations[0]
        root = self._schema.get_root_type(operation.operation)
        if root is None:
            return 0
        walk = _Walk(
            self,
            {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)},
            variables or {},
        )
        return walk.selections(root, operation.selection_set, page=1)

    def page(self, first: int | None) -> int:
        if first is None:
            return self._page_default
        return max(1, min(first, self._page_max))

    def size(self, parent: str, field: str) -> int | None:
        return self._sizes.get((parent, field))


class _Walk:
    def __init__(self, model: CostModel, fragments: dict[str, FragmentDefinitionNode], variables: Mapping[str, Any]):
        self._model = model
        self._fragments = fragments
        self._variables = variables

    def _int_argument(self, node: FieldNode, name: str) -> int | None:
        for argument in node.arguments or ():
            if argument.name.value != name:
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, VariableNode):
                raw = self._variables.get(value.name.value)
                return raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        return None

    def selections(self, parent: GraphQLObjectType, selection_set: SelectionSetNode, page: int) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field(parent, selection, page)
            elif isinstance(selection, InlineFragmentNode):
                total += self._fragment(parent, selection.type_condition, selection.selection_set, page)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self._fragments.get(selection.name.value)
                if fragment is not None:
                    total += self._fragment(parent, fragment.type_condition, fragment.selection_set, page)
        return total

    def _fragment(self, parent: GraphQLObjectType, condition: Any, selection_set: SelectionSetNode, page: int) -> int:
        if condition is not None:
            schema = self._model._schema
            named = schema.get_type(condition.name.value)
            if is_object_type(named) and named is not parent:
                return 0  # a fragment on another member of a union
            if is_abstract_type(named) and not schema.is_sub_type(named, parent):
                return 0
        return self.selections(parent, selection_set, page)

    def _field(self, parent: GraphQLObjectType, node: FieldNode, page: int) -> int:
        name = node.name.value
        if name.startswith("__"):
            return 1
        definition = parent.fields.get(name)
        if definition is None:
            return 1
        if parent.name == "Query" and name in ("bars", "trackedSymbols", "gaps"):
            page = self._model.page(self._int_argument(node, "first"))
        multiplier = 1
        if parent.name == "BarColumns":
            return page  # one value per bar of the page
        if _is_list(definition.type):
            if parent.name in ("BarPage", "SymbolPage", "GapReport"):
                multiplier = page
            elif (known := self._model.size(parent.name, name)) is not None:
                multiplier = known
            else:
                multiplier = self._int_argument(node, "limit") or self._int_argument(node, "first") or 10
        if node.selection_set is None:
            return multiplier
        child = get_named_type(definition.type)
        inner = 0
        if is_object_type(child):
            inner = self.selections(child, node.selection_set, page)
        elif is_abstract_type(child):
            # A union: the costliest member is the most it can cost.
            members = self._model._schema.get_possible_types(child)
            inner = max((self.selections(m, node.selection_set, page) for m in members), default=0)
        return 1 + multiplier * inner
