"""The invariants the suite checks, and the helpers every check is written with.

Every failure the suite reports names the invariant it found broken:
``invariant 'partitions never overlap' broken: ...``. Checks call :func:`check`
(or :func:`broken`) with one of the names below; a backend call made through
:class:`CheckedBackend` turns an escaping vendor exception, a value of the wrong
type or a multi-line error message into a named failure too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, TypeVar

from accelpool.capabilities import Capabilities, Capability
from accelpool.errors import AccelPoolError
from accelpool.spi import Backend, Target
from accelpool.types import (
    DeviceInfo,
    OnnxPlacement,
    PartitionInfo,
    PartitionProfile,
    Telemetry,
)

T = TypeVar("T")
E = TypeVar("E", bound=AccelPoolError)

# -- invariant names (stable: expectations files and reports quote them) ------------
AVAILABLE = "the backend under test is available"
HAS_DEVICES = "an available backend reports at least one device"
STATUS_HONEST = "backend statuses are honest"
SPI_TYPES = "values crossing the SPI have the SPI's types"
IDS_UNIQUE = "device ids are unique"
IDS_STABLE_CALLS = "device ids are stable across calls"
IDS_STABLE_PROCESSES = "device ids are stable across processes"
INDEX_RESOLVES = "backend:index resolves to its device"
POSITIVE = "device memory and compute are positive"
ORDERED = "devices are listed in index order"
ATTRIBUTE_NAMES = "attribute names are vendor-qualified"
CAPS_CONSISTENT = "capability declarations are consistent"
PROFILES_CONSISTENT = "profiles are consistent with their device"
#: Units: bytes, percent, degrees Celsius, watts (per device); see TELEMETRY_BOUNDS.
TELEMETRY_PLAUSIBLE = "telemetry is plausible"
INDEX_TRUTH = "backend:index follows the vendor's numbering"
DEVICE_FACTS = "device facts stay facts"
PARTITIONS_OWN_DEVICE = "partitions report their own device"

VENDOR = "no vendor exception escapes the accelpool hierarchy"
ONE_LINE = "error messages are one non-empty line"
INVALID_REQUEST = "bad input gets InvalidRequest"
UNKNOWN_NOT_FOUND = "an unknown partition gives NotFound"
UNSUPPORTED_RAISES = "an operation declared unsupported raises UnsupportedOperation"

CREATE_MATCHES_PROFILE = "a created partition matches its profile"
LISTED_AFTER_CREATE = "a created partition is listed"
GONE_AFTER_DESTROY = "a destroyed partition is no longer listed"
CAPACITY_FALLS = "remaining capacity falls on create"
CAPACITY_RETURNS = "capacity comes back on destroy"
EXHAUSTION = "exhaustion gives InsufficientCapacity"
MAX_COUNT = "max_count partitions fit on an empty device"
NO_OVERLAP = "partitions never overlap"
WITHIN_DEVICE = "partitions never exceed the device's memory or compute"
DESTROY_TWICE = "destroying twice gives NotFound"
PARTITION_IDS_UNIQUE = "partition ids are unique"
PLACEMENT_HONOURED = "a requested placement is honoured"
PLACEMENT_OFFERED = "partitions sit at placements their profile offers"
OCCUPIED_REFUSED = "an occupied placement is refused with InsufficientCapacity"
SCOPE = "partition scope matches the declared capability"
SHARED_ACROSS_PROCESSES = "device-scope partitions are shared across processes"
SCOPE_HONEST = "partition scope is honest across processes"
DEVICES_INDEPENDENT = "partitions of one device leave other devices alone"
AVAILABLE_HONEST = "available counts are honest"
MODEL = "the backend's partitions match the model of creates and destroys"

CONCURRENT_CAPACITY = "concurrent creates never exceed capacity"
DOUBLE_GRANT = "concurrent creates never grant one slot twice"
DESTROYED_ONCE = "a partition is destroyed exactly once"

DEVICE_LOST = "a device lost mid-run gives DeviceLost"
LOST_ISOLATED = "a lost device leaves other devices working"
MIDWAY = "a create that fails half way leaves nothing behind"
MIDWAY_ONE_SHOT = "a create-fails-midway fault fails one create, not every one"

VISIBILITY = "the visibility environment names exactly the target"
VISIBILITY_PER_PARTITION = "each partition's environment names it and no other"
VISIBILITY_ORDINALS = "ordinal visibility tokens resolve to the target itself"
PROVIDERS_REAL = "ONNX providers are real"
EVERY_PARTITION_TARGET = "every partition is a usable session target"
SESSION_ENV = "a session's environment names exactly its target"
ONNX_MATCHES = "ONNX outputs equal the numpy reference"

CLEANUP = "what the suite created can be destroyed"
SUPPORTED_SUCCEEDS = "a supported operation succeeds where the backend offers it"
WORKER = "suite worker processes can drive the backend"

#: Partition kinds whose partitions share the device's memory rather than split it
#: (OpenCL sub-devices address the whole device memory), so memory sums do not apply.
MEMORY_SHARING_KINDS = frozenset({"subdevice"})
#: Partition kinds that time-slice the whole device's compute (vGPU), so compute sums
#: do not apply.
COMPUTE_SHARING_KINDS = frozenset({"vgpu"})
KINDS = frozenset({"mig", "vgpu", "vnpu", "mim", "smlu", "subdevice", "slice"})
#: Physical bounds of a plausible reading (inclusive), per device, in the units of
#: :class:`~accelpool.types.Telemetry`: percent, degrees Celsius, watts.
TELEMETRY_BOUNDS: dict[str, tuple[float, float]] = {
    "utilization_percent": (0.0, 100.0),
    "temperature_c": (-40.0, 150.0),
    "power_w": (0.0, 2000.0),
}
#: ``session.onnx.<kind>`` declared unsupported: partitions of that kind are no session
#: targets (a host-side vGPU, reached only inside its VM); undeclared means they are.
SESSION_KIND_PREFIX = "session.onnx."


class InvariantBroken(AssertionError):
    """A conformance failure: ``invariant 'NAME' broken: DETAIL``."""

    def __init__(self, invariant: str, detail: str) -> None:
        self.invariant = invariant
        self.detail = detail
        super().__init__(f"invariant {invariant!r} broken: {detail}")


def broken(invariant: str, detail: str) -> NoReturn:
    """Fail the current check, naming the invariant."""
    raise InvariantBroken(invariant, detail)


def check(condition: object, invariant: str, detail: str | Callable[[], str]) -> None:
    """Fail naming ``invariant`` unless ``condition`` holds (``detail`` may be lazy)."""
    if not condition:
        broken(invariant, detail() if callable(detail) else detail)


def describe(exc: BaseException) -> str:
    """``Type: first line`` of an exception, with its module when it is not accelpool's."""
    cls = type(exc)
    name = cls.__name__
    if not isinstance(exc, AccelPoolError) and cls.__module__ not in ("builtins", "__main__"):
        name = f"{cls.__module__}.{name}"
    try:
        text = str(exc).strip().splitlines()
    except Exception as e:  # a vendor error that cannot print itself still has a type
        return f"{name} (its message cannot be printed: {type(e).__name__}: {e})"
    return f"{name}: {text[0]}" if text else name


