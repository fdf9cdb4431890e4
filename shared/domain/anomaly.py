"""Changes far outside a VM's own habits: the mass-encryption pattern of ransomware.

Ransomware rewrites a disk's data with random-looking bytes: the next backup's changed bytes
jump far above what the VM usually writes between backups, and sampled blocks read as random.
Each measure is judged against the VM's own recent history, so a busy database and a quiet
web server each get their own normal.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

HISTORY_DAYS = 30
MIN_HISTORY = 3  # fewer earlier measures than this: no normal to compare with yet
# Below this a jump is ordinary (a package update on an idle VM): 1 GiB, whatever the median.
CHURN_FLOOR_BYTES = 1024**3
RANDOM_ENTROPY = 7.9  # bits per byte: encrypted (or compressed) data
USUAL_ENTROPY_CEILING = 7.5  # a VM whose data usually read above this encrypts at rest


def churn_anomaly(changed: int, history: Sequence[int], factor: int) -> str | None:
    """Why `changed` bytes is an anomaly against the earlier backups' changed bytes, or None."""
    if len(history) < MIN_HISTORY:
        return None
    usual = median(history)
    if changed <= factor * max(usual, CHURN_FLOOR_BYTES):
        return None
    return (
        f"{_gib(changed)} changed since the previous backup, {changed / max(usual, 1):.0f}x "
        f"the VM's {HISTORY_DAYS}-day median of {_gib(usual)}"
    )


def entropy_anomaly(entropy: float, history: Sequence[float]) -> str | None:
    """Why data sampled at `entropy` bits per byte is an anomaly for a VM whose earlier
    verifications read `history`, or None."""
    if len(history) < MIN_HISTORY or entropy < RANDOM_ENTROPY:
        return None
    usual = median(history)
    if usual >= USUAL_ENTROPY_CEILING:
        return None
    return (
        f"sampled data reads as random ({entropy:.2f} bits per byte) where the VM's "
        f"{HISTORY_DAYS}-day median is {usual:.2f}"
    )


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"
