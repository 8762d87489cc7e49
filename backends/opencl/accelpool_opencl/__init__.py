"""accelpool backend for OpenCL: every device pyopencl sees; partitions are sub-devices.

>>> import accelpool, accelpool_opencl
>>> dev = accelpool.discover(backends=["opencl"]).device("opencl:0")
>>> part = dev.create_partition("equally-1")
>>> h = accelpool_opencl.opencl_handle(part)      # pyopencl context + queue
>>> h.context, h.queue

Importing this package does not import pyopencl; the backend does, when probed.
"""

from __future__ import annotations

from typing import Any

from accelpool.errors import InvalidRequest
from accelpool_opencl.backend import OpenCLBackend, OpenCLHandle

__all__ = ["OpenCLBackend", "OpenCLHandle", "opencl_handle"]


def opencl_handle(target: Any) -> OpenCLHandle:
    """The pyopencl context and queue(s) of a public :class:`accelpool.Device` or
    :class:`accelpool.Partition` of the ``opencl`` backend."""
    backend = getattr(target, "backend_instance", None)
    info = getattr(target, "info", None)
    if not isinstance(backend, OpenCLBackend) or info is None:
        raise InvalidRequest(
            f"{target!r} is not a device or partition of the OpenCL backend; "
            "pass one from accelpool.discover(backends=['opencl'])"
        )
    return backend.handle(info)
