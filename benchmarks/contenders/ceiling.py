"""The ceiling: a bare websocket-client receive loop, as fast as websocket-client goes.

    python -m benchmarks.contenders.ceiling WS_URL API_KEY COUNT

Authenticates, subscribes, prints "ready", receives COUNT data messages doing nothing with them,
prints "done". UTF-8 validation is off (skip_utf8_validation), its fastest setting.
"""

from __future__ import annotations

import sys

from .sfox import subscribed


def main() -> None:
    url, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ws = subscribed(url, key, skip_utf8_validation=True)
    print("ready", flush=True)
    received = 0
    while received < count:
        ws.recv()
        received += 1
    print("done", flush=True)


if __name__ == "__main__":
    main()
