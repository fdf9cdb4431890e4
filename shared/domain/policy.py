"""The `backup-policy` VM tag: parse, validate, format, and read the legacy azlin JSON tag.

The tag value is a short `key=value;` list, e.g.
`schedule=0 2 * * *;daily=7;weekly=4;monthly=12;replicate=westus2;verify=daily;drtest=weekly`.
A bad tag must stop the VM from being backed up or pruned (fail safe), so every problem raises a
`PolicyError` whose one-line message names the key and value at fault.

`format_policy` writes every key, defaults included (only an absent `replicate` is left out), so a
tag reads in the portal exactly as it acts and keeps its meaning if a default ever changes. The
schedule is capped at 100 characters so that this full form always fits Azure's 256.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from shared.domain.models import POLICY_TAG as POLICY_TAG
from shared.domain.models import VM
from shared.domain.names import REGION_PATTERN
from shared.domain.schedule import cron_problem

LEGACY_TAG = "azlin:backup-schedule"
TAG_VALUE_LIMIT = 256  # Azure's limit for a tag value
SCHEDULE_LIMIT = 100
_ODD_CHARACTER = re.compile(r"[^\x20-\x7e]")
MAX_COUNT = 1000
_COUNT_TEXT = re.compile(r"[0-9]{1,4}")
_SIMPLE_DAILY = re.compile(r"([0-9]{1,2}) ([0-9]{1,2}) \* \* \*")


class PolicyError(ValueError):
    """A policy tag the app will not act on; the message is one line naming key and value."""


class Cadence(StrEnum):
    """How often a VM's backups are verified or DR-tested."""

    OFF = "off"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


@dataclasses.dataclass(frozen=True)
class BackupPolicy:
    """What one VM's tag asks for. Construction validates, so every instance is a valid policy."""

    schedule: str = "0 2 * * *"  # 5-field cron, UTC: when backups are taken
    daily: int = 7  # keep the first backup of each of this many most recent days with backups
    weekly: int = 4  # ... of this many most recent ISO weeks with backups
    monthly: int = 12  # ... of this many most recent calendar months with backups
    replicate: str | None = None  # region to copy backups to, or None for no replication
    verify: Cadence = Cadence.DAILY  # how often to test-restore a backup (unverified = a hope)
    drtest: Cadence = Cadence.OFF  # how often to restore the VM in its DR region (creates VMs)

    def __post_init__(self) -> None:
        # Normalise what has one meaning but many spellings, so equal policies compare equal.
        object.__setattr__(self, "schedule", _schedule("schedule", self.schedule))
        for key in ("daily", "weekly", "monthly"):
            _count(key, getattr(self, key))
        if self.daily == self.weekly == self.monthly == 0:
            raise PolicyError("daily=0, weekly=0, monthly=0: would keep nothing; keep at least one")
        if self.replicate is not None:
            object.__setattr__(self, "replicate", _region("replicate", self.replicate))
        for key in ("verify", "drtest"):
            object.__setattr__(self, key, _cadence(key, getattr(self, key)))

    def describe(self) -> str:
        """The policy as a sentence, for `backupdr backup show` and reports."""
        match = _SIMPLE_DAILY.fullmatch(self.schedule)
        when = (
            f"at {int(match[2]):02d}:{int(match[1]):02d} UTC daily"
            if match
            else f"on cron '{self.schedule}' (UTC)"
        )
        where = f"replicates to {self.replicate}" if self.replicate else "does not replicate"
        verify = "never verifies" if self.verify is Cadence.OFF else f"verifies {self.verify}"
        drtest = "no DR tests" if self.drtest is Cadence.OFF else f"DR tests {self.drtest}"
        return (
            f"backs up {when}; keeps {self.daily} daily, {self.weekly} weekly, "
            f"{self.monthly} monthly; {where}; {verify}; {drtest}"
        )


def _schedule(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"{key}={value!r}: must be a cron expression")
    _check_characters(value)
    cron = " ".join(value.split()).lower()  # cron names (JAN, MON) are case-insensitive
    if len(cron) > SCHEDULE_LIMIT:
        raise PolicyError(f"{key}={value!r}: longer than {SCHEDULE_LIMIT} characters")
    problem = cron_problem(cron)
    if problem:
        raise PolicyError(f"{key}={value!r}: {problem}")
    return cron


def _count(key: str, value: object) -> int:
    if isinstance(value, str) and _COUNT_TEXT.fullmatch(value):
        value = int(value)
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise PolicyError(f"{key}={value!r}: must be a whole number from 0 to {MAX_COUNT}")
    return value


def _region(key: str, value: object) -> str:
    region = value.strip().lower() if isinstance(value, str) else value
    if not isinstance(region, str) or not REGION_PATTERN.fullmatch(region):
        raise PolicyError(f"{key}={value!r}: must be an Azure region name like westus2")
    return region


def _cadence(key: str, value: object) -> Cadence:
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in set(Cadence):
        raise PolicyError(f"{key}={value!r}: must be one of {'|'.join(Cadence)}")
    return Cadence(text)


