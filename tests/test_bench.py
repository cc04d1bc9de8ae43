"""The benchmark command's live sections measure what they claim, at a small scale."""

from pocketquant.bench_live import aggregator_throughput, run_fanout


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
