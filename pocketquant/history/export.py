"""A series out of the store as CSV or Parquet, a page at a time: for `pocketquant export`
and the API's CSV route. Intervals not stored are resampled the way `bars` resamples them."""

from __future__ import annotations

import enum
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

from pocketquant.domain import BarColumns, SeriesKey
from pocketquant.history.bars import SeriesReader
from pocketquant.history.cache import PageQuery

EXPORT_PAGE = 5_000
CSV_HEADER = "time,open,high,low,close,volume\n"


class ExportFormat(enum.StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


async def pages(
    reader: SeriesReader, series: SeriesKey, start: int | None, end: int | None
) -> AsyncIterator[BarColumns]:
    """The bars opening in [start, end] (inclusive; None: unbounded), oldest first, in
    pages of up to ``EXPORT_PAGE``."""
    cursor = start
    while True:
        served = await reader.page(series, PageQuery(cursor, end, EXPORT_PAGE, False))
        columns = served.page.decode()
        if len(columns):
            yield columns
        if not served.page.has_more or served.page.last_time is None:
            return
        cursor = served.page.last_time + 1


def csv_rows(columns: BarColumns) -> str:
    """The rows of a page (ISO 8601 UTC times, values as stored)."""
    out = io.StringIO()
    for t, o, h, lo, c, v in zip(columns.t, columns.o, columns.h, columns.l, columns.c, columns.v, strict=True):
        out.write(f"{datetime.fromtimestamp(t, UTC).isoformat()},{o!r},{h!r},{lo!r},{c!r},{v!r}\n")
    return out.getvalue()


class ParquetFile:
    """A Parquet file written a page at a time: ``time`` as UTC timestamps (seconds),
    then the values."""

    def __init__(self, path: Path) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - the dev environment has it
            raise RuntimeError("Parquet export needs pyarrow: install pocketquant[parquet]") from exc
        self._pa = pa
        self._schema = pa.schema(
            [("time", pa.timestamp("s", tz="UTC"))] + [(name, pa.float64()) for name in _VALUE_NAMES]
        )
        self._writer = pq.ParquetWriter(path, self._schema)

    def write(self, columns: BarColumns) -> None:
        pa = self._pa
        arrays = [pa.array(columns.t, type=pa.timestamp("s", tz="UTC"))]
        arrays += [pa.array(getattr(columns, c), type=pa.float64()) for c in "ohlcv"]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


_VALUE_NAMES = ("open", "high", "low", "close", "volume")


async def export_series(
    reader: SeriesReader,
    series: SeriesKey,
    start: int | None,
    end: int | None,
    fmt: ExportFormat,
    path: Path,
    on_page: Callable[[int], None] = lambda n: None,
) -> int:
    """Write the series to ``path`` (through a temporary file renamed at the end, so a
    failed export leaves no half-written file). Returns the bars written."""
    partial = path.with_name(f".{path.name}.partial")
    written = 0
    try:
        if fmt is ExportFormat.PARQUET:
            parquet = ParquetFile(partial)
            try:
                async for columns in pages(reader, series, start, end):
                    parquet.write(columns)
                    written += len(columns)
                    on_page(len(columns))
            finally:
                parquet.close()
        else:
            with partial.open("w", encoding="utf-8", newline="") as out:
                out.write(CSV_HEADER)
                async for columns in pages(reader, series, start, end):
                    out.write(csv_rows(columns))
                    written += len(columns)
                    on_page(len(columns))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return written
