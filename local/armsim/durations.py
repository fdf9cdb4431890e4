"""How long the simulated Azure operations take, in virtual seconds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Durations:
    """Virtual durations of the operations the simulator models.

    Creates take virtual time (workflows poll them on durable timers that move the clock). Deletes,
    NIC creates, Run Command and tag updates default to zero: the gateway waits on those inside one
    call with the SDK poller, and nothing moves a virtual clock while an activity is blocked.
    """

    snapshot_seconds: float = 10.0  # incremental snapshot of a managed disk
    disk_seconds: float = 30.0  # managed disk from a snapshot
    copy_base_seconds: float = 60.0  # cross-region CopyStart: fixed part...
    copy_seconds_per_gib: float = 20.0  # ...plus this per GiB changed since the last snapshot
    vm_create_seconds: float = 60.0  # VM PUT until provisioningState Succeeded
    vm_boot_seconds: float = 45.0  # after creation, until PowerState/running
    nic_seconds: float = 0.0
    vnet_seconds: float = 0.0
    delete_seconds: float = 0.0
    run_command_seconds: float = 0.0
    tags_seconds: float = 0.0
    access_seconds: float = 0.0  # grant/revoke SAS access

    def copy_seconds(self, changed_gib: float) -> float:
        """A CopyStart's duration: proportional to the data that changed since the last copy."""
        return self.copy_base_seconds + self.copy_seconds_per_gib * changed_gib
