"""The few errors the ports raise; adapters translate SDK errors into these.

Messages are sanitised before they get here: they never carry tokens, SAS URLs, keys or
connection strings (`sanitise`). The class name leads every message, because the durable
boundary keeps only the text of an activity's exception.
"""

from __future__ import annotations

import re


class BackupDrError(Exception):
    """Base of the app's errors; `str()` is safe to log and store, and `reason` is the same
    text without the class name, for people (the CLI's `error:` line)."""

    def __init__(self, message: str) -> None:
        self.reason = sanitise(message)
        super().__init__(f"{type(self).__name__}: {self.reason}")


class TransientError(BackupDrError):
    """Worth retrying as it is: a 5xx, a timeout, a dropped connection."""


class ThrottledError(TransientError):
    """Azure answered 429; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BusyError(TransientError):
    """The resource is busy with another request of the same kind: send it again once that one
    is done (e.g. a Run Command while another still runs in the guest)."""


class PermanentError(BackupDrError):
    """Retrying the same request will not help (bad request, forbidden, failed operation)."""


class NotFoundError(PermanentError):
    """The resource does not exist."""


class CapacityError(PermanentError):
    """Azure has no capacity for the request (AllocationFailed, SkuNotAvailable, quota)."""


class AddressUnavailableError(PermanentError):
    """A static private IP address Azure refuses for a NIC: held by another IP configuration
    (PrivateIPAddressIsAllocated), outside the subnet (PrivateIPAddressNotInSubnet) or in its
    reserved range (PrivateIPAddressInReservedRange). The NIC can take a dynamic one instead."""


# What leaves the app in an error (stored, returned, shown) keeps Azure's code and its words but
# no credential, whatever format Azure or a library echoes it in. URLs lose their whole query
# string (SAS tokens, function keys in `code=`); values named like a secret, tokens after an
# authorization scheme, JWTs, storage keys and client secrets are masked.
_NAME = r"[\w-]*(?:key|secret|password|pwd|token|signature|sig|credential)[\w-]*"
_SECRETS = [
    (re.compile(r"(\bhttps?://[^\s?#\"'<>]+)[?#][^\s\"'<>]*", re.I), r"\1?***"),
    (re.compile(rf"\b({_NAME}=)[^\s;&,\"'<>]+", re.I), r"\1***"),  # AccountKey=..., sig=...
    (re.compile(rf"(\"{_NAME}\"\s*:\s*\")[^\"]*", re.I), r"\1***"),  # "accessToken": "..."
    # Authorization headers (copy-source authorization too): the scheme and its credential.
    (re.compile(r"\b([\w-]*authorization\s*:\s*)(?:\w+\s+)?[^\s,;\"']+", re.I), r"\1***"),
    (re.compile(r"\b((?:bearer|basic|sharedkey)\s+)[A-Za-z0-9._~+/=:-]+", re.I), r"\1***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "***"),  # JWT
    # Storage account keys (88 base64 characters) and the like, named or not.
    (re.compile(r"(?<![\w+/])[A-Za-z0-9+/]{40,}={1,2}(?![\w+/=])"), "***"),
    # Entra client secrets: three characters, a digit, "Q~", then 30 or more.
    (re.compile(r"(?<![\w.~-])[\w.-]{3}\dQ~[\w.~-]{30,}"), "***"),
]


def sanitise(text: str, limit: int = 1000) -> str:
    """Strip secrets from a message and bound its length, so it is safe to store and show."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
