"""The alert and recording rules, written once.

Every expression aggregates away the labels that tell replicas of one exporter apart (`REPLICA`), so
two replicas scraping the same sFOX account give one alert, not two; the labels that tell deployments
apart (job, namespace, cluster, and a `shard` target label for sharded Connect replicas) survive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RUNBOOK = "https://github.com/sfox-exporter/sfox-exporter/blob/main/docs/runbook.md"
# Labels that differ between HA replicas of one exporter (and between a pod and its successor).
REPLICA = "instance, pod, kubernetes_pod_name, pod_template_hash, replica"
# The share of an account's value that may go within an hour before SfoxAccountValueDrop fires.
VALUE_DROP_SHARE = 0.10
# How long an exporter seen once is remembered, to notice it is gone (SfoxExporterVanished).
REMEMBER = "1d"


def dedup(expr: str, how: str = "max", extra: str = "") -> str:
    """`expr` with the replica labels aggregated away."""
    labels = f"{REPLICA}, {extra}" if extra else REPLICA
    return f"{how} without ({labels}) ({expr})"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str
    description: str
    anchor: str                    # the section of docs/runbook.md
    duration: str = "5m"
    group: str = "sfox-exporter"
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK}#{self.anchor}"


@dataclass(frozen=True)
class Record:
    name: str
    expr: str


KNOWN_EXPORTER = f"present_over_time(sfox_exporter_build_info[{REMEMBER}])"
AUTH_FAILING = dedup('increase(sfox_feed_errors_total{reason="auth"}[10m])') + " > 0"


def _threshold(op: str, metric: str) -> str:
    fields = (("available", "sfox_balance_available"), ("balance", "sfox_balance"), ("held", "sfox_balance_held"))
    return "\nor\n".join(
        dedup(series) + f" {op} ignoring (field) group_left (field) " + dedup(metric + '{field="' + name + '"}')
        for name, series in fields)


# A currency gone from an account that still has others holds 0, once a REST snapshot has replaced the
# account's balances wholesale (the WebSocket feed only upserts, so without one absence means nothing):
# its low threshold is crossed, though no series is left to compare with it.
MISSING_BELOW = (f"({dedup('sfox_balance_low_threshold')} > 0) * 0\nunless ignoring (field) {dedup('sfox_balance')}\n"
                 f"and ignoring (field, currency) count without ({REPLICA}, currency) (sfox_balance)\n"
                 f"and ignoring (field, currency) {dedup('sfox_balances_snapshot_timestamp_seconds')}")
# Deployments are told apart by namespace and cluster, not job: the platform's own accounts may be
# scraped under another job than its Connect account, but one platform's treasury never covers another's.
DEPLOYMENT = "cluster, namespace"
PLATFORM_OWN = dedup("sfox_balance unless ignoring (currency) sfox_end_users", extra="shard")
OWED = f"sum by ({DEPLOYMENT}, currency) ({dedup('sfox_end_users_balance')})"
OWN = f"sum by ({DEPLOYMENT}, currency) ({PLATFORM_OWN})"
AMOUNT = '{{ printf "%.15g" $value }}'  # 15 significant digits, not 2.74340309e+06 as {{ $value }} prints

ALERTS: tuple[Alert, ...] = (
    Alert("SfoxExporterDown",
          f'count without ({REPLICA}) (\n  (up == 0 and on (job, instance) {KNOWN_EXPORTER})\n'
          '  or\n  up{job=~"(?i).*sfox.*"} == 0\n)',
          "critical", "sfox-exporter targets of job {{ $labels.job }} cannot be scraped",
          "Prometheus cannot scrape {{ $value }} sfox-exporter target(s) of job {{ $labels.job }}, "
          "so no sFOX balance alert can fire for them.", "sfoxexporterdown"),
    Alert("SfoxExporterVanished",
          f"group without ({REPLICA}) (max_over_time(up[{REMEMBER}]) and on (job, instance) {KNOWN_EXPORTER})\n"
          f"unless\ngroup without ({REPLICA}) (up and on (job, instance) {KNOWN_EXPORTER})",
          "critical", "sfox-exporter of job {{ $labels.job }} is no longer scraped at all",
          "An sfox-exporter was scraped in the last day under job {{ $labels.job }}, but no target of it "
          "is left: its pods, service discovery or scrape config are gone.", "sfoxexportervanished",
          duration="10m"),
    Alert("SfoxApiKeyRejected",
          f"({AUTH_FAILING})\nunless ignoring (reason)\n({dedup('sfox_feed_up')} == 1)",
          "critical", "sFOX {{ $labels.account }}: API key rejected",
          "sFOX rejects the API key of account {{ $labels.account }} and its feed is down. "
          "(SfoxFeedDown stays quiet for it: one fault, one page.)", "sfoxapikeyrejected", duration="1m"),
    Alert("SfoxFeedDown",
          f"({dedup('sfox_feed_up')} == 0)\nunless ignoring (reason)\n({AUTH_FAILING})",
          "critical", "sFOX {{ $labels.account }}: balance feed down",
          "No replica has been connected, authenticated and subscribed to sFOX's balance feed for account "
          "{{ $labels.account }} for 5 minutes, so its balances are not current.", "sfoxfeeddown"),
    Alert("SfoxBalancesMissing",
          f"({dedup('sfox_feed_up')} == 1)\nunless\ncount without ({REPLICA}, currency) (sfox_balance)\n"
          f"unless\n{dedup('sfox_end_users')}",
          "warning", "sFOX {{ $labels.account }}: feed up but no balances",
          "The feed of account {{ $labels.account }} is up but the exporter has no balance for it: the "
          "REST snapshot fails and nothing was pushed since. (Replaces SfoxBalancesNotUpdated, which "
          "fired for every quiet account: sFOX pushes only changes.)", "sfoxbalancesmissing", duration="15m"),
    Alert("SfoxBalanceLow", _threshold("<", "sfox_balance_low_threshold") + "\nor\n" + MISSING_BELOW,
          "warning", "sFOX {{ $labels.account }}: {{ $labels.field }} {{ $labels.currency }} below its threshold",
          "The {{ $labels.field }} {{ $labels.currency }} of sFOX account {{ $labels.account }} is "
          f"{AMOUNT}, below its `below:` threshold, for 5 minutes.", "sfoxbalancelow"),
    Alert("SfoxBalanceHigh", _threshold(">", "sfox_balance_high_threshold"),
          "warning", "sFOX {{ $labels.account }}: {{ $labels.field }} {{ $labels.currency }} above its threshold",
          "The {{ $labels.field }} {{ $labels.currency }} of sFOX account {{ $labels.account }} is "
          f"{AMOUNT}, above its `above:` threshold, for 5 minutes: for `held`, funds pile up in open "
          "orders or pending withdrawals.", "sfoxbalancehigh"),
    Alert("SfoxAccountValueDrop",
          f"({dedup('sfox_account_value')}\n  < {1 - VALUE_DROP_SHARE:g} * "
          f"{dedup('max_over_time(sfox_account_value[1h])')})\n"
          f"unless\n({dedup('sfox_account_unpriced_currencies')} > 0)",
          "warning", "sFOX {{ $labels.account }}: value dropped over " + f"{VALUE_DROP_SHARE:.0%}" + " in an hour",
          "The value of account {{ $labels.account }} in {{ $labels.quote }} is " + AMOUNT + ", more than "
          f"{VALUE_DROP_SHARE:.0%} below its peak of the last hour (with every currency priced).",
          "sfoxaccountvaluedrop"),
    Alert("SfoxCurrenciesUnpriced", f"{dedup('sfox_account_unpriced_currencies')} > 0",
          "warning", "sFOX {{ $labels.account }}: {{ $value }} currencies have no fresh price",
          "{{ $value }} currencies held in account {{ $labels.account }} have no price in {{ $labels.quote }} "
          "fresher than valuation.stale_after_seconds, so sfox_account_value leaves them out.",
          "sfoxcurrenciesunpriced", duration="15m"),
    # Not while nothing needs a price (only the quote currency held, no bridges): then no connection
    # is opened at all. `unless`, so that an exporter without sfox_market_feeds still alerts.
    Alert("SfoxMarketFeedDown", f"{dedup('sfox_market_feed_up')} == 0\nunless {dedup('sfox_market_feeds')} == 0",
          "warning", "sFOX market-data feed down", "The valuation's market-data connection has not been up "
          "for 10 minutes: prices go stale and are withdrawn.", "sfoxmarketfeeddown", duration="10m"),
    # Each replica runs with its own command line and reloads on its own: the alert names the instance.
    Alert("SfoxExporterDemoMode", "sfox_exporter_demo_mode == 1",
          "warning", "sfox-exporter {{ $labels.instance }} of job {{ $labels.job }} serves DEMO data",
          "An exporter has served simulated balances (--demo) for over 10 minutes; its numbers are not "
          "real.", "sfoxexporterdemomode", duration="10m"),
    Alert("SfoxExporterConfigReloadFailed", "sfox_exporter_config_last_reload_successful == 0",
          "warning", "sfox-exporter {{ $labels.instance }} of job {{ $labels.job }}: config reload failed",
          "The last config reload of {{ $labels.instance }} failed; it still runs the previous config, and "
          "its log names the key at fault.",
          "sfoxexporterconfigreloadfailed"),
    Alert("SfoxEndUsersOwedExceedBalance", f"{OWED}\n> on ({DEPLOYMENT}, currency)\n({OWN} or {OWED} * 0)",
          "critical", "sFOX Connect: owed {{ $labels.currency }} exceeds the platform's own balance",
          "End users are owed " + AMOUNT + " {{ $labels.currency }} in total, more than the platform's own "
          "sFOX accounts hold of it.", "sfoxendusersowedexceedbalance", duration="15m"),
)

RECORDS: tuple[Record, ...] = (
    Record("account_currency_quote:sfox_balance_value:max",
           f"{dedup('sfox_balance')}\n* on (currency) group_left (quote)\nmax by (currency, quote) (sfox_price)"),
    Record("account_quote:sfox_account_value:max", dedup("sfox_account_value")),
    Record("currency:sfox_end_users_balance:sum", OWED),
    Record("currency:sfox_platform_balance:sum", OWN),
)