def expect_error(
    invariant: str, expected: type[E] | tuple[type[E], ...], what: str, fn: Callable[[], object]
) -> E:
    """Run ``fn`` and require it to raise ``expected``; return the error."""
    names = (
        " or ".join(e.__name__ for e in expected)
        if isinstance(expected, tuple)
        else expected.__name__
    )
    try:
        value = fn()
    except expected as e:
        return e
    except InvariantBroken:
        raise
    except AccelPoolError as e:
        broken(invariant, f"{what} raised {describe(e)}, expected {names}")
    broken(invariant, f"{what} returned {value!r}, expected it to raise {names}")


# -- placement and capacity helpers -------------------------------------------------
def overlapping(parts: Sequence[PartitionInfo]) -> list[tuple[PartitionInfo, PartitionInfo]]:
    """Pairs of partitions of one device whose placements intersect."""
    out = []
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            if (
                a.device_native_id == b.device_native_id
                and a.placement is not None
                and b.placement is not None
                and a.placement.overlaps(b.placement)
            ):
                out.append((a, b))
    return out


def check_no_overlap(parts: Sequence[PartitionInfo], where: str) -> None:
    pairs = overlapping(parts)
    check(
        not pairs,
        NO_OVERLAP,
        lambda: (
            f"{where}: "
            + "; ".join(
                f"{a.native_id} ({a.profile} at {_pl(a)}) overlaps {b.native_id} "
                f"({b.profile} at {_pl(b)})"
                for a, b in pairs[:3]
            )
        ),
    )


