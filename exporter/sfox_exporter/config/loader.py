"""The exporter's configuration: one typed, validated, immutable object.

Built from the config file, the environment and the command line, in rising order of precedence.
Every problem raises ConfigError with one line that names the offending key or variable and never
the value of a key.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from sfox_exporter.logs import Redactor

MAX_ACCOUNTS = 10  # sFOX allows 10 WebSocket connections per IP, and each account takes one
DEFAULT_LISTEN_ADDRESS = "0.0.0.0:9841"
DEFAULT_TELEMETRY_PATH = "/metrics"
DEFAULT_WS_URL = "wss://ws.sfox.com/ws"
DEFAULT_REST_URL = "https://api.sfox.com"
SINGLE_ACCOUNT_NAME = "default"
DEMO_ACCOUNT_NAME = "demo"
RESERVED_PATHS = ("/", "/healthz", "/readyz")
THRESHOLD_FIELDS = ("balance", "available", "held")
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")

_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# Environment variables whose values config errors treat as keys, wherever they turn up.
_SECRET_ENV_NAME = re.compile(r"KEY|SECRET|TOKEN|PASS", re.IGNORECASE)
MIN_SECRET_LENGTH = 8  # shorter values would blank out ordinary words
MAX_KEY_FILE_BYTES = 4096


def _unless_key_like(name: str) -> str:
    """A variable name or path for an error message, unless it looks like a key pasted in its place.

    Names and paths are upper case, or have a '/' or '.'; sFOX keys are long runs of lower-case
    letters and digits. A key that is known is redacted anyway; this catches one that is not.
    """
    looks_like_key = (len(name) >= 16 and not {"/", "."} & set(name)
                      and any(c.isdigit() for c in name) and any(c.islower() for c in name))
    return "(name not shown: it looks like an API key)" if looks_like_key else name


class ConfigError(Exception):
    """A configuration problem, worded for the one line the exporter prints before exiting 2."""

    def __init__(self, message: str) -> None:
        # Messages quote keys and values from the file, which may hold line breaks of their own.
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


class Secret:
    """An API key that does not show itself: not in repr, str, format, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class KeySource:
    """Where an account's API key comes from. A key file is read again on every connection attempt,
    so a rotated Kubernetes Secret takes effect without a restart."""

    env: str | None = None
    file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    fixed: Secret | None = field(default=None, repr=False)  # demo keys, which the simulator issues

    @property
    def origin(self) -> str:
        if self.file is not None:
            return f"key file {_unless_key_like(str(self.file))}"
        if self.env is not None:
            return f"environment variable {_unless_key_like(self.env)}"
        return "built-in demo key"

    def load(self) -> Secret:
        if self.fixed is not None:
            return self.fixed
        if self.file is not None:
            try:
                text = self.file.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError(f"{self.origin} does not exist") from None
            except (OSError, UnicodeDecodeError) as error:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else "unreadable"
                raise ConfigError(f"{self.origin} cannot be read: {reason}") from None
            key = text.strip()
            if not key:
                raise ConfigError(f"{self.origin} is empty")
        else:
            assert self.env is not None
            key = self.environ.get(self.env, "").strip()
            if not key:
                raise ConfigError(f"{self.origin} is not set or empty")
        if any(not ch.isprintable() or ch.isspace() for ch in key):
            raise ConfigError(f"the API key in {self.origin} contains whitespace or control characters")
        return Secret(key)

    def permission_warning(self) -> str | None:
        if self.file is None:
            return None
        try:
            mode = self.file.stat().st_mode
        except OSError:
            return None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            return (
                f"key file {self.file} is accessible by group or others (mode {stat.filemode(mode)}); "
                "restrict it with chmod 600 or 400"
            )
        return None


@dataclass(frozen=True)
class AccountConfig:
    name: str
    key: KeySource


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
class SfoxEndpoints:
    ws_url: str = DEFAULT_WS_URL
    rest_url: str = DEFAULT_REST_URL


@dataclass(frozen=True)
class FeedConfig:
    ping_interval_seconds: float = 20.0
    ping_timeout_seconds: float = 10.0
    backoff_initial_seconds: float = 1.0
    backoff_max_seconds: float = 120.0
    stale_after_seconds: float = 600.0
    rest_snapshot: bool = True
    max_series: int = 10000
    rest_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class Threshold:
    account: str
    currency: str
    field: str
    below: float


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


_SCHEMA: dict[str, tuple[str, ...]] = {
    "": ("web", "sfox", "accounts", "feed", "thresholds"),
    "web": ("listen_address", "telemetry_path"),
    "sfox": ("ws_url", "rest_url"),
    "accounts[]": ("name", "api_key_env", "api_key_file"),
    "feed": (
        "ping_interval_seconds",
        "ping_timeout_seconds",
        "backoff_initial_seconds",
        "backoff_max_seconds",
        "stale_after_seconds",
        "rest_snapshot",
        "max_series",
        "rest_timeout_seconds",
    ),
    "thresholds[]": ("account", "currency", "field", "below"),
}


