"""Partitions: lifecycle, capacity accounting, exhaustion, placement, scope."""

from __future__ import annotations

import pytest

from accelpool.capabilities import Capability
from accelpool.errors import AccelPoolError, InsufficientCapacity, NotFound
from accelpool.types import DeviceInfo, PartitionInfo, PartitionProfile
from accelpool_conformance import invariants as inv
from accelpool_conformance import truth
from accelpool_conformance.context import SuiteContext, WorkerSpec
from accelpool_conformance.fixtures import Ledger, Plan, devices_by_kind, smallest_of_kind
from accelpool_conformance.helpers import (
    availability,
    check_created,
    check_listing,
    destroy_all,
    fill,
)
from accelpool_conformance.invariants import CheckedBackend, check, describe, expect_error
from accelpool_conformance.workers import run_workers

pytestmark = pytest.mark.requires(Capability.PARTITION)

#: Most placements one check walks through per profile.
MAX_PLACEMENTS = 8


def test_create_list_destroy(
    backend: CheckedBackend, partition_device: DeviceInfo, profile: str, ledger: Ledger
) -> None:
    dev = partition_device
    prof = backend.profile(dev, profile)
    part = ledger.create(dev, profile)
    check_created(backend, part, dev, prof)
    truth.check_matches_profile(part, prof, f"create_partition({dev.native_id}, {profile!r})")
    listed = check_listing(backend, dev, [part], f"after creating {part.native_id}")
    (same,) = [p for p in listed if p.native_id == part.native_id]
    check(
        (same.profile, same.kind, same.placement, same.memory_bytes, same.compute_units)
        == (part.profile, part.kind, part.placement, part.memory_bytes, part.compute_units),
        inv.LISTED_AFTER_CREATE,
        f"partitions() describes {part.native_id} as {same}, create_partition returned {part}",
    )
    ledger.destroy(part)
    check_listing(backend, dev, [], f"after destroying {part.native_id}")


def test_capacity_falls_and_comes_back(
    backend: CheckedBackend, partition_device: DeviceInfo, profile: str, ledger: Ledger
) -> None:
    dev = partition_device
    before = availability(backend, dev)
    was = before.get(profile)
    if was is None:
        pytest.skip(f"profile {profile} reports no 'available' count to account")
    part = ledger.create(dev, profile)
    during = availability(backend, dev)
    now = during.get(profile)
    check(
        now is not None and now < was,
        inv.CAPACITY_FALLS,
        f"{profile} available was {was} and is {now} after creating {part.native_id}",
    )
    grown = {
        n: (b, v)
        for n, v in during.items()
        if v is not None and (b := before.get(n)) is not None and v > b
    }
    check(
        not grown,
        inv.CAPACITY_FALLS,
        f"creating {part.native_id} raised the availability of {grown}",
    )
    ledger.destroy(part)
    after = availability(backend, dev)
    check(
        after == before,
        inv.CAPACITY_RETURNS,
        f"availability before create {before}, after destroying {part.native_id} {after}",
    )


def test_exhaustion_gives_insufficient_capacity(
    backend: CheckedBackend,
    partition_device: DeviceInfo,
    profile: str,
    ledger: Ledger,
    suite: SuiteContext,
) -> None:
    dev = partition_device
    prof = backend.profile(dev, profile)
    before = availability(backend, dev)
    limit = min(prof.max_count, suite.tuning.max_creates)
    made: list[PartitionInfo] = []
    refusal: AccelPoolError | None = None
    while len(made) <= limit:
        try:
            made.append(ledger.create(dev, profile))
        except InsufficientCapacity as e:
            refusal = e
            break
        except AccelPoolError as e:
            inv.broken(
                inv.EXHAUSTION,
                f"create #{len(made) + 1} of {profile} raised "
                f"{describe(e)}, expected InsufficientCapacity once full",
            )
    if prof.max_count > suite.tuning.max_creates and refusal is None:
        pytest.skip(f"max_count {prof.max_count} exceeds the suite's bound of creates")
    check(
        refusal is not None,
        inv.EXHAUSTION,
        f"{len(made)} creates of {profile} succeeded; max_count is {prof.max_count}",
    )
    check(
        len(made) == prof.max_count,
        inv.MAX_COUNT,
        f"{len(made)} partitions of {profile} fit on empty device {dev.native_id}; "
        f"the profile says max_count {prof.max_count}",
    )
    check_listing(backend, dev, made, f"with {len(made)} partitions of {profile}")
    left = backend.profile(dev, profile).available
    check(
        left in (None, 0),
        inv.AVAILABLE_HONEST,
        f"{profile} reports {left} available after create was refused",
    )
    destroy_all(ledger, made)
    check_listing(backend, dev, [], "after destroying them all")
    after = availability(backend, dev)
    check(
        after == before,
        inv.CAPACITY_RETURNS,
        f"availability before filling {before}, after emptying again {after}",
    )


