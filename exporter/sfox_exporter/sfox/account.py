"""Where an account's feed goes: its balance book in the shared State, and its REST resyncs."""

from __future__ import annotations

from collections.abc import Callable

from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.decode import Event
from sfox_exporter.vocabulary import ErrorReason, FeedStatus


class AccountSink:
    """A FeedSink for one user account. `request_snapshot` is None with feed.rest_snapshot off."""

    def __init__(self, state: State, account: str, request_snapshot: Callable[[str], None] | None) -> None:
        self._state = state
        self._account = account
        self._request_snapshot = request_snapshot

    def status(self) -> FeedStatus:
        return self._state.status(self._account)

    def set_status(self, status: FeedStatus) -> None:
        self._state.set_status(self._account, status)

    def deliver(self, event: Event) -> None:
        self._state.ingest(self._account, event)

    def deliver_many(self, events: list[Event]) -> None:
        self._state.ingest_many(self._account, events)

    def went_up(self) -> None:
        if self._request_snapshot is not None:
            self._request_snapshot("connected")

    errors_metric = "sfox_feed_errors_total"

    def resync(self) -> str:
        if self._request_snapshot is None:
            return "REST snapshots are off (feed.rest_snapshot): each currency's next message repairs it"
        self._request_snapshot("sequence")
        return "resyncing from a REST snapshot"

    def count_error(self, reason: ErrorReason) -> None:
        self._state.count_error(self._account, reason)

    def count_reconnect(self) -> None:
        self._state.count_reconnect(self._account)
