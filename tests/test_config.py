"""Config: precedence, validation, and the one clear line a bad config gets."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from sfox_exporter.config import (
    AccountKind,
    AuthFlag,
    ConfigError,
    EndUsersConfig,
    Overrides,
    Secret,
    ValuationConfig,
    demo_thresholds,
    load_config,
    parse_listen_address,
    schema_keys,
)
from sfox_exporter.config.files import MAX_CONFIG_FILE_BYTES
from sfox_exporter.simulator import Ledger
from sfox_exporter.web.toolkit import load_web_config

ROOT = Path(__file__).resolve().parent.parent
CANARY = "CANARY-KEY-5f2b9c1e8d7a6b5c4d3e2f1a"


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load(tmp_path: Path | None = None, text: str | None = None, env: dict[str, str] | None = None,
         **flags: object) -> object:
    config_file = write(tmp_path, text) if tmp_path is not None and text is not None else None
    return load_config(Overrides(config_file=config_file, **flags), env if env is not None else {})  # type: ignore[arg-type]


def test_example_config_loads_and_documents_every_key() -> None:
    env = {"SFOX_API_KEY": "k" * 32, "SFOX_API_KEY_TREASURY": "t" * 32}
    config = load_config(Overrides(config_file=str(ROOT / "config.example.yaml")), env)
    assert [account.name for account in config.accounts] == ["main", "treasury"]
    assert config.feed.ping_interval_seconds == 20
    assert config.thresholds[0].below == 1000
    text = (ROOT / "config.example.yaml").read_text()
    for section, keys in schema_keys().items():
        for key in keys:
            assert f"{key}:" in text, f"config.example.yaml does not document {section}.{key}"


def test_defaults_with_a_key_from_the_environment() -> None:
    config = load_config(Overrides(), {"SFOX_API_KEY": CANARY})
    assert config.web.listen_address == "0.0.0.0:9841"
    assert config.web.telemetry_path == "/metrics"
    assert config.sfox.ws_url == "wss://ws.sfox.com/ws"
    assert config.sfox.rest_url == "https://api.sfox.com"
    assert [a.name for a in config.accounts] == ["default"]
    assert config.accounts[0].key.load() == Secret(CANARY)
    assert config.feed.stale_after_seconds == 600
    assert config.feed.max_series == 10000
    assert config.log.level == "info" and config.log.format == "logfmt"


def test_flags_beat_environment_beats_file(tmp_path: Path) -> None:
    text = """
web: {listen_address: "127.0.0.1:1111", telemetry_path: /from-file}
sfox: {ws_url: "wss://file.example/ws", rest_url: "https://file.example"}
"""
    env = {"SFOX_API_KEY": CANARY, "SFOX_WS_URL": "wss://env.example/ws"}
    config = load_config(Overrides(config_file=write(tmp_path, text), listen_address="127.0.0.1:2222"), env)
    assert config.web.listen_address == "127.0.0.1:2222"  # flag over file
    assert config.web.telemetry_path == "/from-file"  # file over default
    assert config.sfox.ws_url == "wss://env.example/ws"  # environment over file
    assert config.sfox.rest_url == "https://file.example"


def test_key_file_is_read_and_trimmed(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(CANARY + "\n")
    key_file.chmod(0o600)
    config = load_config(Overrides(), {"SFOX_API_KEY_FILE": str(key_file)})
    assert config.accounts[0].key.load() == Secret(CANARY)
    assert config.warnings == ()


def test_key_file_readable_by_others_warns(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(CANARY)
    key_file.chmod(0o644)
    config = load_config(Overrides(), {"SFOX_API_KEY_FILE": str(key_file)})
    assert any("accessible by others" in w for w in config.warnings)


def test_accounts_from_file(tmp_path: Path) -> None:
    key_file = tmp_path / "treasury.key"
    key_file.write_text("treasury-key")
    key_file.chmod(0o400)
    text = f"""
accounts:
  - {{name: main, api_key_env: MAIN_KEY}}
  - {{name: treasury, api_key_file: {key_file}}}
thresholds:
  - {{account: main, currency: USD, field: available, below: 1000}}
  - {{account: treasury, currency: btc, below: 0.5}}
