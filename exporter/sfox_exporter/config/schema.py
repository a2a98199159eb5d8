"""The config file's schema, declared once, and the typed, immutable config built from it.

Every key of the file is a dataclass field here; its default is the field's default and its check
is the field's `metadata` (see validate.py). The keys each section allows, the documentation test
over config.example.yaml and the loader all read this one declaration, so a key cannot be allowed
in one place and forgotten in another. Sections whose shape the command line or the environment do
not change (sfox, feed, valuation, end_users, thresholds) are used as they are; `web` and
`accounts` entries are resolved by the loader into WebConfig and AccountConfig.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sfox_exporter.config.keys import KeySource
from sfox_exporter.config.validate import (
    MAX_STALE_SECONDS,
    account_name,
    boolean,
    currencies,
    currency,
    declared,
    env_name,
    file_path,
    items,
    member,
    number,
    one_of,
    seconds,
    section,
    setting,
    shard,
    text,
    whole,
)

DEFAULT_TELEMETRY_PATH = "/metrics"
DEFAULT_WS_URL = "wss://ws.sfox.com/ws"
DEFAULT_REST_URL = "https://api.sfox.com"
SFOX_MAX_CONNECTIONS = 10  # sFOX's WebSocket limits per IP, which all its clients there share
SFOX_MAX_REQUESTS_PER_MINUTE = 40
THRESHOLD_FIELDS = ("balance", "available", "held")
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")



class AccountKind(StrEnum):
    """accounts[].kind: whose balances the account's key reads."""

    USER = "user"  # the account's own balances
    ENTERPRISE = "enterprise"  # sFOX Connect: the end users' balances


class AuthFlag(StrEnum):
    """accounts[].enterprise_auth_flag: how `enterprise` is sent in the authenticate request."""

    BOOLEAN = "boolean"  # "enterprise": true
    STRING = "string"  # "enterprise": "true"


# --- sections of the file, used as they are ------------------------------------------------------


@dataclass(frozen=True)
class SfoxEndpoints:
    """sfox: where sFOX is, and this exporter's share of sFOX's per-IP limits."""

    ws_url: str = dataclasses.field(default=DEFAULT_WS_URL, metadata=setting(text))
    rest_url: str = dataclasses.field(default=DEFAULT_REST_URL, metadata=setting(text))
    max_connections: int = dataclasses.field(
        default=SFOX_MAX_CONNECTIONS,
        metadata=setting(whole(1, SFOX_MAX_CONNECTIONS, "sFOX allows 10 WebSocket connections per IP")))
    max_requests_per_minute: int = dataclasses.field(
        default=20,
        metadata=setting(whole(1, SFOX_MAX_REQUESTS_PER_MINUTE, "sFOX allows 40 WebSocket requests a minute per IP")))


@dataclass(frozen=True)
class FeedConfig:
    """feed: how each account's connection is kept up."""

    ping_interval_seconds: float = dataclasses.field(default=20.0, metadata=setting(seconds()))
    ping_timeout_seconds: float = dataclasses.field(default=10.0, metadata=setting(seconds()))
    backoff_initial_seconds: float = dataclasses.field(default=1.0, metadata=setting(seconds()))
    backoff_max_seconds: float = dataclasses.field(default=120.0, metadata=setting(seconds()))
    stale_after_seconds: float = dataclasses.field(
        default=600.0, metadata=setting(seconds(positive=False, maximum=MAX_STALE_SECONDS)))
    rest_snapshot: bool = dataclasses.field(default=True, metadata=setting(boolean))
    max_series: int = dataclasses.field(default=10000, metadata=setting(whole(1)))
    rest_timeout_seconds: float = dataclasses.field(default=10.0, metadata=setting(seconds()))


@dataclass(frozen=True)
class Threshold:
    """thresholds[]: a balance to alert on, exported as sfox_balance_low_threshold (below) or as the
    bound it must stay under (above). Exactly one of `below` and `above` is set."""

    account: str = dataclasses.field(metadata=setting(text, required=True))
    currency: str = dataclasses.field(metadata=setting(currency, required=True))
    field: str = dataclasses.field(default="available", metadata=setting(one_of(THRESHOLD_FIELDS)))
    below: float | None = dataclasses.field(default=None, metadata=setting(number))
    above: float | None = dataclasses.field(default=None, metadata=setting(number))


@dataclass(frozen=True)
class ValuationConfig:
    """valuation: account values in one quote currency, from one market-data connection."""

    enabled: bool = dataclasses.field(default=True, metadata=setting(boolean))
    quote: str = dataclasses.field(default="usd", metadata=setting(currency))
    bridges: tuple[str, ...] = dataclasses.field(default=("btc", "usdt"), metadata=setting(currencies))
    stale_after_seconds: float = dataclasses.field(default=300.0,
                                                   metadata=setting(seconds(maximum=MAX_STALE_SECONDS)))


