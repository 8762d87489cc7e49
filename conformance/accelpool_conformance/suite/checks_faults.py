"""Faults (simulators that inject them): a lost device, a create failing half way."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from accelpool.capabilities import Capability
from accelpool.errors import AccelPoolError, DeviceLost
from accelpool.types import DeviceInfo, PartitionInfo
from accelpool_conformance import invariants as inv
from accelpool_conformance.fixtures import Ledger, Plan
from accelpool_conformance.helpers import availability
from accelpool_conformance.invariants import CheckedBackend, check, describe, expect_error

pytestmark = pytest.mark.requires(Capability.FAULT_INJECTION)


@pytest.fixture
def faults(backend: CheckedBackend) -> Iterator[CheckedBackend]:
    """The backend, with every injected fault undone when the check ends."""
    try:
        yield backend
    finally:
        backend.clear_faults()


def test_device_lost_gives_device_lost(
    faults: CheckedBackend, devices: list[DeviceInfo], plan: Plan, ledger: Ledger
) -> None:
    backend = faults
    caps = backend.capabilities()
    # Lose a partitionable device with a partition on it: a device lost mid-run.
    dev = plan.partitionable[-1] if plan.partitionable else devices[-1]
    others = [d for d in devices if d.native_id != dev.native_id]
    part: PartitionInfo | None = None
    profile = None
    if caps.supports(Capability.PARTITION) and backend.profiles(dev):
        profile = min(backend.profiles(dev), key=lambda p: (p.memory_bytes, p.compute_units))
        part = ledger.create(dev, profile.name)
    backend.inject_fault("device-lost", dev)
    calls: list[tuple[str, Callable[[], object]]] = []
    if caps.supports(Capability.PARTITION):
        calls += [
            ("partitions()", lambda: backend.partitions(dev)),
            ("profiles()", lambda: backend.profiles(dev)),
        ]
        if profile is not None:
            calls.append(
                ("create_partition()", lambda: backend.create_partition(dev, profile.name))
            )
        if part is not None:
            calls.append(("destroy_partition()", lambda: backend.destroy_partition(part)))
    if caps.supports(Capability.TELEMETRY):
        calls.append(("telemetry()", lambda: backend.telemetry(dev)))
    check(
        calls,
        inv.DEVICE_LOST,
        "the backend injects faults but supports no operation on a device to test them with",
    )
    for what, fn in calls:
        expect_error(inv.DEVICE_LOST, DeviceLost, f"{what} on lost device {dev.native_id}", fn)
    # The other devices keep their ids and indexes: a lost device moves nobody else.
    now = {d.native_id: d.index for d in backend.devices()}
    moved = [
        f"{o.native_id} (index {o.index} -> {now.get(o.native_id, 'gone')})"
        for o in others
        if now.get(o.native_id) != o.index
    ]
    check(
        not moved,
        inv.LOST_ISOLATED,
        lambda: f"with {dev.native_id} lost, other devices moved: {', '.join(moved[:3])}",
    )
    for other in others[:2]:
        try:
            if caps.supports(Capability.PARTITION):
                backend.partitions(other)
                backend.profiles(other)
            if caps.supports(Capability.TELEMETRY):
                backend.telemetry(other)
        except AccelPoolError as e:
            inv.broken(
                inv.LOST_ISOLATED,
                f"with {dev.native_id} lost, device {other.native_id} fails: {describe(e)}",
            )
    backend.clear_faults()
    if caps.supports(Capability.PARTITION):
        backend.partitions(dev)  # answers again once the fault is cleared


@pytest.mark.requires(Capability.PARTITION)
def test_create_failing_midway_leaves_nothing_behind(
    faults: CheckedBackend, partition_device: DeviceInfo, ledger: Ledger
) -> None:
    backend = faults
    dev = partition_device
    prof = min(backend.profiles(dev), key=lambda p: (p.memory_bytes, p.compute_units))
    before_ids = inv.ids(backend.partitions(dev))
    before = availability(backend, dev)
    backend.inject_fault("create-fails-midway", dev)
    expect_error(
        inv.MIDWAY,
        AccelPoolError,
        f"create_partition({prof.name}) with a create-fails-midway fault",
        lambda: ledger.create(dev, prof.name),
    )
    after_ids = inv.ids(backend.partitions(dev))
    check(
        after_ids == before_ids,
        inv.MIDWAY,
        f"partitions before {before_ids}, after the failed create {after_ids}",
    )
    after = availability(backend, dev)
    check(
        after == before,
        inv.MIDWAY,
        f"availability before {before}, after the failed create {after}",
    )
    # The fault is one-shot: it fails one create, and the next succeeds uncleared.
    try:
        part = ledger.create(dev, prof.name)
    except AccelPoolError as e:
        inv.broken(
            inv.MIDWAY_ONE_SHOT,
            f"the create after the one that failed half way raised {describe(e)}",
        )
    finally:
        backend.clear_faults()
    ledger.destroy(part)
