"""Log lines: logfmt and JSON, one line each, whatever the message or its extras hold."""

from __future__ import annotations

import json
import logging
import weakref

from sfox_exporter.logs import Episode, JsonFormatter, LogfmtFormatter, Redactor, Throttle

from .conftest import FakeClock


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("sfox_exporter.sfox.feed", logging.WARNING, __file__, 1, message, args, None)
    entry.__dict__.update(extra)
    return entry


def test_logfmt_quotes_what_needs_quoting() -> None:
    line = LogfmtFormatter(Redactor()).format(record('reconnect "now"\nplease', account="main", attempt=3))
    assert "\n" not in line
    assert 'level=warn logger=sfox_exporter.sfox.feed msg="reconnect \\"now\\"\\nplease" account=main attempt=3' in line
    assert line.startswith("ts=") and line.split()[0].endswith("Z")


def test_json_is_one_object_per_line() -> None:
    line = JsonFormatter(Redactor()).format(record("hello %s", "world", account="main"))
    fields = json.loads(line)
    assert fields["msg"] == "hello world" and fields["level"] == "warn" and fields["account"] == "main"


def test_an_extra_that_cannot_print_itself_does_not_break_the_line() -> None:
    class Thing:
        pass

    thing = Thing()
    proxy = weakref.proxy(thing)
    del thing  # a dead proxy raises ReferenceError on str()
    for formatter in (LogfmtFormatter(Redactor()), JsonFormatter(Redactor())):
        assert "unprintable" in formatter.format(record("x", websocket=proxy))


def test_episode_logs_first_failure_and_recovery_only() -> None:
    logger = logging.getLogger("test.episode")
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, entry: logging.LogRecord) -> None:
            records.append(entry)

    logger.addHandler(Collect())
    logger.setLevel(logging.DEBUG)
    episode = Episode(logger, "main", logging.ERROR)
    for _ in range(5):
        episode.failed("rejected")
    episode.recovered("accepted again")
    assert [r.levelno for r in records] == [logging.ERROR] + [logging.DEBUG] * 4 + [logging.INFO]
    assert records[-1].getMessage() == "accepted again after 5 failed attempts"


def test_throttle_allows_once_a_minute_per_topic() -> None:
    clock = FakeClock()
    throttle = Throttle(clock)
    assert throttle.allow("a") and throttle.allow("b")
    assert not throttle.allow("a")
    clock.advance(60)
    assert throttle.allow("a")
