"""The benchmark command's live sections measure what they claim, at a small scale."""

from pocketquant.benchmarks.live import aggregator_throughput, run_fanout
from pocketquant.benchmarks.subscriptions import run_subscriptions


def test_aggregator_benchmark_reports_both_rates() -> None:
    aggregate, bare = aggregator_throughput(n=20_000, symbols=4)
    assert aggregate > 0
    assert bare > 0


async def test_fanout_benchmark_delivers_every_update_to_every_subscriber() -> None:
    graphql, baseline = await run_fanout(subscribers=6, rate=5.0, duration=1.0)
    for result in (graphql, baseline):
        assert (result.received, result.expected) == (30, 30), result
        assert 0 < result.p50_ms <= result.p99_ms
        assert result.peak_rss_mb >= result.start_rss_mb > 0


async def test_subscriptions_benchmark_delivers_every_update_to_every_subscription() -> None:
    graphql, baseline = await run_subscriptions(connections=20, rate=500.0, duration=1.5)
    for result in (graphql, baseline):
        # Connections 0-19 hold symbols 0-199 once each; 750 updates reach 0-249 twice.
        assert (result.received, result.expected) == (400, 400), result
        assert result.subscriptions == 200
        assert 0 < result.p50_ms <= result.p99_ms
        assert result.peak_rss_mb >= result.subscribed_rss_mb > 0
