"""`make demo`: the real workflows on a seeded fleet, on Azurite and the ARM simulator.

Starts both stand-ins, fires the app's timers over some simulated days on the virtual clock,
prints the fleet's health, and stops what it started.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from local.stack import FLEETS, local_stack
from shared.health import fleet_status

START = datetime(2026, 11, 1, tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=float, default=3.0, help="simulated days to run")
    parser.add_argument("--fleet", default=str(FLEETS / "demo.json"), help="fleet JSON file")
    args = parser.parse_args(argv)
    began = time.monotonic()
    with local_stack(args.fleet, start=START) as stack:
        end = START + timedelta(days=args.days)
        print(f"running {args.days:g} simulated days of timers from {START:%Y-%m-%d} ...")
        stack.host.run_timers(until=end)
        status = fleet_status(stack.services.gateway, stack.services.catalog, stack.clock.now())
        _print_status(status)
        print(
            f"\n{args.days:g} simulated days in {time.monotonic() - began:.1f} s; "
            f"{len(stack.simulator.requests)} ARM requests; bill {stack.simulator.bill()}"
        )
    return 0


def _print_status(status: dict[str, object]) -> None:
    rows = status["vms"]
    assert isinstance(rows, list)
    print(f"\n{'VM':<24}{'backups':>8}{'RPO h':>8}{'lag h':>8}{'verified':>10}{'DR ok':>8}")
    for row in rows:
        rpo = row["rpo_seconds"]
        lag = row["replica_lag_seconds"]
        rate = row["dr_success_rate"]
        print(
            f"{row['vm']:<24}{row['backups']:>8}"
            f"{'-' if rpo is None else f'{rpo / 3600:.1f}':>8}"
            f"{'-' if lag is None else f'{lag / 3600:.1f}':>8}"
            f"{'yes' if row['last_verified'] else 'no':>10}"
            f"{'-' if rate is None else f'{rate:.0%}':>8}"
        )
    for item in status["misconfigured"]:  # type: ignore[attr-defined]
        print(f"misconfigured: {item['vm']}: {item['error']}")
    print(f"unprotected: {', '.join(status['unprotected']) or 'none'}")  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