@dataclass(frozen=True)
class EndUsersConfig:
    """end_users: what enterprise (sFOX Connect) accounts export of their end users."""

    per_user_series: bool = dataclasses.field(default=False, metadata=setting(boolean))
    shard: str = dataclasses.field(default="0/1", metadata=setting(shard))
    # Each end user known costs ~160 bytes plus 26 a currency held, for as long as the exporter runs (README,
    # "sFOX Connect"); past this many, a new
    # one is refused and counted as `cardinality` (shard to hold more), so ever-new user ids cannot
    # grow the exporter without end.
    max_users: int = dataclasses.field(default=1_000_000, metadata=setting(whole(1)))

    @property
    def shard_index(self) -> int:
        return int(self.shard.split("/")[0])

    @property
    def shard_count(self) -> int:
        return int(self.shard.split("/")[1])

    def keeps(self, user_id: str) -> bool:
        """Whether this exporter's shard holds the end user, as CONTRACT.md defines shards."""
        return zlib.crc32(user_id.encode("utf-8")) % self.shard_count == self.shard_index


# --- sections of the file the loader resolves ---------------------------------------------------


@dataclass(frozen=True)
class WebSection:
    """web: in the file; the command line beats it."""

    listen_address: str | None = dataclasses.field(default=None, metadata=setting(text))
    telemetry_path: str | None = dataclasses.field(default=None, metadata=setting(text))


@dataclass(frozen=True)
class AccountEntry:
    """accounts[]: one sFOX key, one WebSocket connection."""

    name: str = dataclasses.field(metadata=setting(account_name, required=True))
    kind: AccountKind = dataclasses.field(default=AccountKind.USER, metadata=setting(member(AccountKind)))
    api_key_env: str | None = dataclasses.field(default=None, metadata=setting(env_name))
    api_key_file: str | None = dataclasses.field(default=None, metadata=setting(file_path))
    # None when not written, so that setting it on a user account can be pointed out.
    enterprise_auth_flag: AuthFlag | None = dataclasses.field(default=None, metadata=setting(member(AuthFlag)))


@dataclass(frozen=True)
class Document:
    """The whole file."""

    web: WebSection = dataclasses.field(default_factory=WebSection, metadata=section(WebSection))
    sfox: SfoxEndpoints = dataclasses.field(default_factory=SfoxEndpoints, metadata=section(SfoxEndpoints))
    accounts: tuple[AccountEntry, ...] | None = dataclasses.field(default=None, metadata=items(AccountEntry))
    feed: FeedConfig = dataclasses.field(default_factory=FeedConfig, metadata=section(FeedConfig))
    thresholds: tuple[Threshold, ...] = dataclasses.field(default=(), metadata=items(Threshold, allow_none=True))
    valuation: ValuationConfig = dataclasses.field(default_factory=ValuationConfig, metadata=section(ValuationConfig))
    end_users: EndUsersConfig = dataclasses.field(default_factory=EndUsersConfig, metadata=section(EndUsersConfig))


def schema_keys() -> dict[str, tuple[str, ...]]:
    """Every key of the file by section: "" the top level, "accounts[]" an item of that list."""
    keys = {"": tuple(declared(Document))}
    for name, spec in declared(Document).items():
        if spec.nested is not None:
            keys[f"{name}[]" if spec.many else name] = tuple(declared(spec.nested))
    return keys


# --- the resolved config -------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountConfig:
    name: str
    key: KeySource
    kind: AccountKind = AccountKind.USER
    enterprise_auth_flag: AuthFlag = AuthFlag.BOOLEAN  # only read for kind enterprise


@dataclass(frozen=True)
class WebConfig:
    listen_host: str
    listen_port: int
    telemetry_path: str = DEFAULT_TELEMETRY_PATH
    config_file: Path | None = None

    @property
    def listen_address(self) -> str:
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "logfmt"


@dataclass(frozen=True)
class Config:
    web: WebConfig
    sfox: SfoxEndpoints
    accounts: tuple[AccountConfig, ...]
    feed: FeedConfig
    thresholds: tuple[Threshold, ...]
    log: LogConfig
    demo: bool = False
    warnings: tuple[str, ...] = ()
    valuation: ValuationConfig = dataclasses.field(default_factory=ValuationConfig)
    end_users: EndUsersConfig = dataclasses.field(default_factory=EndUsersConfig)

    @property
    def connections(self) -> int:
        """WebSocket connections this config opens: one per account, one for market data."""
        return len(self.accounts) + (1 if self.valuation.enabled else 0)

