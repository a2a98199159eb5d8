"""The entry point of `sfox-exporter` and `python -m sfox_exporter`.

The signal handlers come first, before the rest of the program is even imported (a few tenths of a
second): a SIGTERM or SIGINT in that time, or while the config is read, then ends the process with
status 0, as it does later, instead of killing it (status 143) or printing a KeyboardInterrupt.
"""

from __future__ import annotations

from collections.abc import Mapping

from sfox_exporter.signals import Signals


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    signals = Signals()
    from sfox_exporter.command import run  # noqa: PLC0415 - after the handlers, on purpose (docstring)

    return run(signals, argv, environ)
