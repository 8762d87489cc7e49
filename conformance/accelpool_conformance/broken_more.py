"""More deliberate flaws: one or more for each invariant beyond the first seven.

Each wraps a good backend and breaks one promise. Most wrap the reference
ToyBackend (through :class:`~accelpool_conformance.broken.ToyFleet`); those that need
a vendor's own numbering wrap an in-tree backend under a simulated fleet
(:class:`InTreeFleet`)::

    from accelpool_conformance import run
    from accelpool_conformance.broken_more import InTreeFleet

    run("ascend", inventory_factory=InTreeFleet("ascend", "atlas-300i-310p", "ordinal-shift"),
        state_dir="state")
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from accelpool.capabilities import Capabilities, Capability
from accelpool.errors import NotFound, UnsupportedOperation
from accelpool.inventory import Inventory
from accelpool.spi import Backend, Target
from accelpool.testing import inventory_of
from accelpool.types import (
    DeviceInfo,
    ExecutionProvider,
    OnnxPlacement,
    PartitionInfo,
    Telemetry,
)
from accelpool_conformance import invariants as inv
from accelpool_conformance.broken import Flaw, Relabelled, Wrapped


class _Relisted(Wrapped):
    """Rewrites what devices() says; maps a device handed back to the inner one by id."""

    def _rewrite(self, devices: list[DeviceInfo]) -> list[DeviceInfo]:
        return devices

    def devices(self) -> Sequence[DeviceInfo]:
        return self._rewrite(list(self.inner.devices()))


class IndexesFromOne(_Relisted):
    """Numbers devices from 1, not as the vendor does (from 0)."""

    def _rewrite(self, devices: list[DeviceInfo]) -> list[DeviceInfo]:
        return [replace(d, index=d.index + 1) for d in devices]


class IndexesReversed(_Relisted):
    """Numbers devices backwards (listed in that order): index 0 is the vendor's last."""

    def _rewrite(self, devices: list[DeviceInfo]) -> list[DeviceInfo]:
        n = len(devices)
        return sorted((replace(d, index=n - 1 - d.index) for d in devices), key=lambda d: d.index)


class ComputeAsCores(_Relisted):
    """Reports 64 times the compute units (cores where the contract counts SMs)."""

    def _rewrite(self, devices: list[DeviceInfo]) -> list[DeviceInfo]:
        return [replace(d, compute_units=d.compute_units * 64) for d in devices]


class MemoryIsFree(_Relisted):
    """Reports the memory not held by partitions as the device's memory."""

    def _rewrite(self, devices: list[DeviceInfo]) -> list[DeviceInfo]:
        out = []
        for d in devices:
            held = sum(p.memory_bytes for p in self.inner.partitions(d))
            out.append(replace(d, memory_bytes=d.memory_bytes - held))
        return out


