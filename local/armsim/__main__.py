"""`python -m local.armsim --fleet FILE`: run the simulator on its own until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading

from local.armsim.fleet import FleetError
from local.armsim.simulator import ArmSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.armsim", description=__doc__)
    parser.add_argument("--fleet", help="fleet JSON file to seed (see local/fleets/)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--no-throttle", action="store_true", help="switch ARM throttling off")
    args = parser.parse_args(argv)
    try:
        sim = ArmSimulator(
            fleet=args.fleet, page_size=args.page_size, throttle=not args.no_throttle
        )
    except (FleetError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with sim.serve(args.host, args.port) as server:
        print(f"ARM simulator listening on {server.url}", flush=True)
        print(f"CA certificate: {server.ca_path}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