def _orders(backend: CheckedBackend, dev: DeviceInfo) -> dict[str, list[PartitionProfile]]:
    profiles = backend.profiles(dev)
    big_first = sorted(profiles, key=lambda p: (-p.memory_bytes, -p.compute_units, p.name))
    return {"largest first": big_first, "smallest first": list(reversed(big_first))}


def test_partitions_never_overlap(
    backend: CheckedBackend, partition_device: DeviceInfo, ledger: Ledger, suite: SuiteContext
) -> None:
    dev = partition_device
    for order, profiles in _orders(backend, dev).items():
        made = fill(ledger, dev, profiles, suite.tuning.max_creates)
        check(made, inv.EXHAUSTION, f"filling {dev.native_id} {order} created nothing")
        listed = backend.partitions(dev)
        inv.check_no_overlap(listed, f"device {dev.native_id} filled {order}")
        destroy_all(ledger, made)


def test_partitions_never_exceed_the_device(
    backend: CheckedBackend, partition_device: DeviceInfo, ledger: Ledger, suite: SuiteContext
) -> None:
    dev = partition_device
    for order, profiles in _orders(backend, dev).items():
        made = fill(ledger, dev, profiles, suite.tuning.max_creates)
        inv.check_within_device(dev, made, f"device {dev.native_id} filled {order}")
        inv.check_within_device(
            dev, backend.partitions(dev), f"partitions() of {dev.native_id} filled {order}"
        )
        destroy_all(ledger, made)


def test_destroying_twice_gives_not_found(
    backend: CheckedBackend, partition_device: DeviceInfo, profile: str, ledger: Ledger
) -> None:
    part = ledger.create(partition_device, profile)
    ledger.destroy(part)
    expect_error(
        inv.DESTROY_TWICE,
        NotFound,
        f"destroying {part.native_id} a second time",
        lambda: backend.destroy_partition(part),
    )


def test_partition_ids_are_unique(
    backend: CheckedBackend, partition_device: DeviceInfo, ledger: Ledger
) -> None:
    dev = partition_device
    smallest = min(backend.profiles(dev), key=lambda p: (p.memory_bytes, p.compute_units))
    made = fill(ledger, dev, [smallest], min(smallest.max_count, 8))
    check_listing(backend, dev, made, f"with {len(made)} partitions of {smallest.name}")
    natives = [p.native_id for p in made]
    check(
        len(set(natives)) == len(natives),
        inv.PARTITION_IDS_UNIQUE,
        f"creates returned ids {natives}",
    )
    if len(made) > 1:  # an id freed by a destroy may come back, but never twice at once
        ledger.destroy(made[0])
        again = ledger.create(dev, smallest.name)
        live = [p.native_id for p in made[1:]]
        check(
            again.native_id not in live,
            inv.PARTITION_IDS_UNIQUE,
            f"a new partition got id {again.native_id}, held by a live partition",
        )


def test_partitions_of_one_device_leave_others_alone(
    backend: CheckedBackend,
    partition_device: DeviceInfo,
    second_partition_device: DeviceInfo,
    ledger: Ledger,
) -> None:
    a, b = partition_device, second_partition_device
    b_before = (inv.ids(backend.partitions(b)), availability(backend, b))
    smallest = min(backend.profiles(a), key=lambda p: (p.memory_bytes, p.compute_units))
    made = fill(ledger, a, [smallest], 4)
    on_b = ledger.create(b, smallest.name)
    natives = [p.native_id for p in made]
    check(
        on_b.native_id not in natives,
        inv.PARTITION_IDS_UNIQUE,
        f"partition {on_b.native_id} of {b.native_id} has the id of one on {a.native_id}",
    )
    check_listing(backend, a, made, f"after creating {on_b.native_id} on {b.native_id}")
    ledger.destroy(on_b)
    b_after = (inv.ids(backend.partitions(b)), availability(backend, b))
    check(
        b_after == b_before,
        inv.DEVICES_INDEPENDENT,
        f"device {b.native_id} went from {b_before} to {b_after} while {a.native_id} was "
        "partitioned",
    )


