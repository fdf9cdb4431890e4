"""The whole app running locally: Azurite, the ARM simulator and the local durable host.

One virtual clock drives the simulator's operations and the host's durable timers, so days of
timer ticks run in seconds. Tests, `make demo` and the CLI's simulator target all start here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from local.armsim import ArmSimulator, Durations
from local.azurite import Azurite, running_azurite
from local.transport import NoWaitTransport
from shared.adapters.arm import ArmComputeGateway, gateway_from_settings
from shared.adapters.catalog import catalog_from_settings
from shared.adapters.credentials import OPERATOR_TOKEN, StaticTokenCredential, arm_clients
from shared.clock import VirtualClock
from shared.runner import LocalDurableHost
from shared.services import Services, install
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FLEETS = Path(__file__).resolve().parent / "fleets"


@dataclass
class Stack:
    clock: VirtualClock
    simulator: ArmSimulator
    azurite: Azurite
    services: Services
    host: LocalDurableHost
    settings_env: dict[str, str]
    # The operator's own identity (README's operator roles), for what the app may not do, such as
    # writing a VM's policy tag: the app's services hold only infra/'s roles.
    operator: ArmComputeGateway

    def cli_env(self) -> dict[str, str]:
        """What `backupdr` needs to work against this stack: the simulator, its CA, the
        subscription, the catalog, and the app's own settings (soft-delete window, ...)."""
        env = self.settings_env
        return {
            **{k: v for k, v in env.items() if k.startswith("BACKUPDR_")},
            "BACKUPDR_SIMULATOR": env["BACKUPDR_ARM_ENDPOINT"],
            "AZURE_SUBSCRIPTION_ID": self.simulator.subscription,
        }


def served_regions(simulator: ArmSimulator, config: Settings) -> dict[str, str]:
    """The region settings infra/main.bicep would give the app for the simulator's groups."""
    groups = [(g.name, g.location) for g in simulator.world.groups.values()]
    served = config.served_by(groups)
    return {
        "BACKUPDR_BACKUP_REGIONS": ",".join(sorted(served.backup_regions or ())),
        "BACKUPDR_DR_REGIONS": ",".join(sorted(served.dr_regions or ())),
    }


def app_settings(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The app settings of local.settings.json.example, with overrides: one source for both."""
    example = json.loads((ROOT / "local.settings.json.example").read_text())
    return {**example["Values"], **(overrides or {})}


@contextmanager
def local_stack(
    fleet: Mapping[str, Any] | Path | str,
    *,
    start: datetime,
    durations: Durations | None = None,
    azurite: Azurite | None = None,
    table_prefix: str = "",
    settings: Mapping[str, str] | None = None,
    at_least_once: bool = False,
    page_size: int = 100,
) -> Iterator[Stack]:
    """Run the app against a seeded simulator and Azurite until the block ends
    (`at_least_once`: the host runs every successful activity twice, as redelivery may;
    `page_size`: items per page of the simulator's lists, ARM's 100 by default)."""
    from function_app import build_app

    clock = VirtualClock(start)
    simulator = ArmSimulator(
        clock=clock, fleet=fleet, durations=durations or Durations(), page_size=page_size
    )
    with ExitStack() as stack:
        server = stack.enter_context(simulator.serve())
        tables = azurite or stack.enter_context(running_azurite())
        env = app_settings(
            {
                "AZURE_SUBSCRIPTION_ID": simulator.subscription,
                "BACKUPDR_ARM_ENDPOINT": server.url,
                "BACKUPDR_CA_BUNDLE": str(server.ca_path),
                "BACKUPDR_CREDENTIAL": "static",
                "BACKUPDR_TABLES_CONNECTION": tables.connection_string,
                "BACKUPDR_TABLE_PREFIX": table_prefix,
                "BACKUPDR_LRO_POLL_SECONDS": "0.05",
                # A verification's content sample: 256 KiB of each disk keeps a simulated month
                # quick; Azure deployments read the default 4 MiB (shared/settings.py).
                "BACKUPDR_VERIFY_SAMPLE_BYTES": str(256 * 1024),
            }
        )
        env = {**env, **served_regions(simulator, Settings.from_env(env)), **(settings or {})}
        config = Settings.from_env(env)
        services = Services(
            settings=config,
            gateway=gateway_from_settings(config, transport=NoWaitTransport),
            catalog=catalog_from_settings(config),
            clock=clock,
        )
        install(services)
        stack.callback(install, None)
        host = stack.enter_context(
            LocalDurableHost(
                build_app(),
                clock,
                host_json=ROOT / "host.json",
                settings=env,
                at_least_once=at_least_once,
            )
        )
        operator = ArmComputeGateway(
            arm_clients(config, StaticTokenCredential(OPERATOR_TOKEN), NoWaitTransport),
            config.subscription_id,
        )
        yield Stack(clock, simulator, tables, services, host, env, operator)
