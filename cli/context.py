"""What one `backupdr` run works against: real Azure or a running ARM simulator.

Real Azure: settings from the environment (`--subscription` overrides AZURE_SUBSCRIPTION_ID),
DefaultAzureCredential, and the system clock; durable timers then wait real time. Simulator
(`--simulator URL` or BACKUPDR_SIMULATOR): ARM at URL with its CA bundle, and the simulator's
virtual clock, read and moved through its admin endpoints, so the workflows' timers move the
simulator's time exactly as the local stack does in tests.

Two identities: the app's workflows run as the app (in Azure, its managed identity), which the
simulator holds to infra/'s roles; what only an operator does (writing the policy tag, restoring
into the VM's own group) runs as the operator. On real Azure both are the `az login` identity.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar
from urllib.parse import urlsplit

import requests
import typer

from cli.errors import BadInput, Failed
from local import settings_file
from local.stack import app_settings
from shared.adapters.arm import ArmComputeGateway, gateway_from_settings
from shared.adapters.catalog import catalog_from_settings
from shared.adapters.credentials import OPERATOR_TOKEN, StaticTokenCredential, arm_clients
from shared.clock import SettableClock, SystemClock
from shared.domain.models import VM
from shared.inputs import InputError, known_vm, one_vm
from shared.services import Services
from shared.settings import Settings

ADMIN_TIMEOUT_SECONDS = 10.0
# Every setting the CLI reads, for `backupdr --help` (paragraphs: rich help joins single lines).
SETTINGS_HELP = f"""Settings, from options or the environment (the environment wins over the
settings file).

Target: --subscription / AZURE_SUBSCRIPTION_ID for Azure; --simulator / BACKUPDR_SIMULATOR with
--ca / BACKUPDR_CA_BUNDLE for the ARM simulator. With neither, the local stack that `backupdr
serve` runs, from the file it writes: {settings_file.DEFAULT_PATH} (or
{settings_file.PATH_VARIABLE}).

Identity: BACKUPDR_CREDENTIAL (default, managed-identity, static), AZURE_CLIENT_ID;
BACKUPDR_ARM_ENDPOINT. Catalog: BACKUPDR_TABLES_CONNECTION or BACKUPDR_TABLES_ACCOUNT_URL,
BACKUPDR_TABLE_PREFIX.