def load_config(overrides: Overrides, environ: Mapping[str, str]) -> Config:
    """Build the Config. Raises ConfigError, whose message never holds a key that can be known."""
    document: dict[str, Any] = {}
    try:
        if overrides.config_file:
            document = _read_document(overrides.config_file)
        return _build_config(overrides, environ, document)
    except ConfigError as error:
        redactor = Redactor()
        for secret in _possible_keys(environ, document):
            redactor.add(secret)
        message = redactor.redact(str(error))
        if message == str(error):
            raise
        raise ConfigError(message) from None


def _possible_keys(environ: Mapping[str, str], document: dict[str, Any]) -> set[str]:
    """Every value that may be an API key.

    Config errors quote what the user wrote, so a key pasted into the wrong place (an account name, a
    variable name, a path, a YAML key) would come back on stderr and into container logs.
    """
    names: list[Any] = [name for name in environ
                        if _SECRET_ENV_NAME.search(name) and not name.upper().endswith("_FILE")]
    files: list[Any] = [environ.get("SFOX_API_KEY_FILE")]
    accounts = document.get("accounts")
    for account in accounts if isinstance(accounts, list) else ():
        if isinstance(account, dict):
            names.append(account.get("api_key_env"))
            files.append(account.get("api_key_file"))
    values = [environ.get(name, "") for name in names if isinstance(name, str)]
    for file in files:
        if isinstance(file, str) and file and os.path.isfile(file):  # never a FIFO that would block
            with contextlib.suppress(OSError, ValueError), open(file, encoding="utf-8") as handle:
                values.append(handle.read(MAX_KEY_FILE_BYTES))
    return {value.strip() for value in values if len(value.strip()) >= MIN_SECRET_LENGTH}


def _build_config(overrides: Overrides, environ: Mapping[str, str], document: dict[str, Any]) -> Config:
    _check_keys(document, "", _SCHEMA[""])

    web_doc = _section(document, "web")
    sfox_doc = _section(document, "sfox")
    feed_doc = _section(document, "feed")

    listen_address = _pick(overrides.listen_address, None, web_doc, "listen_address", "web")
    host, port = parse_listen_address(
        listen_address or DEFAULT_LISTEN_ADDRESS,
        "--web.listen-address" if overrides.listen_address else "web.listen_address",
    )
    telemetry_path = _pick(overrides.telemetry_path, None, web_doc, "telemetry_path", "web")
    telemetry_path = telemetry_path or DEFAULT_TELEMETRY_PATH
    _check_telemetry_path(telemetry_path, "--web.telemetry-path" if overrides.telemetry_path else "web.telemetry_path")
    web_config_file = None
    if overrides.web_config_file:
        web_config_file = Path(overrides.web_config_file)
        if not web_config_file.is_file():
            raise ConfigError(f"--web.config.file: {web_config_file} does not exist")
    web = WebConfig(host, port, telemetry_path, web_config_file)

    ws_url = _pick(None, environ.get("SFOX_WS_URL"), sfox_doc, "ws_url", "sfox") or DEFAULT_WS_URL
    rest_url = _pick(None, environ.get("SFOX_REST_URL"), sfox_doc, "rest_url", "sfox") or DEFAULT_REST_URL
    ws_origin = "SFOX_WS_URL" if environ.get("SFOX_WS_URL") else "sfox.ws_url"
    rest_origin = "SFOX_REST_URL" if environ.get("SFOX_REST_URL") else "sfox.rest_url"
    _check_url(ws_url, ws_origin, ("ws", "wss"))
    _check_url(rest_url, rest_origin, ("http", "https"))
    endpoints = SfoxEndpoints(ws_url, rest_url.rstrip("/"))

    feed = _feed_config(feed_doc)
    log = LogConfig(
        _choice(overrides.log_level or "info", "--log.level", (*LOG_LEVELS, "warning")).replace("warning", "warn"),
        _choice(overrides.log_format or "logfmt", "--log.format", LOG_FORMATS),
    )

    if overrides.demo:
        accounts = _demo_accounts(document)
    elif "accounts" in document:
        accounts = _file_accounts(document["accounts"], environ)
    else:
        accounts = (_env_account(environ),)

    warnings: list[str] = []
    if not overrides.demo:
        for account in accounts:
            account.key.load()  # fail now, with a clear line, rather than in a feed thread later
            warning = account.key.permission_warning()
            if warning:
                warnings.append(f"account {account.name}: {warning}")
        for url, origin in ((endpoints.ws_url, ws_origin), (endpoints.rest_url, rest_origin)):
            if not _is_encrypted_or_local(url):
                warnings.append(f"{origin} is not encrypted: the API key would cross the network in clear")

    thresholds = _thresholds(document.get("thresholds"), {account.name for account in accounts})
    if overrides.demo and "thresholds" not in document:
        thresholds = demo_thresholds(account.name for account in accounts)
    return Config(web, endpoints, accounts, feed, thresholds, log, overrides.demo, tuple(warnings))


