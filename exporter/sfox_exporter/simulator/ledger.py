"""Plausible sFOX account balances that drift over time, for the simulator.

Amounts are Decimals so that every number the simulator sends is exact and tests can compare the
exporter's output to the last digit.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

WALLETS = ("trading", "collateral", "borrow", "lending")

_PLACES = {"usd": Decimal("0.01")}
_DEFAULT_PLACES = Decimal("0.00000001")


@dataclass
class Holding:
    currency: str
    available: Decimal
    held: Decimal
    collateral: Decimal = Decimal(0)
    borrow: Decimal = Decimal(0)
    lending: Decimal = Decimal(0)

    @property
    def balance(self) -> Decimal:
        return self.available + self.held

    @property
    def trading(self) -> Decimal:
        return self.balance - self.collateral - self.lending

    def fields(self) -> dict[str, Decimal]:
        return {
            "balance": self.balance,
            "available": self.available,
            "held": self.held,
            "trading_wallet": self.trading,
            "collateral_wallet": self.collateral,
            "borrow_wallet": self.borrow,
            "lending_wallet": self.lending,
        }

    def feed_entry(self) -> dict[str, str]:
        """As the WebSocket sends it: every value a decimal string."""
        return {"currency": self.currency, **{key: _text(value) for key, value in self.fields().items()}}

    def rest_entry(self) -> dict[str, Any]:
        """As GET /v1/user/balance sends it: JSON numbers."""
        return {"currency": self.currency, **{key: float(value) for key, value in self.fields().items()}}


@dataclass
class Web3Wallet:
    network: str
    address: str
    currency: str  # as sFOX sends it, e.g. "USDC"
    balance: Decimal

    def feed_entry(self) -> dict[str, str]:
        return {
            "address": self.address,
            "balance": _text(self.balance),
            "currency": self.currency,
            "network": self.network,
            "type": "web3",
        }


@dataclass
class Ledger:
    """One sFOX account: its holdings and Web3 wallets. Thread-safe."""

    name: str
    holdings: dict[str, Holding] = field(default_factory=dict)
    web3: list[Web3Wallet] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def demo(cls, name: str, seed: int = 0) -> Ledger:
        rng = random.Random(f"{name}:{seed}")
        scale = Decimal(rng.randint(50, 150)) / 100
        ledger = cls(name)
        for currency, available, held, collateral, borrow, lending in (
            ("usd", "250000.00", "12500.00", "20000.00", "5000.00", "15000.00"),
            ("btc", "3.51234567", "0.25", "0.5", "0.1", "0.75"),
            ("eth", "41.87654321", "2.5", "5", "1.25", "3"),
            ("usdc", "98000.5", "1500", "10000", "2500", "7500"),
            ("sol", "812.345", "0", "0", "0", "0"),
        ):
            ledger.holdings[currency] = Holding(
                currency,
                _quantize(currency, Decimal(available) * scale),
                _quantize(currency, Decimal(held) * scale),
                _quantize(currency, Decimal(collateral) * scale),
                _quantize(currency, Decimal(borrow) * scale),
                _quantize(currency, Decimal(lending) * scale),
            )
        ledger.web3 = [
            Web3Wallet("Ethereum", "0x0bCdB57ae247F434C91b1d4521fFd6601f7e8999", "USDC", Decimal("250.5")),
            Web3Wallet("Ethereum", "0x0bCdB57ae247F434C91b1d4521fFd6601f7e8999", "ETH", Decimal("1.2")),
            Web3Wallet("Solana", "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV", "SOL", Decimal("12.75")),
        ]
        return ledger

    def feed_entries(self, currencies: list[str] | None = None) -> list[dict[str, str]]:
        with self._lock:
            chosen = currencies if currencies is not None else list(self.holdings)
            return [self.holdings[c].feed_entry() for c in chosen if c in self.holdings]

    def rest_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [holding.rest_entry() for holding in self.holdings.values()]

    def web3_entries(self) -> list[dict[str, str]]:
        with self._lock:
            return [wallet.feed_entry() for wallet in self.web3]

    def set(self, currency: str, **amounts: str | Decimal) -> dict[str, str]:
        """Set some of available, held, collateral, borrow, lending; returns the feed entry."""
        with self._lock:
            holding = self.holdings.setdefault(currency, Holding(currency, Decimal(0), Decimal(0)))
            for key, value in amounts.items():
                if key not in ("available", "held", "collateral", "borrow", "lending"):
                    raise ValueError(f"unknown amount {key!r}")
                setattr(holding, key, Decimal(value))
            return holding.feed_entry()

    def drift(self, rng: random.Random) -> list[dict[str, str]]:
        """Move one or two currencies the way trading does, and return their feed entries."""
        with self._lock:
            changed = rng.sample(sorted(self.holdings), k=min(2, len(self.holdings)))
            for currency in changed:
                holding = self.holdings[currency]
                step = Decimal(rng.uniform(-0.004, 0.004)).quantize(Decimal("0.000001"))
                moved = _quantize(currency, holding.available * step)
                holding.available = max(Decimal(0), holding.available + moved)
                if rng.random() < 0.3:
                    # Orders placed hold 1 % of what is available, orders done free a tenth of what
                    # is held: held hovers near a tenth of available instead of drifting off (the
                    # demo's thresholds must stay on their sides for as long as it runs).
                    if rng.random() < 0.5:
                        shift = _quantize(currency, holding.available * Decimal("0.01"))
                    else:
                        shift = -_quantize(currency, holding.held * Decimal("0.1"))
                    holding.held += shift
                    holding.available -= shift
            return [self.holdings[c].feed_entry() for c in changed]

    def drift_web3(self, rng: random.Random) -> dict[str, str] | None:
        with self._lock:
            if not self.web3:
                return None
            wallet = rng.choice(self.web3)
            wallet.balance = max(Decimal(0), wallet.balance + Decimal(rng.uniform(-1, 1)).quantize(Decimal("0.01")))
            return wallet.feed_entry()


def _quantize(currency: str, value: Decimal) -> Decimal:
    return value.quantize(_PLACES.get(currency, _DEFAULT_PLACES))


def _text(value: Decimal) -> str:
    """sFOX style: plain decimal notation, no exponent, no trailing zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