"""
    config = load_config(Overrides(config_file=write(tmp_path, text)), {"MAIN_KEY": "main-key"})
    assert [a.name for a in config.accounts] == ["main", "treasury"]
    assert [(t.account, t.currency, t.field, t.below) for t in config.thresholds] == [
        ("main", "usd", "available", 1000.0), ("treasury", "btc", "available", 0.5)]


def test_plain_http_to_a_remote_host_warns() -> None:
    config = load_config(Overrides(), {"SFOX_API_KEY": CANARY, "SFOX_REST_URL": "http://api.example.com"})
    assert any("not encrypted" in w for w in config.warnings)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.0.0.0:9841", ("0.0.0.0", 9841)), (":9841", ("", 9841)), ("[::1]:80", ("::1", 80)),
     ("localhost:0", ("localhost", 0))],
)
def test_listen_addresses(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(value, "x") == expected


def test_a_listen_address_with_a_control_character_is_refused() -> None:
    """bind() raised TypeError for a NUL: a traceback and status 1."""
    with pytest.raises(ConfigError, match=r"x: expected HOST:PORT, got 'a\\x00b:0'"):
        parse_listen_address("a\0b:0", "x")


def test_a_web_config_that_is_a_directory_is_named_as_one(tmp_path: Path) -> None:
    """It was said not to exist; the web config's own reader says what it is."""
    config = load_config(Overrides(demo=True, web_config_file=str(tmp_path)), {})
    assert config.web.config_file == tmp_path
    with pytest.raises(ConfigError, match="is a directory, not a regular file"):
        load_web_config(tmp_path)


# A list of 10**9 "x" in a few hundred bytes: each level names the one before it ten times.
ALIAS_BOMB = "[&a0 [" + ", ".join(["x"] * 10) + "], " + ", ".join(
    f"&a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]" for level in range(1, 9)) + "]"


