"""The two dashboards. Balance-like series (and the rates of an account's feed counters) are taken
`max by` their meaningful labels, so two HA replicas scraping the same account draw one line, not
two; Connect sums keep a `shard` label apart first, since shards hold disjoint end users and add up."""

from __future__ import annotations

from typing import Any

from monitoring.grafana import ACCOUNT, CURRENCY, TARGET, VARIABLES, dashboard, panel, row, text, variable

DEMO = [{"type": "value", "options": {"0": {"text": "real data", "color": "green"},
                                      "1": {"text": "DEMO DATA", "color": "red"}}}]
FEED = [{"type": "value", "options": {"0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"},
                                      "2": {"text": "stale", "color": "orange"}}}]
STAT: dict[str, Any] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "background",
        "textMode": "value_and_name"}
TABLE: dict[str, Any] = {"showHeader": True}
# A table of three instant queries shows one at a time unless they are merged into one row per currency.
MERGE_BALANCES = [{"id": "merge", "options": {}},
                  {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {
                      "Value #A": "balance", "Value #B": "available", "Value #C": "held"}}}]
OWED = f"sum by (currency) (max by (account, currency, shard) (sfox_end_users_balance{{{CURRENCY}}}))"
OWN = (f"sum by (currency) (max by (account, currency) (sfox_balance{{{CURRENCY}}} "
       "unless ignoring (currency) sfox_end_users))")
WALLETS = ("Each wallet is sFOX's breakdown of where a currency sits (trading, collateral, borrow, lending). "
           "`sum by (wallet)` of sfox_wallet_balance does not equal sfox_balance: the balance also counts funds "
           "in pending and partially filled orders, which sit in no wallet field.")


def _threshold_ratio(metric: str) -> str:
    return "\nor\n".join(
        f"max by (account, currency) ({series}{{{CURRENCY}}}) / on (account, currency) group_left (field) "
        f'max by (account, currency, field) ({metric}{{field="{name}"}})'
        for name, series in (("available", "sfox_balance_available"), ("balance", "sfox_balance"),
                             ("held", "sfox_balance_held")))


def _feed_rows() -> list[dict[str, Any]]:
    return [
        row("Feed health"),
        panel("state-timeline", "Feed state per account",
              (f"max by (account) (sfox_feed_up{{{ACCOUNT}}}) + 2 * max by (account) (sfox_feed_stale{{{ACCOUNT}}})",
               "{{account}}"), w=12, h=6, mappings=FEED),
        panel("timeseries", "Reconnects", (f"max by (account) (rate(sfox_feed_reconnects_total{{{ACCOUNT}}}"
                                           "[$__rate_interval]))", "{{account}}"), w=6, h=6, unit="ops"),
        panel("timeseries", "Errors by reason",
              (f"max by (account, reason) (rate(sfox_feed_errors_total{{{ACCOUNT}}}[$__rate_interval]))",
               "{{account}} {{reason}}"), w=6, h=6, unit="ops"),
    ]


