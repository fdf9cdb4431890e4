"""SDK errors become the app's errors: the right class for ARM's answer, and no secrets in text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import HttpRequest, RequestsTransportResponse
from azure.mgmt.core.exceptions import ARMErrorFormat

from shared.adapters.arm_errors import retry_after_seconds, translate, translated
from shared.errors import (
    CapacityError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
    sanitise,
)

SNAPSHOT_URL = (
    "https://management.azure.com/subscriptions/0000/resourceGroups/rg-backups-eastus"
    "/providers/Microsoft.Compute/snapshots/snap-1?api-version=2026-03-02"
)
SAS_URL = (
    "https://md-abc.blob.core.windows.net/xyz/abcd?sv=2018-03-28&sr=b&sp=r&sig=c2VjcmV0LXNpZw%3D%3D"
)
JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQifQ.c2lnbmF0dXJl"
# The formats Azure uses: a storage account key (64 bytes, base64) and an Entra client secret.
STORAGE_KEY = "Zm9vYmFyYmF6cXV4" * 5 + "Zm9vYmFyYmE9PQ=="
CLIENT_SECRET = "Abc8Q~aBcD1234567890_xYzABCdefGHIjklMNOp"


def arm_error(
    status: int,
    code: str | None = "Conflict",
    message: str = "It went wrong.",
    *,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    error_class: type[HttpResponseError] = HttpResponseError,
    body: Any = None,
) -> HttpResponseError:
    """A real SDK error around a real azure-core response, as the generated clients raise it."""
    raw = requests.Response()
    raw.status_code = status
    raw.reason = "Reason"
    raw.headers.update({"Content-Type": "application/json", **(headers or {})})
    if body is None:
        error: dict[str, Any] = {"code": code, "message": message}
        if details:
            error["details"] = details
        body = {"error": error}
    raw._content = json.dumps(body).encode()
    response = RequestsTransportResponse(HttpRequest("PUT", SNAPSHOT_URL), raw)
    return error_class(response=response, error_format=ARMErrorFormat)


CLASS_CASES = [
    pytest.param(arm_error(500, "InternalServerError"), TransientError, id="500 is transient"),
    pytest.param(arm_error(503, "ServiceUnavailable"), TransientError, id="503 is transient"),
    pytest.param(arm_error(408, "RequestTimeout"), TransientError, id="408 is transient"),
    pytest.param(
        arm_error(409, "AnotherOperationInProgress"),
        TransientError,
        id="a conflicting operation in progress is transient",
    ),
    pytest.param(
        arm_error(404, "ResourceNotFound", error_class=ResourceNotFoundError),
        NotFoundError,
        id="404 is not found",
    ),
    pytest.param(
        arm_error(404, "ResourceGroupNotFound"), NotFoundError, id="missing group is not found"
    ),
    pytest.param(arm_error(409, "AllocationFailed"), CapacityError, id="AllocationFailed"),
    pytest.param(arm_error(409, "SkuNotAvailable"), CapacityError, id="SkuNotAvailable"),
    pytest.param(
        arm_error(
            200,
            "OverconstrainedAllocationRequest",
            details=[{"code": "ZonalAllocationFailed", "message": "No capacity in zone 2."}],
        ),
        CapacityError,
        id="a failed operation with a capacity code in its details",
    ),
    pytest.param(
        arm_error(
            409, "OperationNotAllowed", "Operation would exceed the Total Regional Cores quota."
        ),
        CapacityError,
        id="OperationNotAllowed about quota is capacity",
    ),
    pytest.param(
        arm_error(409, "OperationNotAllowed", "Disk is attached to a running VM."),
        PermanentError,
        id="OperationNotAllowed for another reason is permanent",
    ),
    pytest.param(arm_error(400, "InvalidParameter"), PermanentError, id="400 is permanent"),
    pytest.param(
        arm_error(403, "AuthorizationFailed", error_class=ClientAuthenticationError),
        PermanentError,
        id="403 is permanent",
    ),
    pytest.param(
        arm_error(200, "OperationFailed"),
        PermanentError,
        id="a failed long-running operation is permanent",
    ),
    pytest.param(
        arm_error(200, body={"status": "Failed"}),
        PermanentError,
        id="a failed operation without an error body is permanent",
    ),
    pytest.param(
        ServiceRequestError("Connection refused"), TransientError, id="no connection is transient"
    ),
    pytest.param(
        ServiceResponseError("Connection reset by peer"),
        TransientError,
        id="a dropped response is transient",
    ),
    pytest.param(
        ClientAuthenticationError("ManagedIdentityCredential unavailable"),
        PermanentError,
        id="a credential that cannot get a token is permanent",
    ),
]


class TestTranslate:
    """Each ARM answer maps to the class the workflows act on."""

    @pytest.mark.parametrize(("error", "expected"), CLASS_CASES)
    def test_error_becomes_the_expected_class(
        self, error: AzureError, expected: type[Exception]
    ) -> None:
        translated_error = translate(error, "create snapshot rg/snap-1")
        assert type(translated_error) is expected

    def test_throttled_error_carries_retry_after_seconds(self) -> None:
        error = translate(
            arm_error(429, "TooManyRequests", headers={"Retry-After": "17"}), "list VMs"
        )
        assert isinstance(error, ThrottledError)
        assert error.retry_after == 17.0

    def test_throttled_error_without_header_has_no_retry_after(self) -> None:
        error = translate(arm_error(429, "TooManyRequests"), "list VMs")
        assert isinstance(error, ThrottledError)
        assert error.retry_after is None

    def test_message_names_operation_code_and_azure_message(self) -> None:
        error = translate(
            arm_error(409, "SkuNotAvailable", "Standard_D2s_v5 is not available in westus2."),
            "start vm rg-dr/dr-1-vm",
        )
        text = str(error)
        assert text.startswith("CapacityError: start vm ")
        assert "SkuNotAvailable: Standard_D2s_v5 is not available in westus2." in text

    def test_credential_failure_says_why_no_token_was_had(self) -> None:
        error = translate(
            ClientAuthenticationError("ManagedIdentityCredential: no identity endpoint"),
            "list VMs",
        )
        assert str(error) == (
            "PermanentError: list VMs: ClientAuthenticationError: "
            "ManagedIdentityCredential: no identity endpoint"
        )

    def test_message_leaves_out_the_request_url_and_headers(self) -> None:
        error = translate(
            arm_error(400, "InvalidParameter", headers={"x-ms-request-id": "req-123"}),
            "create snapshot rg/snap-1",
        )
        assert "api-version" not in str(error)
        assert "req-123" not in str(error)


SECRET_CASES = [
    pytest.param(f"The copy source {SAS_URL} is not readable.", "c2VjcmV0LXNpZw", id="SAS URL"),
    pytest.param(f"Header Authorization: Bearer {JWT} was rejected.", JWT, id="bearer token"),
    pytest.param(
        "Bad connection string DefaultEndpointsProtocol=https;AccountName=a;"
        "AccountKey=bXlzZWNyZXRrZXk=;EndpointSuffix=core.windows.net",
        "bXlzZWNyZXRrZXk=",
        id="account key",
    ),
    pytest.param(f"Storage key {STORAGE_KEY} is not valid.", STORAGE_KEY[:40], id="bare key"),
    pytest.param(
        f"AADSTS7000215: Invalid client secret provided: {CLIENT_SECRET}.",
        CLIENT_SECRET,
        id="client secret",
    ),
    pytest.param(
        "x-ms-copy-source-authorization: Bearer opaque.Token-123 was refused",
        "opaque.Token-123",
        id="copy-source authorization",
    ),
    pytest.param(
        'Token response {"access_token": "not-a-jwt.but.secret", "expires_in": 3599}',
        "not-a-jwt.but.secret",
        id="token in JSON",
    ),
    pytest.param(
        "Callback https://app.azurewebsites.net/runtime/webhooks/durabletask/instances/x"
        "?taskHub=h&connection=Storage&code=SystemKeyValue123== failed",
        "SystemKeyValue123",
        id="function system key in a URL",
    ),
    pytest.param(
        "Source https://acct.blob.core.windows.net/c/b?se=2026-12-03&sp=r&spr=https&sv=2022-11-02"
        "&sr=b&skoid=1&sktid=2&skt=3&ske=4&sks=b&skv=2022-11-02&sig=AbC%2Bsig%3D not found",
        "AbC%2Bsig",
        id="user-delegation SAS",
    ),
]


class TestSecretsStayOut:
    """Whatever Azure echoes back, the app's error text never carries a credential."""

    @pytest.mark.parametrize(("message", "secret"), SECRET_CASES)
    def test_secret_in_azure_message_is_masked(self, message: str, secret: str) -> None:
        error = translate(arm_error(400, "InvalidParameter", message), "create disk rg/d")
        assert secret not in str(error)
        assert "InvalidParameter" in str(error)

    @pytest.mark.parametrize(("message", "secret"), SECRET_CASES)
    def test_secret_in_error_details_is_masked(self, message: str, secret: str) -> None:
        error = translate(
            arm_error(200, "OperationFailed", details=[{"code": "Copy", "message": message}]),
            "copy snapshot",
        )
        assert secret not in str(error)


