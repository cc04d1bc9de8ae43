"""The one backoff every retry loop uses."""

from pocketquant.infra.backoff import backoff_delay


def test_backoff_doubles_up_to_its_cap_with_bounded_jitter() -> None:
    assert [backoff_delay(n, base=0.5, cap=30.0, jitter=0.0) for n in range(1, 9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0,
    ]  # fmt: skip
    assert backoff_delay(0, base=0.5, cap=30.0, jitter=0.0) == 0.5
    assert backoff_delay(10_000, base=0.5, cap=600.0, jitter=0.0) == 600.0  # no overflow on long outages
    for _ in range(1_000):
        assert 2.0 <= backoff_delay(4, base=0.5, cap=30.0) <= 4.0  # half jitter
        assert 0.0 <= backoff_delay(4, base=0.5, cap=30.0, jitter=1.0) <= 4.0  # full jitter
    assert len({backoff_delay(4, base=0.5, cap=30.0) for _ in range(100)}) > 50  # clients spread out
