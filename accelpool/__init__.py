"""accelpool: one vendor-neutral way to see AI accelerators, partition them, and run on them.

>>> import accelpool
>>> inv = accelpool.discover()          # or discover(sim="dgx-a100")
>>> [d.id for d in inv.devices()]

Importing accelpool is cheap: backends, onnxruntime and pyopencl load only when used.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from accelpool.capabilities import Capabilities, Capability, Support
from accelpool.errors import (
    AccelPoolError,
    BackendUnavailable,
    CorruptState,
    DeviceLost,
    InsufficientCapacity,
    InUse,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    UnsupportedOperation,
)
from accelpool.inventory import Device, Inventory, Partition, discover
from accelpool.lazyload import lazy_attributes
from accelpool.types import (
    BackendStatus,
    DeviceInfo,
    ExecutionProvider,
    OnnxPlacement,
    PartitionInfo,
    PartitionProfile,
    Placement,
    Telemetry,
)

if TYPE_CHECKING:
    from accelpool.session import Session, open_session

__version__ = "0.1.0"

# A library logs, it does not print: without the application's own logging set-up,
# accelpool's warnings (a plugin that failed to load, say) stay silent.
logging.getLogger("accelpool").addHandler(logging.NullHandler())

__all__ = [
    "AccelPoolError",
    "BackendStatus",
    "BackendUnavailable",
    "Capabilities",
    "Capability",
    "CorruptState",
    "Device",
    "DeviceInfo",
    "DeviceLost",
    "ExecutionProvider",
    "InUse",
    "InsufficientCapacity",
    "InvalidRequest",
    "Inventory",
    "NotFound",
    "OnnxPlacement",
    "Partition",
    "PartitionInfo",
    "PartitionProfile",
    "PermissionDenied",
    "Placement",
    "Session",
    "Support",
    "Telemetry",
    "UnsupportedOperation",
    "__version__",
    "discover",
    "open_session",
]


# Sessions pull in numpy/onnxruntime machinery; load them only on first use.
__getattr__ = lazy_attributes(
    __name__, {"open_session": "accelpool.session", "Session": "accelpool.session"}
)