def test_requested_placement_is_honoured(
    backend: CheckedBackend, partition_device: DeviceInfo, placed_profile: str, ledger: Ledger
) -> None:
    dev = partition_device
    profile = placed_profile
    prof = backend.profile(dev, profile)
    for pl in prof.placements[:MAX_PLACEMENTS]:
        part = ledger.create(dev, profile, pl.start)
        check_created(backend, part, dev, prof, pl.start)
        truth.check_placed_at(part, pl.start, f"creating {profile} at placement {pl.start}")
        ledger.destroy(part)


def test_occupied_placement_is_refused(
    backend: CheckedBackend, partition_device: DeviceInfo, placed_profile: str, ledger: Ledger
) -> None:
    dev = partition_device
    profile = placed_profile
    prof = backend.profile(dev, profile)
    start = prof.placements[-1].start
    first = ledger.create(dev, profile, start)
    truth.check_placed_at(first, start, f"creating {profile} at placement {start}")
    what = f"creating {profile} at placement {start}, held by {first.native_id}"
    try:
        second = ledger.create(dev, profile, start)
    except InsufficientCapacity:
        pass
    except AccelPoolError as e:
        inv.broken(
            inv.OCCUPIED_REFUSED, f"{what} raised {describe(e)}, expected InsufficientCapacity"
        )
    else:
        # Granted elsewhere: the placement was ignored, which is the failure to name.
        truth.check_placed_at(second, start, what)
        inv.broken(
            inv.OCCUPIED_REFUSED,
            f"{what} succeeded with {second.native_id} at the same placement; expected "
            "InsufficientCapacity",
        )
    check_listing(backend, dev, [first], "after the refused create")


def test_partition_scope_matches_capability(
    backend: CheckedBackend, partition_device: DeviceInfo, ledger: Ledger
) -> None:
    prof = backend.profiles(partition_device)[0]
    part = ledger.create(partition_device, prof.name)
    check_created(backend, part, partition_device, prof)
    for listed in backend.partitions(partition_device):
        listed_profile = backend.profile(partition_device, listed.profile)
        check_created(backend, listed, partition_device, listed_profile)
        truth.check_matches_profile(
            listed, listed_profile, f"partitions({partition_device.native_id})"
        )


@pytest.mark.requires(Capability.PARTITION_DEVICE_SCOPE)
def test_device_scope_partitions_are_shared_across_processes(
    backend: CheckedBackend,
    partition_device: DeviceInfo,
    ledger: Ledger,
    worker_spec: WorkerSpec,
    suite: SuiteContext,
) -> None:
    dev = partition_device
    smallest = min(backend.profiles(dev), key=lambda p: (p.memory_bytes, p.compute_units))
    mine = ledger.create(dev, smallest.name)
    timeout = suite.tuning.worker_timeout
    (seen,) = run_workers(worker_spec, [{"action": "partitions", "device": dev.native_id}], timeout)
    check(
        isinstance(seen, list) and mine.native_id in [p["id"] for p in seen],
        inv.SHARED_ACROSS_PROCESSES,
        f"another process lists {seen} on {dev.native_id}, without {mine.native_id}",
    )
    (made,) = run_workers(
        worker_spec,
        [{"action": "create", "device": dev.native_id, "profile": smallest.name, "count": 1}],
        timeout,
    )
    check(
        isinstance(made, dict) and len(made.get("created", [])) == 1,
        inv.SHARED_ACROSS_PROCESSES,
        f"another process could not create {smallest.name}: {made}",
    )
    theirs = made["created"][0]["id"]
    listed = backend.partitions(dev)
    for p in listed:
        if p.native_id == theirs:
            ledger.adopt(p)
    check(
        theirs in [p.native_id for p in listed],
        inv.SHARED_ACROSS_PROCESSES,
        f"a partition {theirs} made by another process is not listed here",
    )
    (gone,) = run_workers(
        worker_spec,
        [{"action": "destroy", "device": dev.native_id, "partition": mine.native_id}],
        timeout,
    )
    check(
        gone is True,
        inv.SHARED_ACROSS_PROCESSES,
        f"another process could not destroy {mine.native_id}: {gone}",
    )
    ledger.forget(mine)
    check(
        mine.native_id not in inv.ids(backend.partitions(dev)),
        inv.SHARED_ACROSS_PROCESSES,
        f"{mine.native_id}, destroyed by another process, is still listed here",
    )


