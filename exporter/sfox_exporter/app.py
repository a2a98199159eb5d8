"""The exporter assembled: state, feed threads, snapshot workers, exposition and HTTP server.

Everything that touches the outside world is injected (clock, registry, connector, REST fetcher,
random source, web security), so tests run the real thing against the simulator on port 0.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from collections.abc import Callable

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import CollectorRegistry

from sfox_exporter import build, startup
from sfox_exporter.clock import Clock, SystemClock
from sfox_exporter.config import Config
from sfox_exporter.logs import Redactor
from sfox_exporter.metrics.endusers import EndUserBook
from sfox_exporter.metrics.endusers_render import EndUserRenderer
from sfox_exporter.metrics.exporter_info import ExporterInfo, with_registry
from sfox_exporter.metrics.exposition import Exposition, Rendered
from sfox_exporter.metrics.state import State
from sfox_exporter.reload import Reloader, Source, restart_only
from sfox_exporter.sfox.connection import Connector, websocket_connector
from sfox_exporter.sfox.feed import REQUESTS_PER_CONNECTION, FeedWorker
from sfox_exporter.sfox.ratelimit import RequestBudget, seconds_to_connect
from sfox_exporter.sfox.snapshot import Fetcher, SnapshotWorker, fetch_balances
from sfox_exporter.web import routes
from sfox_exporter.web.server import HttpServer, Limits, Security
from sfox_exporter.workers import AccountUnit, AccountUnits, UnitSpec, Workers

log = logging.getLogger("sfox_exporter")

STOP_TIMEOUT_SECONDS = 3.0
# How long a reload waits for the units it replaces. Shorter than a stop's wait, so that a SIGTERM
# arriving mid-reload still ends the process within CONTRACT.md's 5 s; a unit still stopping after
# it is reported, and its threads can no longer write anywhere.
RELOAD_WAIT_SECONDS = 1.5


def version() -> str:
    return build.version()


class Exporter:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        connector: Connector | None = None,
        fetch: Fetcher | None = None,
        rng: random.Random | None = None,
        security: Security | None = None,
        redactor: Redactor | None = None,
        http_limits: Limits | None = None,
        enable_lifecycle: bool = False,
        reload: Callable[[], str | None] | None = None,
        config_source: Source | None = None,
    ) -> None:
        """`config_source` reads the config again (same flags and environment) for a reload;
        without it, and without `reload`, /-/reload and SIGHUP have nothing to reload from."""
        self.config = config
        self.version = version()
        self.clock = clock or SystemClock()
        self.telemetry_path = config.web.telemetry_path
        self.stop_event = threading.Event()
        # sFOX Connect: each enterprise account's end users (metrics/endusers.py), one book per
        # running enterprise connection, shared by its sink, the State and the per-user renderer.
        self.end_users: dict[str, EndUserBook] = {}
        self.state = State(
            (account.name for account in config.accounts),
            clock=self.clock,
            thresholds=config.thresholds,
            max_series=config.feed.max_series,
            stale_after_seconds=config.feed.stale_after_seconds,
        )
        # /metrics is the sfox_* families (rendered and cached by Exposition) followed by this
        # registry: prometheus_client's own process, platform and GC collectors, and whatever an
        # embedder registers. Private by default, so two exporters in one process do not collide.
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.info = ExporterInfo(config.demo, self.clock)
        self.redactor = redactor or Redactor()
        # The exporter's own gauges come before the registry's collectors, on every scrape.
        self.exposition = Exposition(self.state, self.version, with_registry(self.info, self.registry),
                                     extra=EndUserRenderer(self.end_users, self.redactor).render,
                                     redactor=self.redactor)
        self.budget = RequestBudget(self.clock, limit=config.sfox.max_requests_per_minute,
                                    max_connections=config.sfox.max_connections)
        user_agent = f"sfox-exporter/{self.version}"
        rng = rng or random.Random()
        self.account_units = AccountUnits(
            self.state, self.budget, connector or websocket_connector(user_agent), fetch or fetch_balances,
            self.clock, rng, self.redactor, user_agent, self.end_users)
        self.workers = Workers(self.clock)
        self.reloader = Reloader(config_source, self, self.info) if config_source is not None else None
        if reload is None and self.reloader is not None:
            reload = self.reloader.reload
        self.http = HttpServer(config.web.listen_host, config.web.listen_port, self, self.version,
                               security=security, limits=http_limits, lifecycle=enable_lifecycle, reload=reload)

    def plan(self, config: Config) -> dict[str, UnitSpec]:
        """Every connection the config asks for, by name: the one place where workers are listed.
        Start-up and every reload make the running workers match it."""
        return self.account_units.plan(config)

    @property
    def feeds(self) -> list[FeedWorker]:
        return [unit.feed for unit in self.workers.units().values() if isinstance(unit, AccountUnit)]

    @property
    def snapshots(self) -> dict[str, SnapshotWorker]:
        return {unit.snapshot.account: unit.snapshot for unit in self.workers.units().values()
                if isinstance(unit, AccountUnit) and unit.snapshot is not None}

    @property
    def bound_address(self) -> str:
        """The address the HTTP server is bound to, as bound."""
        return startup.listen_address(str(self.http.server_address[0]), self.http.port)

    @property
    def url(self) -> str:
        host = self.config.web.listen_host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        scheme = "https" if self.http.security.ssl_context is not None else "http"
        served = dataclasses.replace(self.config.web, listen_host=host, listen_port=self.http.port)
        return f"{scheme}://{served.listen_address}"

    def start(self) -> None:
        self.http.start()
        plan = self.plan(self.config)
        budget = self.budget
        log.info("%s", startup.budget_plan(len(plan), REQUESTS_PER_CONNECTION, budget.limit, budget.window,
                                           seconds_to_connect(len(plan), REQUESTS_PER_CONNECTION, budget.limit,
                                                              budget.window)))
        self.workers.apply(plan, STOP_TIMEOUT_SECONDS)
        scheme = "https" if self.http.security.ssl_context is not None else "http"
        log.info("sfox-exporter %s serving %s://%s%s for %d account(s)", self.version, scheme, self.bound_address,
                 self.telemetry_path, len(self.config.accounts))
        tls, basic_auth = self._protection()
        warning = startup.exposure_warning(str(self.http.server_address[0]), self.http.port, tls=tls,
                                           basic_auth=basic_auth)
        if warning:
            log.warning("%s", warning)

    def reconfigure(self, config: Config, security: Security | None) -> str:
        """Take on a reloaded, valid config (see reload.py); returns what changed, for the log."""
        for note in restart_only(self.config, config):
            log.warning("config reload: %s", note)
        config = dataclasses.replace(config, web=dataclasses.replace(
            config.web, listen_host=self.config.web.listen_host, listen_port=self.config.web.listen_port))
        self.budget.resize(config.sfox.max_requests_per_minute, config.sfox.max_connections)
        self.http.set_security(security)
        before = {account.name: account for account in self.config.accounts}
        renewed = [account.name for account in config.accounts if account.name in before
                   and (before[account.name].key, before[account.name].kind) != (account.key, account.kind)]

        def between() -> None:
            self.state.reconfigure((account.name for account in config.accounts), thresholds=config.thresholds,
                                   max_series=config.feed.max_series,
                                   stale_after_seconds=config.feed.stale_after_seconds, renewed=renewed)
            self.account_units.follow(config)

        changes = self.workers.apply(self.plan(config), RELOAD_WAIT_SECONDS, between=between)
        if changes.stuck:
            log.warning("config reload: thread(s) still stopping: %s", ", ".join(changes.stuck))
        moved = "" if config.web.telemetry_path == self.telemetry_path else \
            f"; metrics moved from {self.telemetry_path} to {config.web.telemetry_path}"  # scrapes of the old one fail
        self.telemetry_path = config.web.telemetry_path
        self.config = config
        tls, basic_auth = self._protection()
        web = f"; TLS {'on' if tls else 'off'}, basic auth {'on' if basic_auth else 'off'}"
        return f"{changes.summary()}; {len(config.thresholds)} threshold(s){web}{moved}"

    def _protection(self) -> tuple[bool, bool]:
        """Whether the web config now serves TLS, and asks for basic auth."""
        security = self.http.security
        return security.ssl_context is not None, not security.authorized(None)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        self.stop_event.set()
        self.http.stop()
        self.workers.stop_all(timeout)

    # --- what the HTTP server serves, rendered by web.routes -----------------------------------------

    def render_metrics(self, accept: str | None, accept_encoding: str | None) -> Rendered:
        return self.exposition.render(accept, accept_encoding)

    # Account names go into these texts, and a name may be a key pasted in the wrong place: scrubbed,
    # as /metrics and the landing page are.
    def health(self) -> tuple[bool, str]:
        dead = [thread.name for thread in self.workers.threads() if not thread.is_alive()]
        healthy, text = routes.health(dead, self.stop_event.is_set())
        return healthy, self.redactor.scrub(text)

    def readiness(self) -> tuple[bool, str]:
        ready, text = routes.readiness(self.state.statuses())
        return ready, self.redactor.scrub(text)

    def landing_page(self) -> str:
        # Label values come from sFOX: one that echoes a key must not show it here either.
        page = routes.landing_page(self.state.snapshot(), self.clock.time(), self.version, self.telemetry_path,
                                   demo=self.config.demo)
        return self.redactor.scrub(page)
