"""A local TradingView: deterministic instruments served over the real wire protocol."""

from pocketquant.simulator.market import DEFAULT_INSTRUMENTS, Instrument, SimulatedMarket
from pocketquant.simulator.server import Fault, TradingViewSimulator

__all__ = ["DEFAULT_INSTRUMENTS", "Fault", "Instrument", "SimulatedMarket", "TradingViewSimulator"]
