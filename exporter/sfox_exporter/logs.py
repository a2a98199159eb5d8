"""Logging: logfmt or JSON lines on stderr, with API keys scrubbed from every line.

Keys are never passed to a logger in the first place (they travel as config.Secret); the
Redactor is the second line of defence, for text that comes from elsewhere, such as a library's
exception message or an error text from sFOX that echoes the key.

Two rules keep a key whole-or-nothing out of the logs: the Redactor blanks any fragment of
MIN_FRAGMENT or more characters of a known key, not only the whole key (a cut, a line break or an
escape can split one), and the formatter redacts every field before it cuts it to MAX_FIELD_CHARS,
so no cut can leave the head of a key that redaction would no longer recognise. Code that takes
text from the network therefore must not cut it before it reaches a logger (see
sfox.decode.sanitize_text).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import threading
from typing import IO, Any

from sfox_exporter.clock import Clock

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
                logging.ERROR: "error", logging.CRITICAL: "error"}
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
REDACTED = "[REDACTED]"
# Fragments of a key this long or longer are redacted wherever they appear.
MIN_FRAGMENT = 8
# Label values on /metrics and the landing page are scrubbed of keys this long or longer.
MIN_OUTPUT_SECRET = 16
# A field longer than this is cut, after redaction; a traceback may be longer.
MAX_FIELD_CHARS = 1000
MAX_ERROR_CHARS = 16000
# How long a throttled warning stays quiet after it was logged.
THROTTLE_SECONDS = 60.0


class Redactor:
    """The secrets that must never appear in a log line."""

    # Keys are read again before every connection, so a rotated key file or a reload brings new ones:
    # the oldest are forgotten past this many, far more than the 11 connections sFOX allows can hold.
    MAX_SECRETS = 256
    MAX_OWNERS = 32  # connections whose key is pinned: sFOX allows 10 per IP (and renames come and go)

    def __init__(self) -> None:
        self._recent: dict[str, None] = {}  # every key kept, oldest first
        self._pinned: dict[str, str] = {}  # each connection's key in use: never forgotten
        # Longest first: a key that holds another must not be left half-shown by the shorter one.
        self._secrets: tuple[str, ...] = ()
        # Every MIN_FRAGMENT characters of a key, lower-cased: a set, so that a log line costs the
        # same however many keys there are (one regex of them all grew, and was compiled, per key).
        self._grams: frozenset[str] = frozenset()
        self._output_secrets: tuple[str, ...] = ()  # lower-cased, for label values
        self._generation = 0
        self._echo_logged = False
        self._lock = threading.Lock()

    def add(self, secret: str, owner: str | None = None) -> None:
        """Every feed adds its key before each connection attempt, naming itself as `owner`: its key
        in use is pinned, since a connection up for weeks re-adds nothing while other keys rotate. A
        key already known changes nothing (and must not: a new generation makes /metrics render
        every series afresh)."""
        if len(secret) >= 4:  # shorter "keys" would blank out ordinary words
            with self._lock:
                if owner is not None:  # the owners of late re-add most recently: those of a reload's past go
                    self._pinned.pop(owner, None)
                    self._pinned[owner] = secret
                    while len(self._pinned) > self.MAX_OWNERS:
                        del self._pinned[next(iter(self._pinned))]
                if secret in self._recent:
                    self._recent[secret] = self._recent.pop(secret)  # in use again: newest
                    return
                self._recent[secret] = None
                pinned = set(self._pinned.values())
                for old in [key for key in self._recent if key not in pinned][: max(0, len(self._recent) -
                                                                                   self.MAX_SECRETS)]:
                    del self._recent[old]
                self._secrets = tuple(sorted(self._recent, key=len, reverse=True))
                output = tuple(s.lower() for s in self._secrets if len(s) >= MIN_OUTPUT_SECRET)
                if output != self._output_secrets:
                    self._output_secrets = output
                    self._generation += 1
                # Any case: a server or proxy echoing the key upper-cased still echoes the key.
                self._grams = frozenset(s[i : i + MIN_FRAGMENT].lower() for s in self._secrets
                                        for i in range(len(s) - MIN_FRAGMENT + 1))

    @property
    def longest(self) -> int:
        """The length of the longest key kept."""
        return len(self._secrets[0]) if self._secrets else 0

    @property
    def generation(self) -> int:
        """Bumped by every key that changes what scrub() blanks: output scrubbed before may hold it."""
        return self._generation

    def scrub(self, value: str) -> str:
        """A label value from sFOX (or a page of them), any whole key in it blanked whatever its case
        (currencies are lower-cased). Keys shorter than MIN_OUTPUT_SECRET are left alone: no sFOX
        key is that short, and blanking a test's "sfox" or "0000" would take metric names and
        numbers with it. /metrics scrubs label values only, each once when its series is first seen."""
        lowered = value.lower()
        for secret in self._output_secrets:
            if secret in lowered:
                value = re.sub(re.escape(secret), REDACTED, value, flags=re.IGNORECASE)
                if not self._echo_logged:
                    self._echo_logged = True
                    logging.getLogger("sfox_exporter.metrics").warning(
                        "a value sFOX sent held an API key; it shows as %s on /metrics", REDACTED)
        return value

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        grams = self._grams
        if not grams or len(text) < MIN_FRAGMENT:
            return text
        # Every fragment of MIN_FRAGMENT+ characters is a run of overlapping MIN_FRAGMENT-grams of
        # the key: blank the union of the spans they cover.
        lowered = text.lower()
        if len(lowered) != len(text):  # a character whose lower case is longer: window by window
            starts = [i for i in range(len(text) - MIN_FRAGMENT + 1) if text[i : i + MIN_FRAGMENT].lower() in grams]
        else:
            starts = [i for i in range(len(text) - MIN_FRAGMENT + 1) if lowered[i : i + MIN_FRAGMENT] in grams]
        spans: list[list[int]] = []
        for start in starts:
            if spans and start <= spans[-1][1]:
                spans[-1][1] = start + MIN_FRAGMENT
            else:
                spans.append([start, start + MIN_FRAGMENT])
        if not spans:
            return text
        pieces: list[str] = []
        position = 0
        for start, end in spans:
            pieces += (text[position:start], REDACTED)
            position = end
        pieces.append(text[position:])
        return "".join(pieces)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class _Formatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        fields: dict[str, Any] = {
            "ts": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
            "logger": record.name,
            "msg": self._safe(record.getMessage(), MAX_FIELD_CHARS),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                fields[key] = (value if type(value) in (int, float, bool)
                               else self._safe(value if type(value) is str else _safe_str(value), MAX_FIELD_CHARS))
        if record.exc_info:
            fields["error"] = self._safe(self.formatException(record.exc_info), MAX_ERROR_CHARS)
        return fields

    def _safe(self, text: str, limit: int) -> str:
        """Redacted first, cut second: a cut inside a key must not leave its head unrecognised. What
        lies a key's length past the cut cannot reach the line, and is not worth redacting."""
        reach = limit + max(self._redactor.longest, MIN_FRAGMENT)
        if len(text) <= reach:
            return _cut(self._redactor.redact(text), limit)
        # The pre-cut may split a key, leaving a head too short to recognise; keys redacted before it
        # shorten the text and can pull that head inside the limit: drop what may be one.
        return self._redactor.redact(text[:reach])[: -(MIN_FRAGMENT - 1)][:limit] + "..."

    def format(self, record: logging.LogRecord) -> str:
        return self.render(self.fields(record))

    def render(self, fields: dict[str, Any]) -> str:
        raise NotImplementedError


