"""Enterprise (sFOX Connect) accounts: how they authenticate and where their feed goes.

An enterprise account runs the same FeedWorker as a user account (lifecycle, budget, health
metrics), authenticated with the `enterprise` flag and subscribed to the end users' balances only:
never to `private.enterprise.users`, whose messages carry personal data and user tokens. sFOX has no
REST endpoint for all end users' balances, so there is no snapshot: after a (re)start the totals
cover the users whose balances have changed since (README, "sFOX Connect").
"""

from __future__ import annotations

import dataclasses

from sfox_exporter.config import AccountConfig, AccountKind, AuthFlag
from sfox_exporter.metrics.endusers import EndUserBook
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.decode import EndUserBalances, Event
from sfox_exporter.sfox.session import ENTERPRISE_FEED, SessionSettings
from sfox_exporter.vocabulary import ErrorReason, FeedStatus


def is_enterprise(account: AccountConfig) -> bool:
    return account.kind == AccountKind.ENTERPRISE


def enterprise_settings(account: AccountConfig, base: SessionSettings) -> SessionSettings:
    """The user account's settings (pings) with the enterprise flag and feed. sFOX's pages disagree
    on the flag's type; the config says which to send."""
    flag: bool | str = "true" if account.enterprise_auth_flag == AuthFlag.STRING else True
    return dataclasses.replace(base, feeds=(ENTERPRISE_FEED,), enterprise=flag)


class EndUserSink:
    """A FeedSink for an enterprise account: end users' balances into its EndUserBook, everything
    else (counts, errors, status) into the State like any account. No REST resync exists."""

    def __init__(self, state: State, account: str, book: EndUserBook) -> None:
        self._state = state
        self._account = account
        self._book = book

    def status(self) -> FeedStatus:
        return self._state.status(self._account)

    def set_status(self, status: FeedStatus) -> None:
        self._state.set_status(self._account, status)

    def deliver(self, event: Event) -> None:
        self.deliver_many([event])

    def deliver_many(self, events: list[Event]) -> None:
        # The book first, the State second: State.ingest bumps the version a scrape caches by.
        refused = self._book.apply_many([event for event in events if type(event) is EndUserBalances])
        if refused:
            self._state.count_error(self._account, ErrorReason.CARDINALITY, refused)
        self._state.ingest_many(self._account, events)

    def went_up(self) -> None:
        """Nothing to fetch: sFOX has no REST endpoint for all end users' balances."""

    errors_metric = "sfox_feed_errors_total"

    def resync(self) -> str:
        """Nothing to fetch: without a snapshot endpoint the next message of each user (a full set of
        its currencies) repairs that user."""
        return "sFOX has no snapshot of end users' balances: each user's next message repairs that user"

    def count_error(self, reason: ErrorReason) -> None:
        self._state.count_error(self._account, reason)

    def count_reconnect(self) -> None:
        self._state.count_reconnect(self._account)
