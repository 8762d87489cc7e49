"""Deliberately broken backends: the suite's proof that it catches broken backends.

Each flaw wraps a good backend (the reference :class:`accelpool.testing.ToyBackend`)
and breaks one promise of the contract, the way real plugins break it. The suite's
own tests run the suite against each and require a failure naming the broken
invariant; a vendor may do the same to see what a failure looks like::

    from accelpool_conformance import run
    from accelpool_conformance.broken import ToyFleet

    result = run("toy", inventory_factory=ToyFleet("state.json", flaw="stale-partitions"))
    [t["message"] for t in result.failures()]
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from accelpool.capabilities import Capabilities
from accelpool.errors import NotFound
from accelpool.inventory import Inventory
from accelpool.sim.state import StateStore
from accelpool.spi import Backend, Target
from accelpool.testing import ToyBackend, inventory_of, toy_backend
from accelpool.types import (
    DeviceInfo,
    OnnxPlacement,
    PartitionInfo,
    PartitionProfile,
    Placement,
    Telemetry,
)
from accelpool_conformance import invariants as inv


class Wrapped(Backend):
    """A backend that forwards every call to ``inner`` (flaws override some)."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner.context)
        self.inner = inner

    def probe(self) -> str | None:
        return self.inner.probe()

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def devices(self) -> Sequence[DeviceInfo]:
        return self.inner.devices()

    def profiles(self, device: DeviceInfo) -> Sequence[PartitionProfile]:
        return self.inner.profiles(device)

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        return self.inner.partitions(device)

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        return self.inner.create_partition(device, profile, placement)

    def destroy_partition(self, partition: PartitionInfo) -> None:
        self.inner.destroy_partition(partition)

    def telemetry(self, device: DeviceInfo) -> Telemetry:
        return self.inner.telemetry(device)

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        return self.inner.visibility_env(targets)

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        return self.inner.onnx_placement(target)

    def inject_fault(self, fault: str, device: DeviceInfo) -> None:
        self.inner.inject_fault(fault, device)

    def clear_faults(self) -> None:
        self.inner.clear_faults()

    def close(self) -> None:
        self.inner.close()


class Relabelled(Wrapped):
    """Every partition it lists or creates passes through :meth:`_lie` first."""

    def _lie(self, p: PartitionInfo) -> PartitionInfo:
        raise NotImplementedError

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        return [self._lie(p) for p in self.inner.partitions(device)]

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        return self._lie(self.inner.create_partition(device, profile, placement))


class OverlappingPartitions(Relabelled):
    """Reports every partition at the first placement of its size: they overlap."""

    @staticmethod
    def _lie(p: PartitionInfo) -> PartitionInfo:
        if p.placement is None:
            return p
        return replace(p, placement=Placement(0, p.placement.size))


class CapacityNotReturned(Wrapped):
    """Destroy forgets to free the slots: a hidden partition keeps holding them."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._ghosts: set[str] = set()

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        return [p for p in self.inner.partitions(device) if p.native_id not in self._ghosts]

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        part = self.inner.create_partition(device, profile, placement)
        self._ghosts.discard(part.native_id)
        return part

    def destroy_partition(self, partition: PartitionInfo) -> None:
        if partition.native_id in self._ghosts:
            raise NotFound(f"no partition {partition.native_id}: already destroyed")
        self.inner.destroy_partition(partition)
        device = next(d for d in self.inner.devices() if d.native_id == partition.device_native_id)
        start = partition.placement.start if partition.placement else None
        ghost = self.inner.create_partition(device, partition.profile, start)
        self._ghosts.add(ghost.native_id)


class StalePartitions(Wrapped):
    """Keeps listing partitions after they are destroyed."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._stale: dict[str, PartitionInfo] = {}

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        live = list(self.inner.partitions(device))
        have = {p.native_id for p in live}
        stale = [
            p
            for p in self._stale.values()
            if p.device_native_id == device.native_id and p.native_id not in have
        ]
        return live + stale

    def destroy_partition(self, partition: PartitionInfo) -> None:
        self.inner.destroy_partition(partition)
        self._stale[partition.native_id] = partition


