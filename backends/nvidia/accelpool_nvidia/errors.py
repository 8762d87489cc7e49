"""NVML errors mapped onto accelpool's hierarchy, keeping NVML's code and text."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator, Mapping

import pynvml

from accelpool.errors import (
    AccelPoolError,
    BackendUnavailable,
    DeviceLost,
    InsufficientCapacity,
    InUse,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    UnsupportedOperation,
)
from accelpool_nvidia import nvml_codes as rc

#: NVML return code -> accelpool error class
ERROR_CLASSES: Mapping[int, type[AccelPoolError]] = {
    rc.INSUFFICIENT_RESOURCES: InsufficientCapacity,
    rc.IN_USE: InUse,
    rc.INVALID_ARGUMENT: InvalidRequest,
    rc.NOT_FOUND: NotFound,
    rc.NOT_SUPPORTED: UnsupportedOperation,
    rc.NO_PERMISSION: PermissionDenied,
    rc.GPU_IS_LOST: DeviceLost,
    rc.LIBRARY_NOT_FOUND: BackendUnavailable,
    rc.DRIVER_NOT_LOADED: BackendUnavailable,
}

#: what a user can do about each code, appended to the message
HINTS: Mapping[int, str] = {
    rc.INSUFFICIENT_RESOURCES: "no room left: destroy a partition or choose another profile "
    "or placement (see 'accelpool profiles')",
    rc.IN_USE: "it is in use: stop the processes using it and retry",
    rc.INVALID_ARGUMENT: "NVML rejected the arguments",
    rc.NOT_FOUND: "it no longer exists; run 'accelpool ls' to see what does",
    rc.NOT_SUPPORTED: "this GPU or its current mode does not support it",
    rc.NO_PERMISSION: "it needs root (or CAP_SYS_ADMIN); retry with more privileges",
    rc.GPU_IS_LOST: "the GPU fell off the bus; check the kernel log, then reset the GPU or reboot",
    rc.LIBRARY_NOT_FOUND: "install the NVIDIA driver (libnvidia-ml.so.1)",
    rc.DRIVER_NOT_LOADED: "load the NVIDIA kernel driver (nvidia.ko)",
    rc.RESET_REQUIRED: "reset the GPU (nvidia-smi -r) or reboot",
    rc.UNINITIALIZED: "NVML is not initialised; this is a bug in accelpool-nvidia",
}


def nvml_text(exc: pynvml.NVMLError) -> str:
    try:
        return str(exc)
    except Exception:  # pynvml's __str__ calls back into the library
        return f"NVML Error with code {exc.value}"


def from_nvml(exc: pynvml.NVMLError, action: str, hint: str | None = None) -> AccelPoolError:
    """The accelpool error for an NVML failure while doing ``action``."""
    code = int(exc.value)
    cls = ERROR_CLASSES.get(code, AccelPoolError)
    advice = hint if hint is not None else HINTS.get(code, "NVML reported an error")
    return cls(f"{action}: {advice}", vendor_code=code, vendor_message=nvml_text(exc))


@contextlib.contextmanager
def nvml_errors(action: str, hints: Mapping[int, str] | None = None) -> Iterator[None]:
    """Turn any NVML error raised in the block into accelpool's hierarchy."""
    try:
        yield
    except pynvml.NVMLError as e:
        hint = (hints or {}).get(int(e.value))
        raise from_nvml(e, action, hint) from e


def from_oserror(exc: OSError, action: str) -> AccelPoolError:
    """An accelpool error for a failed sysfs write (the mediated-device interface)."""
    code = exc.errno
    cls: type[AccelPoolError]
    if code == errno.ENOSPC:
        cls, advice = InsufficientCapacity, "no instance of this vGPU type is available"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        cls, advice = PermissionDenied, "writing the mdev sysfs files needs root"
    elif code == errno.EBUSY:
        cls, advice = InUse, "the vGPU is in use by a VM; stop the VM first"
    elif code == errno.ENOENT:
        cls, advice = NotFound, "the mediated device or type is not there"
    elif code in (errno.EINVAL, errno.EEXIST):
        cls, advice = InvalidRequest, "the kernel rejected the request"
    elif code == errno.EIO:
        cls, advice = DeviceLost, "the GPU does not answer"
    else:
        cls, advice = AccelPoolError, "the mediated-device interface failed"
    return cls(f"{action}: {advice}", vendor_code=f"errno {code}", vendor_message=exc.strerror)
