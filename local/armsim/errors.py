"""The error a handler raises to answer with Azure's `{"error": {"code", "message"}}` body."""

from __future__ import annotations


class ArmError(Exception):
    """An ARM error response: HTTP status, Azure error code and message (plus extra headers)."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def not_found(kind: str, name: str, resource_group: str) -> ArmError:
    """Azure's 404 for a missing resource in a group (the wording ARM uses)."""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{kind}/{name}' under resource group '{resource_group}' was not found.",
    )


def bad_request(message: str, code: str = "InvalidParameter") -> ArmError:
    return ArmError(400, code, message)