def balances() -> dict[str, Any]:
    panels = [
        panel("stat", "Data", (f"max(sfox_exporter_demo_mode{{{TARGET}}})", "data"), w=4, h=4, mappings=DEMO,
              steps=[("green", None), ("red", 1)], description="DEMO DATA: an exporter serves the built-in "
              "simulator (--demo); these are not real balances.", **STAT),
        panel("stat", "Feed", (f"max by (account) (sfox_feed_up{{{ACCOUNT}}})", "{{account}}"), w=8, h=4,
              mappings=FEED, steps=[("red", None), ("green", 1)], **STAT),
        panel("stat", "Total value", (f"sum by (quote) (max by (account, quote) (sfox_account_value{{{ACCOUNT}}}))",
                                      "{{quote}}"), w=6, h=4, **STAT),
        panel("stat", "Since last message", (f"time() - max by (account) (sfox_feed_last_message_timestamp_seconds"
                                             f"{{{ACCOUNT}}})", "{{account}}"), w=6, h=4, unit="s", **STAT),
        panel("table", "Balances by currency",
              (f"max by (account, currency) (sfox_balance{{{CURRENCY}}})", "balance"),
              (f"max by (account, currency) (sfox_balance_available{{{CURRENCY}}})", "available"),
              (f"max by (account, currency) (sfox_balance_held{{{CURRENCY}}})", "held"),
              w=12, h=9, instant=True, table=True, transformations=MERGE_BALANCES, **TABLE),
        panel("table", "Wallet breakdown by currency",
              (f"max by (account, currency, wallet) (sfox_wallet_balance{{{CURRENCY}}})", "{{wallet}}"),
              w=12, h=9, instant=True, table=True, description=WALLETS, **TABLE),
        panel("timeseries", "Balance history", (f"max by (account, currency) (sfox_balance{{{CURRENCY}}})",
                                                "{{account}} {{currency}}"), w=12, h=8),
        panel("bargauge", "Balance / low threshold", (_threshold_ratio("sfox_balance_low_threshold"),
                                                      "{{account}} {{currency}} {{field}}"), w=6, h=8,
              unit="percentunit", steps=[("red", None), ("green", 1)], description="Below 100 %: SfoxBalanceLow."),
        panel("bargauge", "Balance / high threshold", (_threshold_ratio("sfox_balance_high_threshold"),
                                                       "{{account}} {{currency}} {{field}}"), w=6, h=8,
              unit="percentunit", steps=[("green", None), ("red", 1)], description="Above 100 %: SfoxBalanceHigh "
              "(held funds growing)."),
        panel("table", "Web3 wallets", (f"max by (account, currency, network, address) "
                                        f"(sfox_web3_wallet_balance{{{CURRENCY}}})", ""), w=24, h=6,
              instant=True, table=True, **TABLE),
        row("Valuation"),
        panel("timeseries", "Value by account", (f"max by (account, quote) (sfox_account_value{{{ACCOUNT}}})",
                                                 "{{account}} ({{quote}})"), w=8),
        panel("bargauge", "Value by currency", (f"sum by (currency, quote) (max by (account, currency) "
                                                f"(sfox_balance{{{CURRENCY}}}) * on (currency) group_left (quote) "
                                                f"max by (currency, quote) (sfox_price{{{TARGET}}}))",
                                                "{{currency}} ({{quote}})"), w=8),
        panel("timeseries", "Price age", (f"time() - max by (currency, quote) (sfox_price_updated_timestamp_seconds"
                                          f"{{{TARGET}}})", "{{currency}}"), w=8, unit="s",
              description="A price older than valuation.stale_after_seconds is withdrawn: its currency is unpriced."),
        panel("stat", "Unpriced currencies", (f"max by (account, quote) (sfox_account_unpriced_currencies"
                                              f"{{{ACCOUNT}}})", "{{account}}"), w=8, h=4,
              steps=[("green", None), ("orange", 1)], **STAT),
        panel("stat", "Market feed", (f"max(sfox_market_feed_up{{{TARGET}}})", "market data"), w=4, h=4,
              mappings=FEED, steps=[("red", None), ("green", 1)], **STAT),
        panel("table", "Prices", (f"max by (currency, quote) (sfox_price{{{TARGET}}})", ""), w=12, h=4,
              instant=True, table=True, **TABLE),
        row("Connect: end users"),
        panel("timeseries", "Owed to end users per currency", (OWED, "{{currency}}"), w=8),
        panel("bargauge", "End users holding each currency",
              (f"sum by (currency) (max by (account, currency, shard) (sfox_end_users_holding{{{CURRENCY}}}))",
               "{{currency}}"), w=8),
        panel("stat", "End users seen", (f"sum by (account) (max by (account, shard) (sfox_end_users{{{ACCOUNT}}}))",
                                         "{{account}}"), w=8, h=8, **STAT),
        panel("timeseries", "Solvency: owed vs platform's own balance", (OWED, "owed {{currency}}"),
              (OWN, "own {{currency}}"), w=12,
              description="Own: the balances of the platform's non-enterprise accounts. Owed above own: "
              "SfoxEndUsersOwedExceedBalance."),
        panel("bargauge", "Coverage: own / owed", (f"{OWN} / on (currency) ({OWED} > 0)", "{{currency}}"), w=12,
              unit="percentunit", steps=[("red", None), ("green", 1)]),
        *_feed_rows(),
    ]
    currency = variable("currency", "Currency", "label_values(sfox_balance{" + ACCOUNT + "}, currency)")
    return dashboard("sfox-balances", "sFOX balances", "sFOX balances, their value, Connect end users' totals "
                     "and thresholds; HA replicas deduplicated.", panels, [*VARIABLES, currency])


