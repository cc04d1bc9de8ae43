from graphql import GraphQLError

from pocketquant.graphql.errors import BadUserInputError, should_mask_error


def test_resolver_failures_are_masked_but_user_errors_are_not() -> None:
    assert should_mask_error(GraphQLError("boom", path=["bars"], original_error=RuntimeError("db password wrong")))
    assert not should_mask_error(GraphQLError("bad", path=["bars"], original_error=BadUserInputError("bad")))
    assert not should_mask_error(GraphQLError("Value '2m' does not exist", original_error=KeyError("2m")))
