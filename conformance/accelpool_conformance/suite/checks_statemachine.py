"""A property-based state machine: random creates and destroys against a model.

Profiles and placements are drawn from what the backend reports; after every step
the backend's partitions must match the model of what succeeded, never overlap, fit
in the device, and an emptied device must offer the capacity it offered at first.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
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
from accelpool_conformance.invariants import (
    CheckedBackend,
    InvariantBroken,
    broken,
    check,
    expect_error,
)

pytestmark = pytest.mark.requires(Capability.PARTITION)
T = TypeVar("T")

#: Without shrinking a failure is reported as found (at most ``step_count`` steps):
#: shrinking replays the backend hundreds of times, minutes for a slow simulator.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
PHASES_SHRINK = (*PHASES, Phase.shrink)


def _pick(data: st.DataObject, items: Sequence[T], label: str) -> T:
    # An index drawn the same way whatever the list's length, so that a replay
    # draws the same data even where the backend answers differently.
    return items[data.draw(st.integers(0, 1 << 16), label=label) % len(items)]


def machine_for(backend: CheckedBackend, devices: list[DeviceInfo]) -> type[RuleBasedStateMachine]:
    """A state-machine class bound to ``backend`` and its (empty) ``devices``."""
    empty = {d.native_id: availability(backend, d) for d in devices}
    failures: list[InvariantBroken] = []

    def recorded(fn: Callable[..., None]) -> Callable[..., None]:
        """Keep the first broken invariant: a replay after a leak may fail elsewhere."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                fn(*args, **kwargs)
            except InvariantBroken as e:
                failures.append(e)
                raise

        return wrapper

    class PartitionMachine(RuleBasedStateMachine):
        @recorded
        def __init__(self) -> None:
            super().__init__()
            # Creation order, not ids: ids may differ between replays (MIG UUIDs), the
            # n-th partition made may not.
            self.live: list[PartitionInfo] = []
            self.dead: list[PartitionInfo] = []
            # Every run starts where the last one ended: everything it made destroyed.
            for dev in devices:
                left = inv.ids(backend.partitions(dev))
                check(
                    not left,
                    inv.GONE_AFTER_DESTROY,
                    f"{dev.native_id} still lists {left} after the previous run destroyed "
                    "every partition it made",
                )
                now = availability(backend, dev)
                check(
                    now == empty[dev.native_id],
                    inv.CAPACITY_RETURNS,
                    f"{dev.native_id} offers {now} after the previous run destroyed every "
                    f"partition it made; empty, it offered {empty[dev.native_id]}",
                )

        @rule(data=st.data())
        @recorded
        def create(self, data: st.DataObject) -> None:
            dev = _pick(data, devices, "device")
            prof = _pick(data, sorted(backend.profiles(dev), key=lambda p: p.name), "profile")
            starts: list[int | None] = [None, *(pl.start for pl in prof.placements)]
            placement = _pick(data, starts, "placement")
            note(f"create_partition({dev.native_id}, {prof.name!r}, placement={placement})")
            try:
                part = backend.create_partition(dev, prof.name, placement)
            except InsufficientCapacity as e:
                note(f"  -> InsufficientCapacity: {e}")
                if placement is None and prof.available:
                    broken(
                        inv.AVAILABLE_HONEST,
                        f"{prof.name} on {dev.native_id} reported {prof.available} available "
                        f"but create was refused: {e}",
                    )
                return
            note(f"  -> {part.native_id} at {part.placement}")
            self.live.append(part)  # recorded first, so teardown destroys it
            if prof.available is not None:
                check(
                    prof.available > 0,
                    inv.AVAILABLE_HONEST,
                    f"{prof.name} on {dev.native_id} reported 0 available but create "
                    f"succeeded ({part.native_id})",
                )
            check_created(backend, part, dev, prof, placement)

        @precondition(lambda self: bool(self.live))
        @rule(data=st.data())
        @recorded
        def destroy(self, data: st.DataObject) -> None:
            part = _pick(data, self.live, "partition")
            note(f"destroy_partition({part.native_id})")
            self.live.remove(part)
            backend.destroy_partition(part)
            self.dead.append(part)

        @precondition(lambda self: bool(self.dead))
        @rule(data=st.data())
        @recorded
        def destroy_again(self, data: st.DataObject) -> None:
            part = _pick(data, self.dead, "destroyed partition")
            if part.native_id in {p.native_id for p in self.live}:
                return  # its id was given to a new partition: that one is live
            note(f"destroy_partition({part.native_id}) again")
            expect_error(
                inv.DESTROY_TWICE,
                NotFound,
                f"destroying {part.native_id} again",
                lambda: backend.destroy_partition(part),
            )

        @invariant()
        @recorded
        def backend_matches_model(self) -> None:
            live_ids = {p.native_id for p in self.live}
            dead = {p.native_id for p in self.dead} - live_ids
            for dev in devices:
                listed = backend.partitions(dev)
                have = {p.native_id for p in listed}
                want = {p.native_id for p in self.live if p.device_native_id == dev.native_id}
                missing, extra = sorted(want - have), sorted(have - want)
                check(
                    not missing,
                    inv.LISTED_AFTER_CREATE,
                    f"{dev.native_id}: created {missing} are not listed",
                )
                stale = [x for x in extra if x in dead]
                check(
                    not stale,
                    inv.GONE_AFTER_DESTROY,
                    f"{dev.native_id}: destroyed {stale} are still listed",
                )
                check(
                    not extra,
                    inv.MODEL,
                    f"{dev.native_id}: lists {extra}, which were never created",
                )
                inv.check_no_overlap(listed, f"device {dev.native_id}")
                inv.check_within_device(dev, listed, f"device {dev.native_id}")
                profiles = backend.profiles(dev)  # once: some simulators answer slowly
                now = {p.name: p.available for p in profiles}
                for p in profiles:
                    check(
                        p.available is None or 0 <= p.available <= p.max_count,
                        inv.AVAILABLE_HONEST,
                        f"{dev.native_id} {p.name}: available {p.available}, "
                        f"max_count {p.max_count}",
                    )
                if not want:
                    check(
                        now == empty[dev.native_id],
                        inv.CAPACITY_RETURNS,
                        f"{dev.native_id} is empty again but offers {now}; "
                        f"at first it offered {empty[dev.native_id]}",
                    )

        def teardown(self) -> None:
            for part in self.live:
                # the failure being reported matters, not one of this clean-up
                with contextlib.suppress(Exception):
                    backend.raw.destroy_partition(part)

    PartitionMachine.failures = failures
    return PartitionMachine


def test_random_creates_and_destroys_match_the_model(
    backend: CheckedBackend, partition_device: DeviceInfo, plan: Plan, suite: SuiteContext
) -> None:
    devices = plan.partitionable[:2]
    machine = machine_for(backend, devices)
    try:
        _run(machine, suite)
    except Exception as e:
        first: list[InvariantBroken] = machine.failures  # type: ignore[attr-defined]
        if first and not isinstance(e, InvariantBroken):
            # Whatever carries it (a replay that went another way, an error raised while
            # reporting, a vendor exception in its context), the first broken invariant
            # is the finding; the calls that led to it come along.
            for n in getattr(e, "__notes__", []):
                first[0].add_note(n)
            raise first[0] from e
        if not isinstance(e, Flaky):
            raise
        broken(
            inv.MODEL,
            "replaying the same creates and destroys gave different results "
            f"(state leaks between runs, or the backend is not deterministic): {e}",
        )


def _run(machine: type[RuleBasedStateMachine], suite: SuiteContext) -> None:
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
            phases=PHASES_SHRINK if suite.tuning.shrink else PHASES,
        ),
    )
