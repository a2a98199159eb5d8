"""Run the sFOX simulator on its own, for the demo stack or manual testing.

    sfox-simulator --ws-listen 0.0.0.0:8765 --rest-listen 0.0.0.0:8766 --account main --account treasury

Each account's API key is printed at start (`sfox_exporter.config.keys.demo_key(name)`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from sfox_exporter.config import ConfigError, parse_listen_address
from sfox_exporter.config.keys import demo_key

from .server import Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sfox-simulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ws-listen", default="127.0.0.1:8765", help="HOST:PORT of the WebSocket feed")
    parser.add_argument("--rest-listen", default="127.0.0.1:8766", help="HOST:PORT of the REST API")
    parser.add_argument("--account", action="append", help="account name (repeatable); default: demo")
    parser.add_argument("--push-interval", type=float, default=1.0, help="seconds between balance changes")
    args = parser.parse_args(argv)
    try:
        ws_host, ws_port = parse_listen_address(args.ws_listen, "--ws-listen")
        rest_host, rest_port = parse_listen_address(args.rest_listen, "--rest-listen")
    except ConfigError as error:
        print(f"sfox-simulator: {error}", file=sys.stderr)
        return 2
    if ws_host != rest_host:
        print("sfox-simulator: --ws-listen and --rest-listen must use the same host", file=sys.stderr)
        return 2
    names = args.account or ["demo"]
    simulator = Simulator.demo(names, host=ws_host or "0.0.0.0", ws_port=ws_port, rest_port=rest_port,
                               push_interval=args.push_interval)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with simulator:
        print(f"sfox-simulator: WebSocket {simulator.ws_url}  REST {simulator.rest_url}", flush=True)
        for name in names:
            print(f"sfox-simulator: account {name}: API key {demo_key(name)}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