def parse_listen_address(value: str, origin: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT, or :PORT for every interface."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.%a-zA-Z]+)\]|([^:\[\]]*)):(\d{1,5})", value.strip())
    if not match:
        raise ConfigError(f"{origin}: expected HOST:PORT, got {value!r}")
    host = match.group(1) or match.group(2) or ""
    port = int(match.group(3))
    if port > 65535:
        raise ConfigError(f"{origin}: port {port} is out of range")
    return host, port


def _read_document(path_text: str) -> dict[str, Any]:
    path = Path(path_text)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config.file: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not UTF-8 text"
        raise ConfigError(f"--config.file: {path} cannot be read: {reason}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"--config.file: {path} is not valid YAML{where}: {problem}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"--config.file: {path} must hold a mapping at the top level")
    return document


def _check_keys(mapping: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key{hint}")


def _section(document: dict[str, Any], name: str) -> dict[str, Any]:
    value = document.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping, got {_type_name(value)}")
    _check_keys(value, name, _SCHEMA[name])
    return value


def _pick(flag: str | None, env: str | None, section: dict[str, Any], key: str, path: str) -> str | None:
    if flag:
        return flag
    if env:
        return env
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}.{key}: expected a string, got {_type_name(value)}")
    return value


def _check_telemetry_path(path: str, origin: str) -> None:
    if not path.startswith("/") or any(ch.isspace() or not ch.isprintable() for ch in path):
        raise ConfigError(f"{origin}: must be a path starting with '/', got {path!r}")
    if path in RESERVED_PATHS:
        raise ConfigError(f"{origin}: {path} is reserved for the landing page and health checks")


def _check_url(url: str, origin: str, schemes: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"{origin}: not a valid URL") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{origin}: expected a {' or '.join(s + '://' for s in schemes)} URL, got {url!r}")


def _is_encrypted_or_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("wss", "https") or parts.hostname in ("localhost", "127.0.0.1", "::1")


def _number(section: dict[str, Any], key: str, path: str, default: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}.{key}: expected a number of seconds, got {_type_name(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"{path}.{key}: must be a finite number")
    return float(value)


def _feed_config(section: dict[str, Any]) -> FeedConfig:
    defaults = FeedConfig()
    values: dict[str, Any] = {}
    for key in _SCHEMA["feed"]:
        default = getattr(defaults, key)
        if isinstance(default, bool):
            value = section.get(key, default)
            if not isinstance(value, bool):
                raise ConfigError(f"feed.{key}: expected true or false, got {_type_name(value)}")
        elif isinstance(default, int):
            value = section.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"feed.{key}: expected a whole number, got {_type_name(value)}")
            if value < 1:
                raise ConfigError(f"feed.{key}: must be at least 1")
        else:
            value = _number(section, key, "feed", default)
            minimum = 0.0 if key == "stale_after_seconds" else None
            if minimum is None and value <= 0:
                raise ConfigError(f"feed.{key}: must be greater than 0")
            if minimum is not None and value < minimum:
                raise ConfigError(f"feed.{key}: must be 0 (never) or more")
        values[key] = value
    feed = FeedConfig(**values)
    if feed.backoff_max_seconds < feed.backoff_initial_seconds:
        raise ConfigError("feed.backoff_max_seconds: must not be less than feed.backoff_initial_seconds")
    return feed


