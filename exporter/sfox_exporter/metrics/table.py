"""The metrics the exporter exposes: the one table of names, types, help texts and label names.

Each metric knows how to pull its samples out of an AccountView; the Collector (collector.py) and
the fast renderer (exposition.py) both walk this table, so the two can never disagree on a name or
a label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from sfox_exporter.metrics.state import AccountView, Snapshot
from sfox_exporter.valuation import samples as valuation

Sample = tuple[tuple[str, ...], float]
Extractor = Callable[[AccountView], Iterable[Sample]]
SnapshotExtractor = Callable[[Snapshot], Iterable[Sample]]
Source = Callable[[AccountView], tuple[object, ...]]


@dataclass(frozen=True)
class MetricDef:
    name: str  # as exposed; counters end in _total
    type: str  # gauge or counter
    help: str
    labels: tuple[str, ...]
    samples: Extractor
    # For series not of one account (prices, the market feed): pulled from the whole snapshot.
    whole: SnapshotExtractor | None = None
    # The objects an account's samples are a function of, besides its name; all immutable. While
    # each is the very same object as at the last render, the renderer reuses the account's lines.
    source: Source | None = None

    @property
    def family_name(self) -> str:
        """The name prometheus_client gives the family: counters without _total."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name


def samples_of(metric: MetricDef, snapshot: Snapshot) -> Iterator[Sample]:
    """Every sample of the metric in the snapshot: what both renderers write."""
    if metric.whole is not None:
        yield from metric.whole(snapshot)
        return
    for view in snapshot.accounts:
        yield from metric.samples(view)


def _whole(name: str, type_: str, help_: str, labels: tuple[str, ...], whole: SnapshotExtractor) -> MetricDef:
    return MetricDef(name, type_, help_, labels, lambda view: (), whole)


def _field(name: str) -> Extractor:
    def samples(view: AccountView) -> Iterator[Sample]:
        account = view.name
        for currency, entry in view.balances.items():
            value = getattr(entry, name)
            if value is not None:
                yield (account, currency), value

    return samples


def _balances(view: AccountView) -> tuple[object, ...]:
    """The currencies and their entries (immutable: a change replaces the entry)."""
    return (*view.balances.keys(), *view.balances.values())


def _web3_wallets(view: AccountView) -> tuple[object, ...]:
    return tuple(view.wallets.values())  # Web3Balance tuples carry every label and the value


def _wallets(view: AccountView) -> Iterator[Sample]:
    account = view.name
    for currency, entry in view.balances.items():
        for wallet, value in entry.wallets:
            yield (account, currency, wallet), value


def _web3(view: AccountView) -> Iterator[Sample]:
    account = view.name
    for wallet in view.wallets.values():
        yield (account, wallet.currency, wallet.network, wallet.address), wallet.balance


def _thresholds(view: AccountView) -> Iterator[Sample]:
    for threshold in view.thresholds:
        if threshold.below is not None:  # an `above` threshold is no low-balance threshold
            yield (view.name, threshold.currency, threshold.field), threshold.below


def _high_thresholds(view: AccountView) -> Iterator[Sample]:
    for threshold in view.thresholds:
        if threshold.above is not None:
            yield (view.name, threshold.currency, threshold.field), threshold.above


def _optional(attribute: str) -> Extractor:
    def samples(view: AccountView) -> Iterator[Sample]:
        value = getattr(view, attribute)
        if value is not None:
            yield (view.name,), value

    return samples


def _series(view: AccountView) -> float:
    """An account's balance series; an enterprise account's end users' totals and per-user series."""
    return float(view.series + (view.end_users.series if view.end_users is not None else 0))


def _per_account(get: Callable[[AccountView], float]) -> Extractor:
    return lambda view: (((view.name,), get(view)),)


def _counted(attribute: str) -> Extractor:
    def samples(view: AccountView) -> Iterator[Sample]:
        for key, count in getattr(view, attribute).items():
            yield (view.name, key), count

    return samples


def _end_user_totals(name: str) -> Extractor:
    def samples(view: AccountView) -> Iterator[Sample]:
        if view.end_users is not None:
            for totals in view.end_users.currencies:
                yield (view.name, totals.currency), getattr(totals, name)

    return samples


def _end_user_count(view: AccountView) -> Iterator[Sample]:
    if view.end_users is not None:
        yield (view.name,), float(view.end_users.users)


ACCOUNT_CURRENCY = ("account", "currency")

