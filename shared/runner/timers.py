"""Timer triggers on the virtual clock: NCRONTAB schedules (six fields, seconds first).

A schedule may name an app setting as `%NAME%`, as the Functions host allows; it is resolved from
the settings handed to the host, so a test or the demo can shorten a fleet's cadence.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from azure.functions.timer import TimerRequest
from croniter import croniter

from .functions import ClientFunction
from .history import stamp


class HostConfigError(ValueError):
    """A timer schedule, or a host.json value naming an app setting, cannot be used."""


def resolve_setting(value: str, settings: Mapping[str, str], what: str) -> str:
    """Replace a whole-value `%NAME%` reference with the app setting NAME."""
    if len(value) > 2 and value.startswith("%") and value.endswith("%"):
        name = value[1:-1]
        if name not in settings:
            raise HostConfigError(f"{what} refers to app setting {name}, which is not set")
        return settings[name]
    return value


class TimerSchedule:
    """One timer function and the next moments its schedule fires."""

    def __init__(self, function: ClientFunction, settings: Mapping[str, str]) -> None:
        self.function = function
        what = f"timer trigger {function.name!r}"
        self.expression = resolve_setting(str(function.settings["schedule"]), settings, what)
        fields = self.expression.split()
        if len(fields) != 6 or not croniter.is_valid(self.expression, second_at_beginning=True):
            raise HostConfigError(
                f"{what}: schedule {self.expression!r} is not a 6-field NCRONTAB expression "
                "(second minute hour day month day-of-week)"
            )
        self.last: datetime | None = None

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after `moment`."""
        result: datetime = croniter(self.expression, moment, second_at_beginning=True).get_next(
            datetime
        )
        return result

    def request(self, now: datetime) -> TimerRequest:
        """The TimerRequest the worker hands the function when it fires at `now`."""
        last = stamp(self.last) if self.last else None
        self.last = now
        return TimerRequest(
            past_due=False,
            schedule_status={
                "Last": last,
                "Next": stamp(self.next_after(now)),
                "LastUpdated": last,
            },
            schedule={"AdjustForDST": True},
        )
