"""Claims: which orchestration is doing a piece of work, so overlapping runs start it once.

Durable on Azure Storage deduplicates client starts only; a sub-orchestration started under a
running instance's id replaces it and strands its parent. So the app never asks the engine
whether work is under way: it claims the work in the catalog first (see `BackupCatalog.claim`).
"""

from __future__ import annotations

from datetime import timedelta

from shared.activities.common import Payload
from shared.services import Services

# No claimed workflow lives this long (snapshots time out in an hour, copies in 30 hours): an
# older claim lost its owner (a terminated instance) and may be taken over.
STALE_AFTER = timedelta(days=2)


def claim_work(payload: Payload, svc: Services) -> Payload:
    """Take `work` for `owner`; `claimed` is False when another instance holds it."""
    claim = svc.catalog.claim(
        payload["vm_key"],
        payload["work"],
        payload["owner"],
        now=svc.clock.now(),
        stale_after=STALE_AFTER,
    )
    return {"claimed": claim.owner == payload["owner"], "owner": claim.owner}


def release_claim(payload: Payload, svc: Services) -> Payload:
    """Let go of work this orchestration claimed (its slot's backup, a replication)."""
    svc.catalog.release(payload["vm_key"], payload["work"], payload["owner"])
    return {"released": payload["work"]}