def _pl(p: PartitionInfo) -> str:
    if p.placement is None:
        return "no placement"
    return f"[{p.placement.start}, {p.placement.start + p.placement.size})"


def check_within_device(device: DeviceInfo, parts: Sequence[PartitionInfo], where: str) -> None:
    """Each partition, and the partitions together, fit in the device."""
    for p in parts:
        check(
            0 < p.memory_bytes <= device.memory_bytes,
            WITHIN_DEVICE,
            f"{where}: partition {p.native_id} ({p.profile}) has {p.memory_bytes} bytes of "
            f"memory; device {device.native_id} has {device.memory_bytes}",
        )
        check(
            0 <= p.compute_units <= device.compute_units,
            WITHIN_DEVICE,
            f"{where}: partition {p.native_id} ({p.profile}) has {p.compute_units} compute "
            f"units; device {device.native_id} has {device.compute_units}",
        )
    memory = sum(p.memory_bytes for p in parts if p.kind not in MEMORY_SHARING_KINDS)
    check(
        memory <= device.memory_bytes,
        WITHIN_DEVICE,
        f"{where}: {len(parts)} partitions of device {device.native_id} hold {memory} bytes "
        f"of memory in all; the device has {device.memory_bytes}",
    )
    compute = sum(p.compute_units for p in parts if p.kind not in COMPUTE_SHARING_KINDS)
    check(
        compute <= device.compute_units,
        WITHIN_DEVICE,
        f"{where}: {len(parts)} partitions of device {device.native_id} hold {compute} "
        f"compute units in all; the device has {device.compute_units}",
    )


def check_one_line(exc: AccelPoolError, what: str) -> None:
    message = getattr(exc, "message", str(exc))
    check(
        isinstance(message, str) and message.strip() and "\n" not in message.strip(),
        ONE_LINE,
        f"{what} raised {type(exc).__name__} with message {message!r}",
    )


# -- the checked view of a backend ---------------------------------------------------
def _is_seq_of(value: object, cls: type) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and all(isinstance(v, cls) for v in value)
    )


