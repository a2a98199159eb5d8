"""How the config schema is declared and checked: settings attached to dataclass fields.

Each field of a schema dataclass carries, in its `metadata`, the check its value passes in the
file. The keys a section allows, their defaults and their checks are then read from the one
declaration (schema.py), and every problem is worded the same way: one line, naming the key by its
path (`feed.max_series`, `accounts[1].name`), suggesting the closest key for a typo. A library
(pydantic, cattrs) would word errors its own way, over several lines, and echo the values, which may
be keys pasted in the wrong place; these messages are the user-facing part, so they are written here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from sfox_exporter.errors import SfoxExporterError

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
Check = Callable[[Any, str], Any]  # (value from the file, its path) -> the typed value, or ConfigError

_METADATA_KEY = "sfox_exporter.setting"
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CURRENCY = re.compile(r"[A-Za-z0-9._-]{1,32}")


class ConfigError(SfoxExporterError):
    """A configuration problem, worded for the one line the exporter prints before exiting 2."""


@dataclass(frozen=True)
class Setting:
    """What a config-file key accepts. `nested` is the schema of a section or of a list's items."""

    check: Check
    required: bool = False
    nested: type[Any] | None = None
    many: bool = False  # a list of `nested`, rather than one


def setting(check: Check, *, required: bool = False) -> dict[str, Setting]:
    """Field metadata declaring a config-file key: `dataclasses.field(default=..., metadata=setting(...))`."""
    return {_METADATA_KEY: Setting(check, required)}


def declared(schema: type[Any]) -> dict[str, Setting]:
    """The keys a schema dataclass accepts, in declaration order."""
    return {f.name: f.metadata[_METADATA_KEY] for f in dataclasses.fields(schema) if _METADATA_KEY in f.metadata}


def parse_section(schema: type[T], value: Any, path: str) -> T:
    """A schema dataclass from a mapping of the file: unknown keys, types and bounds checked."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type_name(value)}")
    settings = declared(schema)
    for key in value:
        if key not in settings:
            import difflib  # noqa: PLC0415 - only for an error message; spares ~0.2 MB of RSS

            close = difflib.get_close_matches(str(key), list(settings), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{_join(path, str(key))}: unknown key{hint}")
    values: dict[str, Any] = {}
    for key, spec in settings.items():
        if key in value:
            values[key] = spec.check(value[key], _join(path, key))
        elif spec.required:
            raise ConfigError(f"{_join(path, key)}: missing")
    constructor: Callable[..., T] = schema
    return constructor(**values)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def shown(value: Any) -> str:
    """A value from the file, quoted for an error line: a string or number, cut short; anything else
    by its type alone. repr() of a YAML alias bomb would walk a billion elements."""
    if isinstance(value, int) and value.bit_length() > 64:  # repr() raises past 4300 digits
        return "a number far too long"
    if isinstance(value, (str, int, float)):  # bool too
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return type_name(value)


def type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
             dict: "a mapping", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


# --- checks, one per kind of value ----------------------------------------------------------------


def section(schema: type[Any]) -> dict[str, Setting]:
    """Field metadata declaring a section (a mapping) whose keys `schema` declares; absent or null: defaults."""
    return {_METADATA_KEY: Setting(lambda value, path: parse_section(schema, value, path), nested=schema)}


def items(schema: type[Any], *, allow_none: bool = False) -> dict[str, Setting]:
    """Field metadata declaring a list of mappings, each checked against `schema`, read as a tuple."""

    def check(value: Any, path: str) -> tuple[Any, ...] | None:
        if value is None and allow_none:
            return ()
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type_name(value)}")
        return tuple(parse_section(schema, item, f"{path}[{index}]") for index, item in enumerate(value))

    return {_METADATA_KEY: Setting(check, nested=schema, many=True)}


# A duration that reaches a socket timeout or a poll() must stay under 2**31 ms (24.8 days): past it
# the waits wrap round or overflow, and every connection or REST call would fail. Staleness is only
# compared, never waited for, and may be longer. Refused here, once, with the setting's name.
MAX_SECONDS = 24 * 86400
MAX_STALE_SECONDS = 366 * 86400


def seconds(*, positive: bool = True, maximum: int = MAX_SECONDS) -> Check:
    """A finite number of seconds up to `maximum`: greater than 0, or (positive=False) 0 meaning never."""

    def check(value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number of seconds, got {type_name(value)}")
        value = _finite(value, path)
        if positive and value <= 0:
            raise ConfigError(f"{path}: must be greater than 0")
        if value < 0:
            raise ConfigError(f"{path}: must be 0 (never) or more")
        if value > maximum:
            raise ConfigError(f"{path}: must be at most {maximum} ({maximum // 86400} days)")
        return float(value)

    return check


def number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}: expected a number, got {type_name(value)}")
    return _finite(value, path)


def _finite(value: float, path: str) -> float:
    """`value` as a finite float; an integer past float's range is not one (float() would raise)."""
    try:
        as_float = float(value)
    except OverflowError:
        as_float = math.inf
    if not math.isfinite(as_float):
        raise ConfigError(f"{path}: must be a finite number")
    return as_float


def whole(low: int, high: int | None = None, why: str = "") -> Check:
    """A whole number from `low` (to `high`); `why` explains the upper bound in its error."""

    def check(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected a whole number, got {type_name(value)}")
        if high is None and value < low:
            raise ConfigError(f"{path}: must be at least {low}")
        if high is not None and not low <= value <= high:
            got = value if abs(value) < 10**18 else "far more" if value > 0 else "far less"  # not 1000 digits
            raise ConfigError(f"{path}: must be between {low} and {high}{f' ({why})' if why else ''}, got {got}")
        return value

    return check


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {type_name(value)}")
    return value


def text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {type_name(value)}")
    return value


def choice(value: Any, path: str, allowed: Iterable[str]) -> str:
    """One of `allowed`, in any case; lower-cased."""
    options = tuple(allowed)
    if not isinstance(value, str) or value.lower() not in options:
        raise ConfigError(f"{path}: expected one of {', '.join(options)}, got {shown(value)}")
    return value.lower()


def one_of(allowed: Iterable[str]) -> Check:
    options = tuple(allowed)
    return lambda value, path: choice(value, path, options)


def member(enum: type[E]) -> Check:
    """A member of a StrEnum, by its value."""
    return lambda value, path: enum(choice(value, path, [m.value for m in enum]))


def currency(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise ConfigError(f"{path}: expected a currency code such as usd or btc")
    return value.lower()


def currencies(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list of currency codes such as [btc, usdt], got {type_name(value)}")
    return tuple(dict.fromkeys(currency(item, f"{path}[{index}]") for index, item in enumerate(value)))


def account_name(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {type_name(value)}")
    if not _ACCOUNT_NAME.fullmatch(value):
        raise ConfigError(
            f"{path}: {shown(value)} is not a valid account name "
            "(letters, digits, '_', '.', '-'; at most 64; starting with a letter or digit)"
        )
    return value


def env_name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ConfigError(f"{path}: expected an environment variable name")
    return value


def file_path(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{path}: expected a file path")
    return value


def shard(value: Any, path: str) -> str:
    """"i/n": this exporter keeps the i-th of n shares, 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*/\s*(\d{1,6})\s*", value) if isinstance(value, str) else None
    if match is None or not int(match.group(1)) < int(match.group(2)):
        raise ConfigError(f"{path}: expected \"i/n\" with 0 <= i < n <= 999999, such as \"0/1\" or \"1/4\", "
                          f"got {shown(value)}")
    return f"{int(match.group(1))}/{int(match.group(2))}"