def health() -> dict[str, Any]:
    exporter = f"sfox_exporter_build_info{{{TARGET}}}"
    panels = [
        panel("stat", "Data", (f"max by (instance) (sfox_exporter_demo_mode{{{TARGET}}})", "{{instance}}"), w=4, h=4,
              mappings=DEMO, steps=[("green", None), ("red", 1)], **STAT),
        # Remembered for a day: a failed scrape marks build_info stale at once, and `and` would drop the 0.
        panel("stat", "Scrape up", (f"up{{{TARGET}}} and on (job, instance) present_over_time({exporter}[1d])",
                                    "{{instance}}"), w=4, h=4,
              steps=[("red", None), ("green", 1)], **STAT),
        panel("stat", "Config reload", (f"min by (instance) (sfox_exporter_config_last_reload_successful{{{TARGET}}})",
                                        "{{instance}}"), w=4, h=4, steps=[("red", None), ("green", 1)], **STAT),
        panel("stat", "Version", (f"count by (version) ({exporter})", "{{version}}"), w=4, h=4, **STAT),
        panel("stat", "Uptime", (f"time() - (process_start_time_seconds{{{TARGET}}} and on (job, instance) {exporter})",
                                 "{{instance}}"), w=8, h=4, unit="s", **STAT),
        row("Feeds"),
        panel("timeseries", "Messages by kind", (f"max by (account, kind) (rate(sfox_feed_messages_total{{{ACCOUNT}}}"
                                                 "[$__rate_interval]))", "{{account}} {{kind}}"), w=8, unit="ops"),
        panel("timeseries", "Time since last message", (f"time() - sfox_feed_last_message_timestamp_seconds"
                                                        f"{{{ACCOUNT}}}", "{{account}} {{instance}}"), w=8, unit="s"),
        panel("timeseries", "REST snapshot age", (f"time() - sfox_balances_snapshot_timestamp_seconds{{{ACCOUNT}}}",
                                                  "{{account}} {{instance}}"), w=8, unit="s"),
        panel("timeseries", "Series per account", (f"sfox_feed_series{{{ACCOUNT}}}", "{{account}} {{instance}}"), w=8),
        panel("timeseries", "Market feed", (f"sfox_market_feed_up{{{TARGET}}}", "{{instance}}"), w=8),
        text("Notes", "sFOX pushes balances only when they change: a quiet account's last update ages while "
             "its feed is healthy. Alerts and what to do: docs/runbook.md.", w=8),
        *_feed_rows(),
        row("Process"),
        panel("timeseries", "Resident memory", (f"process_resident_memory_bytes{{{TARGET}}} and on (job, instance) "
                                                f"{exporter}", "{{instance}}"), w=8, unit="bytes"),
        panel("timeseries", "CPU", (f"rate(process_cpu_seconds_total{{{TARGET}}}[$__rate_interval]) and on (job, "
                                    f"instance) {exporter}", "{{instance}}"), w=8, unit="percentunit"),
        panel("timeseries", "Scrape duration", (f"scrape_duration_seconds{{{TARGET}}} and on (job, instance) "
                                                f"{exporter}", "{{instance}}"), w=8, unit="s"),
    ]
    return dashboard("sfox-exporter-health", "sFOX exporter health", "For the operator of sfox-exporter: replicas, "
                     "feeds, reloads, memory and CPU.", panels, list(VARIABLES))


DASHBOARDS = {"sfox-balances.json": balances, "sfox-exporter-health.json": health}
