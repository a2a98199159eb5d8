"""What this build is: version, source revision and Python version, for sfox_exporter_build_info
and --version.

An image built from a tarball has no .git, so the revision is baked in at build time through the
SFOX_EXPORTER_REVISION environment variable (the Dockerfile's REVISION build argument sets it).
Running from a checkout of this repository, `git rev-parse` tells it; otherwise (an installed package)
it is "unknown", never a guess.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path

from sfox_exporter import __version__

REVISION_ENV = "SFOX_EXPORTER_REVISION"
UNKNOWN = "unknown"
GIT_TIMEOUT_SECONDS = 2.0
# A revision is a label value: keep it short and printable, whatever the environment holds.
_REVISION = re.compile(r"[0-9A-Za-z._+-]{1,64}")


def version() -> str:
    return __version__


def python_version() -> str:
    return platform.python_version()


@functools.cache
def revision() -> str:
    """The source revision, read once per process."""
    return revision_from(os.environ, Path(__file__).resolve().parent)


def revision_from(environ: Mapping[str, str], source_dir: Path) -> str:
    baked = environ.get(REVISION_ENV, "").strip()
    if baked:
        return baked if _REVISION.fullmatch(baked) else UNKNOWN
    if not (source_dir.parent.parent / ".git").exists():
        # Installed, not our checkout (exporter/sfox_exporter): a repository further up, round a
        # virtualenv say, is some other project's, and its HEAD no revision of ours.
        return UNKNOWN
    import subprocess  # noqa: PLC0415 - only from a git checkout; ~0.3 MB of RSS otherwise spent

    try:
        result = subprocess.run(  # noqa: S603 - a fixed command, no shell, no user input
            ["git", "-C", str(source_dir), "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH
            capture_output=True, text=True, timeout=GIT_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    found = result.stdout.strip()
    return found if result.returncode == 0 and _REVISION.fullmatch(found) else UNKNOWN


def build_labels(version_text: str | None = None) -> tuple[str, str, str]:
    """The label values of sfox_exporter_build_info: version, revision, python_version."""
    return (version_text or version(), revision(), python_version())


def describe() -> str:
    """What --version prints."""
    return f"sfox-exporter {version()} (revision {revision()}, python {python_version()})"
