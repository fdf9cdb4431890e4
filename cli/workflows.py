"""Running the app's own workflows from the command line, with a progress bar.

The CLI never re-implements a workflow: it starts the app's orchestrators in the local durable
host (the same executor tests use), on this run's clock, and waits until they are done.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from cli.context import Run
from shared.domain.models import AuditEntry
from shared.orchestrations.durable import failure_reason
from shared.runner import InstanceStatus, LocalDurableHost
from shared.services import install

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
REFRESH_SECONDS = 0.2
DONE = ("Completed", "Failed", "Terminated")


@dataclass(frozen=True)
class Start:
    """One orchestration to run: the orchestrator's name, its instance id and its input."""

    orchestrator: str
    instance_id: str
    payload: dict[str, Any]


def run_workflows(
    run: Run,
    starts: Sequence[Start],
    *,
    label: str,
    max_parallel: int | None = None,
    children: tuple[str, int] | None = None,
) -> list[InstanceStatus]:
    """Run `starts` to the end, at most `max_parallel` at once; their final statuses in order.

    `children` (an orchestrator's name, how many): the progress counts those sub-orchestrations
    as they finish (a region failover's VMs) instead of the starts.
    """
    from function_app import build_app

    _audit_requests(run, starts)
    batch = max_parallel or max(len(starts), 1)
    install(run.services)
    try:
        with (
            LocalDurableHost(
                build_app(), run.clock, host_json=HOST_JSON, settings=run.host_settings
            ) as host,
            _progress() as progress,
            ThreadPoolExecutor(1, thread_name_prefix="durable-host") as driver,
        ):
            task = progress.add_task(label, total=children[1] if children else len(starts))
            for first in range(0, len(starts), batch):
                for start in starts[first : first + batch]:
                    host.start(start.orchestrator, start.payload, start.instance_id)
                working = driver.submit(host.run_until_idle)
                while not working.done():
                    progress.update(task, completed=_finished(host, starts, children))
                    wait([working], timeout=REFRESH_SECONDS)
                working.result()
                progress.update(task, completed=_finished(host, starts, children))
            return [host.status(start.instance_id) for start in starts]
    finally:
        install(None)


_VERSION = re.compile(r"_v\d+$")


def _audit_requests(run: Run, starts: Sequence[Start]) -> None:
    """Note in the audit log who asked for each workflow: the operator, as the token ARM
    takes from them says (the workflow's own calls are audited as whoever makes them)."""
    who = run.operator.gateway.principal()
    for start in starts:
        vm_key = start.payload.get("vm_key")
        run.services.catalog.audit(
            AuditEntry(
                at=run.now,
                action="request",
                resource_id=vm_key or start.instance_id,
                result="ok",
                vm_key=vm_key,
                # What was asked for, whichever version runs it: `vm_backup` for `vm_backup_v2`.
                operation=_VERSION.sub("", start.orchestrator),
                identity=who,
                detail=f"from the backupdr CLI, as instance {start.instance_id}",
            )
        )


def _progress() -> Progress:
    """A bar on stderr while the workflows run, gone when they end; none where stderr is not a
    terminal (a log, or a script reading `-o json` output with stderr merged into it)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def _finished(
    host: LocalDurableHost, starts: Sequence[Start], children: tuple[str, int] | None = None
) -> int:
    if children is not None:
        return sum(i.name == children[0] and i.runtime_status in DONE for i in host.instances())
    statuses = {status.instance_id: status.runtime_status for status in host.instances()}
    return sum(statuses.get(start.instance_id) in DONE for start in starts)


def outcome(status: InstanceStatus) -> dict[str, Any]:
    """An instance's result as the workflow returned it, or why the workflow itself failed."""
    output = status.output if isinstance(status.output, dict) else {"result": status.output}
    if status.runtime_status != "Completed":
        return {
            "state": "failed",
            "error": failure_reason(str(status.output)) or status.runtime_status,
            "instance": status.instance_id,
        }
    return {"instance": status.instance_id, **output}


def succeeded(result: dict[str, Any]) -> bool:
    return result.get("state") == "completed"