# The tag's keys in canonical order, each with the check that turns its text into a field value.
_FIELDS: dict[str, Callable[[str, object], object]] = {
    "schedule": _schedule,
    "daily": _count,
    "weekly": _count,
    "monthly": _count,
    "replicate": _region,
    "verify": _cadence,
    "drtest": _cadence,
}


def _check_length(text: str) -> None:
    if len(text) > TAG_VALUE_LIMIT:
        raise PolicyError(f"value is {len(text)} characters; Azure allows {TAG_VALUE_LIMIT}")


def _check_characters(text: str) -> None:
    """Printable ASCII only: a tab, a newline or a no-break space pasted into a tag reads as a
    plain space in the portal, and would make the tag mean something other than it shows."""
    odd = _ODD_CHARACTER.search(text)
    if odd:
        raise PolicyError(
            f"character U+{ord(odd[0]):04X} at position {odd.start()}: only printable ASCII "
            "(letters, digits, punctuation and plain spaces) is allowed"
        )


def parse_policy(text: str) -> BackupPolicy:
    """The policy a `backup-policy` tag value asks for; absent keys take their defaults."""
    _check_length(text)
    _check_characters(text)
    values: dict[str, Any] = {}
    for segment in text.split(";"):
        if not segment.strip():
            continue  # a trailing or doubled `;` is harmless
        key, sep, raw = (part.strip() for part in segment.partition("="))
        key = key.lower()
        if not sep or not key:
            raise PolicyError(f"segment {segment.strip()!r}: expected key=value")
        if key not in _FIELDS:
            raise PolicyError(_unknown_key(key))
        if key in values:
            raise PolicyError(f"duplicate key {key!r}")
        values[key] = _FIELDS[key](key, raw)
    return BackupPolicy(**values)


def _unknown_key(key: str) -> str:
    known = ", ".join(_FIELDS)
    close = difflib.get_close_matches(key, _FIELDS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r} ({hint}known: {known})"


def format_policy(policy: BackupPolicy) -> str:
    """The canonical tag value: every key in `_FIELDS` order, `replicate` only when set."""
    pairs = [(key, getattr(policy, key)) for key in _FIELDS]
    return ";".join(f"{key}={value}" for key, value in pairs if value is not None)


def policy_from_tags(tags: Mapping[str, str]) -> BackupPolicy | None:
    """A VM's policy from its tags: `backup-policy`, else the legacy JSON tag, else None.

    Tag names are matched case-insensitively, as Azure does. A legacy tag with `enabled: false`
    means no policy (None); a malformed one raises, so the VM is reported, not silently skipped.
    """
    by_name = {name.lower(): value for name, value in tags.items()}
    if POLICY_TAG in by_name:
        return parse_policy(by_name[POLICY_TAG])
    if LEGACY_TAG in by_name:
        return _legacy_policy(by_name[LEGACY_TAG])
    return None


# Legacy JSON field -> policy field.
_LEGACY_COUNTS = {
    "daily_retention": "daily",
    "weekly_retention": "weekly",
    "monthly_retention": "monthly",
}


def _legacy_policy(text: str) -> BackupPolicy | None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise PolicyError(f"{LEGACY_TAG}: not valid JSON ({error.msg} at {error.pos})") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{LEGACY_TAG}: must be a JSON object, not {type(data).__name__}")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PolicyError(f"enabled={enabled!r}: must be true or false")
    if not enabled:
        return None
    values: dict[str, Any] = {
        field: _count(legacy, data[legacy])
        for legacy, field in _LEGACY_COUNTS.items()
        if legacy in data
    }
    cross_region = data.get("cross_region_enabled", False)
    if not isinstance(cross_region, bool):
        raise PolicyError(f"cross_region_enabled={cross_region!r}: must be true or false")
    if cross_region:
        values["replicate"] = _region("target_region", data.get("target_region"))
    return BackupPolicy(**values)


@dataclasses.dataclass(frozen=True)
class Regions:
    """The regions a deployment serves, as its infra made them (app settings): VMs in `backup`
    regions are backed up, replicas and DR tests go to `dr` regions. None: not told, not
    checked (a unit of code with no deployment behind it)."""

    backup: frozenset[str] | None = None
    dr: frozenset[str] | None = None


def policy_for(vm: VM, regions: Regions) -> BackupPolicy | None:
    """A VM's policy, also checked against the VM and the deployment (fail safe: a problem is
    reported, nothing is backed up): a replica in the VM's own region is no disaster recovery,
    and a region the deployment does not serve has no backup or DR-test group to work in."""
    policy = policy_from_tags(vm.tags)
    if policy is None:
        return None
    own = vm.location.lower()
    if policy.replicate == own:
        raise PolicyError(
            f"replicate={policy.replicate!r}: is the VM's own region; pick another region"
        )
    if regions.backup is not None and own not in regions.backup:
        raise PolicyError(
            f"the VM is in {own}, a region this deployment does not back up "
            f"(backup regions: {_listed(regions.backup)})"
        )
    if policy.replicate and regions.dr is not None and policy.replicate not in regions.dr:
        raise PolicyError(
            f"replicate={policy.replicate!r}: not a DR region of this deployment "
            f"(DR regions: {_listed(regions.dr)})"
        )
    return policy


def _listed(regions: frozenset[str]) -> str:
    return ", ".join(sorted(regions)) or "none"
