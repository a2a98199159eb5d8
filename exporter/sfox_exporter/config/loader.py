"""Building the Config: the file, then the environment, then the command line, in rising precedence.

The file is checked against the one schema (schema.py) first; what is left here is what no single
key can check alone: precedence, URLs and addresses, which key each account reads, thresholds that
name configured accounts, and the connections the whole config needs against sFOX's limits. Every
problem raises ConfigError with one line naming the offending key or variable, never a key's value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sfox_exporter.config import yamlfile
from sfox_exporter.config.files import MAX_CONFIG_FILE_BYTES, UnreadableFile, read_text_file
from sfox_exporter.config.keys import KeyLoadError, KeySource, Secret, demo_key, read_key_file
from sfox_exporter.config.schema import (
    DEFAULT_TELEMETRY_PATH,
    LOG_FORMATS,
    LOG_LEVELS,
    SFOX_MAX_CONNECTIONS,
    AccountConfig,
    AccountEntry,
    AccountKind,
    AuthFlag,
    Config,
    Document,
    FeedConfig,
    LogConfig,
    SfoxEndpoints,
    Threshold,
    ValuationConfig,
    WebConfig,
    WebSection,
)
from sfox_exporter.config.validate import ConfigError, choice, parse_section, shown
from sfox_exporter.logs import Redactor

MAX_ACCOUNTS = SFOX_MAX_CONNECTIONS  # each account takes one of sFOX's connections per IP
DEFAULT_LISTEN_ADDRESS = "0.0.0.0:9841"
SINGLE_ACCOUNT_NAME = "default"
DEMO_ACCOUNT_NAME = "demo"
DEMO_ENTERPRISE_NAME = "platform"  # --demo's sFOX Connect account, beside the user account
RESERVED_PATHS = ("/", "/healthz", "/readyz", "/-/reload")

# Environment variables whose values config errors treat as keys, wherever they turn up.
_SECRET_ENV_NAME = re.compile(r"KEY|SECRET|TOKEN|PASS", re.IGNORECASE)
MIN_SECRET_LENGTH = 8  # shorter values would blank out ordinary words


@dataclass(frozen=True)
class Overrides:
    """What the command line says; None where a flag was not given."""

    config_file: str | None = None
    listen_address: str | None = None
    telemetry_path: str | None = None
    web_config_file: str | None = None
    log_level: str | None = None
    log_format: str | None = None
    demo: bool = False
    enable_lifecycle: bool = False  # --web.enable-lifecycle: not config, but the command line's to say


def load_config(overrides: Overrides, environ: Mapping[str, str]) -> Config:
    """Build the Config. Raises ConfigError, whose message never holds a key that can be known."""
    raw: dict[str, Any] = {}
    try:
        if overrides.config_file:
            raw = _read_document(overrides.config_file)
        return _build_config(overrides, environ, raw)
    except ConfigError as error:
        redactor = Redactor()
        for secret in _possible_keys(environ, raw):
            redactor.add(secret)
        message = redactor.redact(str(error))
        if message == str(error):
            raise
        raise ConfigError(message) from None


def _possible_keys(environ: Mapping[str, str], raw: dict[str, Any]) -> set[str]:
    """Every value that may be an API key.

    Config errors quote what the user wrote, so a key pasted into the wrong place (an account name, a
    variable name, a path, a YAML key) would come back on stderr and into container logs.
    """
    names: list[Any] = [name for name in environ
                        if _SECRET_ENV_NAME.search(name) and not name.upper().endswith("_FILE")]
    files: list[Any] = [environ.get("SFOX_API_KEY_FILE")]
    accounts = raw.get("accounts")
    for account in accounts if isinstance(accounts, list) else ():
        if isinstance(account, dict):
            names.append(account.get("api_key_env"))
            files.append(account.get("api_key_file"))
    values = [environ.get(name, "") for name in names if isinstance(name, str)]
    for file in files:
        if isinstance(file, str) and file:
            with contextlib.suppress(KeyLoadError):  # its own error, if any, is the one reported
                values.append(read_key_file(Path(file), "key file"))
    return {value.strip() for value in values if len(value.strip()) >= MIN_SECRET_LENGTH}


def _build_config(overrides: Overrides, environ: Mapping[str, str], raw: dict[str, Any]) -> Config:
    document = parse_section(Document, raw, "")
    web = _web_config(overrides, document.web)
    endpoints, origins = _endpoints(document.sfox, environ)
    feed = _feed_config(document.feed)
    log = LogConfig(
        choice(overrides.log_level or "info", "--log.level", (*LOG_LEVELS, "warning")).replace("warning", "warn"),
        choice(overrides.log_format or "logfmt", "--log.format", LOG_FORMATS),
    )

    warnings: list[str] = []
    if overrides.demo:
        accounts = _demo_accounts(document.accounts)
    elif document.accounts is not None:
        accounts = _file_accounts(document.accounts, environ, warnings)
    else:
        accounts = (_env_account(environ),)
    valuation = document.valuation
    if (valuation.enabled and not _set(raw, "valuation", "enabled") and not _set(raw, "sfox", "max_connections")
            and len(accounts) + 1 > endpoints.max_connections >= len(accounts)):
        # Valuation is on by default, but a config from 0.1 with 10 accounts (sFOX's limit) must keep
        # starting: only a config that asks for valuation, or sets its own share, makes this an error.
        valuation = dataclasses.replace(valuation, enabled=False)
        warnings.append(f"valuation is off: the {len(accounts)} accounts use all {endpoints.max_connections} "
                        "connections of sfox.max_connections, and valuation needs one more")
    _check_connections(len(accounts), valuation, endpoints)

    if not overrides.demo:
        for account in accounts:
            warning = account.key.permission_warning()
            if warning:
                warnings.append(f"account {account.name}: {warning}")
        for url, origin in zip((endpoints.ws_url, endpoints.rest_url), origins, strict=True):
            if not _is_encrypted_or_local(url):
                warnings.append(f"{origin} is not encrypted: the API key would cross the network in clear")

    thresholds = _thresholds(document.thresholds, {account.name for account in accounts})
    enterprise = {account.name for account in accounts if account.kind == AccountKind.ENTERPRISE}
    for index, threshold in enumerate(thresholds):
        if threshold.account in enterprise:
            warnings.append(f"thresholds[{index}]: account {threshold.account} is kind: enterprise, which has no "
                            "sfox_balance series (its end users' totals are sfox_end_users_balance): no rule can "
                            "compare it with this threshold")
    if overrides.demo and "thresholds" not in raw:
        thresholds = demo_thresholds(account.name for account in accounts if account.kind == AccountKind.USER)
    return Config(web, endpoints, accounts, feed, thresholds, log, overrides.demo, tuple(warnings),
                  valuation, document.end_users)


def _set(raw: dict[str, Any], section: str, key: str) -> bool:
    """Whether the file itself sets `section.key`."""
    found = raw.get(section)
    return isinstance(found, dict) and key in found


def parse_listen_address(value: str, origin: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT, or :PORT for every interface."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.%a-zA-Z]+)\]|([^:\[\]]*)):(\d{1,5})", value.strip())
    if not match:
        raise ConfigError(f"{origin}: expected HOST:PORT, got {shown(value)}")
    host = match.group(1) or match.group(2) or ""
    if not host.isprintable():  # a NUL made bind() raise TypeError: a traceback, not this line
        raise ConfigError(f"{origin}: expected HOST:PORT, got {shown(value)}")
    port = int(match.group(3))
    if port > 65535:
        raise ConfigError(f"{origin}: port {port} is out of range")
    return host, port


def _read_document(path_text: str) -> dict[str, Any]:
    path = Path(path_text)
    try:
        text = read_text_file(path, f"--config.file: {path}", MAX_CONFIG_FILE_BYTES)
    except UnreadableFile as error:
        raise ConfigError(str(error)) from None
    try:
        document = yamlfile.safe_load(text)
    except yamlfile.YAMLError as error:
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"--config.file: {path} is not valid YAML{yamlfile.where(error)}: {problem}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"--config.file: {path} must hold a mapping at the top level")
    return document


def _web_config(overrides: Overrides, section: WebSection) -> WebConfig:
    host, port = parse_listen_address(
        overrides.listen_address or section.listen_address or DEFAULT_LISTEN_ADDRESS,
        "--web.listen-address" if overrides.listen_address else "web.listen_address",
    )
    telemetry_path = overrides.telemetry_path or section.telemetry_path or DEFAULT_TELEMETRY_PATH
    origin = "--web.telemetry-path" if overrides.telemetry_path else "web.telemetry_path"
    # A query or fragment is never part of the path a request is matched by, and requests are matched
    # percent-decoded: a path with any of them could never be served.
    if (not telemetry_path.startswith("/") or any(ch in "?#%" or ch.isspace() or not ch.isprintable()
                                                  for ch in telemetry_path)):
        raise ConfigError(f"{origin}: must be a path starting with '/', without '?', '#' or '%', "
                          f"got {shown(telemetry_path)}")
    if telemetry_path in RESERVED_PATHS:
        raise ConfigError(f"{origin}: {telemetry_path} is reserved for the landing page, health checks and reload")
    web_config_file = None
    if overrides.web_config_file:
        web_config_file = Path(overrides.web_config_file)
        if not web_config_file.exists():  # a directory or a FIFO: the web config's reader says so
            raise ConfigError(f"--web.config.file: {web_config_file} does not exist")
    return WebConfig(host, port, telemetry_path, web_config_file)


def _endpoints(section: SfoxEndpoints, environ: Mapping[str, str]) -> tuple[SfoxEndpoints, tuple[str, str]]:
    """The sFOX URLs, the environment beating the file, and where each came from."""
    ws_url = environ.get("SFOX_WS_URL") or section.ws_url
    rest_url = environ.get("SFOX_REST_URL") or section.rest_url
    ws_origin = "SFOX_WS_URL" if environ.get("SFOX_WS_URL") else "sfox.ws_url"
    rest_origin = "SFOX_REST_URL" if environ.get("SFOX_REST_URL") else "sfox.rest_url"
    _check_url(ws_url, ws_origin, ("ws", "wss"))
    _check_url(rest_url, rest_origin, ("http", "https"))
    endpoints = SfoxEndpoints(ws_url, rest_url.rstrip("/"), section.max_connections, section.max_requests_per_minute)
    return endpoints, (ws_origin, rest_origin)


def _check_url(url: str, origin: str, schemes: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"{origin}: not a valid URL") from None
    if "@" in parts.netloc:  # never sent, and no secret belongs in a config's error lines or a URL
        raise ConfigError(f"{origin}: a user name or password in the URL is never sent; remove it")
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{origin}: expected a {' or '.join(s + '://' for s in schemes)} URL, got {shown(url)}")


def _is_encrypted_or_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("wss", "https") or parts.hostname in ("localhost", "127.0.0.1", "::1")


def _feed_config(feed: FeedConfig) -> FeedConfig:
    if feed.backoff_max_seconds < feed.backoff_initial_seconds:
        raise ConfigError("feed.backoff_max_seconds: must not be less than feed.backoff_initial_seconds")
    return feed


def _check_connections(accounts: int, valuation: ValuationConfig, sfox: SfoxEndpoints) -> None:
    """Each account holds a connection, and valuation one more; all must fit this exporter's share."""
    needed = accounts + (1 if valuation.enabled else 0)
    if needed <= sfox.max_connections:
        return
    parts = f"{accounts} account{'s' if accounts != 1 else ''}" + (" + 1 for valuation" if valuation.enabled else "")
    if sfox.max_connections < SFOX_MAX_CONNECTIONS:
        remedy = f"raise sfox.max_connections (sFOX allows at most {SFOX_MAX_CONNECTIONS} per IP) or remove accounts"
    else:
        remedy = "remove accounts" + (" or set valuation.enabled: false" if valuation.enabled else "")
    raise ConfigError(f"sfox.max_connections: {needed} WebSocket connections needed ({parts}), "
                      f"but {sfox.max_connections} allowed; {remedy}")


