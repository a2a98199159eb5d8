"""Reading the small files the exporter is configured by: the config file, the web config and key
files. A safety property no library gives: bounded in size and never blocking.

A path may name anything, and may be swapped for anything by whoever controls the mount: a FIFO
with no writer (whose opening, and reading, waits for ever), /dev/zero (a read that never ends and
fills memory), a device whose opening has effects of its own, a directory. So only a regular file is
read, through a descriptor opened non-blocking and checked with fstat before one byte is read, and
at most `limit` + 1 bytes are read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sfox_exporter.errors import SfoxExporterError

MAX_CONFIG_FILE_BYTES = 1 << 20  # a config of 10 accounts and many thresholds is a few KiB


class UnreadableFile(SfoxExporterError):
    """Why a file cannot be read, in one sentence that names it by its origin."""


def read_regular_file(path: Path, origin: str, limit: int, too_large: str = "") -> bytes:
    """The bytes of a regular file of at most `limit` bytes; UnreadableFile for anything else.
    `too_large` ends the sentence that refuses a larger file."""
    try:
        # stat first, so that a device is never opened (opening some has effects of its own)...
        named = os.stat(path).st_mode
        if not stat.S_ISREG(named):
            raise UnreadableFile(f"{origin} is {_file_kind(named)}, not a regular file")
        # ...and fstat the descriptor actually read, since the path may be swapped in between.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UnreadableFile(f"{origin} does not exist") from None
    except PermissionError:
        uid = os.geteuid()
        raise UnreadableFile(f"cannot read {origin}: permission denied for uid {uid}; make it readable by that "
                             f"uid (chown {uid} or mount with fsGroup)") from None
    except OSError as error:
        raise UnreadableFile(f"{origin} cannot be read: {error.strerror or 'unreadable'}") from None
    except ValueError:  # a NUL in the path, which no file can have
        raise UnreadableFile(f"{origin} is not a valid path") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(f"{origin} is {_file_kind(mode)}, not a regular file")
        chunks: list[bytes] = []
        wanted = limit + 1  # one byte past the cap tells a file at the cap from a larger one
        while wanted > 0 and (chunk := os.read(descriptor, wanted)):
            chunks.append(chunk)
            wanted -= len(chunk)
    except OSError as error:
        raise UnreadableFile(f"{origin} cannot be read: {error.strerror or 'unreadable'}") from None
    finally:
        os.close(descriptor)
    data = b"".join(chunks)
    if len(data) > limit:
        raise UnreadableFile(f"{origin} is larger than {limit} bytes{too_large}")
    return data


def read_text_file(path: Path, origin: str, limit: int, too_large: str = "") -> str:
    """read_regular_file, decoded as UTF-8."""
    data = read_regular_file(path, origin, limit, too_large)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(f"{origin} cannot be read: not UTF-8 text") from None


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")
