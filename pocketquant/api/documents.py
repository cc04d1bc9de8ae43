"""Documents parsed and validated once per query text.

Clients send the same few documents again and again. Strawberry's ParserCache and
ValidationCache did this as two extensions, with MaxTokensLimiter and AddValidationRules
as two more: four extensions whose hooks every request paid for even on a hit, and a
validation cache keyed by the parsed document, which hashes every node of it on each
lookup. Here one extension does all four, keyed by the query text: a hit is one dict
lookup in each phase.

The cache is bounded by entries and by the characters of the texts it keeps (a
document may be long: tokens are limited, string literals only after parsing); a text
longer than ``max_text_chars`` is parsed each time, so a few huge documents cannot push
out every other. Texts that fail to parse are not kept. Validation results depend only on the text, the
schema and the rules, all fixed for a schema: they are kept with the document.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse
from graphql.validation import ASTValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document


@dataclass(slots=True)
class _Entry:
    document: DocumentNode
    errors: list[GraphQLError] | None = None  # None: not validated yet


class DocumentCache:
    """Parses with a token limit and validates with the schema's rules plus ``rules``;
    remembers the most recently used texts. One per schema."""

    def __init__(
        self, rules: Sequence[type[ASTValidationRule]], max_tokens: int, max_entries: int = 1_024,
        max_chars: int = 4 * 2**20, max_text_chars: int = 64 * 2**10,
    ) -> None:  # fmt: skip
        self._rules = tuple(rules)
        self._max_tokens = max_tokens
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._max_text_chars = min(max_text_chars, max_chars)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    def parse(self, query: str) -> DocumentNode:
        """The document of ``query``; raises GraphQLError if it does not parse (a syntax
        error, or more tokens than allowed)."""
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
            return entry.document
        document = parse(query, max_tokens=self._max_tokens)
        if len(query) <= self._max_text_chars:
            self._entries[query] = _Entry(document)
            self._chars += len(query)
            while len(self._entries) > self._max_entries or self._chars > self._max_chars:
                old, _ = self._entries.popitem(last=False)
                self._chars -= len(old)
        return document

    def validate(
        self, schema: GraphQLSchema, query: str, document: DocumentNode, schema_rules: Sequence[type[ASTValidationRule]]
    ) -> list[GraphQLError]:
        """The validation errors of ``document`` (parsed from ``query``): by the schema's
        own rules (``schema_rules``, fixed per schema) and this cache's."""
        entry = self._entries.get(query)
        if entry is not None and entry.document is document and entry.errors is not None:
            return entry.errors
        errors = validate_document(schema, document, (*schema_rules, *self._rules))
        if entry is not None and entry.document is document:
            entry.errors = errors
        return errors


class DocumentExtension(SchemaExtension):
    """Parse and validate through the schema's :class:`DocumentCache`."""

    def __init__(self, cache: DocumentCache) -> None:
        self.cache = cache

    def on_parse(self) -> Iterator[None]:
        ec = self.execution_context
        if ec.graphql_document is None and ec.query:
            ec.graphql_document = self.cache.parse(ec.query)
        yield

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        if ec.query and ec.graphql_document is not None:
            ec.pre_execution_errors = self.cache.validate(
                ec.schema._schema, ec.query, ec.graphql_document, ec.validation_rules
            )
        yield
