"""What a VM's measured churn costs: incremental snapshots store only changed blocks.

Each backup adds its disks' changed bytes to snapshot storage (until retention lets them go),
so a month of backups adds about 30 days of the VM's daily change. The price is the operator's:
incremental snapshots are billed per GiB-month used, by region and redundancy
(azure.microsoft.com/pricing/details/managed-disks, "Snapshots").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

GIB = 1024**3
DAYS_PER_MONTH = 30
# USD per GiB-month of an LRS incremental snapshot in East US when this was written.
DEFAULT_PRICE_PER_GIB_MONTH = 0.05


@dataclass(frozen=True)
class ChurnForecast:
    changed_gib_per_day: float
    added_gib_per_month: float
    added_cost_per_month: float


def forecast(
    changes: Iterable[tuple[datetime, int]], price_per_gib_month: float
) -> ChurnForecast | None:
    """From (taken at, changed bytes) of a VM's backups: its mean change per day that had
    backups, and what a month of it adds; None when nothing was measured."""
    by_day: dict[object, int] = {}
    for taken_at, changed in changes:
        by_day[taken_at.date()] = by_day.get(taken_at.date(), 0) + changed
    if not by_day:
        return None
    per_day = sum(by_day.values()) / len(by_day) / GIB
    per_month = per_day * DAYS_PER_MONTH
    return ChurnForecast(
        round(per_day, 2), round(per_month, 1), round(per_month * price_per_gib_month, 2)
    )