class UnstableMemory(_Relisted):
    """Memory wobbles by a page from one listing to the next; ids stay the same."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._calls = 0

    def _rewrite(self, devices: list[DeviceInfo]) -> list[DeviceInfo]:
        self._calls += 1
        return [replace(d, memory_bytes=d.memory_bytes - 4096 * (self._calls % 2)) for d in devices]


class HalfMemoryPartitions(Relabelled):
    """Partitions report half their profile's memory (created and listed alike)."""

    @staticmethod
    def _lie(p: PartitionInfo) -> PartitionInfo:
        return replace(p, memory_bytes=p.memory_bytes // 2)


class PlacementIgnored(Wrapped):
    """Creates wherever it likes, whatever placement is asked for."""

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        if isinstance(placement, int) and not isinstance(placement, bool) and placement >= 0:
            placement = None  # a valid request, dropped
        return self.inner.create_partition(device, profile, placement)


class TelemetryAllNone(Wrapped):
    """Declares telemetry supported and reports nothing."""

    def telemetry(self, device: DeviceInfo) -> Telemetry:
        self.inner.telemetry(device)  # keeps DeviceLost and NotFound as they are
        return Telemetry()


class TelemetryKelvinMilliwatts(Wrapped):
    """Reports temperature in kelvin and power in milliwatts."""

    def telemetry(self, device: DeviceInfo) -> Telemetry:
        t = self.inner.telemetry(device)
        return replace(
            t,
            temperature_c=(t.temperature_c if t.temperature_c is not None else 31.0) + 273.15,
            power_w=(t.power_w if t.power_w is not None else 62.0) * 1000.0,
        )


class SiblingEnvironment(Wrapped):
    """Gives each partition the environment of the first live partition of its device."""

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        if len(targets) == 1 and isinstance(targets[0], PartitionInfo):
            part = targets[0]
            for d in self.inner.devices():
                if d.native_id == part.device_native_id:
                    first = min(self.inner.partitions(d), key=lambda p: p.native_id, default=part)
                    return self.inner.visibility_env([first])
        return self.inner.visibility_env(targets)


class OrdinalShift(Wrapped):
    """Whole devices: each ordinal in a visibility variable points at the next device."""

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        env = self.inner.visibility_env(targets)
        if not all(isinstance(t, DeviceInfo) for t in targets):
            return env
        n = len(self.inner.devices())
        return {
            k: re.sub(r"\d+", lambda m: str((int(m.group()) + 1) % n), v)
            if k.endswith("_VISIBLE_DEVICES")
            else v
            for k, v in env.items()
        }


class ParentOrdinal(Wrapped):
    """A partition's in-container ordinal 0 becomes its parent device's index."""

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        env = self.inner.visibility_env(targets)
        if len(targets) != 1 or not isinstance(targets[0], PartitionInfo):
            return env
        parent = next(d for d in self.inner.devices() if d.native_id == targets[0].device_native_id)
        return {
            k: str(parent.index) if k.endswith("_VISIBLE_DEVICES") and v == "0" else v
            for k, v in env.items()
        }


class MadeUpProvider(Wrapped):
    """Names an execution provider onnxruntime does not have, then the CPU."""

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        self.inner.onnx_placement(target)
        return OnnxPlacement(
            (
                ExecutionProvider("AcceleratorExecutionProvider"),
                ExecutionProvider("CPUExecutionProvider"),
            )
        )


class PartitionsNoTargets(Wrapped):
    """Runs models on whole devices only; every partition refuses, undeclared."""

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        if isinstance(target, PartitionInfo):
            raise UnsupportedOperation(f"partition {target.native_id} cannot run models")
        return self.inner.onnx_placement(target)


class ScopeLeaks(Wrapped):
    """Says its partitions are process-scoped while every process shares them."""

    def capabilities(self) -> Capabilities:
        declared = dict(self.inner.capabilities().declared)
        declared[str(Capability.PARTITION_DEVICE_SCOPE)] = False
        return Capabilities(declared)

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        return [replace(p, scope="process") for p in self.inner.partitions(device)]

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        return replace(self.inner.create_partition(device, profile, placement), scope="process")


class DiesWithCreator(Wrapped):
    """Device-scoped, but destroys the partitions it made when its process lets go."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._made: list[PartitionInfo] = []

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        part = self.inner.create_partition(device, profile, placement)
        self._made.append(part)
        return part

    def close(self) -> None:
        for p in self._made:
            with contextlib.suppress(NotFound):
                self.inner.destroy_partition(p)
        self.inner.close()


FLAWS: dict[str, Flaw] = {
    f.name: f
    for f in (
        Flaw("indexes-from-one", IndexesFromOne, inv.INDEX_TRUTH, ("discovery",)),
        Flaw("indexes-reversed", IndexesReversed, inv.INDEX_TRUTH, ("discovery",)),
        Flaw("compute-as-cores", ComputeAsCores, inv.INDEX_TRUTH, ("discovery",)),
        Flaw("memory-is-free", MemoryIsFree, inv.DEVICE_FACTS, ("partitions",)),
        Flaw("unstable-memory", UnstableMemory, inv.DEVICE_FACTS, ("discovery",)),
        Flaw(
            "half-memory-partitions",
            HalfMemoryPartitions,
            inv.CREATE_MATCHES_PROFILE,
            ("partitions",),
        ),
        Flaw("placement-ignored", PlacementIgnored, inv.PLACEMENT_HONOURED, ("partitions",)),
        Flaw("telemetry-all-none", TelemetryAllNone, inv.TELEMETRY_PLAUSIBLE, ("discovery",)),
        Flaw(
            "telemetry-kelvin-milliwatts",
            TelemetryKelvinMilliwatts,
            inv.TELEMETRY_PLAUSIBLE,
            ("discovery",),
        ),
        Flaw(
            "sibling-environment", SiblingEnvironment, inv.VISIBILITY_PER_PARTITION, ("sessions",)
        ),
        Flaw("ordinal-shift", OrdinalShift, inv.VISIBILITY_ORDINALS, ("sessions",)),
        Flaw("parent-ordinal", ParentOrdinal, inv.VISIBILITY_ORDINALS, ("sessions",)),
        Flaw("made-up-provider", MadeUpProvider, inv.PROVIDERS_REAL, ("sessions",)),
        Flaw(
            "partitions-no-targets", PartitionsNoTargets, inv.EVERY_PARTITION_TARGET, ("sessions",)
        ),
        Flaw("scope-leaks", ScopeLeaks, inv.SCOPE_HONEST, ("partitions",)),
        Flaw("dies-with-creator", DiesWithCreator, inv.SCOPE_HONEST, ("partitions",)),
    )
}


@dataclass(frozen=True)
class InTreeFleet:
    """A picklable inventory factory: an installed backend under a simulated fleet, with
    one flaw of :data:`FLAWS` (set ``ACCELPOOL_STATE_DIR``, or pass ``state_dir`` to
    :func:`~accelpool_conformance.run`, so the fleet's state is the run's own)."""

    backend: str
    sim: str
    flaw: str

    def __call__(self) -> Inventory:
        from accelpool.inventory import discover

        found = discover(sim=self.sim, backends=[self.backend])
        status = found.backends()[0]
        if not status.available:
            found.close()
            raise RuntimeError(f"backend {self.backend} is not available: {status.reason}")
        from accelpool_conformance.broken import flaw

        return inventory_of(flaw(self.flaw).wrap(found.backend(self.backend)))
