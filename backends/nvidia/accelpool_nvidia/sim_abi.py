"""The C side of the NVML simulator: reading raw ctypes arguments, writing out-parameters.

Handles are opaque pointers packing ``kind<<56 | (gpu+1)<<36 | serial``; an NVML
implementation raises :class:`_Fail` to return an ``nvmlReturn_t``.
"""

from __future__ import annotations

import ctypes
from typing import Any

from accelpool_nvidia import nvml_codes as rc

# Handle kinds, packed into the opaque pointer value as kind<<56 | (gpu+1)<<36 | serial.
_K_GPU, _K_GI, _K_CI, _K_MIG = 1, 2, 3, 4
_CArg = type(ctypes.byref(ctypes.c_int()))


class _Fail(Exception):
    """Raised inside an NVML implementation to return ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _val(x: Any) -> int:
    if isinstance(x, int):
        return x
    if isinstance(x, _CArg):
        x = x._obj  # type: ignore[attr-defined]
    value = getattr(x, "value", None)
    if isinstance(value, int):
        return value
    raise _Fail(rc.INVALID_ARGUMENT)


def _out(ref: Any) -> Any:
    """The ctypes object an out-parameter points at (``byref(x)`` or ``pointer(x)``)."""
    if ref is None:
        raise _Fail(rc.INVALID_ARGUMENT)
    if isinstance(ref, _CArg):
        return ref._obj  # type: ignore[attr-defined]
    if isinstance(ref, ctypes._Pointer):
        if not ref:
            raise _Fail(rc.INVALID_ARGUMENT)
        return ref.contents
    return ref


def _ptr(h: Any) -> int:
    if h is None:
        raise _Fail(rc.INVALID_ARGUMENT)
    if isinstance(h, int):
        return h
    try:
        # Reading the pointer's own bytes is cheaper than ctypes.cast.
        value = ctypes.c_void_p.from_buffer(h).value
    except (TypeError, ValueError):
        raise _Fail(rc.INVALID_ARGUMENT) from None
    if not value:
        raise _Fail(rc.INVALID_ARGUMENT)
    return value


def _set_ptr(ref: Any, value: int) -> None:
    target = _out(ref)
    ctypes.cast(ctypes.addressof(target), ctypes.POINTER(ctypes.c_void_p))[0] = value


def _set_str(buf: Any, length: Any, text: str) -> None:
    data = text.encode()
    if length is not None and len(data) + 1 > _val(length):
        raise _Fail(rc.INSUFFICIENT_SIZE)
    target = _out(buf)
    if len(data) + 1 > ctypes.sizeof(target):
        raise _Fail(rc.INSUFFICIENT_SIZE)
    target.value = data


def _set_field_ptr(struct: Any, field: str, value: int) -> None:
    ftype = dict(struct._fields_)[field]
    setattr(struct, field, ctypes.cast(ctypes.c_void_p(value), ftype))


def _handle(kind: int, gpu: int, serial: int = 0) -> int:
    return (kind << 56) | ((gpu + 1) << 36) | serial


def _unpack(value: int) -> tuple[int, int, int]:
    return value >> 56, ((value >> 36) & 0xFFFFF) - 1, value & ((1 << 36) - 1)


def _array_out(count: Any, arr: Any, n: int) -> Any | None:
    """The array to fill with ``n`` entries, ``*count`` set to ``n``; or None when the
    caller passed no array or one too small (``*count`` still set to ``n``): the call then
    returns INSUFFICIENT_SIZE, or SUCCESS when there is nothing to list. The size protocol
    of ``nvmlDeviceGetSupportedVgpus`` and ``nvmlDeviceGetComputeRunningProcesses``."""
    c = _out(count)
    if arr is None or c.value < n:
        c.value = n
        return None
    c.value = n
    return _out(arr) if isinstance(arr, _CArg) else arr


def _fill_placements(arr: Any, count: Any, placements: list[tuple[int, int]]) -> int:
    c = _out(count)
    if arr is None:
        c.value = len(placements)
        return rc.SUCCESS
    target = _out(arr) if isinstance(arr, _CArg) else arr
    if c.value < len(placements) or len(target) < len(placements):
        c.value = len(placements)
        raise _Fail(rc.INSUFFICIENT_SIZE)
    for i, (start, size) in enumerate(placements):
        target[i].start = start
        target[i].size = size
    c.value = len(placements)
    return rc.SUCCESS
