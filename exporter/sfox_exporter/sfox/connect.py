"""sFOX Connect's `private.enterprise.users.balances`: one end user's full set of balances.

Pure, as sfox/decode.py, whose parse_frame hands these messages here. Only `user_id` and the
balances are read: the feed's other fields may be personal data, and a struct that does not name
them skips them unread, so they can reach no event, log line or metric.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
from msgspec import Raw, Struct

from sfox_exporter.sfox.documented import Balance
from sfox_exporter.sfox.entries import AccountBalance, is_label, parse_account_entry, plain, raw_accounts
from sfox_exporter.vocabulary import MessageKind


class EndUserBalances(NamedTuple):
    """A message of sFOX Connect's end-user balances feed: one end user's full set of currencies.

    Only the user_id and the balances are kept: the feed's other fields may be personal data."""

    sequence: int | None
    timestamp: float | None
    user_id: str
    accounts: tuple[Balance, ...]
    schema_errors: int  # the envelope's and the entries'
    # Entries left out as invalid: then the message is merged into the user's holdings, not taken as
    # its full set, since a currency missing from it may be one of them. The envelope's errors (a bad
    # sequence or timestamp) say nothing of the entries.
    invalid_entries: int = 0
    kind: MessageKind = MessageKind.END_USERS


class _EndUsersPayload(Struct):
    """The two fields kept; the others (personal data, perhaps) are skipped unread."""

    user_id: Any = None
    updates: Raw = Raw(b"null")


_decode_end_users = msgspec.json.Decoder(_EndUsersPayload).decode


def parse_end_users(sequence: int | None, timestamp: float | None, payload: Any,
                    schema_errors: int) -> EndUserBalances | None:
    """One end user's balances, or None without a usable user_id (a non-empty label) or `updates`
    (a list of balance objects, or one). `payload` is raw JSON from msgspec, or what json.loads
    made of it; `schema_errors` are the envelope's, to which invalid entries add."""
    user_id: Any = None
    accounts: list[AccountBalance | None] | None = None
    if isinstance(payload, Raw):
        try:
            decoded = _decode_end_users(payload)
        except msgspec.ValidationError:  # not an object, or a number past float's range in it
            payload = plain(payload)
        else:
            user_id, accounts = decoded.user_id, raw_accounts(decoded.updates)
    if isinstance(payload, dict):
        user_id, updates = payload.get("user_id"), payload.get("updates")
        if isinstance(updates, dict):
            updates = [updates]
        if isinstance(updates, list):
            accounts = [parse_account_entry(entry) for entry in updates]
    if not (isinstance(user_id, str) and user_id and is_label(user_id)) or accounts is None:
        return None
    valid = tuple(account for account in accounts if account is not None)
    invalid = len(accounts) - len(valid)
    return EndUserBalances(sequence, timestamp, user_id, valid, schema_errors + invalid, invalid)
