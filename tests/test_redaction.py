"""A key echoed by sFOX never reaches a log line, not even in part: the Redactor blanks any
fragment of 8+ characters, and redaction happens before any cut."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest

from sfox_exporter.app import Exporter
from sfox_exporter.clock import SystemClock
from sfox_exporter.config import EndUsersConfig
from sfox_exporter.config.keys import demo_key
from sfox_exporter.logs import MAX_FIELD_CHARS, MIN_FRAGMENT, JsonFormatter, LogfmtFormatter, Redactor
from sfox_exporter.metrics.endusers import EndUserBook
from sfox_exporter.metrics.endusers_render import EndUserRenderer
from sfox_exporter.metrics.exposition import Exposition
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.connect import EndUserBalances
from sfox_exporter.sfox.decode import AccountBalance, BalanceUpdate, ControlMessage, parse_frame
from sfox_exporter.simulator import Simulator
from tests.conftest import KEY_MAIN, feed_up, http_get, make_config, scrape_until, wait_until

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


def test_a_key_echoed_in_a_label_value_reaches_neither_metrics_nor_the_landing_page(
        simulator: Simulator, start_exporter: Callable[..., Exporter]) -> None:
    """CONTRACT.md: the API key appears in no metric. Label values come from sFOX, so a server that
    echoes the key as a currency or a Web3 address must not get it onto /metrics."""
    exporter = start_exporter(make_config(simulator))
    wait_until(feed_up(exporter))
    simulator.push(KEY_MAIN, [{"currency": KEY_MAIN.upper(), "balance": "1", "available": "1", "held": "0"},
                              {"type": "web3", "network": "ethereum", "address": KEY_MAIN, "balance": "2"}])
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_web3_wallet_balance", account="main",
                                                          currency="", network="ethereum",
                                                          address="[REDACTED]") == 2)
    assert samples.get("sfox_balance", account="main", currency="[REDACTED]") == 1
    for path in ("/metrics", "/"):
        status, _, body = http_get(exporter.url + path)
        assert status == 200 and KEY_MAIN.lower() not in body.decode().lower(), path


def test_scrub_blanks_whole_keys_in_any_case_and_leaves_short_ones_alone() -> None:
    redactor = Redactor()
    redactor.add("AbCdEf0123456789")
    for echo in ("abcdef0123456789", "ABCDEF0123456789", "AbCdEf0123456789", "aBcDeF0123456789"):
        assert redactor.scrub(f"x-{echo}-y") == "x-[REDACTED]-y"
    assert redactor.scrub("nothing here") == "nothing here"
    generation = redactor.generation
    redactor.add("sfox")  # a test's key: blanking it would take every metric name with it
    assert redactor.scrub("sfox_balance") == "sfox_balance"
    redactor.add("AbCdEf0123456789")  # every reconnect adds its key again
    assert redactor.generation == generation  # so /metrics keeps its cache: nothing scrub() does changed


def test_a_key_like_a_metric_name_leaves_metrics_whole(simulator: Simulator,
                                                       start_exporter: Callable[..., Exporter]) -> None:
    """Scrubbing works on label values, never on the body: a key that is also a metric's name, or
    a number's digits, must not blank them, which made every scrape unparseable."""
    exporter = start_exporter(make_config(simulator))
    wait_until(feed_up(exporter))
    exporter.redactor.add("0000")
    exporter.redactor.add("sfox_balance_available")
    samples = scrape_until(exporter.url, lambda s: s.get("sfox_balance", account="main", currency="usd") is not None)
    assert samples.get("sfox_feed_up", account="main") == 1
    assert samples.get("sfox_balance_available", account="main", currency="usd") is not None


