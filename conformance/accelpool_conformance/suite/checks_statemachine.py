"""A property-based state machine: random creates and destroys against a model.

Profiles and placements are drawn from what the backend reports; after every step
the backend's partitions must match the model of what succeeded, never overlap, fit
in the device, and an emptied device must offer the capacity it offered at first.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accelpool.capabilities import Capability
from accelpool.errors import InsufficientCapacity, NotFound
from accelpool.types import DeviceInfo, PartitionInfo
from accelpool_conformance import invariants as inv
from accelpool_conformance.context import SuiteContext
from accelpool_conformance.fixtures import Plan
from accelpool_conformance.helpers import availability, check_created
from accelpool_conformance.invariants import CheckedBackend, broken, check, expect_error

pytestmark = pytest.mark.requires(Capability.PARTITION)


def machine_for(
    backend: CheckedBackend, devices: list[DeviceInfo]
) -> Callable[[], RuleBasedStateMachine]:
    """A state-machine class bound to ``backend`` and its (empty) ``devices``."""
    empty = {d.native_id: availability(backend, d) for d in devices}

    class PartitionMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.live: dict[str, PartitionInfo] = {}
            self.dead: list[PartitionInfo] = []

        @rule(data=st.data())
        def create(self, data: st.DataObject) -> None:
            dev = data.draw(st.sampled_from(devices), label="device")
            profiles = backend.profiles(dev)
            prof = data.draw(st.sampled_from(profiles), label="profile")
            starts: list[int | None] = [None, *(pl.start for pl in prof.placements)]
            placement = data.draw(st.sampled_from(starts), label="placement")
            try:
                part = backend.create_partition(dev, prof.name, placement)
            except InsufficientCapacity as e:
                if placement is None and prof.available:
                    broken(inv.AVAILABLE_HONEST,
                           f"{prof.name} on {dev.native_id} reported {prof.available} available "
                           f"but create was refused: {e}")
                return
            self.live[part.native_id] = part  # recorded first, so teardown destroys it
            if prof.available is not None:
                check(prof.available > 0, inv.AVAILABLE_HONEST,
                      f"{prof.name} on {dev.native_id} reported 0 available but create "
                      f"succeeded ({part.native_id})")
            check_created(backend, part, dev, prof, placement)

        @precondition(lambda self: bool(self.live))
        @rule(data=st.data())
        def destroy(self, data: st.DataObject) -> None:
            pid = data.draw(st.sampled_from(sorted(self.live)), label="partition")
            part = self.live.pop(pid)
            backend.destroy_partition(part)
            self.dead.append(part)

        @precondition(lambda self: bool(self.dead))
        @rule(data=st.data())
        def destroy_again(self, data: st.DataObject) -> None:
            part = data.draw(st.sampled_from(self.dead), label="destroyed partition")
            if part.native_id in self.live:
                return  # its id was given to a new partition: that one is live
            expect_error(inv.DESTROY_TWICE, NotFound,
                         f"destroying {part.native_id} again",
                         lambda: backend.destroy_partition(part))

        @invariant()
        def backend_matches_model(self) -> None:
            dead = {p.native_id for p in self.dead} - set(self.live)
            for dev in devices:
                listed = backend.partitions(dev)
                have = {p.native_id for p in listed}
                want = {p.native_id for p in self.live.values()
                        if p.device_native_id == dev.native_id}
                missing, extra = sorted(want - have), sorted(have - want)
                check(not missing, inv.LISTED_AFTER_CREATE,
                      f"{dev.native_id}: created {missing} are not listed")
                stale = [x for x in extra if x in dead]
                check(not stale, inv.GONE_AFTER_DESTROY,
                      f"{dev.native_id}: destroyed {stale} are still listed")
                check(not extra, inv.MODEL,
                      f"{dev.native_id}: lists {extra}, which were never created")
                inv.check_no_overlap(listed, f"device {dev.native_id}")
                inv.check_within_device(dev, listed, f"device {dev.native_id}")
                now = availability(backend, dev)
                for p in backend.profiles(dev):
                    check(p.available is None or 0 <= p.available <= p.max_count,
                          inv.AVAILABLE_HONEST,
                          f"{dev.native_id} {p.name}: available {p.available}, "
                          f"max_count {p.max_count}")
                if not want:
                    check(now == empty[dev.native_id], inv.CAPACITY_RETURNS,
                          f"{dev.native_id} is empty again but offers {now}; "
                          f"at first it offered {empty[dev.native_id]}")

        def teardown(self) -> None:
            for part in self.live.values():
                try:
                    backend.raw.destroy_partition(part)
                except Exception:  # the failure being reported matters, not this one
                    pass

    return PartitionMachine


def test_random_creates_and_destroys_match_the_model(
    backend: CheckedBackend, partition_device: DeviceInfo, plan: Plan, suite: SuiteContext
) -> None:
    devices = plan.partitionable[:2]
    machine = machine_for(backend, devices)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=suite.tuning.max_examples,
            stateful_step_count=suite.tuning.step_count,
            deadline=None,
            database=None,
            derandomize=True,
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
        ),
    )
