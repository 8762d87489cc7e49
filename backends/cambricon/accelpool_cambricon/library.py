"""What looking for ``libcndev.so`` needs, and nothing more.

Discovery probes every installed backend, and on most hosts CNDev is absent: this
module is all the Cambricon backend imports to find that out (CNDev's return codes
and errors, and :class:`CndevLoader`, which opens the library without its signature
tables). The ctypes structures and signatures (:mod:`accelpool_cambricon.cndev`), the
driver interface, the card models and the simulator load only once the library is
found or a fleet is simulated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from accelpool.native import NativeError, NativeLibrary, check_presence

if TYPE_CHECKING:
    from accelpool.spi import BackendContext

LIBRARY_NAME = "libcndev.so"
#: Where the Cambricon driver package (Neuware) installs CNDev when it is not on the path.
DEFAULT_LOCATIONS = (LIBRARY_NAME, "/usr/local/neuware/lib64/libcndev.so")
#: Environment variable naming the library explicitly.
LIBRARY_ENV = "ACCELPOOL_CNDEV_LIBRARY"

# -- cndevRet_t -------------------------------------------------------------------
CNDEV_SUCCESS = 0
CNDEV_ERROR_NO_DRIVER = 1
CNDEV_ERROR_LOW_DRIVER_VERSION = 2
CNDEV_ERROR_UNSUPPORTED_API_VERSION = 3
CNDEV_ERROR_UNINITIALIZED = 4
CNDEV_ERROR_INVALID_ARGUMENT = 5
CNDEV_ERROR_INVALID_DEVICE_ID = 6
CNDEV_ERROR_UNKNOWN = 7
CNDEV_ERROR_MALLOC = 8
CNDEV_ERROR_INSUFFICIENT_SPACE = 9
CNDEV_ERROR_NOT_SUPPORTED = 10
CNDEV_ERROR_INVALID_LINK = 11
CNDEV_ERROR_NO_DEVICES = 12
CNDEV_ERROR_NO_PERMISSION = 13
CNDEV_ERROR_NOT_FOUND = 14
CNDEV_ERROR_IN_USE = 15
CNDEV_ERROR_DUPLICATE = 16
CNDEV_ERROR_TIMEOUT = 17
CNDEV_ERROR_IN_PROBLEM = 18

ERROR_NAMES: dict[int, tuple[str, str]] = {
    CNDEV_ERROR_NO_DRIVER: ("CNDEV_ERROR_NO_DRIVER", "the MLU driver is not loaded"),
    CNDEV_ERROR_LOW_DRIVER_VERSION: (
        "CNDEV_ERROR_LOW_DRIVER_VERSION",
        "the MLU driver is older than CNDev supports",
    ),
    CNDEV_ERROR_UNSUPPORTED_API_VERSION: (
        "CNDEV_ERROR_UNSUPPORTED_API_VERSION",
        "unsupported structure version",
    ),
    CNDEV_ERROR_UNINITIALIZED: ("CNDEV_ERROR_UNINITIALIZED", "cndevInit was not called"),
    CNDEV_ERROR_INVALID_ARGUMENT: ("CNDEV_ERROR_INVALID_ARGUMENT", "invalid argument"),
    CNDEV_ERROR_INVALID_DEVICE_ID: ("CNDEV_ERROR_INVALID_DEVICE_ID", "invalid device handle"),
    CNDEV_ERROR_UNKNOWN: ("CNDEV_ERROR_UNKNOWN", "unknown internal error"),
    CNDEV_ERROR_MALLOC: ("CNDEV_ERROR_MALLOC", "memory allocation failed"),
    CNDEV_ERROR_INSUFFICIENT_SPACE: (
        "CNDEV_ERROR_INSUFFICIENT_SPACE",
        "insufficient space or resources",
    ),
    CNDEV_ERROR_NOT_SUPPORTED: ("CNDEV_ERROR_NOT_SUPPORTED", "not supported"),
    CNDEV_ERROR_INVALID_LINK: ("CNDEV_ERROR_INVALID_LINK", "invalid MLU-Link port"),
    CNDEV_ERROR_NO_DEVICES: ("CNDEV_ERROR_NO_DEVICES", "no usable MLU device"),
    CNDEV_ERROR_NO_PERMISSION: ("CNDEV_ERROR_NO_PERMISSION", "permission denied"),
    CNDEV_ERROR_NOT_FOUND: ("CNDEV_ERROR_NOT_FOUND", "not found"),
    CNDEV_ERROR_IN_USE: ("CNDEV_ERROR_IN_USE", "the MLU device is in use"),
    CNDEV_ERROR_DUPLICATE: ("CNDEV_ERROR_DUPLICATE", "duplicate"),
    CNDEV_ERROR_TIMEOUT: ("CNDEV_ERROR_TIMEOUT", "timed out"),
    CNDEV_ERROR_IN_PROBLEM: ("CNDEV_ERROR_IN_PROBLEM", "the MLU device is in problem"),
}

#: ``CNDEV_VERSION_6``: the structure version accelpool fills in (as the device plugin).
CNDEV_VERSION = 6
#: ``cndevCardHealthState_t.health`` of a healthy card.
HEALTH_GOOD = 1


class CndevError(NativeError):
    """A CNDev call returned a non-zero ``cndevRet_t``."""

    error_names = ERROR_NAMES
    unknown_name = "cndev error {code}"


class CndevUnavailable(Exception):
    """``libcndev.so`` (or one of its functions) cannot be loaded here."""


class CndevLoader(NativeLibrary):
    """Opens ``libcndev.so`` as :class:`~accelpool.native.NativeLibrary` does, with no
    functions typed yet; :class:`accelpool_cambricon.cndev.CndevLibrary` adds the
    signatures."""

    library_name = LIBRARY_NAME
    default_locations = DEFAULT_LOCATIONS
    env_var = LIBRARY_ENV
    signatures: ClassVar[dict[str, tuple[Any, list[Any]]]] = {}

    def not_found(self, detail: str) -> Exception:
        return CndevUnavailable(
            f"Cambricon CNDev library not found ({LIBRARY_NAME}){detail}: install "
            f"the Cambricon MLU driver, set {LIBRARY_ENV} to its path, or use a "
            "simulated fleet with --sim"
        )

    def missing_function(self, name: str, library: str) -> Exception:
        return CndevUnavailable(
            f"{library} has no {name}; the Cambricon driver is too old for this operation"
        )

    def failed(self, code: int, name: str) -> Exception:
        return CndevError(code, name)


def presence(context: BackendContext) -> None:
    """The ``accelpool.presence`` check: CNDev opens here, or the backend is unavailable."""
    check_presence(CndevLoader, CndevUnavailable, context)
