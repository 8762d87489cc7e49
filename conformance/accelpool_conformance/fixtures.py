"""Fixtures the suite's checks use (registered only while the suite runs).

``backend`` is the raw SPI instance behind a :class:`CheckedBackend`; ``ledger``
records every partition a check creates and destroys what is left when the check
ends, pass or fail, so nothing the suite made outlives it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from accelpool.capabilities import Capabilities, Capability
from accelpool.errors import NotFound
from accelpool.inventory import Inventory
from accelpool.types import DeviceInfo, PartitionInfo, PartitionProfile
from accelpool_conformance.context import SuiteContext, Tuning, WorkerSpec
from accelpool_conformance.invariants import (
    CAPACITY_RETURNS,
    CLEANUP,
    GONE_AFTER_DESTROY,
    CheckedBackend,
    broken,
    check,
    describe,
    ids,
)
from accelpool_conformance.plugin import CONTEXT_KEY
from accelpool_conformance.report import UNSUPPORTED_PREFIX


@dataclass
class Plan:
    """What the partition checks run on, decided once, before collection."""

    #: devices with partition profiles and no live partitions, in index order
    partitionable: list[DeviceInfo] = field(default_factory=list)
    #: the profiles of the first of them (the checks are parametrized by these)
    profiles: list[PartitionProfile] = field(default_factory=list)
    #: ``available`` of every profile of each partitionable device, empty
    initial: dict[str, dict[str, int | None]] = field(default_factory=dict)
    #: why no device can be used, when none can
    problem: str | None = None


def plan_of(ctx: SuiteContext) -> Plan:
    cached: Plan | None = ctx.plan_cache
    if cached is not None:
        return cached
    plan = Plan()
    if ctx.error is None and ctx.supports(Capability.PARTITION):
        try:
            raw = ctx.raw_backend()
            offered = busy = 0
            for d in sorted(raw.devices(), key=lambda d: d.index):
                profiles = list(raw.profiles(d))
                if not profiles:
                    continue
                offered += 1
                if list(raw.partitions(d)):
                    busy += 1
                    continue
                plan.partitionable.append(d)
                plan.initial[d.native_id] = {p.name: p.available for p in profiles}
                if not plan.profiles:
                    plan.profiles = profiles
            if not offered:
                plan.problem = "no device offers partition profiles"
            elif not plan.partitionable:
                plan.problem = (
                    f"all {busy} partitionable devices already hold partitions the suite did "
                    "not make; destroy the partitions of one device to test partitions"
                )
        except Exception as e:  # the checks themselves report the broken call
            plan.problem = f"listing devices and profiles failed: {describe(e)}"
    ctx.plan_cache = plan
    return plan


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    ctx = metafunc.config.stash[CONTEXT_KEY]
    if "profile" in metafunc.fixturenames:
        names = [p.name for p in plan_of(ctx).profiles]
        if names:
            metafunc.parametrize("profile", names, ids=names)
        else:
            metafunc.parametrize("profile", [pytest.param("-", id="no-profiles")])
    if "placed_profile" in metafunc.fixturenames:
        # Placements can be requested only of profiles that offer them.
        names = [p.name for p in plan_of(ctx).profiles if p.placements]
        if names:
            metafunc.parametrize("placed_profile", names, ids=names)
        else:
            metafunc.parametrize(
                "placed_profile",
                [pytest.param(NO_PLACEMENTS, id="no-placements")],
                indirect=True,
            )


#: Stands in for a profile when no profile of the device offers placements.
NO_PLACEMENTS = "-"


@pytest.fixture
def placed_profile(request: pytest.FixtureRequest) -> str:
    """Only reached when no profile offers placements: nothing to request."""
    if request.param == NO_PLACEMENTS:
        pytest.skip(UNSUPPORTED_PREFIX + "no partition profile of this device offers placements")
    return str(request.param)


class Ledger:
    """Partitions a check created; whatever is left is destroyed when the check ends."""

    def __init__(self, backend: CheckedBackend) -> None:
        self.backend = backend
        self.live: dict[str, PartitionInfo] = {}

    def create(self, device: DeviceInfo, profile: Any, placement: Any = None) -> PartitionInfo:
        part = self.backend.create_partition(device, profile, placement)
        self.live[part.native_id] = part
        return part

    def adopt(self, part: PartitionInfo) -> None:
        """Take charge of a partition made elsewhere (a worker, a thread)."""
        self.live[part.native_id] = part

    def destroy(self, part: PartitionInfo) -> None:
        self.backend.destroy_partition(part)
        self.live.pop(part.native_id, None)

    def forget(self, part: PartitionInfo) -> None:
        self.live.pop(part.native_id, None)

    def destroy_all(self) -> None:
        """Destroy every partition still recorded (NotFound is fine: already gone)."""
        problems = []
        for part in list(self.live.values()):
            try:
                self.backend.raw.destroy_partition(part)
            except NotFound:
                pass
            except Exception as e:
                problems.append(f"{part.native_id}: {describe(e)}")
            self.live.pop(part.native_id, None)
        if problems:
            broken(CLEANUP, "destroying partitions the check left failed: " + "; ".join(problems))


@pytest.fixture(scope="session")
def suite(pytestconfig: pytest.Config) -> SuiteContext:
    """The run's context."""
    return pytestconfig.stash[CONTEXT_KEY]