def _account_list(entries: tuple[AccountEntry, ...]) -> tuple[AccountEntry, ...]:
    if not entries:
        raise ConfigError("accounts: at least one account is needed")
    if len(entries) > MAX_ACCOUNTS:
        raise ConfigError(
            f"accounts: {len(entries)} accounts configured, but sFOX allows at most {MAX_ACCOUNTS} "
            "WebSocket connections per IP and each account needs one"
        )
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if entry.name in seen:
            raise ConfigError(f"accounts[{index}].name: {entry.name!r} is used by more than one account")
        seen.add(entry.name)
    return entries


def _load_key(source: KeySource, where: str | None) -> None:
    """Read the key now, so that a missing one fails with a clear line rather than in a feed thread."""
    try:
        source.load()
    except KeyLoadError as error:
        raise ConfigError(f"{where}: {error}" if where else str(error)) from None


def _file_accounts(entries: tuple[AccountEntry, ...], environ: Mapping[str, str],
                   warnings: list[str]) -> tuple[AccountConfig, ...]:
    accounts = []
    for index, entry in enumerate(_account_list(entries)):
        path = f"accounts[{index}]"
        if (entry.api_key_env is None) == (entry.api_key_file is None):
            raise ConfigError(f"{path}: set exactly one of api_key_env and api_key_file")
        if entry.api_key_env is not None:
            source = KeySource(env=entry.api_key_env, environ=environ)
        else:
            source = KeySource(file=Path(str(entry.api_key_file)))
        _load_key(source, path)
        if entry.enterprise_auth_flag is not None and entry.kind != AccountKind.ENTERPRISE:
            warnings.append(f"{path}.enterprise_auth_flag: ignored, the account is not kind: enterprise")
        accounts.append(AccountConfig(entry.name, source, entry.kind, entry.enterprise_auth_flag or AuthFlag.BOOLEAN))
    return tuple(accounts)