@pytest.mark.parametrize(
    ("text", "env", "flags", "names"),
    [
        ("web: [", {}, {}, "not valid YAML"),
        # PyYAML would keep the second and drop the first without a word, as Prometheus does not.
        ("accounts: [{name: a, api_key_env: K}]\naccounts: []\n", {"K": "k" * 20}, {},
         "line 2, column 1: found duplicate key 'accounts'"),
        ("accounts:\n  - name: a\n    api_key_env: K\n    name: b\n", {"K": "k" * 20}, {},
         "found duplicate key 'name'"),
        ("- a\n- b\n", {}, {}, "mapping at the top level"),
        ("webb: {}\n", {}, {}, "webb: unknown key (did you mean 'web'?)"),
        ("feed: {ping_intervall_seconds: 5}\n", {}, {}, "feed.ping_intervall_seconds: unknown key"),
        ("feed: {ping_interval_seconds: fast}\n", {}, {}, "feed.ping_interval_seconds: expected a number"),
        ("feed: {ping_interval_seconds: 0}\n", {}, {}, "feed.ping_interval_seconds: must be greater than 0"),
        # Such a value failed every connection (time_t) or REST call (socket timeout) at run time.
        ("feed: {ping_interval_seconds: 1.0e+10}\n", {}, {}, "feed.ping_interval_seconds: must be at most 2073600"),
        ("feed: {rest_timeout_seconds: 4294968}\n", {}, {}, "feed.rest_timeout_seconds: must be at most 2073600"),
        ("feed: {stale_after_seconds: 31622401}\n", {}, {}, "feed.stale_after_seconds: must be at most 31622400"),
        ("feed: {rest_snapshot: 'yes'}\n", {}, {}, "feed.rest_snapshot: expected true or false"),
        ("feed: {max_series: 1.5}\n", {}, {}, "feed.max_series: expected a whole number"),
        ("feed: {backoff_initial_seconds: 10, backoff_max_seconds: 1}\n", {}, {}, "feed.backoff_max_seconds"),
        ("feed: {stale_after_seconds: -1}\n", {}, {}, "feed.stale_after_seconds"),
        ("web: {listen_address: 9841}\n", {}, {}, "web.listen_address: expected a string"),
        ("web: {listen_address: 'nowhere'}\n", {}, {}, "web.listen_address: expected HOST:PORT"),
        ("web: {telemetry_path: metrics}\n", {}, {}, "web.telemetry_path: must be a path"),
        ("web: {telemetry_path: /healthz}\n", {}, {}, "web.telemetry_path: /healthz is reserved"),
        ("web: {telemetry_path: /-/reload}\n", {}, {}, "web.telemetry_path: /-/reload is reserved"),
        ("web: {telemetry_path: '/metrics?x=1'}\n", {}, {}, "web.telemetry_path: must be a path starting with '/'"),
        ("web: {telemetry_path: '/a%41'}\n", {}, {}, "without '?', '#' or '%'"),  # matched decoded: never served
        ("sfox: {ws_url: 'https://ws.sfox.com/ws'}\n", {}, {}, "sfox.ws_url: expected a ws:// or wss:// URL"),
        # repr() of a YAML alias bomb walks a billion elements: an error quotes a value by its type.
        (f"accounts: [{{name: a, api_key_env: K, kind: {ALIAS_BOMB}}}]\n", {"K": "k"}, {},
         "accounts[0].kind: expected one of user, enterprise, got a list"),
        ("accounts: [{name: a, api_key_file: \"/run/a\\0b\"}]\n", {}, {},
         "accounts[0].api_key_file: expected a file path"),
        ("accounts: []\n", {}, {}, "accounts: at least one account"),
        ("accounts: {name: a}\n", {}, {}, "accounts: expected a list"),
        ("accounts: [{name: a}]\n", {}, {}, "accounts[0]: set exactly one of api_key_env and api_key_file"),
        ("accounts: [{name: a, api_key_env: NOPE}]\n", {}, {}, "accounts[0]: environment variable NOPE is not set"),
        ("accounts: [{name: a, api_key_file: /no/such/key}]\n", {}, {},
         "accounts[0]: key file /no/such/key does not exist"),
        ("accounts: [{name: 'a b', api_key_env: K}]\n", {"K": "k"}, {}, "accounts[0].name"),
        ("accounts: [{name: a, api_key_env: K}, {name: a, api_key_env: K}]\n", {"K": "k"}, {},
         "accounts[1].name: 'a' is used by more than one account"),
        ("accounts: [{name: a, api_key_env: K, api_key: inline}]\n", {"K": "k"}, {},
         "accounts[0].api_key: unknown key"),
        ("accounts:\n" + "".join(f"  - {{name: a{i}, api_key_env: K}}\n" for i in range(11)), {"K": "k"}, {},
         "accounts: 11 accounts configured, but sFOX allows at most 10"),
        ("thresholds: [{account: ghost, currency: usd, below: 1}]\n", {"SFOX_API_KEY": "k"}, {},
         "thresholds[0].account: 'ghost' is not a configured account"),
        ("thresholds: [{account: default, currency: usd, field: total, below: 1}]\n", {"SFOX_API_KEY": "k"}, {},
         "thresholds[0].field: expected one of balance, available, held"),
        ("thresholds: [{account: default, currency: usd, below: x}]\n", {"SFOX_API_KEY": "k"}, {},
         "thresholds[0].below: expected a number"),
        ("", {}, {}, "no sFOX API key: set SFOX_API_KEY or SFOX_API_KEY_FILE"),
        ("", {"SFOX_API_KEY": "  "}, {}, "SFOX_API_KEY: is set but empty"),
        ("", {"SFOX_API_KEY_FILE": "/no/such/file"}, {}, "SFOX_API_KEY_FILE: key file /no/such/file does not exist"),
        ("", {"SFOX_API_KEY": "a", "SFOX_API_KEY_FILE": "b"}, {}, "both set"),
        ("", {"SFOX_API_KEY": "k"}, {"log_level": "loud"}, "--log.level: expected one of"),
        ("", {"SFOX_API_KEY": "k"}, {"log_format": "xml"}, "--log.format: expected one of"),
        ("", {"SFOX_API_KEY": "k"}, {"listen_address": "0.0.0.0:99999"}, "--web.listen-address: port 99999"),
        ("", {"SFOX_API_KEY": "k", "SFOX_WS_URL": "nonsense"}, {}, "SFOX_WS_URL: expected a ws://"),
        # Never sent, and the error line echoed the password to stderr, the log and a reload's 500.
        ("", {"SFOX_API_KEY": "k", "SFOX_WS_URL": "wss://user:s3cr3t@ws.example/ws"}, {},
         "SFOX_WS_URL: a user name or password in the URL is never sent; remove it"),
        ("", {"SFOX_API_KEY": "k", "SFOX_REST_URL": "ftp://user:s3cr3t@example/"}, {},
         "SFOX_REST_URL: a user name or password in the URL is never sent"),
    ],
)
def test_bad_config_names_the_offending_key(tmp_path: Path, text: str, env: dict[str, str],
                                             flags: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env, **flags)
    message = str(caught.value)
    assert names in message
    assert "\n" not in message and "s3cr3t" not in message and len(message) < 400


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--config.file: .*does not exist"):
        load_config(Overrides(config_file=str(tmp_path / "absent.yaml")), {})