def test_a_key_loaded_after_its_echo_was_rendered_is_scrubbed_at_the_next_scrape() -> None:
    """No state change between the two scrapes: the cached body and the per-user lines must follow
    the redactor, not only the balances."""
    echo = "late-key-0123456789abcdef"
    state = State(["main"], clock=SystemClock())
    state.ingest("main", BalanceUpdate(1, None, (AccountBalance(echo, 1.0, 1.0, 0.0, ()),), (), 0))
    book = EndUserBook(EndUsersConfig(per_user_series=True), max_series=100)
    book.apply(EndUserBalances(None, None, echo, (AccountBalance("btc", 1.0, 1.0, 0.0, ()),), 0))
    redactor = Redactor()
    exposition = Exposition(state, "1", extra=EndUserRenderer({"p": book}, redactor).render, redactor=redactor)
    assert echo.encode() in exposition.render().body  # as a currency (3 families) and a user id (2)
    redactor.add(echo)
    body = exposition.render().body
    assert echo.encode() not in body and b"[REDACTED]" in body


def test_readiness_and_health_texts_are_scrubbed_like_the_landing_page() -> None:
    """An account named with its own key (pasted in the wrong place): /readyz showed it to anyone."""
    key = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
    redactor = Redactor()
    redactor.add(key)
    exporter = Exporter(make_config(accounts={key: key}), redactor=redactor)
    try:
        ready, text = exporter.readiness()
        assert not ready and key not in text and "[REDACTED]" in text
        assert key not in exporter.landing_page()
    finally:
        exporter.stop()


def test_keys_rotated_without_end_keep_the_redactor_small_and_quick() -> None:
    """Each new key recompiled one regex of every fragment of every key, and re's cache kept hundreds
    of them: 400 reloads with new keys grew the exporter to 268 MB, and a log line took milliseconds."""
    redactor = Redactor()
    keys = [f"rotated-key-{n:04d}-" + "0123456789abcdef" * 2 for n in range(1000)]
    for key in keys:
        redactor.add(key)
    assert len(redactor._secrets) == Redactor.MAX_SECRETS  # noqa: SLF001 - the memory this is about
    assert redactor.redact(f"x {keys[-1]} y") == "x [REDACTED] y"
    assert redactor.redact(f"x {keys[-1][:12].upper()} y") == "x [REDACTED] y"  # a fragment, any case
    redactor.add(keys[-Redactor.MAX_SECRETS])  # in use again: the newest, not the next to go
    redactor.add("one-more-key-0123456789abcdef")
    assert keys[-Redactor.MAX_SECRETS] in redactor._secrets  # noqa: SLF001


def test_a_long_field_is_redacted_where_it_is_cut() -> None:
    """Only what reaches the line is redacted: a 2 MB field cost the whole text's scan per line."""
    key = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
    redactor = Redactor()
    redactor.add(key)
    formatter = LogfmtFormatter(redactor)
    text = "x" * (MAX_FIELD_CHARS - 5) + key + "y" * 2_000_000
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "%s", (text,), None)
    line = formatter.format(record)
    assert key[:5] not in line and line.endswith("[REDA...") and len(line) < MAX_FIELD_CHARS + 200


def test_the_cut_never_shows_the_head_of_a_key_that_straddles_it() -> None:
    """Keys redacted before the pre-cut shorten the text and pulled a key's unrecognised head inside."""
    key = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
    redactor = Redactor()
    redactor.add(key)
    text = key + key + "x" * (MAX_FIELD_CHARS + len(key) - 7 - 2 * len(key)) + key + "y" * 50
    line = LogfmtFormatter(redactor).format(logging.LogRecord("t", logging.WARNING, __file__, 1, "%s", (text,), None))
    assert key[:7] not in line


def test_a_key_in_use_is_never_forgotten_while_others_rotate() -> None:
    """A connection up for weeks re-adds nothing: 256 rotated keys elsewhere evicted its key."""
    live = "live-account-key-0123456789abcdef0123"
    redactor = Redactor()
    redactor.add(live, owner="main")
    for n in range(Redactor.MAX_SECRETS + 10):
        redactor.add(f"rotated-{n:04d}-" + "fedcba9876543210" * 2, owner="other")
    assert redactor.redact(f"sFOX said: {live}") == "sFOX said: [REDACTED]"
