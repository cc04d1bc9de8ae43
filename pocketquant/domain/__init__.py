"""Pure domain code: bars, intervals, symbols. No I/O, no clock."""

from pocketquant.domain.bars import Bar, BarColumns, InvalidBarsError
from pocketquant.domain.intervals import Interval
from pocketquant.domain.symbols import InvalidSymbolError, SeriesKey, SymbolKey

__all__ = [
    "Bar",
    "BarColumns",
    "Interval",
    "InvalidBarsError",
    "InvalidSymbolError",
    "SeriesKey",
    "SymbolKey",
]