def config_error_within(load_it: Callable[[], object], seconds: float = 10.0) -> str:
    """The error of a load run on a thread, so that a read that blocks fails the test, not hangs it."""
    outcome: list[BaseException | object] = []
    thread = threading.Thread(target=lambda: outcome.append(_caught(load_it)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still reading after {seconds} s"
    assert isinstance(outcome[0], ConfigError), outcome[0]
    return str(outcome[0])


def _caught(action: Callable[[], object]) -> BaseException | object:
    try:
        return action()
    except BaseException as error:
        return error


@pytest.mark.parametrize("which", ["config", "web config"])
def test_config_files_are_read_only_as_small_regular_files(tmp_path: Path, which: str) -> None:
    def load_it(path: Path) -> Callable[[], object]:
        if which == "config":
            return lambda: load_config(Overrides(config_file=str(path)), {})
        return lambda: load_web_config(path)

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # nobody writes: an ordinary open() would wait for ever
    assert config_error_within(load_it(fifo)).endswith(f"{fifo} is a FIFO, not a regular file")
    assert config_error_within(load_it(Path("/dev/zero"))).endswith(  # a read that never ends
        "/dev/zero is a character device, not a regular file")
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * MAX_CONFIG_FILE_BYTES + "\n")
    assert config_error_within(load_it(huge)).endswith(f"{huge} is larger than {MAX_CONFIG_FILE_BYTES} bytes")


def test_demo_needs_no_key_and_keeps_account_names(tmp_path: Path) -> None:
    config = load(tmp_path, "accounts: [{name: alpha, api_key_env: UNSET}, {name: beta, api_key_env: UNSET}]\n",
                  demo=True)
    assert [a.name for a in config.accounts] == ["alpha", "beta"]  # type: ignore[attr-defined]
    plain = load_config(Overrides(demo=True), {})
    assert [(a.name, a.kind) for a in plain.accounts] == [("demo", "user"), ("platform", "enterprise")]
    assert {(t.account, t.currency, t.field) for t in plain.thresholds} == {
        ("demo", "usd", "available"), ("demo", "btc", "available"), ("demo", "eth", "available")}
    own = load(tmp_path, "thresholds: [{account: demo, currency: eth, below: 1}]\n", demo=True)
    assert [t.currency for t in own.thresholds] == ["eth"]  # type: ignore[attr-defined]


def test_secret_never_shows_itself() -> None:
    secret = Secret(CANARY)
    for rendering in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}"):
        assert CANARY not in rendering
    config = load_config(Overrides(), {"SFOX_API_KEY": CANARY})
    assert CANARY not in repr(config)
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SFOX_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "sfox_exporter", *args], capture_output=True, text=True,
                          env=environment, timeout=timeout, cwd=ROOT)


def test_cli_without_key_exits_2_and_suggests_demo() -> None:
    result = run_cli()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SFOX_API_KEY" in lines[0] and "--demo" in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("feed: {max_series: lots}\n", {"SFOX_API_KEY": CANARY}, "feed.max_series"),
        ("accounts: [{name: a, api_key_file: /nonexistent/key}]\n", {}, "accounts[0]: key file"),
        ("web: {\n", {"SFOX_API_KEY": CANARY}, "not valid YAML"),
        ("thresholds: [{account: x, currency: usd, below: 1}]\n", {"SFOX_API_KEY": CANARY}, "thresholds[0].account"),
    ],
)
def test_cli_bad_config_exits_2_with_one_line_and_no_key(tmp_path: Path, text: str, env: dict[str, str],
                                                         expected: str) -> None:
    result = run_cli("--config.file", write(tmp_path, text), env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert CANARY not in result.stderr + result.stdout


def test_cli_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("sfox-exporter ")


def test_a_key_with_a_line_break_still_gives_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '"web\\nbad": 1\n', {"SFOX_API_KEY": CANARY})
    assert "\n" not in str(caught.value) and "web\\nbad" in str(caught.value)


