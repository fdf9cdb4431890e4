"""The local durable host: runs a DFApp's workflows in-process, on a given (virtual) clock."""

from .errors import (
    InstanceExistsError,
    InstanceGoneError,
    InstanceNotFoundError,
    UnknownFunctionError,
)
from .functions import run_to_completion
from .host import LocalDurableHost
from .instances import InstanceStatus
from .timers import HostConfigError

__all__ = [
    "HostConfigError",
    "InstanceExistsError",
    "InstanceGoneError",
    "InstanceNotFoundError",
    "InstanceStatus",
    "LocalDurableHost",
    "UnknownFunctionError",
    "run_to_completion",
]
