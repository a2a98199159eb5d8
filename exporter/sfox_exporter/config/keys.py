"""API keys: a value that never shows itself, and where an account's key is read from.

A key file is read again on every connection attempt, in a feed thread, and only as a small regular
file (config/files.py: a FIFO would block the thread for ever, /dev/zero would fill memory). Problems
raise KeyLoadError, not ConfigError: in a feed thread they are a failed attempt to be logged and
retried, not a config to be refused.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sfox_exporter.config.files import UnreadableFile, read_text_file
from sfox_exporter.errors import SfoxExporterError

MAX_KEY_FILE_BYTES = 4096  # sFOX keys are 64 characters; anything near this is not a key file


class KeyLoadError(SfoxExporterError):
    """An API key that cannot be had: the message names where it was looked for, never the key."""


class Secret:
    """An API key that does not show itself: not in repr, str, format, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


def demo_key(account: str) -> str:
    """The simulator's API key for a demo account. Not derived by spelling the name into it: the log
    redactor hides every 8-character fragment of a key, and would then hide the account's name."""
    return "demo-" + hashlib.sha256(account.encode()).hexdigest()[:32]


def unless_key_like(name: str) -> str:
    """A variable name or path for an error message, unless it looks like a key pasted in its place.

    Names and paths are upper case, or have a '/' or '.'; sFOX keys are long runs of lower-case
    letters and digits. A key that is known is redacted anyway; this catches one that is not.
    """
    looks_like_key = (len(name) >= 16 and not {"/", "."} & set(name)
                      and any(c.isdigit() for c in name) and any(c.islower() for c in name))
    return "(name not shown: it looks like an API key)" if looks_like_key else name


def read_key_file(path: Path, origin: str, limit: int = MAX_KEY_FILE_BYTES) -> str:
    """The text of a key file; KeyLoadError naming `origin` for anything but a small regular file."""
    try:
        return read_text_file(path, origin, limit, ", which no API key is")
    except UnreadableFile as error:
        raise KeyLoadError(str(error)) from None


def process_groups() -> frozenset[int]:
    """The groups this process runs with: its own, and supplementary ones such as Kubernetes' fsGroup."""
    return frozenset({os.getegid(), *os.getgroups()})


class KeyLoader(Protocol):
    """What a connection needs of where its key comes from: KeySource, or valuation's KeyRing."""

    def load(self) -> Secret:
        """The key as it is now; KeyLoadError when it cannot be had."""


@dataclass(frozen=True)
class KeySource:
    """Where an account's API key comes from. A key file is read again on every connection attempt,
    so a rotated Kubernetes Secret takes effect without a restart."""

    env: str | None = None
    file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    fixed: Secret | None = field(default=None, repr=False)  # demo keys, which the simulator issues

    @property
    def origin(self) -> str:
        if self.file is not None:
            return f"key file {unless_key_like(str(self.file))}"
        if self.env is not None:
            return f"environment variable {unless_key_like(self.env)}"
        return "built-in demo key"

    def load(self) -> Secret:
        """The key as it is now; KeyLoadError when it cannot be had."""
        if self.fixed is not None:
            return self.fixed
        if self.file is not None:
            key = read_key_file(self.file, self.origin).strip()
            if not key:
                raise KeyLoadError(f"{self.origin} is empty")
        else:
            assert self.env is not None
            key = self.environ.get(self.env, "").strip()
            if not key:
                raise KeyLoadError(f"{self.origin} is not set or empty")
        if any(not ch.isprintable() or ch.isspace() for ch in key):
            raise KeyLoadError(f"the API key in {self.origin} contains whitespace or control characters")
        if not key.isascii():  # sFOX keys are ASCII; an HTTP header refused one, naming a character of it
            raise KeyLoadError(f"the API key in {self.origin} contains characters other than ASCII")
        return Secret(key)

    def permission_warning(self, groups: Collection[int] | None = None) -> str | None:
        """A warning when others may read the key file, or a group the process is not in.

        Group access for the process's own groups is how Kubernetes mounts Secrets with fsGroup
        (mode 0440 or 0640, group fsGroup), so it is no reason to warn.
        """
        if self.file is None:
            return None
        try:
            status = self.file.stat()
        except OSError:
            return None
        own = process_groups() if groups is None else groups
        group_access = status.st_mode & stat.S_IRWXG and status.st_gid not in own
        if status.st_mode & stat.S_IRWXO or group_access:
            who = "others" if status.st_mode & stat.S_IRWXO else f"group {status.st_gid}"
            return (
                f"key file {unless_key_like(str(self.file))} is accessible by {who} "
                f"(mode {stat.filemode(status.st_mode)}); restrict it with chmod 600 or 400"
            )
        return None
