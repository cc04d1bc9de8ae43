"""BarStore against mongoeco's wire server: chunking, idempotence, corrections, paging."""

import asyncio
import random

import pytest

from pocketquant.domain import Bar, BarColumns, Interval, InvalidBarsError, SeriesKey
from pocketquant.history.documents import BarChunk
from pocketquant.resources import Resources

SERIES = SeriesKey("NASDAQ", "AAPL", Interval.MINUTE_1)
T0 = 1_795_132_800  # 2026-11-20 00:00 UTC


def make_bars(n: int, start: int = T0, step: int = 60, seed: int = 1) -> BarColumns:
    rng = random.Random(seed)
    cols = BarColumns()
    for i in range(n):
        o = round(100 + rng.random() * 10, 2)
        c = round(100 + rng.random() * 10, 2)
        cols.append(Bar(start + i * step, o, max(o, c) + 0.5, min(o, c) - 0.5, c, float(rng.randint(1, 1000))))
    return cols


async def chunk_count() -> int:
    return await BarChunk.find(BarChunk.symbol == SERIES.symbol).count()


async def test_bars_go_into_chunks_of_aligned_spans(resources: Resources) -> None:
    bars = make_bars(2_500)
    result = await resources.store.write(SERIES, bars)
    assert (result.bars_inserted, result.bars_updated, result.chunks_written) == (2_500, 0, result.chunks_written)
    chunks = await BarChunk.find(BarChunk.symbol == "AAPL").sort("+start").to_list()
    span = resources.settings.chunk_size * 60
    assert len(chunks) == result.chunks_written >= 3
    assert all(c.start % span == 0 and c.start <= c.first <= c.last < c.start + span for c in chunks)
    assert sum(c.n for c in chunks) == 2_500
    stats = await resources.store.stats(SERIES)
    assert (stats.bar_count, stats.first, stats.last) == (2_500, bars.t[0], bars.t[-1])


async def test_rewriting_identical_bars_writes_no_chunk(resources: Resources) -> None:
    bars = make_bars(3_000)
    await resources.store.write(SERIES, bars)
    versions = {c.start: c.version for c in await BarChunk.find_all().to_list()}
    again = await resources.store.write(SERIES, bars)
    assert (again.chunks_written, again.bars_inserted, again.bars_updated, again.bars_unchanged) == (0, 0, 0, 3_000)
    assert {c.start: c.version for c in await BarChunk.find_all().to_list()} == versions


async def test_a_corrected_bar_rewrites_only_its_chunk(resources: Resources) -> None:
    bars = make_bars(3_000)
    await resources.store.write(SERIES, bars)
    last = bars.bar(-1)
    corrected = BarColumns.from_bars(
        [*list(bars)[:-1], Bar(last.time, last.open, last.high + 1, last.low, last.close, 7.0)]
    )
    result = await resources.store.write(SERIES, corrected)
    assert (result.chunks_written, result.bars_updated, result.bars_inserted) == (1, 1, 0)
    page = await resources.store.read_page(SERIES, start=None, end=None, limit=1, newest_first=True)
    assert page.bars.bar(0) == corrected.bar(-1)
    assert (await resources.store.stats(SERIES)).bar_count == 3_000


