"""How long the simulated Azure operations take, in virtual seconds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Durations:
    """Virtual durations of the operations the simulator models.

    Everything the workflows start in one activity and poll on durable timers takes virtual time
    (timers move the clock; an activity blocked on a poller would not). The times marked *varied*
    below change by up to `jitter` of their value from one operation to the next (seeded, so a
    simulator seed replays the same times), and their Retry-After is the *expected* time left,
    rounded up: a hint, as Azure's is, that a client trusting it exactly sometimes finds early.

    Sources for the defaults: azure-cli issue #32286 (a trivial RunShellScript: POST at
    09:07:11.6, result at 09:07:41.7, about 30 s); steampipe-plugin-azure PR #420 (a terraform
    destroy log: NIC "Destruction complete after 13s", VM 9m52s, the slow tail of VM deletes,
    which more often take one to three minutes); azure-powershell issue #14460 (a NIC PUT answered
    with Retry-After: 10). The disk delete is an estimate: an unattached disk goes in seconds.
    """

    snapshot_seconds: float = 10.0  # incremental snapshot of a managed disk
    disk_seconds: float = 30.0  # managed disk from a snapshot
    copy_base_seconds: float = 60.0  # cross-region CopyStart: fixed part...
    copy_seconds_per_gib: float = 20.0  # ...plus this per GiB changed since the last snapshot
    vm_create_seconds: float = 60.0  # VM PUT until provisioningState Succeeded
    vm_boot_seconds: float = 45.0  # after creation, until PowerState/running
    nic_seconds: float = 8.0  # varied: NIC PUT until Succeeded
    vm_delete_seconds: float = 120.0  # varied: VM DELETE until gone (its disks and NIC let go)
    nic_delete_seconds: float = 13.0  # varied
    disk_delete_seconds: float = 20.0  # varied
    run_command_seconds: float = 30.0  # varied: Run Command POST until its result is readable
    # Zero, because the app waits on these inside one call with the SDK poller: snapshot deletes
    # (retention; quick in Azure, where a snapshot delete is a metadata change), tag updates (the
    # CLI), SAS grants, and VNets and NSGs (seeded by fleets, never created by the app).
    snapshot_delete_seconds: float = 0.0
    vnet_seconds: float = 0.0  # and NSGs
    tags_seconds: float = 0.0
    access_seconds: float = 0.0  # grant/revoke SAS access
    jitter: float = 0.3  # varied times fall in [1 - jitter, 1 + jitter] x their value

    def copy_seconds(self, changed_gib: float) -> float:
        """A CopyStart's duration: proportional to the data that changed since the last copy."""
        return self.copy_base_seconds + self.copy_seconds_per_gib * changed_gib
