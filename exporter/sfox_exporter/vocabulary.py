"""The exporter's fixed words: message kinds, error reasons and feed states.

They become label values (`kind`, `reason`) and the states shown on the landing page and in
/readyz, so they are enums: a typo is a type error, not a silently new series.
"""

from __future__ import annotations

from enum import StrEnum


class MessageKind(StrEnum):
    """The `kind` label of sfox_feed_messages_total."""

    BALANCES = "balances"
    WEB3 = "web3"
    END_USERS = "end_users"
    CONTROL = "control"
    UNKNOWN = "unknown"


class ErrorReason(StrEnum):
    """The `reason` label of sfox_feed_errors_total."""

    DECODE = "decode"
    SCHEMA = "schema"
    AUTH = "auth"
    SUBSCRIBE = "subscribe"
    SEQUENCE = "sequence"
    CONNECTION = "connection"
    REST = "rest"
    CARDINALITY = "cardinality"


class FeedStatus(StrEnum):
    """Where a feed stands, as the landing page and /readyz show it."""

    STARTING = "starting"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    SUBSCRIBING = "subscribing"
    UP = "up"
    BACKING_OFF = "backing off"
    AUTH_REJECTED = "auth rejected"
    STOPPED = "stopped"


MESSAGE_KINDS = tuple(MessageKind)
ERROR_REASONS = tuple(ErrorReason)
