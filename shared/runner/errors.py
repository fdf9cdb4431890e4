"""What the host's client operations refuse, mapped by the endpoint to the extension's codes."""

from __future__ import annotations


class UnknownFunctionError(ValueError):
    """The app has no function of that name and kind."""


class InstanceExistsError(RuntimeError):
    """An instance with that id is still pending or running."""


class InstanceNotFoundError(LookupError):
    """No instance has that id."""


class InstanceGoneError(RuntimeError):
    """The instance has already finished."""