# --- additions for 0.2 -----------------------------------------------------------------------------


def test_additions_for_0_2_have_their_defaults() -> None:
    config = load_config(Overrides(), {"SFOX_API_KEY": CANARY})
    assert (config.sfox.max_connections, config.sfox.max_requests_per_minute) == (10, 20)
    assert (config.accounts[0].kind, config.accounts[0].enterprise_auth_flag) == ("user", "boolean")
    assert config.valuation == ValuationConfig(enabled=True, quote="usd", bridges=("btc", "usdt"),
                                               stale_after_seconds=300.0)
    assert config.end_users == EndUsersConfig(per_user_series=False, shard="0/1")
    assert (config.end_users.shard_index, config.end_users.shard_count) == (0, 1)
    assert config.connections == 2  # the account, and market data for valuation


def test_additions_for_0_2_from_the_file(tmp_path: Path) -> None:
    text = """
sfox: {max_connections: 4, max_requests_per_minute: 12}
accounts:
  - {name: platform, kind: Enterprise, api_key_env: K, enterprise_auth_flag: STRING}
  - {name: own, api_key_env: K}
valuation: {enabled: true, quote: USDC, bridges: [BTC, eth, btc, usdc], stale_after_seconds: 60}
end_users: {per_user_series: true, shard: " 2 / 4 "}
thresholds:
  - {account: own, currency: btc, above: 10}
  - {account: own, currency: btc, below: 1}
"""
    config = load_config(Overrides(config_file=write(tmp_path, text)), {"K": CANARY})
    assert (config.sfox.max_connections, config.sfox.max_requests_per_minute) == (4, 12)
    platform, own = config.accounts
    assert (platform.kind, platform.enterprise_auth_flag) == (AccountKind.ENTERPRISE, AuthFlag.STRING)
    assert (own.kind, own.enterprise_auth_flag) == (AccountKind.USER, AuthFlag.BOOLEAN)
    assert config.valuation.quote == "usdc" and config.valuation.stale_after_seconds == 60
    assert config.valuation.bridges == ("btc", "eth", "usdc")  # lower-cased, duplicates dropped
    assert config.end_users.per_user_series and config.end_users.shard == "2/4"
    kept = [user for user in ("alice", "bob", "carol", "dave", "erin") if config.end_users.keeps(user)]
    assert kept == [u for u in ("alice", "bob", "carol", "dave", "erin") if zlib.crc32(u.encode()) % 4 == 2]
    assert [(t.below, t.above) for t in config.thresholds] == [(None, 10.0), (1.0, None)]
    assert config.warnings == ()


def test_an_auth_flag_on_a_user_account_is_pointed_out(tmp_path: Path) -> None:
    text = "accounts: [{name: a, api_key_env: K, enterprise_auth_flag: string}]\n"
    config = load_config(Overrides(config_file=write(tmp_path, text)), {"K": CANARY})
    assert config.warnings == ("accounts[0].enterprise_auth_flag: ignored, the account is not kind: enterprise",)


def test_a_threshold_on_an_enterprise_account_is_pointed_out(tmp_path: Path) -> None:
    """No sfox_balance series exists for it, so no rule could ever compare it (a review of the rules)."""
    text = ("accounts: [{name: p, kind: enterprise, api_key_env: K}, {name: u, api_key_env: K}]\n"
            "thresholds: [{account: u, currency: usd, below: 1}, {account: p, currency: btc, below: 1}]\n")
    config = load_config(Overrides(config_file=write(tmp_path, text)), {"K": CANARY})
    assert config.warnings == ("thresholds[1]: account p is kind: enterprise, which has no sfox_balance series "
                               "(its end users' totals are sfox_end_users_balance): no rule can compare it with "
                               "this threshold",)


TEN_ACCOUNTS = "accounts:\n" + "".join(f"  - {{name: a{i}, api_key_env: K}}\n" for i in range(10))


