"""Whether NVML can be on this host, told without importing pynvml or the backend.

The ``accelpool.presence`` check of the NVIDIA backend: on Linux pynvml opens exactly
``libnvidia-ml.so.1``, so when the dynamic loader cannot open that, the backend's
probe would only say "NVML library not found" after importing pynvml and every
backend module. Anything past absence (a driver not loaded, no GPU) is the probe's.
"""

from __future__ import annotations

import ctypes
import sys
from typing import TYPE_CHECKING

from accelpool.errors import BackendUnavailable
from accelpool_nvidia import nvml_codes as rc

if TYPE_CHECKING:
    from accelpool.spi import BackendContext

#: The file pynvml opens on Linux.
NVML_SONAME = "libnvidia-ml.so.1"


def library_not_found(vendor_message: str = rc.text(rc.LIBRARY_NOT_FOUND)) -> BackendUnavailable:
    """The error, probe's and presence check's alike, when NVML cannot be opened."""
    return BackendUnavailable(
        f"NVML library not found ({NVML_SONAME}): install the NVIDIA driver, or use a "
        "simulated fleet with --sim",
        vendor_code=rc.LIBRARY_NOT_FOUND,
        vendor_message=vendor_message,
    )


def presence(context: BackendContext) -> None:
    """Raise :func:`library_not_found` when ``libnvidia-ml.so.1`` does not open here."""
    if not sys.platform.startswith("linux"):
        return  # pynvml looks in other places there: let the probe decide
    pynvml = sys.modules.get("pynvml")
    if pynvml is not None and getattr(pynvml, "nvmlLib", None) is not None:
        return  # this process has a library (or a simulator) loaded already
    try:
        ctypes.CDLL(NVML_SONAME)
    except OSError:
        raise library_not_found() from None
