"""Basic auth from web-config.yml's basic_auth_users: bcrypt hashes, a cache of good credentials, a decoy.

bcrypt is slow on purpose, so a scrape every 15 s would spend most of its CPU on it: successful
credentials are remembered (keyed by a digest, never the password), and only successes are, so that
failed guesses cannot evict Prometheus's entry. An unknown user still costs one bcrypt check at the
highest configured cost, and a password bcrypt cannot take (over 72 bytes) is refused before any check
for every user alike, so that neither timing nor a dropped connection tells which users exist.

bcrypt is imported only when users are configured: most deployments have none, and the module costs
~0.4 MB of resident memory (README, "Performance").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable

AUTH_CACHE_SIZE = 256
MAX_QUEUED_CHECKS = 8  # running or waiting
CHECK_WAIT_SECONDS = 5.0
BCRYPT_MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; the library refuses longer ones
BCRYPT_HASH = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")  # the prefixes the bcrypt library reads
# bcrypt's own range starts at 4; each step doubles the time, and at 21 one check takes minutes (cost
# 12 takes a quarter of a second here), so a higher cost would only make every scrape time out.
BCRYPT_COSTS = range(4, 21)


class BasicAuth:
    """Checks `Authorization: Basic` headers against bcrypt hashes."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        self._lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()  # one check at a time bounds the CPU guesses can take
        # ...and this, the threads they can hold: a check that would queue behind MAX_QUEUED_CHECKS
        # others, or wait past CHECK_WAIT_SECONDS, is refused unchecked, like a wrong password. A
        # connection closed for its slot meanwhile would otherwise leave its thread in the queue,
        # and a flood of guesses would grow the queue, and the threads, without end.
        self._queued = threading.BoundedSemaphore(MAX_QUEUED_CHECKS)
        self._cache: OrderedDict[tuple[str, bytes, bytes], bool] = OrderedDict()
        # An unknown user's password is checked against the dearest configured hash, and refused
        # whatever the answer: it costs what a known user's check costs, and nothing at start-up.
        self.decoy = max(users.values(), key=cost, default=b"")

    @property
    def cached(self) -> int:
        """How many credentials are remembered as verified."""
        return len(self._cache)

    def __repr__(self) -> str:
        return f"BasicAuth(users={sorted(self.users)!r})"

    def authorized(self, authorization: str | None) -> bool:
        if not self.users:
            return True
        import bcrypt  # noqa: PLC0415 - only with users configured (module docstring)

        credentials = basic_credentials(authorization)
        if credentials is None:
            return False
        user, password = credentials
        if len(password) > BCRYPT_MAX_PASSWORD_BYTES:
            return False
        hashed = self.users.get(user)
        if hashed is None:
            self._check(lambda: bcrypt.checkpw(password, self.decoy))
            return False
        # The parts of the key are fixed-length or separate fields: no two credentials share one.
        key = (user, hashed, hashlib.sha256(password).digest())
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
        valid = self._check(lambda: bcrypt.checkpw(password, hashed))
        if valid:
            with self._lock:
                self._cache[key] = True
                while len(self._cache) > AUTH_CACHE_SIZE:
                    self._cache.popitem(last=False)
        return valid


    def _check(self, check: Callable[[], bool]) -> bool:
        """One bcrypt check, one at a time; False unchecked when too many are waiting or the wait is
        too long (the comment in __init__ says why), and for a hash bcrypt cannot read."""
        if not self._queued.acquire(blocking=False):
            return False
        try:
            if not self._bcrypt_lock.acquire(timeout=CHECK_WAIT_SECONDS):
                return False
            try:
                return check()
            except ValueError:
                return False
            finally:
                self._bcrypt_lock.release()
        finally:
            self._queued.release()


def cost(hashed: bytes) -> int:
    """The cost a bcrypt hash states; 0 for what is no hash."""
    match = BCRYPT_HASH.fullmatch(hashed.decode("ascii", "replace"))
    return int(match.group(1)) if match else 0


def basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, separator, password = decoded.partition(b":")
    if not separator:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None
