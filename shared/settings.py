"""App settings: the one place that reads the environment.

Everything the app needs from outside (subscription, endpoints, resource group names, schedules)
comes from app settings in Azure and from `local.settings.json` or the environment locally. Code
receives a `Settings` value; nothing else calls `os.environ`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.domain.names import REGION_PATTERN
from shared.domain.policy import Regions

AZURE_ARM_ENDPOINT = "https://management.azure.com"
CREDENTIAL_KINDS = ("default", "managed-identity", "static")
# infra/main.bicep's replicationLagTargetSeconds default: a copy later than this needs an operator.
REPLICATION_LAG_TARGET_SECONDS = 4 * 3600


class SettingsError(ValueError):
    """A required app setting is missing or has a value the app cannot use."""


@dataclass(frozen=True)
class Settings:
    """What the app reads from its environment; defaults suit the local simulator and Azurite."""

    subscription_id: str
    # Where Azure Resource Manager answers; the simulator's URL locally.
    arm_endpoint: str = AZURE_ARM_ENDPOINT
    # A CA bundle to trust for ARM (the simulator's throwaway CA); None means the system store.
    ca_bundle: str | None = None
    # default: DefaultAzureCredential; managed-identity: ManagedIdentityCredential;
    # static: a fixed token, only for the local simulator.
    credential: str = "default"
    managed_identity_client_id: str | None = None
    # Table Storage: a connection string (UseDevelopmentStorage=true locally) or an account URL
    # used with the managed identity in Azure.
    tables_connection: str | None = "UseDevelopmentStorage=true"
    tables_account_url: str | None = None
    # Prefix of every table name, so several deployments (or test runs) can share an account.
    table_prefix: str = ""
    # Resource group name templates; {region} is replaced by the Azure region.
    backup_resource_group: str = "rg-backups-{region}"
    drtest_resource_group: str = "rg-backupdr-drtest-{region}"
    # "vnet/subnet" of the isolated network in each DR-test group that restored VMs join.
    drtest_subnet: str = "vnet-backupdr-drtest/snet-restore"
    # Where a failover brings VMs up in each DR region: a group of its own with a recovery
    # network ("vnet/subnet"), separate from the isolated DR-test network.
    recovery_resource_group: str = "rg-backupdr-recovery-{region}"
    recovery_subnet: str = "vnet-backupdr-recovery/snet-recovery"
    manual_limit_per_hour: int = 4
    # A DR test slower than this failed its recovery objective, even if the VM came up.
    rto_target_seconds: int = 3600
    # A backup still not copied to its DR region this long after it was taken needs an operator
    # (`status`, the report); the replication alert fires on the same target.
    replication_lag_target_seconds: int = REPLICATION_LAG_TARGET_SECONDS
    # Upper bound of VMs backed up in parallel by one fleet run (a page of the VM list); ARM's
    # write bucket paces them (shared/domain/pacing.py). Failovers restore this many at a time.
    fleet_batch_size: int = 100
    # Seconds between polls of a long-running Azure operation when Azure gives no Retry-After.
    lro_poll_seconds: float = 5.0
    # Finished workflow instances older than this are purged from the task hub, which otherwise
    # keeps every run's history for ever (the catalog, not the task hub, is the record).
    history_retention_days: int = 30
    # An expired backup stays restorable (soft-deleted, `backup undelete`) this long before it
    # is purged, as Azure Backup's soft delete; a shortened policy also waits this long.
    soft_delete_days: int = 14
    # Verification samples this many bytes of each test disk's written blocks (besides the
    # partition table and each partition's first 68 KiB) for its zero and entropy measures.
    verify_sample_bytes: int = 4 * 1024 * 1024
    # A backup that changed more than this many times the VM's 30-day median churn is an
    # anomaly (the pattern of mass encryption): alerted, and its VM's older backups held.
    churn_anomaly_factor: int = 5
    # The regions infra made groups in (its backupRegions and drTestRegions): a policy naming
    # any other region is misconfigured. None: not set (the CLI reads the groups instead).
    backup_regions: frozenset[str] | None = None
    dr_regions: frozenset[str] | None = None
    # App Service authentication (Easy Auth) is on: the platform sets WEBSITE_AUTH_ENABLED=True
    # (as Microsoft.Identity.Web's AppServicesAuthenticationInformation reads it), and only then
    # are the X-MS-CLIENT-PRINCIPAL-* headers the platform's, not whatever a caller sent.
    app_service_auth: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from the environment (app settings in Azure)."""
        env = os.environ if environ is None else environ
        subscription = env.get("AZURE_SUBSCRIPTION_ID", "").strip()
        if not subscription:
            raise SettingsError("AZURE_SUBSCRIPTION_ID is not set")
        credential = env.get("BACKUPDR_CREDENTIAL", "default")
        if credential not in CREDENTIAL_KINDS:
            raise SettingsError(
                f"BACKUPDR_CREDENTIAL={credential!r} is not one of {', '.join(CREDENTIAL_KINDS)}"
            )
        defaults = cls(subscription_id=subscription)
        return cls(
            subscription_id=subscription,
            arm_endpoint=env.get("BACKUPDR_ARM_ENDPOINT", defaults.arm_endpoint).rstrip("/"),
            ca_bundle=env.get("BACKUPDR_CA_BUNDLE") or None,
            credential=credential,
            managed_identity_client_id=env.get("AZURE_CLIENT_ID") or None,
            tables_connection=env.get("BACKUPDR_TABLES_CONNECTION") or None,
            tables_account_url=env.get("BACKUPDR_TABLES_ACCOUNT_URL") or None,
            table_prefix=env.get("BACKUPDR_TABLE_PREFIX", ""),
            backup_resource_group=env.get(
                "BACKUPDR_BACKUP_RESOURCE_GROUP", defaults.backup_resource_group
            ),
            drtest_resource_group=env.get(
                "BACKUPDR_DRTEST_RESOURCE_GROUP", defaults.drtest_resource_group
            ),
            drtest_subnet=env.get("BACKUPDR_DRTEST_SUBNET", defaults.drtest_subnet),
            recovery_resource_group=env.get(
                "BACKUPDR_RECOVERY_RESOURCE_GROUP", defaults.recovery_resource_group
            ),
            recovery_subnet=env.get("BACKUPDR_RECOVERY_SUBNET", defaults.recovery_subnet),
            manual_limit_per_hour=_positive_int(
                env, "BACKUPDR_MANUAL_LIMIT_PER_HOUR", defaults.manual_limit_per_hour
            ),
            rto_target_seconds=_positive_int(
                env, "BACKUPDR_RTO_TARGET_SECONDS", defaults.rto_target_seconds
            ),
            replication_lag_target_seconds=_positive_int(
                env,
                "BACKUPDR_REPLICATION_LAG_TARGET_SECONDS",
                defaults.replication_lag_target_seconds,
            ),
            fleet_batch_size=_positive_int(
                env, "BACKUPDR_FLEET_BATCH_SIZE", defaults.fleet_batch_size
            ),
            lro_poll_seconds=float(env.get("BACKUPDR_LRO_POLL_SECONDS", defaults.lro_poll_seconds)),
            history_retention_days=_positive_int(
                env, "BACKUPDR_HISTORY_RETENTION_DAYS", defaults.history_retention_days
            ),
            soft_delete_days=_positive_int(
                env, "BACKUPDR_SOFT_DELETE_DAYS", defaults.soft_delete_days
            ),
            verify_sample_bytes=_positive_int(
                env, "BACKUPDR_VERIFY_SAMPLE_BYTES", defaults.verify_sample_bytes
            ),
            churn_anomaly_factor=_positive_int(
                env, "BACKUPDR_CHURN_ANOMALY_FACTOR", defaults.churn_anomaly_factor
            ),
            app_service_auth=env.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true",
            backup_regions=_regions(env, "BACKUPDR_BACKUP_REGIONS"),
            dr_regions=_regions(env, "BACKUPDR_DR_REGIONS"),
        )

    @property
    def regions(self) -> Regions:
        return Regions(backup=self.backup_regions, dr=self.dr_regions)

    def served_by(self, groups: Iterable[tuple[str, str]]) -> Settings:
        """These settings with the regions infra/main.bicep serves where these groups (name,
        region) are: a backup and a DR-test group make a backup region, a recovery group too
        a DR region. For what has no app settings: the CLI, the local stack."""
        names = {name.lower() for name, _ in groups}
        regions = {region.lower() for _, region in groups}
        backup = frozenset(
            r
            for r in regions
            if {self.backup_group(r).lower(), self.drtest_group(r).lower()} <= names
        )
        dr = frozenset(r for r in backup if self.recovery_group(r).lower() in names)
        return dataclasses.replace(self, backup_regions=backup, dr_regions=dr)

    def backup_group(self, region: str) -> str:
        """The resource group that holds backups (snapshots and replicas) in `region`."""
        return self.backup_resource_group.format(region=region)

    def drtest_group(self, region: str) -> str:
        """The pre-provisioned resource group where DR tests and verification disks run."""
        return self.drtest_resource_group.format(region=region)

    def recovery_group(self, region: str) -> str:
        """The pre-provisioned resource group a failover restores VMs into in `region`."""
        return self.recovery_resource_group.format(region=region)


def _positive_int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not a whole number") from None
    if value < 1:
        raise SettingsError(f"{key}={raw!r} must be at least 1")
    return value


def _regions(env: Mapping[str, str], key: str) -> frozenset[str] | None:
    """A comma-separated list of Azure region names, lower-cased; None when unset."""
    if key not in env:
        return None
    names = [name.strip().lower() for name in env[key].split(",") if name.strip()]
    bad = [name for name in names if not REGION_PATTERN.fullmatch(name)]
    if bad:
        raise SettingsError(f"{key}: {', '.join(map(repr, bad))} is not an Azure region name")
    return frozenset(names)