Deployment: BACKUPDR_BACKUP_REGIONS, BACKUPDR_DR_REGIONS (default: the regions of the
subscription's groups), BACKUPDR_BACKUP_RESOURCE_GROUP, BACKUPDR_DRTEST_RESOURCE_GROUP,
BACKUPDR_DRTEST_SUBNET, BACKUPDR_RECOVERY_RESOURCE_GROUP, BACKUPDR_RECOVERY_SUBNET,
BACKUPDR_MANUAL_LIMIT_PER_HOUR, BACKUPDR_RTO_TARGET_SECONDS,
BACKUPDR_REPLICATION_LAG_TARGET_SECONDS, BACKUPDR_FLEET_BATCH_SIZE,
BACKUPDR_CHURN_ANOMALY_FACTOR, BACKUPDR_VERIFY_SAMPLE_BYTES,
BACKUPDR_LRO_POLL_SECONDS, BACKUPDR_HISTORY_RETENTION_DAYS, BACKUPDR_SOFT_DELETE_DAYS,
WEBSITE_AUTH_ENABLED; BACKUPDR_TASK_HUB and the timer schedules (BACKUPDR_*_SCHEDULE), which
default to local.settings.json.example's."""
T = TypeVar("T")
P = ParamSpec("P")


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[
    Format | None,
    typer.Option("--output", "-o", help="table (default) or json (one document on stdout)"),
]
GroupOption = Annotated[
    str | None,
    typer.Option("--resource-group", "-g", help="the VM's resource group, when names repeat"),
]


@dataclass
class Options:
    """The global options, as given on the command line (or their environment variables)."""

    output: Format = Format.TABLE
    subscription: str | None = None
    simulator: str | None = None
    ca_bundle: str | None = None
    _run: Run | None = field(default=None, repr=False)

    def format(self, override: Format | None) -> Format:
        return override or self.output

    def run(self) -> Run:
        """The services of this invocation, built once on first use."""
        if self._run is None:
            self._run = open_run(self)
        return self._run


@dataclass(frozen=True)
class Run:
    services: Services  # as the app's identity: what the workflows run with
    operator: Services  # as the operator's own identity
    clock: SettableClock
    # The app settings handed to the local durable host (timer schedules, hub name).
    host_settings: dict[str, str]

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def vm(self, name: str, resource_group: str | None = None) -> VM:
        """The VM an argument names; an unknown or ambiguous name is bad input."""
        return checked(one_vm, self.services.gateway.list_vms(), name, resource_group)

    def known_vm(self, name: str, resource_group: str | None = None) -> VM:
        """The VM an argument names, live or, once deleted, as its last backup recorded it
        (`VM.gone`); a name neither Azure nor the catalog knows is bad input."""
        vms = self.services.gateway.list_vms()
        return checked(known_vm, vms, self.services.catalog, name, resource_group)

    def as_operator(self) -> Run:
        """This run with the operator's services, for workflows only an operator may run."""
        return dataclasses.replace(self, services=self.operator)


def options(ctx: typer.Context) -> Options:
    found = ctx.find_root().obj
    if not isinstance(found, Options):
        raise RuntimeError("backupdr's root callback did not run")
    return found


def checked(check: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a shared input check; its refusal is bad input (exit 2)."""
    try:
        return check(*args, **kwargs)
    except InputError as error:
        raise BadInput(str(error)) from None


def open_run(opts: Options) -> Run:
    opts, env = local_stack_target(opts, os.environ)
    if opts.subscription:
        env["AZURE_SUBSCRIPTION_ID"] = opts.subscription
    clock: SettableClock = WallClock()
    if opts.simulator:
        url = _simulator_url(opts.simulator, opts.ca_bundle)
        env |= {"BACKUPDR_ARM_ENDPOINT": url, "BACKUPDR_CREDENTIAL": "static"}
        if opts.ca_bundle:
            env["BACKUPDR_CA_BUNDLE"] = opts.ca_bundle
        clock = SimulatorClock(url, opts.ca_bundle)
        clock.now()  # a simulator that does not answer is one line before anything else
    settings = Settings.from_env(env)
    try:
        gateway = gateway_from_settings(settings)
        operator_gateway = gateway
        if opts.simulator:
            credential = StaticTokenCredential(OPERATOR_TOKEN)
            operator_gateway = ArmComputeGateway(
                arm_clients(settings, credential), settings.subscription_id
            )
        if settings.backup_regions is None or settings.dr_regions is None:
            # Without the app's settings, the deployment serves the regions its groups are in
            # (the operator reads them: the app's roles read no group list).
            settings = settings.served_by(operator_gateway.list_groups())
        services = Services(
            settings=settings,
            gateway=gateway,
            catalog=catalog_from_settings(settings),
            clock=clock,
        )
        operator = dataclasses.replace(services, gateway=operator_gateway)
    except ValueError as error:
        raise BadInput(str(error)) from None
    return Run(services=services, operator=operator, clock=clock, host_settings=app_settings(env))


def local_stack_target(opts: Options, environ: Mapping[str, str]) -> tuple[Options, dict[str, str]]:
    """The target and settings of this run. Given none (no --subscription or --simulator, nor
    their variables), the local stack `backupdr serve` runs, from the settings file it writes;
    settings in the environment still win over the file's."""
    env = dict(environ)
    if opts.subscription or opts.simulator:
        return opts, env
    path = settings_file.settings_path(env)
    try:
        local = settings_file.read(path)
    except settings_file.SettingsFileError as error:
        raise BadInput(str(error)) from None
    if local is None:
        raise BadInput(
            "no target: give --subscription (Azure) or --simulator URL --ca FILE, or start the "
            f"local stack with `backupdr serve` (it writes {path} for the next command)"
        )
    if not local.running():
        raise Failed(
            f"{path} names a local stack that is not running (`backupdr serve`, pid {local.pid}, "
            "has stopped): start it again with `backupdr serve`, or delete the file"
        )
    found = dataclasses.replace(
        opts, subscription=local.subscription, simulator=local.simulator, ca_bundle=local.ca_bundle
    )
    return found, {**local.env, **env}


def _simulator_url(url: str, ca_bundle: str | None) -> str:
    """The simulator's base URL, checked before anything reads it (bad input: one line)."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise BadInput(f"--simulator {url!r}: give the simulator's https://HOST:PORT URL")
    if ca_bundle and not Path(ca_bundle).is_file():
        raise BadInput(f"--ca {ca_bundle!r}: no such file (the simulator writes its CA at start)")
    return url.strip().rstrip("/")


class WallClock(SystemClock):
    """Real time: a durable timer's moment is waited for, as the Durable extension would."""

    def advance_to(self, moment: datetime) -> datetime:
        wait = (moment - self.now()).total_seconds()
        if wait > 0:
            time.sleep(wait)
        return self.now()


class SimulatorClock:
    """The ARM simulator's virtual clock, through its admin endpoints (GET/POST /_admin/clock)."""

    def __init__(self, url: str, ca_bundle: str | None) -> None:
        self._url = f"{url}/_admin/clock"
        self._session = requests.Session()  # one kept-alive TLS connection for every reading
        self._verify: str | bool = ca_bundle or True

    def now(self) -> datetime:
        return self._moment(self._ask("GET", self._url))

    def advance_to(self, moment: datetime) -> datetime:
        seconds = (moment - self.now()).total_seconds()
        if seconds <= 0:
            return self.now()
        return self._moment(self._ask("POST", f"{self._url}/advance", {"seconds": seconds}))

    def _ask(
        self, method: str, url: str, body: dict[str, float] | None = None
    ) -> requests.Response:
        """One admin request; a simulator that cannot be reached is one line, not a traceback."""
        try:
            return self._session.request(
                method, url, json=body, verify=self._verify, timeout=ADMIN_TIMEOUT_SECONDS
            )
        except (requests.RequestException, OSError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise Failed(f"cannot reach the simulator at {self._url}: {reason}") from None

    def _moment(self, reply: requests.Response) -> datetime:
        if reply.status_code != 200:
            raise Failed(f"the simulator's clock answered {reply.status_code} at {self._url}")
        return datetime.fromisoformat(reply.json()["now"]).astimezone(UTC)
