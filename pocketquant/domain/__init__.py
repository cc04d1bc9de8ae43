"""Pure domain code: bars, intervals, symbols. No I/O, no clock."""

from pocketquant.domain.bars import PROVIDER_MAX_BARS, Bar, BarColumns, CheckedBars, InvalidBarsError
from pocketquant.domain.intervals import Interval
from pocketquant.domain.symbols import InvalidSymbolError, SeriesKey, SymbolKey

__all__ = [
    "PROVIDER_MAX_BARS",
    "Bar",
    "BarColumns",
    "CheckedBars",
    "Interval",
    "InvalidBarsError",
    "InvalidSymbolError",
    "SeriesKey",
    "SymbolKey",
]