@pytest.mark.parametrize(("spelt", "value"), [("1e3", 1000.0), ("1.5e3", 1500.0), ("-.5E-1", -0.05), ("0.5", 0.5),
                                             ("1_000", 1000.0), ("0x10", 16.0), ("0", 0.0)])
def test_numbers_read_as_written(tmp_path: Path, spelt: str, value: float) -> None:
    """YAML 1.1 reads 1e3 as the string "1e3": such a threshold was refused as not a number."""
    path = tmp_path / "c.yaml"
    path.write_text("accounts: [{name: a, api_key_env: K}]\n"
                    f"thresholds: [{{account: a, currency: usd, below: {spelt}}}]\n")
    assert load_config(Overrides(config_file=str(path)), {"K": "k" * 20}).thresholds[0].below == value


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("sfox: {max_connections: 11}\n", "sfox.max_connections: must be between 1 and 10 (sFOX allows 10"),
        ("sfox: {max_connections: 0}\n", "sfox.max_connections: must be between 1 and 10"),
        ("sfox: {max_requests_per_minute: 41}\n", "sfox.max_requests_per_minute: must be between 1 and 40"),
        ("sfox: {max_requests_per_minute: 2.5}\n", "sfox.max_requests_per_minute: expected a whole number"),
        ("sfox: {max_conections: 2}\n", "sfox.max_conections: unknown key (did you mean 'max_connections'?)"),
        ("accounts: [{name: a, api_key_env: K, kind: admin}]\n", "accounts[0].kind: expected one of user, enterprise"),
        ("accounts: [{name: a, api_key_env: K, kind: enterprise, enterprise_auth_flag: true}]\n",
         "accounts[0].enterprise_auth_flag: expected one of boolean, string, got True"),
        ("valuaton: {}\n", "valuaton: unknown key (did you mean 'valuation'?)"),
        ("valuation: {enabled: 'yes'}\n", "valuation.enabled: expected true or false"),
        ("valuation: {quote: 5}\n", "valuation.quote: expected a currency code"),
        ("valuation: {bridges: btc}\n", "valuation.bridges: expected a list of currency codes"),
        ("valuation: {bridges: [btc, 'not a code']}\n", "valuation.bridges[1]: expected a currency code"),
        ("valuation: {stale_after_seconds: 0}\n", "valuation.stale_after_seconds: must be greater than 0"),
        ("end_users: {shard: 4/4}\n", 'end_users.shard: expected "i/n" with 0 <= i < n <= 999999'),
        ("end_users: {shard: 999999/1000000}\n", 'end_users.shard: expected "i/n" with 0 <= i < n <= 999999'),
        ("end_users: {shard: 1/0}\n", "end_users.shard: expected"),
        ("end_users: {shard: 1}\n", "end_users.shard: expected"),
        ("end_users: {per_user_serie: true}\n", "did you mean 'per_user_series'?"),
        ("thresholds: [{account: a, currency: usd, below: 1, above: 2}]\n",
         "thresholds[0]: set exactly one of below and above"),
        ("thresholds: [{account: a, currency: usd}]\n", "thresholds[0]: set exactly one of below and above"),
        ("thresholds: [{account: a, currency: usd, above: x}]\n", "thresholds[0].above: expected a number"),
        ("thresholds: [{account: a, currency: usd, above: .inf}]\n", "thresholds[0].above: must be a finite number"),
        # An integer past float's range raised OverflowError: a traceback and exit status 1.
        ("thresholds: [{account: a, currency: usd, above: 1%s}]\n" % ("0" * 400), "thresholds[0].above: must be"),
        ("feed: {stale_after_seconds: 1%s}\n" % ("0" * 400), "feed.stale_after_seconds: must be a finite number"),
        ("feed: {max_series: %s}\n" % ("9" * 5000), "line 2, column 20: a number far too long"),
        ("sfox: {max_connections: 1%s}\n" % ("0" * 400), "must be between 1 and 10 (sFOX allows 10 WebSocket "
         "connections per IP), got far more"),
        # Hexadecimal escapes int()'s 4300-digit limit; repr() in the error line then raised.
        (f"accounts: [{{name: a, api_key_env: K, kind: 0x{'f' * 4000}}}]\n",
         "accounts[0].kind: expected one of user, enterprise, got a number far too long"),
        (f"end_users: {{shard: -0x{'f' * 4000}}}\n", "end_users.shard: expected"),
        (f"thresholds: [{{account: a, currency: usd, below: 0{'7' * 5000}}}]\n", "7... is an octal number in YAML 1.1"),
        (f"sfox: {{max_connections: -1{'0' * 40}}}\n", "got far less"),
        # YAML 1.1 reads 010 as 8 and 1:30 as 90: a threshold other than the one written.
        ("thresholds: [{account: a, currency: usd, below: 010}]\n", "'010' is an octal number in YAML 1.1"),
        ("thresholds: [{account: a, currency: usd, below: 1:30}]\n", "'1:30' is a base-60 number in YAML 1.1"),
        ("thresholds: [{account: a, currency: usd, below: 1:30.5}]\n", "'1:30.5' is a base-60 number"),
        (TEN_ACCOUNTS + "valuation: {enabled: true}\n",
         "sfox.max_connections: 11 WebSocket connections needed (10 accounts + 1 for valuation), "
         "but 10 allowed; remove accounts or set valuation.enabled: false"),
        ("sfox: {max_connections: 2}\naccounts: [{name: a, api_key_env: K}, {name: b, api_key_env: K}]\n",
         "sfox.max_connections: 3 WebSocket connections needed (2 accounts + 1 for valuation), but 2 allowed; "
         "raise sfox.max_connections"),
        ("sfox: {max_connections: 1}\nvaluation: {enabled: true}\naccounts: [{name: a, api_key_env: K}]\n",
         "(1 account + 1 for valuation), but 1 allowed"),
    ],
)
def test_bad_0_2_config_names_the_offending_key(tmp_path: Path, text: str, names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "accounts: [{name: a, api_key_env: K}]\n" + text if "accounts" not in text else text,
             {"K": CANARY})
    assert names in str(caught.value)
    assert "\n" not in str(caught.value) and CANARY not in str(caught.value)


