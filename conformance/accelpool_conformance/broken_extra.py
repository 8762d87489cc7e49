"""Yet more deliberate flaws: variants beyond the obvious one of each invariant.

Telemetry out of physical bounds one reading at a time, partitions that match their
profile's name but not its kind or compute, an environment naming two partitions,
device-scope partitions no other process sees, a partition quietly sent to the CPU
while its device runs on the accelerator, and a vendor error that cannot even print
itself in the middle of the state machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from accelpool.errors import InvalidRequest
from accelpool.spi import Backend, Target
from accelpool.types import (
    DeviceInfo,
    ExecutionProvider,
    OnnxPlacement,
    PartitionInfo,
    Telemetry,
)
from accelpool_conformance import invariants as inv
from accelpool_conformance.broken import Flaw, Relabelled, Wrapped


class TelemetryUsedExceedsTotal(Wrapped):
    """Reports more memory used than the device has."""

    def telemetry(self, device: DeviceInfo) -> Telemetry:
        t = self.inner.telemetry(device)
        total = t.memory_total_bytes or device.memory_bytes
        return replace(t, memory_total_bytes=total, memory_used_bytes=total + (1 << 20))


class TelemetryNegativePower(Wrapped):
    """Reports a negative power draw (a signed counter read as watts)."""

    def telemetry(self, device: DeviceInfo) -> Telemetry:
        return replace(self.inner.telemetry(device), power_w=-12.5)


class TelemetryOverUtilized(Wrapped):
    """Reports 150 % utilisation (a sum over engines, not a percentage)."""

    def telemetry(self, device: DeviceInfo) -> Telemetry:
        return replace(self.inner.telemetry(device), utilization_percent=150.0)


class WrongKindPartitions(Relabelled):
    """Partitions report another kind than their profile's."""

    def _lie(self, p: PartitionInfo) -> PartitionInfo:
        return replace(p, kind="vnpu" if p.kind != "vnpu" else "mim")


class WrongComputePartitions(Relabelled):
    """Partitions report one compute unit fewer than their profile has."""

    def _lie(self, p: PartitionInfo) -> PartitionInfo:
        return replace(p, compute_units=max(0, p.compute_units - 1))


class EnvNamesTwo(Wrapped):
    """A partition's environment names it and another live partition of its device."""

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        env = self.inner.visibility_env(targets)
        if len(targets) != 1 or not isinstance(targets[0], PartitionInfo):
            return env
        part = targets[0]
        for d in self.inner.devices():
            if d.native_id != part.device_native_id:
                continue
            others = [p for p in self.inner.partitions(d) if p.native_id != part.native_id]
            if others:
                extra = self.inner.visibility_env([others[0]])
                return {
                    k: f"{v},{extra[k]}" if k in extra and extra[k] != v else v
                    for k, v in env.items()
                }
        return env


class DeviceScopeInvisible(Wrapped):
    """Declares device scope, but lists only the partitions this process made."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._mine: set[str] = set()

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        return [p for p in self.inner.partitions(device) if p.native_id in self._mine]

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        part = self.inner.create_partition(device, profile, placement)
        self._mine.add(part.native_id)
        return part


class PartitionCpuFallback(Wrapped):
    """Partitions run on the CPU, unsaid, while their device runs on the accelerator."""

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        placement = self.inner.onnx_placement(target)
        if isinstance(target, PartitionInfo):
            return OnnxPlacement((ExecutionProvider("CPUExecutionProvider"),))
        return placement


class MidwaySticks(Wrapped):
    """A create-fails-midway fault fails every later create until cleared."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._stuck: set[str] = set()

    def inject_fault(self, fault: str, device: DeviceInfo) -> None:
        self.inner.inject_fault(fault, device)
        if fault == "create-fails-midway":
            self._stuck.add(device.native_id)

    def clear_faults(self) -> None:
        self._stuck.clear()
        self.inner.clear_faults()

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        if device.native_id in self._stuck:
            raise InvalidRequest(f"create on {device.native_id} failed half way (stuck)")
        return self.inner.create_partition(device, profile, placement)


class LostDeviceRenumbers(Wrapped):
    """Lists a lost device first, as index 0, and moves every other device up one."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._lost: set[str] = set()

    def inject_fault(self, fault: str, device: DeviceInfo) -> None:
        self.inner.inject_fault(fault, device)
        if fault == "device-lost":
            self._lost.add(device.native_id)

    def clear_faults(self) -> None:
        self._lost.clear()
        self.inner.clear_faults()

    def devices(self) -> Sequence[DeviceInfo]:
        listed = self.inner.devices()
        lost = [d for d in listed if d.native_id in self._lost]
        kept = [d for d in listed if d.native_id not in self._lost]
        return [replace(d, index=i) for i, d in enumerate(lost + kept)]


class VendorError(Exception):
    """A vendor library's error whose text needs a field it lost (as pynvml's
    ``NVMLError`` needs ``value``, missing on one rebuilt from its args)."""

    def __str__(self) -> str:
        return f"vendor error {self.value}"  # type: ignore[attr-defined]


class UnprintableVendorError(Wrapped):
    """The third create raises the vendor's own error, one that cannot print itself."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._creates = 0

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        self._creates += 1
        if self._creates % 3 == 0:
            try:
                raise KeyError(profile)
            except KeyError:
                raise VendorError() from None
        return self.inner.create_partition(device, profile, placement)


FLAWS: dict[str, Flaw] = {
    f.name: f
    for f in (
        Flaw(
            "telemetry-used-exceeds-total",
            TelemetryUsedExceedsTotal,
            inv.TELEMETRY_PLAUSIBLE,
            ("discovery",),
        ),
        Flaw(
            "telemetry-negative-power",
            TelemetryNegativePower,
            inv.TELEMETRY_PLAUSIBLE,
            ("discovery",),
        ),
        Flaw(
            "telemetry-utilization-150",
            TelemetryOverUtilized,
            inv.TELEMETRY_PLAUSIBLE,
            ("discovery",),
        ),
        Flaw(
            "wrong-kind-partitions",
            WrongKindPartitions,
            inv.CREATE_MATCHES_PROFILE,
            ("partitions",),
        ),
        Flaw(
            "wrong-compute-partitions",
            WrongComputePartitions,
            inv.CREATE_MATCHES_PROFILE,
            ("partitions",),
        ),
        Flaw("env-names-two", EnvNamesTwo, inv.VISIBILITY_PER_PARTITION, ("sessions",)),
        Flaw(
            "device-scope-invisible",
            DeviceScopeInvisible,
            inv.SHARED_ACROSS_PROCESSES,
            ("partitions",),
        ),
        Flaw("partition-cpu-fallback", PartitionCpuFallback, inv.PROVIDERS_REAL, ("sessions",)),
        Flaw("midway-sticks", MidwaySticks, inv.MIDWAY_ONE_SHOT, ("faults",)),
        Flaw("lost-device-renumbers", LostDeviceRenumbers, inv.LOST_ISOLATED, ("faults",)),
        Flaw("unprintable-vendor-error", UnprintableVendorError, inv.VENDOR, ("statemachine",)),
    )
}
