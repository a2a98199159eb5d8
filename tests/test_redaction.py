"""A key echoed by sFOX never reaches a log line, not even in part: the Redactor blanks any
fragment of 8+ characters, and redaction happens before any cut."""

from __future__ import annotations

import json
import logging

import pytest

from sfox_exporter.config.keys import demo_key
from sfox_exporter.logs import MAX_FIELD_CHARS, MIN_FRAGMENT, JsonFormatter, LogfmtFormatter, Redactor
from sfox_exporter.sfox.decode import ControlMessage, parse_frame

KEY = "4f9c2a7be01d83k5m6n7p8q9r0s1t2u3v4w5x6y7z8a9b0c1d2e3f4g5h6i7j8k9"


def redactor() -> Redactor:
    found = Redactor()
    found.add(KEY)
    return found


def leaked(line: str, shortest: int = 5) -> list[str]:
    return [KEY[i : i + shortest] for i in range(len(KEY) - shortest + 1) if KEY[i : i + shortest] in line]


def test_fragments_of_the_key_are_redacted_wherever_they_appear() -> None:
    text = f"head {KEY[:MIN_FRAGMENT]} middle {KEY[10:40]}\n{KEY[41:]} end"
    assert leaked(redactor().redact(text)) == []
    assert redactor().redact("an ordinary sentence of words") == "an ordinary sentence of words"


def test_an_echo_in_another_case_is_redacted_too() -> None:
    text = f"invalid key {KEY.upper()}, or {KEY[5:30].swapcase()}"
    assert leaked(redactor().redact(text).lower()) == []


@pytest.mark.parametrize("offset", [180, 195, 199, MAX_FIELD_CHARS - 20, MAX_FIELD_CHARS - 3])
def test_an_echoed_key_is_redacted_before_any_cut(offset: int) -> None:
    error = "x" * offset + KEY + " was not accepted" + "y" * 300
    event = parse_frame(json.dumps({"type": "error", "payload": {"error": error}}))
    assert isinstance(event, ControlMessage) and event.detail is not None
    entry = logging.LogRecord("sfox_exporter.sfox.feed", logging.WARNING, __file__, 1,
                              "authenticate answered %s", (event.detail,), None)
    for formatter in (LogfmtFormatter(redactor()), JsonFormatter(redactor())):
        line = formatter.format(entry)
        assert leaked(line) == [], line
        assert len(line) < MAX_FIELD_CHARS + 200  # still cut


@pytest.mark.parametrize("account", ["demo", "platform", "treasury-main"])
def test_demo_keys_do_not_hide_the_account_names_in_the_logs(account: str) -> None:
    """Keys spelt from the account name made the redactor blank the name itself (account=[REDACTED])."""
    found = Redactor()
    found.add(demo_key(account))
    entry = logging.LogRecord("sfox_exporter.sfox.feed", logging.INFO, __file__, 1, "feed up", (), None)
    entry.account = account
    assert f"account={account}" in LogfmtFormatter(found).format(entry)
