"""The landing page's balances: each account's holdings with prices and values, breached thresholds
highlighted, the total value on top, refreshed in place without a reload.

Small and self-contained: no external asset, every label escaped, and the one inline script allowed
by its hash in the Content-Security-Policy (no nonce to mint per response, no 'unsafe-inline'). The
script re-fetches the page itself every few seconds and swaps in the new balances section, so no
second endpoint has to be kept in step with this one.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math

from sfox_exporter.config import Threshold
from sfox_exporter.metrics.state import AccountView, Snapshot
from sfox_exporter.sfox.documented import Balance
from sfox_exporter.valuation.prices import MarketView

REFRESH_MILLISECONDS = 5000
SCRIPT = (
    "(function(){var id='balances';function swap(){fetch(location.href,{cache:'no-store'})"
    ".then(function(r){return r.ok?r.text():null}).then(function(t){if(!t)return;"
    "var d=new DOMParser().parseFromString(t,'text/html').getElementById(id);"
    "var o=document.getElementById(id);if(d&&o)o.replaceWith(document.importNode(d,true))})"
    ".catch(function(){})}setInterval(swap," + str(REFRESH_MILLISECONDS) + ")})();"
)
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
CSP = (f"default-src 'none'; style-src 'unsafe-inline'; script-src '{SCRIPT_HASH}'; connect-src 'self'; "
       "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STYLE = (".bal td,.bal th{padding:.2em .7em;text-align:right}.bal td:first-child,.bal th:first-child"
         "{text-align:left}.breach{background:#ffebe9;color:#cf222e;font-weight:bold}.total{font-size:1.4em}")


def _amount(value: float | None, places: int = 8) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    text = f"{value:,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def breached(entry: Balance, thresholds: tuple[Threshold, ...]) -> list[str]:
    """The thresholds this holding breaches, described for a tooltip."""
    found = []
    for threshold in thresholds:
        if threshold.currency != entry.currency:
            continue
        value = getattr(entry, threshold.field, None)
        if value is None:
            continue
        if threshold.below is not None and value < threshold.below:
            found.append(f"{threshold.field} below {threshold.below:g}")
        if threshold.above is not None and value > threshold.above:
            found.append(f"{threshold.field} above {threshold.above:g}")
    return found


def _account(view: AccountView, market: MarketView | None) -> tuple[str, float | None]:
    """An account's table, and its value (None without valuation)."""
    rows, total = [], 0.0 if market is not None else None
    for currency in sorted(view.balances):
        entry = view.balances[currency]
        price = market.prices.get(currency) if market is not None else None
        value = entry.balance * price.value if price is not None and entry.balance is not None else None
        if value is not None and total is not None:
            total += value
        breaches = breached(entry, view.thresholds)
        attributes = f' class="breach" title="{html.escape("; ".join(breaches))}"' if breaches else ""
        cells = [html.escape(currency), _amount(entry.balance), _amount(entry.available), _amount(entry.held),
                 _amount(price.value if price else None), _amount(value, 2)]
        rows.append(f"<tr{attributes}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    quote = html.escape(market.quote.upper()) if market is not None else ""
    heading = f"<h2>{html.escape(view.name)}"
    if total is not None:
        heading += f" <small>{_amount(total, 2)} {quote}</small>"
    table = (f'{heading}</h2><table class="bal" data-account="{html.escape(view.name)}"><tr><th>Currency</th>'
             f"<th>Balance</th><th>Available</th><th>Held</th><th>Price {quote}</th><th>Value {quote}</th></tr>"
             + "".join(rows) + "</table>")
    return table, total


def _end_users(view: AccountView) -> str:
    """An enterprise account: the totals owed to its end users, without value (not the platform's)."""
    assert view.end_users is not None
    rows = "".join(
        f"<tr><td>{html.escape(totals.currency)}</td><td>{_amount(totals.balance)}</td>"
        f"<td>{_amount(totals.available)}</td><td>{_amount(totals.held)}</td><td>{totals.holders}</td></tr>"
        for totals in sorted(view.end_users.currencies, key=lambda totals: totals.currency))
    return (f"<h2>{html.escape(view.name)} <small>sFOX Connect: {view.end_users.users} end users</small></h2>"
            f'<table class="bal" data-account="{html.escape(view.name)}"><tr><th>Currency</th>'
            "<th>Owed to end users</th><th>Available</th><th>Held</th><th>Users holding</th></tr>"
            f"{rows}</table>")


def balances_section(snapshot: Snapshot) -> str:
    """The part of the page the script refreshes."""
    market = snapshot.market
    tables, total = [], 0.0
    for view in snapshot.accounts:
        if view.end_users is not None:  # sFOX Connect: what the end users hold is theirs, not the account's
            tables.append(_end_users(view))
            continue
        table, value = _account(view, market)
        tables.append(table)
        total += value or 0.0
    top = ""
    if market is not None:
        state = "up" if market.up else "down"
        top = (f'<p class="total">Total value: <strong id="total-value">{_amount(total, 2)}</strong> '
               f'{html.escape(market.quote.upper())} <small class="{state}">(market data {state})</small></p>')
    return f'<section id="balances">{top}{"".join(tables)}</section>'


def page_additions(snapshot: Snapshot) -> str:
    """What the landing page gains: the style, the balances section and its refresh script."""
    return f"<style>{STYLE}</style>{balances_section(snapshot)}<script>{SCRIPT}</script>"
