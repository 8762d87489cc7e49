"""Building blocks the partition checks share."""

from __future__ import annotations

from collections.abc import Iterable

from accelpool.capabilities import Capability
from accelpool.errors import AccelPoolError, InsufficientCapacity
from accelpool.types import DeviceInfo, PartitionInfo, PartitionProfile
from accelpool_conformance import invariants as inv
from accelpool_conformance.fixtures import Ledger
from accelpool_conformance.invariants import CheckedBackend, check, describe


def availability(backend: CheckedBackend, device: DeviceInfo) -> dict[str, int | None]:
    """``available`` of every profile of ``device`` now."""
    return {p.name: p.available for p in backend.profiles(device)}


def check_created(
    backend: CheckedBackend,
    part: PartitionInfo,
    device: DeviceInfo,
    profile: PartitionProfile,
    placement: int | None = None,
) -> None:
    """A partition just created matches its device, profile and requested placement."""
    where = f"create_partition({device.native_id}, {profile.name!r}) gave {part.native_id}"
    check(
        part.device_native_id == device.native_id,
        inv.PARTITIONS_OWN_DEVICE,
        f"{where} on device {part.device_native_id}",
    )
    check(
        part.profile == profile.name and part.kind == profile.kind,
        inv.CREATE_MATCHES_PROFILE,
        f"{where} of profile {part.profile!r} kind {part.kind!r}, asked for "
        f"{profile.name!r} kind {profile.kind!r}",
    )
    check(
        isinstance(part.native_id, str) and part.native_id and ":" not in part.native_id,
        inv.PARTITION_IDS_UNIQUE,
        f"{where}: ids must be non-empty strings without ':'",
    )
    inv.check_within_device(device, [part], where)
    want = (
        "device"
        if backend.capabilities().supports(Capability.PARTITION_DEVICE_SCOPE)
        else ("process")
    )
    check(
        part.scope == want,
        inv.SCOPE,
        f"{where} with scope {part.scope!r}; the declared capabilities mean {want!r}",
    )
    if part.placement is not None and profile.placements:
        check(
            part.placement in profile.placements,
            inv.PLACEMENT_OFFERED,
            f"{where} at {part.placement}, not one of {list(profile.placements)}",
        )
    if placement is not None and part.placement is not None:
        check(
            part.placement.start == placement,
            inv.PLACEMENT_HONOURED,
            f"{where} at start {part.placement.start}; placement {placement} was requested",
        )


def check_listing(
    backend: CheckedBackend, device: DeviceInfo, expected: Iterable[PartitionInfo], when: str
) -> list[PartitionInfo]:
    """``partitions(device)`` lists exactly ``expected`` (by id); returns the listing."""
    listed = backend.partitions(device)
    have = inv.ids(listed)
    want = inv.ids(expected)
    extra = sorted(set(have) - set(want))
    missing = sorted(set(want) - set(have))
    check(
        not missing,
        inv.LISTED_AFTER_CREATE,
        f"{when}: partitions({device.native_id}) does not list {missing}",
    )
    check(
        not extra,
        inv.GONE_AFTER_DESTROY,
        f"{when}: partitions({device.native_id}) lists {extra}, which should not exist",
    )
    check(
        len(have) == len(set(have)),
        inv.PARTITION_IDS_UNIQUE,
        f"{when}: partitions({device.native_id}) lists an id twice: {have}",
    )
    inv.check_no_overlap(listed, when)
    inv.check_within_device(device, listed, when)
    return listed


def fill(
    ledger: Ledger, device: DeviceInfo, profiles: Iterable[PartitionProfile], limit: int
) -> list[PartitionInfo]:
    """For each profile in turn, create partitions until the device has no room."""
    made: list[PartitionInfo] = []
    for p in profiles:
        while len(made) < limit:
            try:
                made.append(ledger.create(device, p.name))
            except InsufficientCapacity:
                break
            except AccelPoolError as e:
                inv.broken(
                    inv.EXHAUSTION,
                    f"creating {p.name} on a filling device raised {describe(e)}; "
                    "a full device must refuse with InsufficientCapacity",
                )
    return made


def destroy_all(ledger: Ledger, parts: Iterable[PartitionInfo]) -> None:
    for p in list(parts):
        ledger.destroy(p)
