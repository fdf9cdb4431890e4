"""Retention that loses nothing the user counts on, on the whole local stack: holds read from
Azure, soft delete with undelete, purges that finish after a failure, a shortened policy that
waits out the window, and a halted plan an operator reviews and applies."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.data.tables import TableClient
from typer.testing import CliRunner, Result

from cli.main import app
from local.armsim import FaultRule
from local.azurite import Azurite
from local.stack import FLEETS, Stack, local_stack
from shared.activities.retention import DELETED_TAG, HOLD_TAG, apply_retention
from shared.adapters.telemetry import captured_events
from shared.domain.models import Backup, BackupState, VerificationState

DAY0 = datetime(2026, 11, 10, tzinfo=UTC)
START = DAY0 + timedelta(hours=2)  # the first backup is the 02:00 slot of day 0
SUB = "00000000-0000-0000-0000-000000000001"
WEB = "rg-app-eastus~web-01"  # two disks, copied to westus2
WEB_ID = (
    f"/subscriptions/{SUB}/resourceGroups/rg-app-eastus/providers/"
    "Microsoft.Compute/virtualMachines/web-01"
)
TWO_DAYS = "schedule=0 2 * * *;daily=2;weekly=0;monthly=0;replicate=westus2"
WINDOW_DAYS = 2
_prefixes = (f"nothinglost{n}" for n in itertools.count())


@pytest.fixture
def stack(azurite: Azurite) -> Iterator[Stack]:
    with local_stack(
        FLEETS / "tiny.json",
        start=START,
        azurite=azurite,
        table_prefix=next(_prefixes),
        settings={"BACKUPDR_SOFT_DELETE_DAYS": str(WINDOW_DAYS)},
    ) as running:
        running.operator.set_policy_tag(WEB_ID, TWO_DAYS)
        yield running


def _run_to_day(stack: Stack, day: int) -> None:
    """Timers until 03:00 on START + `day` (each day's 02:00 backup, copy and retention done)."""
    stack.host.run_timers(until=DAY0 + timedelta(days=day, hours=3))
    stack.host.run_until_idle()


def _by_day(stack: Stack) -> dict[int, Backup]:
    """web-01's backups, deleted ones included, by the day (of November) of their slot."""
    return {
        b.slot.day: b
        for b in stack.services.catalog.list_backups(WEB, include_deleted=True)
        if not b.manual
    }


def _snapshot_ids(backup: Backup) -> list[str]:
    return [ref.snapshot_id for ref in backup.snapshots] + [
        ref.replica_id for ref in backup.snapshots if ref.replica_id
    ]


def _tags(stack: Stack, snapshot_id: str) -> dict[str, str] | None:
    """The snapshot's tags in the simulator (None: it does not exist)."""
    found = stack.simulator.world.find(snapshot_id)
    return None if found is None else dict(found.body.get("tags") or {})


def _cli(stack: Stack, *args: str) -> Result:
    return CliRunner().invoke(app, ["-o", "json", *args], env=stack.cli_env())


def test_a_hold_set_in_azure_keeps_a_backup_and_its_replicas(stack: Stack) -> None:
    """`backup-hold=true` put on one replica in the portal: retention reads it from Azure."""
    _run_to_day(stack, 0)
    first = _by_day(stack)[10]
    replica = first.snapshots[1].replica_id
    assert replica is not None
    stack.operator.tag_snapshot(replica, {HOLD_TAG: "true"})
    _run_to_day(stack, 4)
    backups = _by_day(stack)
    assert backups[10].state is BackupState.COMPLETED
    assert backups[10].hold
    assert all(_tags(stack, s) is not None for s in _snapshot_ids(backups[10]))
    assert backups[11].state is BackupState.SOFT_DELETED  # not held: expired as the policy says
    listed = json.loads(_cli(stack, "backup", "list", "web-01").stdout)["backups"]
    assert {b["backup_id"]: b["hold"] for b in listed}[first.backup_id] is True


def test_a_run_reads_the_snapshots_of_what_it_deletes_not_every_snapshot_it_keeps(
    stack: Stack,
) -> None:
    """Holds are read from Azure before a deletion, one GET per snapshot of each backup it
    deletes: no run lists the backup groups (a list per VM per run is every snapshot of the
    fleet, which grew every day of a month's run)."""
    _run_to_day(stack, 3)  # day 10 and 11 soft-deleted; day 10's window ends on day 12 02:00+2d
    stack.clock.advance_to(DAY0 + timedelta(days=4, hours=3))
    purged = _by_day(stack)[10]
    seen = len(stack.simulator.requests)
    apply_retention({"vm_key": WEB}, stack.services)
    asked = stack.simulator.requests[seen:]
    assert _by_day(stack)[10].state is BackupState.DELETED
    assert not [r for r in asked if r.path.lower().endswith("/snapshots")]
    read = {r.path.lower() for r in asked if r.method == "GET" and "/snapshots/" in r.path.lower()}
    assert read == {s.lower() for s in _snapshot_ids(purged)}


def test_soft_delete_keeps_a_backup_restorable_until_the_window_then_purges_it(
    stack: Stack,
) -> None:
    _run_to_day(stack, 4)
    backups = _by_day(stack)
    soft = backups[11]
    assert soft.state is BackupState.SOFT_DELETED
    for snapshot_id in _snapshot_ids(soft):  # still there, and marked in Azure too
        tags = _tags(stack, snapshot_id)
        assert tags is not None
        assert DELETED_TAG in tags
    restore = _cli(stack, "backup", "restore", "web-01", "--backup", soft.backup_id, "--disks-only")
    assert restore.exit_code == 2
    assert "not a completed backup" in restore.stderr

    back = _cli(stack, "backup", "undelete", "web-01", "--backup", backups[12].backup_id)
    assert back.exit_code == 0, back.stderr
    _run_to_day(stack, 7)
    backups = _by_day(stack)
    assert backups[11].state is BackupState.DELETED  # purged once the window passed...
    assert all(_tags(stack, s) is None for s in _snapshot_ids(soft))
    undeleted = backups[12]  # ...while the undeleted one is restorable again, and held
    assert (undeleted.state, undeleted.hold) == (BackupState.COMPLETED, True)
    for snapshot_id in _snapshot_ids(undeleted):
        tags = _tags(stack, snapshot_id)
        assert tags is not None
        assert DELETED_TAG not in tags
        assert tags[HOLD_TAG] == "true"

    released = _cli(stack, "backup", "release", "web-01", "--backup", undeleted.backup_id)
    assert released.exit_code == 0, released.stderr
    _run_to_day(stack, 8)
    assert _by_day(stack)[12].state is BackupState.SOFT_DELETED


def test_undelete_refuses_what_is_not_soft_deleted_and_changes_nothing(stack: Stack) -> None:
    _run_to_day(stack, 1)
    live = _by_day(stack)[11]
    result = _cli(stack, "backup", "undelete", "web-01", "--backup", live.backup_id)
    assert result.exit_code == 1
    assert "only a soft-deleted backup can be undeleted" in result.stderr
    assert _by_day(stack)[11] == live
    other = _cli(stack, "backup", "hold", "db-01", "--backup", live.backup_id)
    assert other.exit_code == 2
    assert "not a backup of db-01" in other.stderr


def test_a_purge_that_fails_midway_is_never_restorable_and_finishes_next_run(
    stack: Stack,
) -> None:
    _run_to_day(stack, 3)  # day 10 soft-deleted on day 12
    stack.simulator.add_fault(FaultRule(operation="snapshots.delete", resource="*lun0*"))
    _run_to_day(stack, 5)  # day 10's purge is due on day 14: its data disk will not go
    stuck = _by_day(stack)[10]
    assert stuck.state is BackupState.PURGING
    gone = [s for s in _snapshot_ids(stuck) if _tags(stack, s) is None]
    assert gone  # some of it is deleted already: it must not be offered as a backup
    restore = _cli(
        stack, "backup", "restore", "web-01", "--backup", stuck.backup_id, "--disks-only"
    )
    assert restore.exit_code == 2
    assert "not a completed backup" in restore.stderr

    stack.simulator.clear_faults()
    _run_to_day(stack, 6)
    finished = _by_day(stack)[10]
    assert finished.state is BackupState.DELETED
    assert all(_tags(stack, s) is None for s in _snapshot_ids(finished))


def test_a_shortened_policy_is_alerted_and_waits_out_the_window(stack: Stack) -> None:
    stack.operator.set_policy_tag(WEB_ID, "schedule=0 2 * * *;daily=7;weekly=0;monthly=0")
    _run_to_day(stack, 5)
    cut = "schedule=0 2 * * *;daily=1;weekly=0;monthly=0"
    stack.operator.set_policy_tag(WEB_ID, cut)
    with captured_events() as events:
        _run_to_day(stack, 6)
    (reduced,) = [e for e in events if e["event"] == "RetentionReduced"]
    assert reduced["vm"] == WEB
    assert str(reduced["policy"]).startswith(cut)
    assert "daily=7" in str(reduced["previous"])
    kept = [b for b in _by_day(stack).values() if b.state is BackupState.COMPLETED]
    assert len(kept) == 7  # the old policy still governs for the window
    _run_to_day(stack, 6 + WINDOW_DAYS + 1)
    backups = sorted(_by_day(stack).values(), key=lambda b: b.taken_at)
    verified = [b for b in backups if b.verification is VerificationState.PASSED]
    live = {b.backup_id for b in backups if b.state is BackupState.COMPLETED}
    # Then the cut converges in one run (the breaker expected it): the one daily backup, and
    # the newest verified one, which a safety rule keeps.
    assert live == {backups[-1].backup_id, verified[-1].backup_id}


def test_a_policy_lengthened_after_the_run_listed_the_vm_keeps_what_it_keeps(
    stack: Stack,
) -> None:
    """The fleet run lists web-01 (daily=2) at 02:00 and an operator lengthens its policy while
    the snapshots are being taken: the run's retention deletes by the tag as it is then."""
    _run_to_day(stack, 3)
    assert _by_day(stack)[12].state is BackupState.COMPLETED  # days 12 and 13 kept, daily=2
    stack.host.run_timers(until=DAY0 + timedelta(days=4, hours=2))  # listed, snapshots begun
    assert _by_day(stack)[14].state is BackupState.CREATING
    stack.operator.set_policy_tag(WEB_ID, TWO_DAYS.replace("daily=2", "daily=7"))
    _run_to_day(stack, 4)

    assert _by_day(stack)[14].state is BackupState.COMPLETED
    assert _by_day(stack)[12].state is BackupState.COMPLETED, "daily=7 keeps it"


def test_a_halted_plan_is_reviewed_and_applied_by_an_operator(stack: Stack) -> None:
    stack.operator.set_policy_tag(WEB_ID, "schedule=0 2 * * *;daily=7;weekly=0;monthly=0")
    _run_to_day(stack, 5)
    # Retention's memory of the VM is lost, and the tag is cut: nothing explains the deletions.
    TableClient.from_connection_string(
        stack.settings_env["BACKUPDR_TABLES_CONNECTION"],
        stack.settings_env["BACKUPDR_TABLE_PREFIX"] + "retention",
    ).delete_entity(partition_key=WEB, row_key="state")
    stack.operator.set_policy_tag(WEB_ID, "schedule=0 2 * * *;daily=1;weekly=0;monthly=0")
    with captured_events() as events:
        _run_to_day(stack, 7)
    halted = [e for e in events if e["event"] == "RetentionApplied" and e.get("halted")]
    assert len(halted) == 2  # every run halts and alerts, until an operator acts
    assert [b.state for b in _by_day(stack).values()] == [BackupState.COMPLETED] * 8

    review = _cli(stack, "backup", "plan-retention", "web-01")
    assert review.exit_code == 0, review.stderr
    plan = json.loads(review.stdout)
    assert "circuit breaker" in plan["halted"]
    stale = _cli(stack, "backup", "plan-retention", "web-01", "--apply", "0123456789ab")
    assert stale.exit_code == 2
    assert [b.state for b in _by_day(stack).values()] == [BackupState.COMPLETED] * 8
    applied = _cli(stack, "backup", "plan-retention", "web-01", "--apply", plan["plan"])
    assert applied.exit_code == 0, applied.stderr
    expired = [d["backup_id"] for d in plan["decisions"] if not d["keep"]]
    assert len(expired) >= 6  # all but the newest day's (and the newest verified) backup
    assert json.loads(applied.stdout)["applied"]["deleted"] == len(expired)
    soft = [b.backup_id for b in _by_day(stack).values() if b.state is BackupState.SOFT_DELETED]
    assert sorted(soft) == sorted(expired)
    with captured_events() as events:
        _run_to_day(stack, 8)  # and the next run is no longer halted
    assert not [e for e in events if e["event"] == "RetentionApplied" and e.get("halted")]


def _manual(stack: Stack, body: dict[str, object]) -> func.HttpResponse:
    request = func.HttpRequest(
        method="POST",
        url="http://localhost/api/backups/web-01",
        body=json.dumps(body).encode(),
    )
    return stack.host.call_http("start_backup", request)


def test_manual_backups_keep_their_own_days_whatever_the_schedule_deletes(stack: Stack) -> None:
    _run_to_day(stack, 0)
    stack.clock.advance(3600)
    assert _manual(stack, {"keepDays": 2}).status_code == 202
    stack.host.run_until_idle()
    stack.clock.advance(60)
    assert _manual(stack, {}).status_code == 202  # the default: 30 days
    stack.host.run_until_idle()
    short, default = sorted(
        (b for b in stack.services.catalog.list_backups(WEB) if b.manual), key=lambda b: b.slot
    )
    assert short.keep_until == short.taken_at + timedelta(days=2)
    assert default.keep_until == default.taken_at + timedelta(days=30)
    _run_to_day(stack, 4)  # four scheduled backups later: the 2-daily policy kept neither...
    assert _state(stack, default) is BackupState.COMPLETED
    assert _state(stack, short) is BackupState.SOFT_DELETED  # only its own date expired it
    # Retention reads the time from the app's clock, never from its input: a forged "now"
    # years ahead expires nothing more.
    apply_retention({"vm_key": WEB, "now": "2031-01-01T00:00:00+00:00"}, stack.services)
    assert _state(stack, default) is BackupState.COMPLETED


def _state(stack: Stack, backup: Backup) -> BackupState:
    found = stack.services.catalog.get_backup(backup.vm_key, backup.backup_id)
    assert found is not None
    return found.state


@pytest.mark.parametrize("keep", [0, -1, 3651, "5", 2.5, True, None])
def test_a_bad_keep_days_is_refused_and_records_nothing(stack: Stack, keep: object) -> None:
    response = _manual(stack, {"keepDays": keep})
    assert response.status_code == 400
    assert json.loads(response.get_body())["error"]["code"] == "InvalidKeepDays"
    stack.host.run_until_idle()
    assert stack.services.catalog.list_backups(WEB) == []
