"""A local sFOX simulator: WebSocket feed plus REST balances. Needs the `demo` extra (websockets)."""

from .ledger import Ledger
from .server import Limits, Simulator

__all__ = ["Ledger", "Limits", "Simulator"]
