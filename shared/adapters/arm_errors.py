"""Azure SDK errors translated into the app's few errors, with messages safe to store.

Workflows decide what to do from the class alone (retry a transient error, record a permanent
one, report missing capacity), so the class must follow ARM's status and error code. Messages
are built only from the operation, the ARM error code and message, then sanitised: never from
the request, its headers or a URL with a query string.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ODataV4Format,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import (
    AddressUnavailableError,
    BackupDrError,
    CapacityError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)

# ARM error codes that mean "no capacity or quota for this request", wherever they appear.
CAPACITY_CODES = frozenset(
    {
        "allocationfailed",
        "zonalallocationfailed",
        "overconstrainedallocationrequest",
        "overconstrainedzonalallocationrequest",
        "skunotavailable",
        "quotaexceeded",
    }
)
# ARM answers a core or disk quota overrun with this broad code; only quota makes it capacity.
QUOTA_CODE = "operationnotallowed"
# ARM error codes (other than 5xx) of requests that succeed when simply sent again later.
TRANSIENT_CODES = frozenset({"retryableerror", "anotheroperationinprogress", "operationpreempted"})
NOT_FOUND_CODES = frozenset({"resourcenotfound", "notfound", "resourcegroupnotfound"})
# A static private IP address the NIC cannot have (Microsoft.Network's 400 codes).
ADDRESS_CODES = frozenset(
    {
        "privateipaddressisallocated",
        "privateipaddressnotinsubnet",
        "privateipaddressinreservedrange",
    }
)


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Run SDK calls, raising the app's error for any Azure SDK error.

    The SDK error is dropped from the chain (`from None`): its text and traceback carry the
    request URL and body, which must not reach logs or the durable history.
    """
    try:
        yield
    except AzureError as error:
        raise translate(error, operation) from None


def translate(error: AzureError, operation: str) -> BackupDrError:
    """The app's error for one Azure SDK error raised while doing `operation`."""
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return TransientError(f"{operation}: Azure did not answer ({type(error).__name__})")
    if not isinstance(error, HttpResponseError):
        return PermanentError(f"{operation}: {type(error).__name__}")
    if error.response is None:  # refused before any request, e.g. no credential could sign it
        return PermanentError(f"{operation}: {type(error).__name__}: {error.message}")
    status = error.status_code
    codes = _codes(error.error)
    message = _describe(operation, status, error.error)
    if status == 429:
        headers = getattr(error.response, "headers", None) or {}
        return ThrottledError(message, retry_after=retry_after_seconds(headers))
    if codes & CAPACITY_CODES or (QUOTA_CODE in codes and "quota" in message.lower()):
        return CapacityError(message)
    if codes & ADDRESS_CODES:
        return AddressUnavailableError(message)
    if isinstance(error, ResourceNotFoundError) or status == 404 or codes & NOT_FOUND_CODES:
        return NotFoundError(message)
    if (status is not None and status >= 500) or status == 408 or codes & TRANSIENT_CODES:
        return TransientError(message)
    return PermanentError(message)


def _codes(error: ODataV4Format | None) -> set[str]:
    """The error's code and its details' codes, lower case (ARM nests the telling one)."""
    if error is None:
        return set()
    found = {error.code.lower()} if error.code else set()
    for detail in error.details:
        found |= _codes(detail)
    return found


def _describe(operation: str, status: int | None, error: ODataV4Format | None) -> str:
    # 2xx in an HttpResponseError: the long-running operation itself ended Failed or Canceled.
    what = "operation failed" if (status or 0) < 300 else f"HTTP {status}"
    if error is None:
        return f"{operation}: {what}"
    details = "; ".join(f"{d.code}: {d.message}" for d in error.details if d.code or d.message)
    text = f"{operation}: {what}: {error.code}: {error.message}"
    return f"{text} ({details})" if details else text


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), if Azure sent one."""
    raw = headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