def _choice(value: Any, origin: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ConfigError(f"{origin}: expected one of {', '.join(allowed)}, got {value!r}")
    return value.lower()


def _account_name(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {_type_name(value)}")
    if not _ACCOUNT_NAME.fullmatch(value):
        raise ConfigError(
            f"{path}: {value!r} is not a valid account name "
            "(letters, digits, '_', '.', '-'; at most 64; starting with a letter or digit)"
        )
    return value


def _account_list(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ConfigError(f"accounts: expected a list, got {_type_name(value)}")
    if not value:
        raise ConfigError("accounts: at least one account is needed")
    if len(value) > MAX_ACCOUNTS:
        raise ConfigError(
            f"accounts: {len(value)} accounts configured, but sFOX allows at most {MAX_ACCOUNTS} "
            "WebSocket connections per IP and each account needs one"
        )
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"accounts[{index}]: expected a mapping, got {_type_name(item)}")
        _check_keys(item, f"accounts[{index}]", _SCHEMA["accounts[]"])
    return value


def _unique_names(items: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for index, item in enumerate(items):
        if "name" not in item:
            raise ConfigError(f"accounts[{index}].name: missing")
        name = _account_name(item["name"], f"accounts[{index}].name")
        if name in names:
            raise ConfigError(f"accounts[{index}].name: {name!r} is used by more than one account")
        names.append(name)
    return names


def _file_accounts(value: Any, environ: Mapping[str, str]) -> tuple[AccountConfig, ...]:
    items = _account_list(value)
    accounts = []
    for index, (item, name) in enumerate(zip(items, _unique_names(items), strict=True)):
        path = f"accounts[{index}]"
        env, key_file = item.get("api_key_env"), item.get("api_key_file")
        if (env is None) == (key_file is None):
            raise ConfigError(f"{path}: set exactly one of api_key_env and api_key_file")
        if env is not None:
            if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
                raise ConfigError(f"{path}.api_key_env: expected an environment variable name")
            source = KeySource(env=env, environ=environ)
        else:
            if not isinstance(key_file, str) or not key_file:
                raise ConfigError(f"{path}.api_key_file: expected a file path")
            source = KeySource(file=Path(key_file))
        try:
            source.load()
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
        accounts.append(AccountConfig(name, source))
    return tuple(accounts)


def _env_account(environ: Mapping[str, str]) -> AccountConfig:
    key, key_file = environ.get("SFOX_API_KEY"), environ.get("SFOX_API_KEY_FILE")
    if key and key_file:
        raise ConfigError("SFOX_API_KEY and SFOX_API_KEY_FILE are both set; set only one")
    if key_file:
        source = KeySource(file=Path(key_file))
        try:
            source.load()
        except ConfigError as error:
            raise ConfigError(f"SFOX_API_KEY_FILE: {error}") from None
        return AccountConfig(SINGLE_ACCOUNT_NAME, source)
    if key is not None:
        if not key.strip():
            raise ConfigError("SFOX_API_KEY: is set but empty")
        return AccountConfig(SINGLE_ACCOUNT_NAME, KeySource(env="SFOX_API_KEY", environ=environ))
    raise ConfigError(
        "no sFOX API key: set SFOX_API_KEY or SFOX_API_KEY_FILE, or list accounts in --config.file; "
        "to try the exporter on simulated data, run it with --demo"
    )


def _demo_accounts(document: dict[str, Any]) -> tuple[AccountConfig, ...]:
    """--demo keeps the account names of a config file but talks to the simulator with its keys."""
    names = _unique_names(_account_list(document["accounts"])) if "accounts" in document else [DEMO_ACCOUNT_NAME]
    return tuple(AccountConfig(name, KeySource(fixed=Secret(f"demo-key-{name}"))) for name in names)


def demo_thresholds(names: Iterable[str]) -> tuple[Threshold, ...]:
    """--demo without thresholds of its own gets these, so the threshold metric, panels and alert
    have something to show: two balances comfortably above, and held USDC always below."""
    return tuple(
        threshold for name in names for threshold in (
            Threshold(name, "usd", "available", 50000.0),
            Threshold(name, "btc", "available", 0.5),
            Threshold(name, "usdc", "held", 5000.0),
        )
    )


def _thresholds(value: Any, account_names: set[str]) -> tuple[Threshold, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"thresholds: expected a list, got {_type_name(value)}")
    thresholds: list[Threshold] = []
    seen: set[tuple[str, str, str]] = set()
    for index, item in enumerate(value):
        path = f"thresholds[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_type_name(item)}")
        _check_keys(item, path, _SCHEMA["thresholds[]"])
        for required in ("account", "currency", "below"):
            if required not in item:
                raise ConfigError(f"{path}.{required}: missing")
        account = item["account"]
        if not isinstance(account, str) or account not in account_names:
            known = ", ".join(sorted(account_names))
            raise ConfigError(f"{path}.account: {account!r} is not a configured account ({known})")
        currency = item["currency"]
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", currency):
            raise ConfigError(f"{path}.currency: expected a currency code such as usd or btc")
        threshold_field = _choice(item.get("field", "available"), f"{path}.field", THRESHOLD_FIELDS)
        below = item["below"]
        if isinstance(below, bool) or not isinstance(below, (int, float)) or not math.isfinite(below):
            raise ConfigError(f"{path}.below: expected a number, got {_type_name(below)}")
        key = (account, currency.lower(), threshold_field)
        if key in seen:
            raise ConfigError(f"{path}: a threshold for {'/'.join(key)} is already set")
        seen.add(key)
        thresholds.append(Threshold(account, currency.lower(), threshold_field, float(below)))
    return tuple(thresholds)


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
             dict: "a mapping", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def environment() -> Mapping[str, str]:
    """The process environment, read once by the command line and passed in from there."""
    return dict(os.environ)