def test_ten_accounts_fit_without_valuation(tmp_path: Path) -> None:
    config = load(tmp_path, TEN_ACCOUNTS + "valuation: {enabled: false}\n", {"K": CANARY})
    assert config.connections == 10  # type: ignore[attr-defined]


def test_ten_accounts_of_a_0_1_config_keep_starting_with_valuation_off(tmp_path: Path) -> None:
    """Valuation is on by default in 0.2; a 0.1 config of sFOX's 10 accounts must not stop starting."""
    config = load(tmp_path, TEN_ACCOUNTS, {"K": CANARY})
    assert not config.valuation.enabled and config.connections == 10  # type: ignore[attr-defined]
    assert any("valuation is off" in warning for warning in config.warnings)  # type: ignore[attr-defined]


def test_demo_keeps_valuation_and_fits_the_connection_limit(tmp_path: Path) -> None:
    plain = load_config(Overrides(demo=True), {})
    assert plain.valuation.enabled and plain.connections <= plain.sfox.max_connections
    with pytest.raises(ConfigError, match=r"11 WebSocket connections needed"):
        load(tmp_path, TEN_ACCOUNTS + "valuation: {enabled: true}\n", demo=True)


def test_cli_over_the_connection_share_exits_2_with_one_line(tmp_path: Path) -> None:
    text = "sfox: {max_connections: 1}\naccounts: [{name: a, api_key_env: SFOX_API_KEY}]\n"
    result = run_cli("--config.file", write(tmp_path, text), env={"SFOX_API_KEY": CANARY})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "2 WebSocket connections needed" in lines[0] and "1 allowed" in lines[0]
    assert CANARY not in result.stderr + result.stdout


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_demo_thresholds_stay_on_their_side_as_the_simulator_drifts(seed: int) -> None:
    """The demo's low-balance panel and alert need one threshold always breached, the others never."""
    rng = random.Random(seed)
    ledger = Ledger.demo("demo", seed)
    thresholds = demo_thresholds(["demo"])
    for _ in range(20000):  # hours of the demo's drift
        ledger.drift(rng)
        values = {(t.currency, t.field): getattr(ledger.holdings[t.currency], t.field) for t in thresholds}
        assert [values[t.currency, t.field] < (t.below or 0) for t in thresholds] == [False, False, True], values
