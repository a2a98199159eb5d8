"""The command line: flags in, exit status out. Entered through cli.main, which installs the signal
handlers first.

Exit status 0 after SIGTERM or SIGINT, 2 for a configuration problem (one line on stderr, no
traceback), 1 when the exporter cannot start (for example, its port is taken).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from sfox_exporter import build
from sfox_exporter.app import Exporter
from sfox_exporter.config import AccountKind, Config, ConfigError, Overrides, environment, load_config
from sfox_exporter.logs import Redactor, setup_logging
from sfox_exporter.signals import Signals

log = logging.getLogger("sfox_exporter")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and status 2, like a config error, not the usage block first."""
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _given(text: str) -> str:
    """A flag's value, which may not be empty: `--config.file="$UNSET"` must not mean "no config"."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value")
    return text


def parse_args(argv: list[str] | None) -> Overrides:
    parser = _Parser(
        prog="sfox-exporter",
        allow_abbrev=False,  # --config is no --config.file, as Go's flag parsers have it
        description="Prometheus exporter for sFOX account balances, fed by sFOX's WebSocket push feed.",
        epilog="Environment: SFOX_API_KEY or SFOX_API_KEY_FILE (single account 'default'), SFOX_WS_URL, "
        "SFOX_REST_URL. Flags beat environment variables, which beat the config file.",
    )
    parser.add_argument("--config.file", dest="config_file", metavar="PATH", type=_given, help="YAML config file")
    parser.add_argument("--web.listen-address", dest="listen_address", metavar="HOST:PORT", type=_given,
                        help="where to serve HTTP (default: from config, else 0.0.0.0:9841)")
    parser.add_argument("--web.telemetry-path", dest="telemetry_path", metavar="PATH", type=_given,
                        help="path of the metrics (default: /metrics)")
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="PATH", type=_given,
                        help="TLS and basic auth, in the Prometheus exporter-toolkit web-config.yml format")
    parser.add_argument("--log.level", dest="log_level", metavar="LEVEL", type=_given, default=None,
                        help="debug, info, warn or error (default: info)")
    parser.add_argument("--log.format", dest="log_format", metavar="FORMAT", type=_given, default=None,
                        help="logfmt or json (default: logfmt)")
    parser.add_argument("--demo", action="store_true",
                        help="run against the built-in sFOX simulator on loopback; no API key needed")
    parser.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                        help="allow POST /-/reload (as Prometheus does); SIGHUP reloads either way")
    parser.add_argument("--version", action="version", version=build.describe())
    args = parser.parse_args(argv)
    return Overrides(**vars(args))


def run(signals: Signals, argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    overrides = parse_args(argv)
    environ = environ if environ is not None else environment()
    try:
        config = load_config(overrides, environ)
        security = _load_security(config)
    except ConfigError as error:
        print(f"sfox-exporter: config error: {error}", file=sys.stderr)
        return 2
    redactor = Redactor()
    setup_logging(config.log.level, config.log.format, redactor)
    for warning in config.warnings:
        log.warning(warning)

    simulator = None
    if config.demo:
        try:
            simulator, config = _start_demo(config)
        except ConfigError as error:
            print(f"sfox-exporter: {error}", file=sys.stderr)
            return 2
    try:
        exporter = Exporter(config, security=security, redactor=redactor, enable_lifecycle=overrides.enable_lifecycle,
                            config_source=lambda: _reload_source(overrides, environ, simulator))
    except OSError as error:
        log.error("cannot listen on %s: %s", config.web.listen_address, error.strerror or error)
        if simulator is not None:
            simulator.stop()
        return 1
    signals.started()
    exporter.start()
    # Everything built so far lives as long as the process. Frozen, it is no longer rescanned by
    # every full garbage collection, whose pauses would otherwise show in scrape latency.
    gc.collect()
    gc.freeze()
    signals.serve(exporter)
    exporter.stop()
    if simulator is not None:
        simulator.stop()
    log.info("stopped")
    return 0


def _start_demo(config: Config) -> tuple[Any, Config]:
    try:
        from sfox_exporter.simulator import Simulator  # noqa: PLC0415 - optional dependency, only for --demo
    except ImportError:
        raise ConfigError(
            "--demo needs the simulator, which needs the 'websockets' package: "
            "pip install 'sfox-exporter[demo]'"
        ) from None
    users, enterprise = _demo_names(config)
    simulator = Simulator.demo(users, enterprise).start()
    # Said whatever --log.level is: simulated data must never be served silently.
    log.log(max(logging.WARNING, logging.getLogger().getEffectiveLevel()),
            "DEMO MODE: serving simulated balances from a local sFOX simulator (%s), not real ones", simulator.ws_url)
    endpoints = dataclasses.replace(config.sfox, ws_url=simulator.ws_url, rest_url=simulator.rest_url)
    return simulator, dataclasses.replace(config, sfox=endpoints)


def _demo_names(config: Config) -> tuple[list[str], list[str]]:
    """The names of the user and of the enterprise accounts, for the simulator of --demo."""
    return ([a.name for a in config.accounts if a.kind == AccountKind.USER],
            [a.name for a in config.accounts if a.kind == AccountKind.ENTERPRISE])


def _reload_source(overrides: Overrides, environ: Mapping[str, str], simulator: Any) -> tuple[Config, Any]:
    """The config as a reload sees it: the same flags and environment as at start, files read again."""
    config = load_config(overrides, environ)
    security = _load_security(config)
    if simulator is not None:  # --demo: the same simulator serves the reloaded accounts
        simulator.open_demo_accounts(*_demo_names(config))
        endpoints = dataclasses.replace(config.sfox, ws_url=simulator.ws_url, rest_url=simulator.rest_url)
        config = dataclasses.replace(config, sfox=endpoints)
    return config, security


def _load_security(config: Config) -> Any:
    if config.web.config_file is None:
        return None
    # Imported only for a web config: TLS and basic auth cost ~0.4 MB of RSS nobody else should pay.
    from sfox_exporter.web.toolkit import load_web_config  # noqa: PLC0415

    return load_web_config(config.web.config_file)

