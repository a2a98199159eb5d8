"""sFOX Connect in the simulator: an enterprise account's end users and their balances.

An EnterpriseLedger holds thousands of end users whose balances move the way a platform's do
(deposits, trades between two currencies, withdrawals). Each change yields the message sFOX sends on
`private.enterprise.users.balances`: one user's full set of currencies (protocol notes, "sFOX
Connect"). `user_record` is the `private.enterprise.users` onboarding message with its personal data
and user token, for tests proving none of it is ever exported or logged. `flood_payloads` builds
100,000-user floods as JSON text without touching the ledger, for the benchmarks.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

END_USERS_FEED = "private.enterprise.users.balances"
USERS_FEED = "private.enterprise.users"
CURRENCIES = ("usd", "btc", "eth", "usdc", "sol")
_PLACES = {"usd": Decimal("0.01"), "usdc": Decimal("0.000001")}
_DEFAULT_PLACES = Decimal("0.00000001")
# Typical holdings, in each currency's unit: a user holds a random fraction of a few of these.
_SCALE: dict[str, Decimal] = {"usd": Decimal(5000), "btc": Decimal("0.2"), "eth": Decimal(3), "usdc": Decimal(4000),
                             "sol": Decimal(40)}


def user_id(index: int) -> str:
    return f"user-{index:06d}"


def accepts_flag(flag: Any) -> bool:
    """The enterprise flag sFOX's pages give both ways: boolean true, or the string "true"."""
    return flag is True or flag == "true"


class EnterpriseLedger:
    """One enterprise account's end users. Thread-safe."""

    def __init__(self, name: str, users: int = 2000, seed: int = 0) -> None:
        self.name = name
        self._rng = random.Random(f"{name}:{seed}")
        self._lock = threading.Lock()
        self._holdings: dict[str, dict[str, Decimal]] = {}
        for index in range(users):
            held = self._rng.sample(CURRENCIES, self._rng.randint(1, len(CURRENCIES)))
            self._holdings[user_id(index)] = {c: _quantize(c, Decimal(self._rng.random()) * _SCALE[c]) for c in held}

    @property
    def users(self) -> list[str]:
        with self._lock:
            return list(self._holdings)

    def payload(self, user: str) -> dict[str, Any]:
        """The user's full set of currencies, as `private.enterprise.users.balances` sends it."""
        with self._lock:
            return self._payload(user)

    def payloads(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._payload(user) for user in self._holdings]

    def set(self, user: str, **balances: str | Decimal) -> dict[str, Any]:
        """Replace a user's holdings (a currency left out is gone) and return the message payload."""
        with self._lock:
            self._holdings[user] = {currency: Decimal(value) for currency, value in balances.items()}
            return self._payload(user)

    def holdings(self, user: str) -> dict[str, Decimal]:
        with self._lock:
            return dict(self._holdings[user])

    def drift(self, rng: random.Random, changes: int = 1) -> list[dict[str, Any]]:
        """`changes` users deposit, trade or withdraw; their payloads."""
        payloads = []
        with self._lock:
            users = list(self._holdings)
            for _ in range(changes):
                user = rng.choice(users)
                self._move(rng, self._holdings[user])
                payloads.append(self._payload(user))
        return payloads

    @staticmethod
    def _move(rng: random.Random, holdings: dict[str, Decimal]) -> None:
        currency = rng.choice(CURRENCIES)
        amount = _quantize(currency, Decimal(rng.random()) * _SCALE[currency] / 4)
        step = rng.random()
        if step < 0.4:  # deposit
            holdings[currency] = holdings.get(currency, Decimal(0)) + amount
        elif step < 0.8 and holdings:  # trade: sell some of one currency for another
            sold = rng.choice(list(holdings))
            holdings[sold] = _quantize(sold, holdings[sold] / 2)
            holdings[currency] = holdings.get(currency, Decimal(0)) + amount
        elif holdings:  # withdrawal, sometimes of everything: the currency is gone for the user
            gone = rng.choice(list(holdings))
            if rng.random() < 0.5:
                del holdings[gone]
            else:
                holdings[gone] = _quantize(gone, holdings[gone] / 3)

    def _payload(self, user: str) -> dict[str, Any]:
        updates = []
        for currency, balance in self._holdings[user].items():
            held = _quantize(currency, balance / 10)
            updates.append({
                "currency": currency, "balance": str(balance), "available": str(balance - held),
                "held": str(held), "trading_wallet": str(balance), "collateral_wallet": "0",
                "borrow_wallet": "0", "lending_wallet": "0",
            })
        return {"user_id": user, "updates": updates}


def user_record(user: str, *, name: str, email: str, phone: str, token: str) -> dict[str, Any]:
    """A `private.enterprise.users` message: onboarding status, personal data and a user token."""
    return {"user_id": user, "status": "VERIFIED", "account_type": "individual", "account_role": "user",
            "first_name": name, "last_name": name, "email": email, "phone_number": phone, "user_token": token}


def flood_payloads(users: int, currencies: int = 5) -> Callable[[int], str]:
    """Message i of a flood: user i % users with `currencies` currencies whose amounts depend on i,
    as compact JSON text, built without a ledger so that a flood of a million costs little."""
    chosen = [CURRENCIES[i % len(CURRENCIES)] + ("" if i < len(CURRENCIES) else str(i)) for i in range(currencies)]

    def payload(index: int) -> str:
        amount = index % 100000
        entries = ",".join(
            f'{{"currency":"{currency}","balance":"{amount}.{k}5","available":"{amount}.{k}","held":"0.{k}5",'
            f'"trading_wallet":"{amount}.{k}5","collateral_wallet":"0","borrow_wallet":"0","lending_wallet":"0"}}'
            for k, currency in enumerate(chosen)
        )
        return f'{{"user_id":"{user_id(index % users)}","updates":[{entries}]}}'

    return payload


def _quantize(currency: str, value: Decimal) -> Decimal:
    return value.quantize(_PLACES.get(currency, _DEFAULT_PLACES))


__all__ = ["END_USERS_FEED", "USERS_FEED", "EnterpriseLedger", "accepts_flag", "flood_payloads",
           "user_id", "user_record"]