class TestTranslatedContext:
    """The context manager raises the app's error and drops the SDK error from the chain."""

    def test_sdk_error_leaves_as_app_error_without_cause(self) -> None:
        with pytest.raises(NotFoundError) as caught, translated("get snapshot rg/snap-1"):
            raise arm_error(404, "ResourceNotFound", error_class=ResourceNotFoundError)
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__

    def test_other_exceptions_pass_through_untouched(self) -> None:
        with pytest.raises(KeyError), translated("list VMs"):
            raise KeyError("not an Azure error")


class TestRetryAfter:
    """Retry-After comes as delta seconds or as an HTTP date."""

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            pytest.param({"Retry-After": "5"}, 5.0, id="seconds"),
            pytest.param({"Retry-After": "0"}, 0.0, id="zero"),
            pytest.param({}, None, id="absent"),
            pytest.param({"Retry-After": "soon"}, None, id="unreadable"),
        ],
    )
    def test_retry_after_is_read_from_headers(
        self, headers: dict[str, str], expected: float | None
    ) -> None:
        assert retry_after_seconds(headers) == expected

    def test_retry_after_as_http_date_counts_seconds_from_now(self) -> None:
        later = datetime.now(UTC) + timedelta(seconds=120)
        seconds = retry_after_seconds({"Retry-After": format_datetime(later, usegmt=True)})
        assert seconds is not None
        assert 100 < seconds <= 120


def test_what_is_not_a_secret_keeps_its_words() -> None:
    """Codes, resource ids and ARM's own wording stay readable: only credentials go."""
    message = (
        "HTTP 403: AuthorizationFailed: The client 'c' does not have authorization to perform "
        "action 'Microsoft.Compute/snapshots/write' over scope '/subscriptions/00000000-0000-"
        "0000-0000-000000000001/resourceGroups/rg-backups-eastus/providers/Microsoft.Compute/"
        "snapshots/snap-web-01-os-20261110t020000z'; InvalidAuthenticationTokenTenant: The "
        "access token is from the wrong issuer"
    )
    assert sanitise(message) == message
