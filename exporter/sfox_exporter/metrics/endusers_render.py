"""The per-user series of sFOX Connect end users, rendered incrementally.

With `end_users.per_user_series` an enterprise account of 100,000 users x 5 currencies is a million
series, too many to format on every scrape. Each user's lines are formatted once, kept as bytes, and
formatted again only when that user's holdings change (EndUserBook.take_changes); a scrape after
changes reformats the changed users and joins the kept bytes (benchmarks/endusers.py measures it
against prometheus_client's generate_latest over the same series).

Text and OpenMetrics share these lines: both families are gauges and the values are formatted alike.
`EndUserCollector` is the prometheus_client reference for the same series, for tests and benchmarks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sfox_exporter.metrics.endusers import EndUserBook, Holding
from sfox_exporter.metrics.exposition import LabelRedactor, escape_label_value
from sfox_exporter.metrics.table import PER_USER_METRICS

_BALANCE, _AVAILABLE = PER_USER_METRICS


class EndUserRenderer:
    def __init__(self, books: Mapping[str, EndUserBook], redactor: LabelRedactor | None = None) -> None:
        """`books` is live: a reload adds, removes or replaces enterprise accounts' books in it.
        `redactor` blanks API keys from user ids and currencies, as each user's lines are made."""
        self._source = books
        self._redactor = redactor
        self._label = redactor.scrub if redactor is not None else str
        self._generation = redactor.generation if redactor is not None else 0
        self._books: dict[str, EndUserBook] = {}
        self._lock = threading.Lock()
        # Per account, per user: that user's lines of each family, as bytes.
        self._lines: dict[str, tuple[dict[str, bytes], dict[str, bytes]]] = {}
        self._follow()

    @property
    def enabled(self) -> bool:
        return bool(self._books)

    def _follow(self) -> None:
        """Start over for a book that is new or replaced; forget the ones gone."""
        current = {name: book for name, book in list(self._source.items()) if book.per_user_series}
        for name in [name for name in self._books if current.get(name) is not self._books[name]]:
            del self._books[name]
            del self._lines[name]
        for name, book in current.items():
            if name not in self._books:
                self._books[name] = book
                # Nothing has taken the new book's changes yet: they are all its users so far.
                self._lines[name] = ({}, {})

    def render(self, hidden: Collection[str] = ()) -> list[bytes]:
        """The two families as parts to join, after bringing changed users up to date. Accounts in
        `hidden` (withdrawn: their feed has been down too long) show no series."""
        with self._lock:
            self._follow()
            if not self._books:
                return []
            if self._redactor is not None and self._redactor.generation != self._generation:
                # A key was loaded: lines made before may hold it. Every exported user afresh.
                self._generation = self._redactor.generation
                for name, book in self._books.items():
                    self._lines[name] = ({}, {})
                    for user_id, holdings in book.exported():
                        self._put(name, user_id, holdings)
            for name, book in self._books.items():
                self._update(name, book)
            parts: list[bytes] = []
            for metric, column in ((_BALANCE, 0), (_AVAILABLE, 1)):
                parts.append(f"# HELP {metric.name} {metric.help}\n# TYPE {metric.name} gauge\n".encode())
                for name, lines in self._lines.items():
                    if name not in hidden:
                        parts.extend(lines[column].values())
            return parts

    def _update(self, account: str, book: EndUserBook) -> None:
        balance_lines, available_lines = self._lines[account]
        for user_id, holdings in book.take_changes().items():
            if holdings is None:
                balance_lines.pop(user_id, None)
                available_lines.pop(user_id, None)
            else:
                self._put(account, user_id, holdings)

    def _put(self, account: str, user_id: str, holdings: tuple[Holding, ...]) -> None:
        label = f'{{account="{escape_label_value(account)}",user_id="{escape_label_value(self._label(user_id))}'
        balance, available = _format(label, holdings, self._label)
        self._lines[account][0][user_id] = balance
        self._lines[account][1][user_id] = available


def _format(label: str, holdings: tuple[Holding, ...], clean: Callable[[str], str]) -> tuple[bytes, bytes]:
    balance: list[str] = []
    available: list[str] = []
    for currency, amount, free, _held in holdings:
        series = f'{label}",currency="{escape_label_value(clean(currency))}"}} '
        if amount is not None:
            balance.append(f"{_BALANCE.name}{series}{amount!r}\n")
        if free is not None:
            available.append(f"{_AVAILABLE.name}{series}{free!r}\n")
    return "".join(balance).encode(), "".join(available).encode()


class EndUserCollector(Collector):
    """The same per-user series through prometheus_client, the reference for tests and benchmarks."""

    def __init__(self, books: Mapping[str, EndUserBook]) -> None:
        self._books = {name: book for name, book in books.items() if book.per_user_series}

    def collect(self) -> Iterator[Metric]:
        balance = GaugeMetricFamily(_BALANCE.name, _BALANCE.help, labels=_BALANCE.labels)
        available = GaugeMetricFamily(_AVAILABLE.name, _AVAILABLE.help, labels=_AVAILABLE.labels)
        for account, book in self._books.items():
            for user_id, holdings in book.exported():
                for currency, amount, free, _held in holdings:
                    if amount is not None:
                        balance.add_metric((account, user_id, currency), amount)
                    if free is not None:
                        available.add_metric((account, user_id, currency), free)
        yield balance
        yield available
