"""sFOX's per-IP WebSocket limits hold for all accounts together, even when every connection fails."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sfox_exporter.app import Exporter
from sfox_exporter.config import SfoxEndpoints
from sfox_exporter.simulator import Ledger, Simulator

from .conftest import make_config, wait_until


@pytest.mark.slow
def test_ten_failing_accounts_stay_within_their_share_of_requests_a_minute_and_10_connections(
        start_exporter: Callable[..., Exporter]) -> None:
    keys = {f"acct{i}": f"limit-test-key-{i:02d}-0123456789" for i in range(10)}
    with Simulator({key: Ledger.demo(name) for name, key in keys.items()}, push_interval=None) as simulator:
        simulator.drop_after_subscribe = True  # every connection fails, every time, right away
        share = SfoxEndpoints().max_requests_per_minute
        assert share == 20  # the default: half of sFOX's 40, the rest left to other clients on the IP
        config = make_config(simulator, keys, max_requests_per_minute=share, backoff_initial_seconds=0.001,
                             backoff_max_seconds=0.001, rest_snapshot=False)
        exporter = start_exporter(config)
        # 6 attempts fit the first minute; the other 4 accounts, queued first, go when it refills.
        wait_until(lambda: simulator.requests() and simulator.requests()[-1].at - simulator.requests()[0].at > 60.5
                   and {request.key for request in simulator.requests()} == set(keys.values()),
                   timeout=150, message="requests spanning more than a minute, from every account")
        requests = simulator.requests()
        times = [request.at for request in requests]
        busiest = max(sum(1 for t in times if start <= t < start + 60.0) for start in times)
        print(f"10-account storm, max_requests_per_minute {share}: busiest 60 s window {busiest} requests, "
              f"{len(times)} in {times[-1] - times[0]:.1f}s, "
              f"{simulator.observed.connections_opened} connections opened")
        assert busiest <= share
        # Each attempt costs three slots of the budget (the upgrade, authenticate, subscribe), and the
        # simulator counts only the two requests: 6 attempts fit 20 slots, 12 requests arrive.
        assert busiest >= 2 * (share // 3)
        assert len(times) > busiest  # and it refills after the minute
        assert simulator.observed.max_concurrent_connections <= 10
        assert simulator.observed.limit_violations == []
        assert {request.type for request in requests} == {"authenticate", "subscribe"}
        assert {request.key for request in requests} == set(keys.values())  # no account starves
        # The budget counts a request when it is sent, the simulator when it arrives: compare them
        # once the budget has paused the accounts and what was sent has landed.
        wait_until(lambda: exporter.budget.sent == len(simulator.requests()) + simulator.observed.connections_opened,
                   timeout=30,
                   message="the budget's count of sent requests to match what the simulator received")
