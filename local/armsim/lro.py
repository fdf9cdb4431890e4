"""Long-running operation replies: 202 + Location, Azure-AsyncOperation, deletes, and polls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from local.armsim.errors import ArmError
from local.armsim.protocol import Reply, Request
from local.armsim.state import Operation, Resource, World

FAILED_OPERATION = ("InternalOperationError", "The long-running operation failed (injected fault).")


def injected_failure() -> ArmError:
    code, message = FAILED_OPERATION
    return ArmError(400, code, message)


def location_reply(
    request: Request, world: World, operation: Operation, body: Any = None, status: int = 202
) -> Reply:
    """`status` with a Location to poll and Retry-After = virtual seconds left."""
    headers = {
        "Location": operation.url(request.base_url, monitor=True),
        "Retry-After": str(operation.retry_after(world.now())),
    }
    return Reply(status, body, headers)


def async_headers(request: Request, world: World, operation: Operation) -> dict[str, str]:
    """Azure-AsyncOperation (what Compute VM and Network PUTs answer) and Retry-After."""
    return {
        "Azure-AsyncOperation": operation.url(request.base_url, monitor=False),
        "Retry-After": str(operation.retry_after(world.now())),
    }


def delete_reply(
    request: Request,
    world: World,
    resource: Resource | None,
    namespace: str,
    seconds: float,
    on_deleted: Callable[[], None] | None = None,
) -> Reply:
    """204 when the resource does not exist; else 202 + Location, gone when the clock allows.

    A delete that takes time is varied (see `Durations`); the resource shows `Deleting` until
    it is gone.
    """
    if resource is None:
        return Reply(204)
    error = injected_failure() if _fault(world, request, resource, "fail-operation") else None
    resource.deleting = error is None

    def finish() -> None:
        if error is not None:
            return
        world.remove(resource.id)
        if on_deleted is not None:
            on_deleted()

    operation = world.start_operation(
        resource.ref.subscription,
        namespace,
        resource.location,
        request.api_version,
        world.varied(seconds, f"delete:{resource.id.lower()}") if seconds else 0.0,
        on_done=finish,
        error=error,
        expected_seconds=seconds or None,
    )
    return location_reply(request, world, operation)


def _fault(world: World, request: Request, resource: Resource, kind: str) -> bool:
    return (
        world.faults.take(request.operation, [request.path], resource.location, frozenset({kind}))
        is not None
    )


def poll(world: World, request: Request, args: dict[str, str]) -> Reply:
    """GET an operation: Location style (monitor=true) or Azure-AsyncOperation status JSON."""
    operation = world.operations.get(args["operation"])
    if operation is None or operation.subscription.lower() != args["sub"].lower():
        raise ArmError(404, "NotFound", f"Operation '{args['operation']}' was not found.")
    now = world.now()
    running = now < operation.done_at
    if request.query.get("monitor", "").lower() == "true":
        if running:
            return location_reply(request, world, operation)
        if operation.error is not None:
            raise operation.error
        return Reply(200, operation.result() if operation.result is not None else None)
    status = "InProgress" if running else ("Failed" if operation.error else "Succeeded")
    body: dict[str, Any] = {
        "name": operation.id,
        "status": status,
        "startTime": operation.started.isoformat(),
    }
    if not running:
        body["endTime"] = operation.done_at.isoformat()
    if status == "Failed" and operation.error is not None:
        body["error"] = operation.error.body()["error"]
    headers = {"Retry-After": str(operation.retry_after(now))} if running else {}
    return Reply(200, body, headers)
