"""A local sFOX simulator: WebSocket feed plus REST balances. Needs the `demo` extra (websockets)."""

from .enterprise import EnterpriseLedger
from .ledger import Ledger
from .records import Limits
from .server import Simulator

__all__ = ["EnterpriseLedger", "Ledger", "Limits", "Simulator"]
