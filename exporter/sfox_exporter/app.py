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
from importlib import metadata

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.registry import CollectorRegistry

from sfox_exporter.clock import Clock, SystemClock
from sfox_exporter.config import Config
from sfox_exporter.logs import Redactor
from sfox_exporter.metrics.endusers import EndUserBook
from sfox_exporter.metrics.endusers_render import EndUserRenderer
from sfox_exporter.metrics.exposition import Exposition, Rendered
from sfox_exporter.metrics.state import State
from sfox_exporter.sfox.account import AccountSink
from sfox_exporter.sfox.connection import Connector, websocket_connector
from sfox_exporter.sfox.enterprise import EndUserSink, enterprise_settings, is_enterprise
from sfox_exporter.sfox.feed import FeedWorker
from sfox_exporter.sfox.ratelimit import RequestBudget
from sfox_exporter.sfox.session import ACCOUNT_FEED, SessionSettings
from sfox_exporter.sfox.snapshot import Fetcher, SnapshotWorker, fetch_balances
from sfox_exporter.valuation import market
from sfox_exporter.web import routes
from sfox_exporter.web.server import HttpServer, Limits, Security

log = logging.getLogger("sfox_exporter")

STOP_TIMEOUT_SECONDS = 3.0


def version() -> str:
    try:
        return metadata.version("sfox-exporter")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


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
    ) -> None:
        self.config = config
        self.version = version()
        self.clock = clock or SystemClock()
        self.telemetry_path = config.web.telemetry_path
        self.stop_event = threading.Event()
        # sFOX Connect: each enterprise account's end users (metrics/endusers.py).
        self.end_users = {account.name: EndUserBook(config.end_users, config.feed.max_series)
                          for account in config.accounts if is_enterprise(account)}
        self.state = State(
            (account.name for account in config.accounts),
            clock=self.clock,
            thresholds=config.thresholds,
            max_series=config.feed.max_series,
            stale_after_seconds=config.feed.stale_after_seconds,
            end_users=self.end_users,
        )
        # /metrics is the sfox_* families (rendered and cached by Exposition) followed by this
        # registry: prometheus_client's own process, platform and GC collectors, and whatever an
        # embedder registers. Private by default, so two exporters in one process do not collide.
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.exposition = Exposition(self.state, self.version, self.registry,
                                     extra=EndUserRenderer(self.end_users).render)
        self.budget = RequestBudget(self.clock)
        user_agent = f"sfox-exporter/{self.version}"
        rng = rng or random.Random()
        redactor = redactor or Redactor()

        self.snapshots: dict[str, SnapshotWorker] = {}
        if config.feed.rest_snapshot:
            for account in config.accounts:
                if is_enterprise(account):
                    continue  # sFOX has no REST endpoint for all end users' balances
                self.snapshots[account.name] = SnapshotWorker(
                    account, rest_url=config.sfox.rest_url, feed=config.feed, state=self.state,
                    clock=self.clock, stop=self.stop_event, fetch=fetch or fetch_balances,
                    user_agent=user_agent, rng=random.Random(rng.random()),
                )
        settings = SessionSettings((ACCOUNT_FEED,), ping_interval=config.feed.ping_interval_seconds,
                                   ping_timeout=config.feed.ping_timeout_seconds)
        self.feeds = [
            FeedWorker(
                account.name, key_source=account.key, ws_url=config.sfox.ws_url, feed=config.feed,
                settings=enterprise_settings(account, settings) if is_enterprise(account) else settings,
                sink=EndUserSink(self.state, account.name, self.end_users[account.name]) if is_enterprise(account)
                else AccountSink(self.state, account.name, self._snapshot_requester(account.name)),
                budget=self.budget, connector=connector or websocket_connector(user_agent), clock=self.clock,
                stop=self.stop_event, rng=random.Random(rng.random()), on_key=lambda key: redactor.add(key.reveal()),
            )
            for account in config.accounts
        ]
        self.market = market.build(  # valuation: one market-data connection, None when disabled
            config, self.state, budget=self.budget, connector=connector or websocket_connector(user_agent),
            fetch=fetch or fetch_balances, clock=self.clock, stop=self.stop_event, user_agent=user_agent,
            rng=random.Random(rng.random()), on_key=lambda key: redactor.add(key.reveal()))
        self.http = HttpServer(config.web.listen_host, config.web.listen_port, self, self.version,
                               security=security, limits=http_limits, lifecycle=enable_lifecycle, reload=reload)

    def _snapshot_requester(self, account: str) -> Callable[[str], None]:
        worker = self.snapshots.get(account)
        return worker.request if worker is not None else (lambda reason: None)

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
        for worker in self.snapshots.values():
            worker.start()
            worker.request("start")
        for feed in self.feeds:
            feed.start()
        if self.market is not None:
            self.market.start()
        log.info("sfox-exporter %s serving %s%s for %d account(s)", self.version, self.url, self.telemetry_path,
                 len(self.feeds))

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        self.stop_event.set()
        for feed in self.feeds:
            feed.wake()
        for worker in self.snapshots.values():
            worker.wake()
        if self.market is not None:
            self.market.wake()
        self.http.stop()
        deadline = self.clock.monotonic() + timeout
        threads = [feed.thread for feed in self.feeds] + [w.thread for w in self.snapshots.values()]
        for thread in threads + (self.market.threads() if self.market is not None else []):
            if thread.is_alive():
                thread.join(max(0.0, deadline - self.clock.monotonic()))

    # --- what the HTTP server serves, rendered by web.routes -----------------------------------------

    def render_metrics(self, accept: str | None, accept_encoding: str | None) -> Rendered:
        return self.exposition.render(accept, accept_encoding)

    def health(self) -> tuple[bool, str]:
        dead = [feed.thread.name for feed in self.feeds if not feed.thread.is_alive()]
        dead += [worker.thread.name for worker in self.snapshots.values() if not worker.thread.is_alive()]
        return routes.health(dead, self.stop_event.is_set())

    def readiness(self) -> tuple[bool, str]:
        return routes.readiness(self.state.statuses())

    def landing_page(self) -> str:
        return routes.landing_page(self.state.snapshot(), self.clock.time(), self.version, self.telemetry_path)
