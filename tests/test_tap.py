"""The contract between a shared live run's resolver and its fan-out group."""

import pytest

from pocketquant.realtime.tap import EventTap, TapError


def test_results_pair_with_events_in_order_even_when_the_resolver_runs_ahead() -> None:
    tap = EventTap()
    tap.emitted({"seq": 1})
    tap.emitted({"seq": 2})  # the next event was taken before the first result came out
    assert tap.result_source() == {"seq": 1}
    assert tap.result_source() == {"seq": 2}


def test_a_result_without_its_event_is_an_error_not_a_guess() -> None:
    tap = EventTap()
    with pytest.raises(TapError):
        tap.result_source()
