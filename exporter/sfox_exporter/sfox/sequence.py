"""sFOX numbers the messages of a connection; a gap or a step back means something was lost."""

from __future__ import annotations


class SequenceChecker:
    """Data messages are checked against each other. How the replies to authenticate and subscribe are
    numbered varies (the protocol notes show both with sequence 1, and a counter shared with the data
    is inferred), so replies only place the first data message: a first number beyond the last reply
    + 1 is a gap under any scheme, anything lower means the data is counted apart. A control message
    later on, like a frame whose number cannot be read (not JSON, say; already counted as a decode or
    schema error), may have used a number, so it lets the next one be one higher.
    """

    def __init__(self) -> None:
        self.last: int | None = None  # the last data message's number
        self._reply: int | None = None  # the highest number on a reply before any data
        self._allowance = 0

    @property
    def reference(self) -> int | None:
        """The number the next data message is checked against, for the log: the last data message's,
        or before any, the last reply's."""
        return self._reply if self.last is None else self.last

    def check(self, sequence: int | None, control: bool = False) -> bool:
        """Record a message's number; True when it shows something lost."""
        if sequence is None or (control and self.last is not None):
            self._allowance += 1
            return False
        if control:
            self._reply = sequence if self._reply is None else max(self._reply, sequence)
            return False
        last, allowance = self.last, self._allowance
        self.last, self._allowance = sequence, 0
        if last is None:
            return self._reply is not None and sequence > self._reply + 1 + allowance
        return not last < sequence <= last + 1 + allowance
