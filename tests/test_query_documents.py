"""The document cache: parsed and validated once per query text, bounded, and never
keeping what did not parse."""

import pytest
from graphql import GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule

from pocketquant.api.documents import DocumentCache
from pocketquant.api.schema import build_schema

SCHEMA = build_schema()._schema


def test_a_text_is_parsed_and_validated_once() -> None:
    cache = DocumentCache([], max_tokens=100)
    query = "{ trackedSymbols { items { ticker } } }"
    document = cache.parse(query)
    assert cache.parse(query) is document
    errors = cache.validate(SCHEMA, query, document, ())
    assert errors == []
    assert cache.validate(SCHEMA, query, document, ()) is errors


def test_validation_uses_the_cache_rules_and_the_schema_rules() -> None:
    from graphql import specified_rules

    cache = DocumentCache([NoSchemaIntrospectionCustomRule], max_tokens=100)
    query = "{ __schema { queryType { name } } }"
    errors = cache.validate(SCHEMA, query, cache.parse(query), tuple(specified_rules))
    assert "introspection" in errors[0].message.lower()
    unknown = "{ noSuchField }"
    errors = cache.validate(SCHEMA, unknown, cache.parse(unknown), tuple(specified_rules))
    assert "Cannot query field 'noSuchField'" in errors[0].message


def test_texts_that_do_not_parse_are_refused_and_not_kept() -> None:
    cache = DocumentCache([], max_tokens=10)
    with pytest.raises(GraphQLError, match="Syntax Error"):
        cache.parse("{ trackedSymbols { ")
    with pytest.raises(GraphQLError, match="more than 10 tokens"):
        cache.parse("{ " + "a " * 20 + "}")
    assert len(cache) == 0


def test_the_cache_is_bounded_by_entries_and_by_characters() -> None:
    cache = DocumentCache([], max_tokens=100, max_entries=3, max_chars=200, max_text_chars=200)
    texts = [f"{{ a{i}: __typename }}" for i in range(5)]
    for text in texts:
        cache.parse(text)
    assert len(cache) == 3
    first = cache.parse(texts[2])  # kept: the three most recent
    assert cache.parse(texts[2]) is first
    long = "{ " + "__typename " * 15 + "}"  # 168 characters: the least recently used give way
    cache.parse(long)
    assert len(cache) == 2
    assert cache.parse(texts[2]) is first
    too_long = "{ " + "__typename " * 19 + "}"  # over 200: parsed, not kept
    assert cache.parse(too_long) is not cache.parse(too_long)
    assert len(cache) == 2
    small = DocumentCache([], max_tokens=100, max_text_chars=100)  # a long text is not kept...
    small.parse(texts[0])
    assert small.parse(long) is not small.parse(long)
    assert small.parse(texts[0]) is small.parse(texts[0])  # ...and pushes nothing out


def test_a_different_document_for_the_same_text_is_validated_again() -> None:
    cache = DocumentCache([], max_tokens=100, max_entries=1)
    query = "{ trackedSymbols { items { ticker } } }"
    document = cache.parse(query)
    cache.parse("{ __typename }")  # evicts the first
    other = cache.parse(query)
    assert other is not document
    assert cache.validate(SCHEMA, query, document, ()) == []