class LogfmtFormatter(_Formatter):
    def render(self, fields: dict[str, Any]) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


class JsonFormatter(_Formatter):
    def render(self, fields: dict[str, Any]) -> str:
        return json.dumps(fields, default=str, ensure_ascii=False)


def _safe_str(value: Any) -> str:
    """Extra fields come from any library; a formatter must not raise on one (a dead weak proxy, say)."""
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - anything that cannot print itself is shown as such
        return f"<unprintable {type(value).__name__}>"


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text and not any(ch in text for ch in ' ="\\') and text.isprintable():
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in escaped) + '"'


def setup_logging(level: str, format: str, redactor: Redactor, stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter((JsonFormatter if format == "json" else LogfmtFormatter)(redactor))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # websocket-client's own debug output would include the frames we send, authenticate among them.
    logging.getLogger("websocket").setLevel(max(LEVELS[level], logging.INFO))


class Episode:
    """A run of failures logs once when it starts and once when it ends, not once per attempt."""

    def __init__(self, logger: logging.Logger, account: str, level: int = logging.WARNING) -> None:
        self._logger = logger
        self._account = account
        self._level = level
        self.failures = 0

    def failed(self, message: str, *args: Any) -> None:
        self.failures += 1
        level = self._level if self.failures == 1 else logging.DEBUG
        self._logger.log(level, message, *args, extra={"account": self._account, "attempt": self.failures})

    def recovered(self, message: str) -> None:
        if self.failures:
            self._logger.info("%s after %d failed attempts", message, self.failures,
                              extra={"account": self._account})
        self.failures = 0


class Throttle:
    """Lets a warning through at most once a minute per topic. Topics are fixed phrases; should many
    come anyway, the oldest are forgotten, so that memory stays bounded."""

    MAX_TOPICS = 64

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}

    def allow(self, topic: str) -> bool:
        now = self._clock.monotonic()
        last = self._last.get(topic)
        if last is not None and now - last < THROTTLE_SECONDS:
            return False
        self._last.pop(topic, None)  # re-inserted last: the dict's order is the age of each topic
        self._last[topic] = now
        while len(self._last) > self.MAX_TOPICS:
            del self._last[next(iter(self._last))]
        return True