async def test_a_bar_fetched_while_forming_never_replaces_a_final_one(resources: Resources) -> None:
    """A sync fetches minute M half-way; the stream stores the whole minute M; the
    sync's write lands after it. The whole minute stays."""
    whole = make_bars(3, seed=1)
    half = BarColumns.from_bars([*list(whole)[:-1], Bar(whole.t[-1], 100.0, 100.5, 99.5, 100.2, 3.0)])

    async def newest() -> Bar:
        return (await resources.store.read_page(SERIES, start=None, end=None, limit=1, newest_first=True)).bars.bar(0)

    await resources.store.write(SERIES, whole)  # the stream's final bars
    late = await resources.store.write(SERIES, half, forming=half.t[-1])
    assert (late.bars_updated, late.chunks_written) == (0, 0)
    assert await newest() == whole.bar(-1)

    # The other way round: a forming bar is stored (marked), and the final one replaces it.
    other = SeriesKey("NASDAQ", "MSFT", Interval.MINUTE_1)
    await resources.store.write(other, half, forming=half.t[-1])
    chunk = await BarChunk.find_one(BarChunk.symbol == "MSFT")
    assert chunk is not None
    assert chunk.forming == [half.t[-1]]
    # A newer fetch of the still forming bar replaces the older one.
    later = BarColumns.from_bars([Bar(whole.t[-1], 100.0, 100.9, 99.5, 100.4, 5.0)])
    assert (await resources.store.write(other, later, forming=later.t[0])).bars_updated == 1
    final = await resources.store.write(other, whole)
    assert final.bars_updated == 1
    chunk = await BarChunk.find_one(BarChunk.symbol == "MSFT")
    assert chunk is not None
    assert chunk.forming == []
    page = await resources.store.read_page(other, start=None, end=None, limit=10)
    assert list(page.bars) == list(whole)


async def test_overlapping_writes_merge_without_duplicates(resources: Resources) -> None:
    await resources.store.write(SERIES, make_bars(1_500))
    newer = make_bars(1_500, start=T0 + 1_000 * 60)  # 500 overlap, values differ
    result = await resources.store.write(SERIES, newer)
    assert result.bars_inserted == 1_000
    page = await resources.store.read_page(SERIES, start=None, end=None, limit=5_000)
    assert page.bars.t == [T0 + i * 60 for i in range(2_500)]
    assert page.bars.c[1_000:] == newer.c


async def test_concurrent_writers_to_one_chunk_lose_nothing(resources: Resources) -> None:
    bars = make_bars(400, start=resources.store.chunk_start(SERIES, T0))  # all in one chunk
    evens = BarColumns.from_bars(b for i, b in enumerate(bars) if i % 2 == 0)
    odds = BarColumns.from_bars(b for i, b in enumerate(bars) if i % 2 == 1)
    parts = [BarColumns.from_bars(list(evens)[k::4]) for k in range(4)] + [
        BarColumns.from_bars(list(odds)[k::4]) for k in range(4)
    ]
    await asyncio.gather(*(resources.store.write(SERIES, p) for p in parts))
    page = await resources.store.read_page(SERIES, start=None, end=None, limit=1_000)
    assert list(page.bars) == list(bars)
    assert await chunk_count() == 1


@pytest.mark.parametrize("newest_first", [False, True])
async def test_pages_walk_the_range_exactly_once(resources: Resources, newest_first: bool) -> None:
    bars = make_bars(2_345)
    await resources.store.write(SERIES, bars)
    lo, hi = bars.t[100], bars.t[2_200]
    seen: list[int] = []
    cursor_lo, cursor_hi = lo, hi
    while True:
        page = await resources.store.read_page(
            SERIES, start=cursor_lo, end=cursor_hi, limit=333, newest_first=newest_first
        )
        seen.extend(page.bars.t)
        if not page.has_more:
            break
        if newest_first:
            cursor_hi = page.bars.t[-1] - 1
        else:
            cursor_lo = page.bars.t[-1] + 1
    expected = bars.t[100:2_201]
    assert seen == (expected[::-1] if newest_first else expected)


async def test_invalid_bars_are_refused_and_nothing_is_written(resources: Resources) -> None:
    bars = make_bars(10)
    bars.t[5] = bars.t[4]
    with pytest.raises(InvalidBarsError, match="strictly increasing"):
        await resources.store.write(SERIES, bars)
    bad = make_bars(10)
    bad.h[3] = bad.l[3] - 1
    with pytest.raises(InvalidBarsError, match="inconsistent OHLC"):
        await resources.store.write(SERIES, bad)
    assert await chunk_count() == 0