class UnstableIds(Wrapped):
    """Gives devices a new id on every listing (a counter baked into the id)."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._calls = 0
        self._lock = threading.Lock()

    def devices(self) -> Sequence[DeviceInfo]:
        with self._lock:
            self._calls += 1
            n = self._calls
        return [replace(d, native_id=f"{d.native_id}-{n}") for d in self.inner.devices()]

    def _inner(self, device: DeviceInfo) -> DeviceInfo:
        for d in self.inner.devices():
            if d.index == device.index:
                return d
        return device

    def _outer(self, p: PartitionInfo, device: DeviceInfo) -> PartitionInfo:
        return replace(p, device_native_id=device.native_id)

    def profiles(self, device: DeviceInfo) -> Sequence[PartitionProfile]:
        return self.inner.profiles(self._inner(device))

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        return [self._outer(p, device) for p in self.inner.partitions(self._inner(device))]

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        made = self.inner.create_partition(self._inner(device), profile, placement)
        return self._outer(made, device)

    def destroy_partition(self, partition: PartitionInfo) -> None:
        for d in self.inner.devices():
            if partition.device_native_id.startswith(d.native_id + "-"):
                partition = replace(partition, device_native_id=d.native_id)
        self.inner.destroy_partition(partition)

    def telemetry(self, device: DeviceInfo) -> Telemetry:
        return self.inner.telemetry(self._inner(device))

    def inject_fault(self, fault: str, device: DeviceInfo) -> None:
        self.inner.inject_fault(fault, self._inner(device))


class VendorExceptionEscapes(Wrapped):
    """Lets the vendor library's own exception out when a partition is unknown."""

    def destroy_partition(self, partition: PartitionInfo) -> None:
        try:
            self.inner.destroy_partition(partition)
        except NotFound:
            raise KeyError(partition.native_id) from None


class DoubleGrant(Wrapped):
    """Reads the free slots, waits, then writes, with no lock around the two: creates
    racing in threads or processes are granted the same slot."""

    #: seconds between reading the state and writing it back
    WINDOW = 0.1

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        if not isinstance(inner, ToyBackend) or inner.context.sim is None:
            raise TypeError("DoubleGrant wraps a ToyBackend over a shared state store")
        store = inner.context.sim.state
        name = inner.name

        @contextlib.contextmanager
        def unlocked() -> Iterator[dict[str, Any]]:
            snapshot: dict[str, Any] = store.read().get(name, {})
            time.sleep(self.WINDOW)
            yield snapshot
            with store.transaction() as doc:  # writes back what it read: a lost update
                doc[name] = snapshot

        inner._state = unlocked  # type: ignore[method-assign]


class MemoryExceedsDevice(Relabelled):
    """Reports each partition with three times its memory."""

    @staticmethod
    def _lie(p: PartitionInfo) -> PartitionInfo:
        return replace(p, memory_bytes=p.memory_bytes * 3)


class Redeclared(Wrapped):
    """Not a flaw: the same backend declaring other capabilities (``None``: not declared)."""

    def __init__(self, inner: Backend, changes: Sequence[tuple[str, bool | None]]) -> None:
        super().__init__(inner)
        self.changes = tuple(changes)

    def capabilities(self) -> Capabilities:
        declared = dict(self.inner.capabilities().declared)
        for name, value in self.changes:
            if value is None:
                declared.pop(name, None)
            else:
                declared[name] = value
        return Capabilities(declared)


@dataclass(frozen=True)
class Flaw:
    """One deliberate flaw: how to build it and which invariant must catch it."""

    name: str
    wrap: Callable[[Backend], Backend]
    invariant: str
    #: suite areas where the flaw shows
    areas: tuple[str, ...]


FLAWS: dict[str, Flaw] = {
    f.name: f
    for f in (
        Flaw("overlapping-partitions", OverlappingPartitions, inv.NO_OVERLAP, ("partitions",)),
        Flaw("capacity-not-returned", CapacityNotReturned, inv.CAPACITY_RETURNS, ("partitions",)),
        Flaw("stale-partitions", StalePartitions, inv.GONE_AFTER_DESTROY, ("partitions",)),
        Flaw("unstable-ids", UnstableIds, inv.IDS_STABLE_CALLS, ("discovery",)),
        Flaw("vendor-exception", VendorExceptionEscapes, inv.VENDOR, ("errors",)),
        Flaw("double-grant", DoubleGrant, inv.DOUBLE_GRANT, ("concurrency",)),
        Flaw("memory-exceeds-device", MemoryExceedsDevice, inv.WITHIN_DEVICE, ("partitions",)),
    )
}


def flaw(name: str) -> Flaw:
    """A flaw by name, from :data:`FLAWS` or :mod:`accelpool_conformance.broken_more`."""
    if name in FLAWS:
        return FLAWS[name]
    from accelpool_conformance.broken_extra import FLAWS as EXTRA
    from accelpool_conformance.broken_more import FLAWS as MORE

    return MORE[name] if name in MORE else EXTRA[name]


@dataclass(frozen=True)
class ToyFleet:
    """A picklable inventory factory: the reference ToyBackend over a shared state file,
    optionally with one deliberate ``flaw`` (see :func:`flaw`)."""

    state: str
    devices: int = 2
    flaw: str | None = None
    name: str = "toy"
    #: capability declarations to change: (name, True/False, or None for undeclared)
    redeclare: tuple[tuple[str, bool | None], ...] = ()

    def __call__(self) -> Inventory:
        backend: Backend = toy_backend(self.devices, StateStore(Path(self.state)), self.name)
        if self.flaw is not None:
            backend = flaw(self.flaw).wrap(backend)
        if self.redeclare:
            backend = Redeclared(backend, self.redeclare)
        return inventory_of(backend)