@pytest.fixture(scope="session")
def tuning(suite: SuiteContext) -> Tuning:
    return suite.tuning


@pytest.fixture(scope="session")
def inventory(suite: SuiteContext) -> Inventory:
    if suite.inventory is None:
        pytest.skip(suite.error or "no inventory")
    return suite.inventory


@pytest.fixture(scope="session")
def backend(suite: SuiteContext) -> CheckedBackend:
    """The backend under test, called through the suite's checks."""
    if suite.error is not None:
        pytest.skip(suite.error)
    return CheckedBackend(suite.raw_backend(), suite.exercise)


@pytest.fixture(scope="session")
def capabilities(suite: SuiteContext) -> Capabilities:
    return suite.capabilities


@pytest.fixture(scope="session")
def devices(backend: CheckedBackend) -> list[DeviceInfo]:
    return sorted(backend.devices(), key=lambda d: d.index)


@pytest.fixture(scope="session")
def plan(suite: SuiteContext) -> Plan:
    return plan_of(suite)


def clean(plan: Plan, backend: CheckedBackend, device: DeviceInfo) -> DeviceInfo:
    """``device``, after checking it is as empty as when the run began.

    Every check destroys what it made, so a device that still lists partitions, or
    offers less than at first, shows a backend that keeps destroyed partitions.
    """
    left = ids(backend.partitions(device))
    check(
        not left,
        GONE_AFTER_DESTROY,
        f"{device.native_id} still lists {left} after earlier checks destroyed every "
        "partition they made",
    )
    now = {p.name: p.available for p in backend.profiles(device)}
    first = plan.initial.get(device.native_id)
    check(
        first is None or now == first,
        CAPACITY_RETURNS,
        f"{device.native_id} offers {now} after earlier checks destroyed every partition "
        f"they made; at first it offered {first}",
    )
    return device


@pytest.fixture
def partition_device(plan: Plan, backend: CheckedBackend) -> DeviceInfo:
    """An empty device that offers partition profiles."""
    if not plan.partitionable:
        pytest.skip(plan.problem or "no device can be partitioned")
    return clean(plan, backend, plan.partitionable[0])


def devices_by_kind(
    plan: Plan, backend: CheckedBackend, last: bool = False
) -> dict[str, DeviceInfo]:
    """For each partition kind offered, the first (or ``last``) empty device offering it,
    checked clean."""
    out: dict[str, DeviceInfo] = {}
    for d in reversed(plan.partitionable) if last else plan.partitionable:
        kinds = {p.kind for p in backend.profiles(d)} - set(out)
        if kinds:
            clean(plan, backend, d)
        for k in sorted(kinds):
            out[k] = d
    return out


def smallest_of_kind(backend: CheckedBackend, device: DeviceInfo, kind: str) -> PartitionProfile:
    """The smallest profile of ``kind`` on ``device`` (memory, then compute, then name)."""
    return min(
        (p for p in backend.profiles(device) if p.kind == kind),
        key=lambda p: (p.memory_bytes, p.compute_units, p.name),
    )


@pytest.fixture
def second_partition_device(plan: Plan, backend: CheckedBackend) -> DeviceInfo:
    """Another empty, partitionable device (skips on one-device hosts)."""
    if len(plan.partitionable) < 2:
        # Not applicable, as a profile without placements is: nothing to be independent of.
        pytest.skip(
            UNSUPPORTED_PREFIX + "needs two empty partitionable devices; this host has "
            f"{len(plan.partitionable)}"
        )
    return clean(plan, backend, plan.partitionable[1])


@pytest.fixture
def ledger(backend: CheckedBackend) -> Iterator[Ledger]:
    led = Ledger(backend)
    yield led
    led.destroy_all()


@pytest.fixture
def worker_spec(suite: SuiteContext) -> WorkerSpec:
    spec, problem = suite.worker_spec()
    if spec is None:
        pytest.skip(problem or "worker processes are not available")
    return spec