METRICS: tuple[MetricDef, ...] = (
    MetricDef("sfox_balance", "gauge",
              "Total balance of the currency, in its own unit, including pending orders and transfers.",
              ACCOUNT_CURRENCY, _field("balance"), source=_balances),
    MetricDef("sfox_balance_available", "gauge",
              "Balance available to trade or withdraw, in the currency's own unit.",
              ACCOUNT_CURRENCY, _field("available"), source=_balances),
    MetricDef("sfox_balance_held", "gauge",
              "Balance held by open orders and pending transfers, in the currency's own unit.",
              ACCOUNT_CURRENCY, _field("held"), source=_balances),
    MetricDef("sfox_wallet_balance", "gauge",
              "Balance per wallet type (trading, collateral, borrow, lending, ...), in the currency's own unit.",
              ("account", "currency", "wallet"), _wallets, source=_balances),
    MetricDef("sfox_web3_wallet_balance", "gauge",
              "Balance of a Web3 wallet, in the currency's own unit.",
              ("account", "currency", "network", "address"), _web3, source=_web3_wallets),
    MetricDef("sfox_balance_low_threshold", "gauge",
              "Low-balance threshold from the exporter's config, for alert rules.",
              ("account", "currency", "field"), _thresholds),
    MetricDef("sfox_balance_high_threshold", "gauge",
              "High-balance threshold (`above:`) from the exporter's config, for alert rules.",
              ("account", "currency", "field"), _high_thresholds),
    MetricDef("sfox_balances_updated_timestamp_seconds", "gauge",
              "sFOX timestamp of the last applied balance message.",
              ("account",), _optional("updated_timestamp")),
    MetricDef("sfox_balances_snapshot_timestamp_seconds", "gauge",
              "Local time of the last applied REST balance snapshot.",
              ("account",), _optional("snapshot_time")),
    MetricDef("sfox_feed_up", "gauge",
              "1 while the feed is connected, authenticated and subscribed, else 0.",
              ("account",), _per_account(lambda view: 1.0 if view.up else 0.0)),
    MetricDef("sfox_feed_stale", "gauge",
              "1 while balances are withdrawn because the feed has been down longer than stale_after_seconds.",
              ("account",), _per_account(lambda view: 1.0 if view.withdrawn else 0.0)),
    MetricDef("sfox_feed_series", "gauge",
              "Balance series held for the account (with an enterprise account's end users'); "
              "feed.max_series caps it.",
              ("account",), _per_account(_series)),
    MetricDef("sfox_feed_last_message_timestamp_seconds", "gauge",
              "Local time the last message of any kind arrived.",
              ("account",), _optional("last_message_time")),
    MetricDef("sfox_feed_messages_total", "counter",
              "Messages received, by kind: balances, web3, end_users, control, unknown.",
              ("account", "kind"), _counted("messages")),
    MetricDef("sfox_feed_errors_total", "counter",
              "Errors, by reason: decode, schema, auth, subscribe, sequence, connection, rest, cardinality.",
              ("account", "reason"), _counted("errors")),
    MetricDef("sfox_feed_reconnects_total", "counter",
              "Connection attempts after the first.",
              ("account",), _per_account(lambda view: float(view.reconnects))),
    # sFOX Connect (enterprise accounts): sums over the end users, exact (metrics/endusers.py).
    MetricDef("sfox_end_users_balance", "gauge",
              "Sum of the end users' balances of the currency, in its own unit (sFOX Connect).",
              ACCOUNT_CURRENCY, _end_user_totals("balance")),
    MetricDef("sfox_end_users_balance_available", "gauge",
              "Sum of the end users' available balances of the currency, in its own unit.",
              ACCOUNT_CURRENCY, _end_user_totals("available")),
    MetricDef("sfox_end_users_balance_held", "gauge",
              "Sum of the end users' held balances of the currency, in its own unit.",
              ACCOUNT_CURRENCY, _end_user_totals("held")),
    MetricDef("sfox_end_users", "gauge",
              "End users whose balances have been received (in this exporter's shard).",
              ("account",), _end_user_count),
    MetricDef("sfox_end_users_holding", "gauge",
              "End users with a non-zero balance of the currency.",
              ACCOUNT_CURRENCY, _end_user_totals("holders")),
    # --- valuation (issue 13): only while valuation.enabled --------------------------------------
    _whole("sfox_price", "gauge",
           "Price of one unit of the currency in the quote currency, from sFOX's ticker feed (1 for the quote).",
           ("currency", "quote"), valuation.prices),
    _whole("sfox_price_updated_timestamp_seconds", "gauge",
           "Local time of the last ticker message behind the price.",
           ("currency", "quote"), valuation.price_timestamps),
    _whole("sfox_account_value", "gauge",
           "Sum of balance times fresh price over the account's currencies, in the quote currency.",
           ("account", "quote"), valuation.account_values),
    _whole("sfox_account_unpriced_currencies", "gauge",
           "Currencies with a non-zero balance and no fresh price, left out of sfox_account_value.",
           ("account", "quote"), valuation.unpriced),
    _whole("sfox_market_feed_up", "gauge",
           "1 while the market-data connection is authenticated and subscribed, else 0.",
           (), valuation.market_up),
    _whole("sfox_market_feeds", "gauge",
           "Ticker feeds the valuation needs (addition); 0 when nothing held needs a price, and then no "
           "market-data connection is opened; absent until sFOX's pair list is known.", (), valuation.market_feeds),
    _whole("sfox_market_feed_messages_total", "counter",
           "Messages received on the market-data connection.", (), valuation.market_messages),
    _whole("sfox_market_feed_errors_total", "counter",
           "Errors of the market-data connection and of pair discovery, by reason.",
           ("reason",), valuation.market_errors),
    _whole("sfox_market_feed_reconnects_total", "counter",
           "Market-data connection attempts after the first.", (), valuation.market_reconnects),
)

# Only with end_users.per_user_series; rendered incrementally by endusers_render.py, not from views.
ACCOUNT_USER_CURRENCY = ("account", "user_id", "currency")
PER_USER_METRICS: tuple[MetricDef, MetricDef] = (
    MetricDef("sfox_end_user_balance", "gauge",
              "One end user's balance of the currency, in its own unit (end_users.per_user_series).",
              ACCOUNT_USER_CURRENCY, lambda view: ()),
    MetricDef("sfox_end_user_balance_available", "gauge",
              "One end user's available balance of the currency, in its own unit.",
              ACCOUNT_USER_CURRENCY, lambda view: ()),
)

BUILD_INFO = MetricDef("sfox_exporter_build_info", "gauge",
                       "Build information; always 1.", ("version", "revision", "python_version"), lambda view: ())