def _env_account(environ: Mapping[str, str]) -> AccountConfig:
    key, key_file = environ.get("SFOX_API_KEY"), environ.get("SFOX_API_KEY_FILE")
    if key and key_file:
        raise ConfigError("SFOX_API_KEY and SFOX_API_KEY_FILE are both set; set only one")
    if key_file:
        source = KeySource(file=Path(key_file))
        _load_key(source, "SFOX_API_KEY_FILE")
        return AccountConfig(SINGLE_ACCOUNT_NAME, source)
    if key is not None:
        if not key.strip():
            raise ConfigError("SFOX_API_KEY: is set but empty")
        source = KeySource(env="SFOX_API_KEY", environ=environ)
        _load_key(source, None)
        return AccountConfig(SINGLE_ACCOUNT_NAME, source)
    raise ConfigError(
        "no sFOX API key: set SFOX_API_KEY or SFOX_API_KEY_FILE, or list accounts in --config.file; "
        "to try the exporter on simulated data, run it with --demo"
    )


def _demo_accounts(entries: tuple[AccountEntry, ...] | None) -> tuple[AccountConfig, ...]:
    """--demo keeps the account names of a config file but talks to the simulator with its keys."""
    if entries is None:
        return (AccountConfig(DEMO_ACCOUNT_NAME, KeySource(fixed=Secret(demo_key(DEMO_ACCOUNT_NAME)))),
                AccountConfig(DEMO_ENTERPRISE_NAME, KeySource(fixed=Secret(demo_key(DEMO_ENTERPRISE_NAME))),
                              AccountKind.ENTERPRISE))
    return tuple(AccountConfig(entry.name, KeySource(fixed=Secret(demo_key(entry.name))), entry.kind,
                               entry.enterprise_auth_flag or AuthFlag.BOOLEAN) for entry in _account_list(entries))


