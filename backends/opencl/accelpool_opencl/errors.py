"""Mapping of OpenCL status codes (as pyopencl raises them) onto accelpool's errors."""

from __future__ import annotations

from accelpool.errors import (
    AccelPoolError,
    BackendUnavailable,
    DeviceLost,
    InsufficientCapacity,
    InvalidRequest,
    NotFound,
)

#: OpenCL status code -> (CL name, accelpool error class, what the user can do).
_CODES: dict[int, tuple[str, type[AccelPoolError], str]] = {
    -1: ("CL_DEVICE_NOT_FOUND", NotFound, "run 'accelpool ls' to see devices"),
    -2: ("CL_DEVICE_NOT_AVAILABLE", DeviceLost, "check the OpenCL driver"),
    -4: (
        "CL_MEM_OBJECT_ALLOCATION_FAILURE",
        InsufficientCapacity,
        "free device memory or allocate less",
    ),
    -5: ("CL_OUT_OF_RESOURCES", InsufficientCapacity, "free device resources and retry"),
    -6: ("CL_OUT_OF_HOST_MEMORY", InsufficientCapacity, "free host memory and retry"),
    -11: ("CL_BUILD_PROGRAM_FAILURE", InvalidRequest, "fix the kernel source"),
    -18: (
        "CL_DEVICE_PARTITION_FAILED",
        InsufficientCapacity,
        "destroy sub-devices or ask for fewer compute units",
    ),
    -30: ("CL_INVALID_VALUE", InvalidRequest, "check the request"),
    -33: ("CL_INVALID_DEVICE", NotFound, "run 'accelpool ls' to see devices"),
    -64: ("CL_INVALID_PROPERTY", InvalidRequest, "use a profile 'accelpool profiles' lists"),
    -68: (
        "CL_INVALID_DEVICE_PARTITION_COUNT",
        InvalidRequest,
        "use a profile 'accelpool profiles' lists",
    ),
    -1001: (
        "CL_PLATFORM_NOT_FOUND_KHR",
        BackendUnavailable,
        "install an ICD such as pocl-binary-distribution",
    ),
}


def cl_error(exc: BaseException, doing: str) -> AccelPoolError:
    """An accelpool error for a pyopencl error raised while ``doing`` something.

    The OpenCL status code becomes ``vendor_code`` and pyopencl's text
    ``vendor_message``; an unknown code maps to :class:`AccelPoolError` itself.
    """
    raw = getattr(exc, "code", None)
    code = raw if isinstance(raw, int) else None
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if code is None:
        return AccelPoolError(f"{doing} failed: {text}", vendor_message=text)
    name, cls, hint = _CODES.get(code, (f"CL status {code}", AccelPoolError, "see the vendor text"))
    return cls(f"{doing} failed with {name}; {hint}", vendor_code=code, vendor_message=text)
