"""The root of the exporter's own exceptions.

One base class lets the command line and the worker threads tell a problem the exporter has worded
for its user (a bad config, an unreadable key file) from a bug, without listing every subclass.
"""

from __future__ import annotations


class SfoxExporterError(Exception):
    """A problem worded for one log or stderr line: never a traceback, never a key."""

    def __init__(self, message: str) -> None:
        # Messages quote names and values the user wrote, which may hold line breaks of their own.
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))