class CheckedBackend:
    """Calls a raw backend the way the suite wants to see it fail.

    A non-accelpool exception becomes a failure of :data:`VENDOR`, a return value of
    the wrong type one of :data:`SPI_TYPES`, a multi-line error one of :data:`ONE_LINE`.
    Accelpool errors pass through unchanged.
    """

    def __init__(self, raw: Backend, exercise: Callable[[str], None] | None = None) -> None:
        self.raw = raw
        self.name = raw.name
        #: told the capability each successful call exercises (see SuiteContext.exercise)
        self._exercise = exercise or (lambda _cap: None)

    def _call(self, method: str, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except AccelPoolError as e:
            check_one_line(e, what)
            raise
        except Exception as e:
            broken(VENDOR, f"{what} raised {describe(e)}")

    def _typed(self, value: T, ok: bool, what: str, expected: str) -> T:
        check(
            ok,
            SPI_TYPES,
            f"{what} returned {type(value).__name__} {value!r:.200}, expected {expected}",
        )
        return value

    def capabilities(self) -> Capabilities:
        v = self._call("capabilities", self.raw.capabilities, "capabilities()")
        return self._typed(v, isinstance(v, Capabilities), "capabilities()", "Capabilities")

    def devices(self) -> list[DeviceInfo]:
        v = self._call("devices", self.raw.devices, "devices()")
        self._typed(v, _is_seq_of(v, DeviceInfo), "devices()", "a sequence of DeviceInfo")
        self._exercise(Capability.DISCOVERY)
        return list(v)

    def profiles(self, device: DeviceInfo) -> list[PartitionProfile]:
        what = f"profiles({device.native_id})"
        v = self._call("profiles", lambda: self.raw.profiles(device), what)
        self._typed(v, _is_seq_of(v, PartitionProfile), what, "a sequence of PartitionProfile")
        return list(v)

    def profile(self, device: DeviceInfo, name: str) -> PartitionProfile:
        for p in self.profiles(device):
            if p.name == name:
                return p
        broken(PROFILES_CONSISTENT, f"device {device.native_id} no longer lists profile {name!r}")

    def partitions(self, device: DeviceInfo) -> list[PartitionInfo]:
        what = f"partitions({device.native_id})"
        v = self._call("partitions", lambda: self.raw.partitions(device), what)
        self._typed(v, _is_seq_of(v, PartitionInfo), what, "a sequence of PartitionInfo")
        return list(v)

    def create_partition(
        self, device: DeviceInfo, profile: Any, placement: Any = None
    ) -> PartitionInfo:
        what = f"create_partition({device.native_id}, {profile!r}, placement={placement!r})"
        v = self._call(
            "create_partition", lambda: self.raw.create_partition(device, profile, placement), what
        )
        part = self._typed(v, isinstance(v, PartitionInfo), what, "PartitionInfo")
        self._exercise(Capability.PARTITION)
        self._exercise(f"{Capability.PARTITION}.{part.kind}")
        return part

    def destroy_partition(self, partition: PartitionInfo) -> None:
        what = f"destroy_partition({partition.native_id})"
        self._call("destroy_partition", lambda: self.raw.destroy_partition(partition), what)

    def telemetry(self, device: DeviceInfo) -> Telemetry:
        what = f"telemetry({device.native_id})"
        v = self._call("telemetry", lambda: self.raw.telemetry(device), what)
        self._exercise(Capability.TELEMETRY)
        return self._typed(v, isinstance(v, Telemetry), what, "Telemetry")

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        what = f"visibility_env([{', '.join(t.native_id for t in targets)}])"
        v = self._call("visibility_env", lambda: self.raw.visibility_env(list(targets)), what)
        ok = isinstance(v, dict) and all(
            isinstance(k, str) and k and isinstance(x, str) for k, x in v.items()
        )
        self._exercise(Capability.VISIBILITY)
        return self._typed(v, ok, what, "a dict of non-empty str names to str values")

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        what = f"onnx_placement({target.native_id})"
        v = self._call("onnx_placement", lambda: self.raw.onnx_placement(target), what)
        return self._typed(v, isinstance(v, OnnxPlacement), what, "OnnxPlacement")

    def inject_fault(self, fault: str, device: DeviceInfo) -> None:
        what = f"inject_fault({fault!r}, {device.native_id})"
        self._call("inject_fault", lambda: self.raw.inject_fault(fault, device), what)
        self._exercise(Capability.FAULT_INJECTION)

    def clear_faults(self) -> None:
        self._call("clear_faults", self.raw.clear_faults, "clear_faults()")


def ids(parts: Iterable[PartitionInfo]) -> list[str]:
    return sorted(p.native_id for p in parts)