def demo_thresholds(names: Iterable[str]) -> tuple[Threshold, ...]:
    """--demo without thresholds of its own gets these, so the threshold metric, panels and alert
    have something to show: two balances comfortably above, and available ETH always below (the
    simulator starts it near 40 and moves it by a fraction of a percent at a time; held USDC, the
    one before, could drift past its threshold within seconds)."""
    return tuple(
        threshold for name in names for threshold in (
            Threshold(name, "usd", "available", 50000.0),
            Threshold(name, "btc", "available", 0.5),
            Threshold(name, "eth", "available", 1000.0),
        )
    )


def _thresholds(entries: tuple[Threshold, ...], account_names: set[str]) -> tuple[Threshold, ...]:
    seen: set[tuple[str, str, str, str]] = set()
    for index, threshold in enumerate(entries):
        path = f"thresholds[{index}]"
        if (threshold.below is None) == (threshold.above is None):
            raise ConfigError(f"{path}: set exactly one of below and above")
        if threshold.account not in account_names:
            known = ", ".join(sorted(account_names))
            raise ConfigError(f"{path}.account: {threshold.account!r} is not a configured account ({known})")
        direction = "below" if threshold.below is not None else "above"
        key = (threshold.account, threshold.currency, threshold.field, direction)
        if key in seen:
            raise ConfigError(f"{path}: a threshold {direction} for {'/'.join(key[:3])} is already set")
        seen.add(key)
    return entries


def environment() -> Mapping[str, str]:
    """The process environment, read once by the command line and passed in from there."""
    return dict(os.environ)
