"""The one error hierarchy of accelpool.

Every backend maps its vendor's errors onto these classes and keeps the vendor's
code and text (``vendor_code``, ``vendor_message``) so nothing is lost on the way up.
"""

from __future__ import annotations

__all__ = [
    "AccelPoolError",
    "BackendUnavailable",
    "CorruptState",
    "DeviceLost",
    "InUse",
    "InsufficientCapacity",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "UnsupportedOperation",
]


class AccelPoolError(Exception):
    """Base of every error accelpool raises.

    ``vendor_code``/``vendor_message`` carry the vendor library's own error, when
    one caused this error (e.g. NVML's return code 23 and "Insufficient Resources").
    """

    def __init__(
        self,
        message: str,
        *,
        vendor_code: int | str | None = None,
        vendor_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.vendor_code = vendor_code
        self.vendor_message = vendor_message

    def __str__(self) -> str:
        if self.vendor_code is None and self.vendor_message is None:
            return self.message
        vendor = ", ".join(str(x) for x in (self.vendor_code, self.vendor_message) if x is not None)
        return f"{self.message} [vendor: {vendor}]"


class BackendUnavailable(AccelPoolError):
    """The backend cannot run here (library missing, driver too old, failed to load)."""


class NotFound(AccelPoolError):
    """No device, partition, profile or backend by that name."""


class InsufficientCapacity(AccelPoolError):
    """The device has no room left for the requested partition."""


class InUse(AccelPoolError):
    """The target is held by someone else (a session claim or running processes)."""


class InvalidRequest(AccelPoolError):
    """The request itself is malformed or names something the target does not offer."""


class UnsupportedOperation(AccelPoolError):
    """The backend (or this device) does not support the operation."""


class DeviceLost(AccelPoolError):
    """The device stopped answering (fell off the bus, driver reset)."""


class PermissionDenied(AccelPoolError):
    """The operation needs privileges the caller does not have."""


class CorruptState(AccelPoolError):
    """A state file accelpool keeps (a simulated fleet's ``state.json``) is damaged.

    The message names the file, what is wrong with it, and how to start afresh.
    """