def test_device_facts_stay_while_partitioned(
    backend: CheckedBackend, plan: Plan, ledger: Ledger, suite: SuiteContext
) -> None:
    """Memory and compute of every device are the same with partitions and after, and
    agree with telemetry's total memory meanwhile."""
    by_kind = devices_by_kind(plan, backend)
    if not by_kind:
        pytest.skip(plan.problem or "no device can be partitioned")
    before = sorted(backend.devices(), key=lambda d: d.index)
    made = [
        ledger.create(dev, smallest_of_kind(backend, dev, kind).name)
        for kind, dev in by_kind.items()
    ]
    names = ", ".join(p.native_id for p in made)
    during = sorted(backend.devices(), key=lambda d: d.index)
    truth.check_same_facts(before, during, f"creating {names}")
    if suite.supports(Capability.TELEMETRY):
        for d in during:
            if d.native_id not in {p.device_native_id for p in made}:
                continue
            total = backend.telemetry(d).memory_total_bytes
            check(
                total is None or total == d.memory_bytes,
                inv.DEVICE_FACTS,
                f"with {names} live, telemetry({d.native_id}) reports {total} bytes of total "
                f"memory; the device reports memory_bytes {d.memory_bytes}",
            )
    destroy_all(ledger, made)
    after = sorted(backend.devices(), key=lambda d: d.index)
    truth.check_same_facts(before, after, f"creating and destroying {names}")


def test_partition_scope_is_honest_across_processes(
    backend: CheckedBackend,
    partition_device: DeviceInfo,
    ledger: Ledger,
    worker_spec: WorkerSpec,
    suite: SuiteContext,
) -> None:
    """A process-scope partition is seen by no other process and is gone when its creator
    exits; a device-scope one is seen by other processes and outlives its creator."""
    dev = partition_device
    device_scope = suite.supports(Capability.PARTITION_DEVICE_SCOPE)
    scope = "device" if device_scope else "process"
    timeout = suite.tuning.worker_timeout
    listing = {"action": "partitions", "device": dev.native_id}
    prof = min(backend.profiles(dev), key=lambda p: (p.memory_bytes, p.compute_units, p.name))

    mine = ledger.create(dev, prof.name)
    (seen,) = run_workers(worker_spec, [listing], timeout)
    check(isinstance(seen, list), inv.WORKER, f"a worker listing partitions answered {seen}")
    seen_ids = sorted(p["id"] for p in seen)
    if device_scope:
        check(
            mine.native_id in seen_ids,
            inv.SCOPE_HONEST,
            f"device-scope partition {mine.native_id} is not seen by another process, which "
            f"lists {seen_ids} on {dev.native_id}",
        )
    else:
        check(
            not seen_ids,
            inv.SCOPE_HONEST,
            f"another process lists {seen_ids} on {dev.native_id}, where only this process "
            f"made a partition ({mine.native_id}, process scope)",
        )
    ledger.destroy(mine)

    before = availability(backend, dev)
    job = {"action": "create", "device": dev.native_id, "profile": prof.name, "count": 1}
    (made,) = run_workers(worker_spec, [job], timeout)
    check(
        isinstance(made, dict) and len(made.get("created", [])) == 1,
        inv.SCOPE_HONEST,
        f"another process could not create {prof.name} on {dev.native_id}: {made}",
    )
    theirs = made["created"][0]
    check(
        theirs["scope"] == scope,
        inv.SCOPE_HONEST,
        f"another process created {theirs['id']} with scope {theirs['scope']!r}; the declared "
        f"capabilities mean {scope!r}",
    )
    # run_workers returns once its workers have exited: the creator is gone now.
    listed = backend.partitions(dev)
    for p in listed:
        ledger.adopt(p)
    (later,) = run_workers(worker_spec, [listing], timeout)
    later_ids = sorted(p["id"] for p in later) if isinstance(later, list) else later
    if device_scope:
        check(
            theirs["id"] in inv.ids(listed) and theirs["id"] in later_ids,
            inv.SCOPE_HONEST,
            f"device-scope partition {theirs['id']} did not outlive the process that made "
            f"it: this process lists {inv.ids(listed)}, a new one {later_ids}",
        )
    else:
        check(
            not listed and not later_ids,
            inv.SCOPE_HONEST,
            f"process-scope partition {theirs['id']} outlived the process that made it: "
            f"this process lists {inv.ids(listed)}, a new one {later_ids}",
        )
        check(
            availability(backend, dev) == before,
            inv.SCOPE_HONEST,
            f"availability before another process made {theirs['id']} {before}, after it "
            f"exited {availability(backend, dev)}",
        )
