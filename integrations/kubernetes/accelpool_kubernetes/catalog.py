"""What this host offers Kubernetes: physical devices, their counters, and logical devices.

A physical device that can be partitioned publishes a counter set: its memory, its
compute units, one counter per placement unit (a MIG memory slice, an MLU cluster),
one per device-wide resource a profile draws on (Ascend AI CPUs), and a count for each
profile the vendor caps below its placements. Every logical device says what it
consumes; the whole device consumes everything, so the scheduler never allocates two
overlapping partitions, nor a whole device together with any partition of it.

Live partitions are held in the hardware: their share is taken off the counters and
they consume nothing more when allocated; logical devices that no longer fit beside
them are not published, and the whole device is published only while no partition
exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from accelpool.errors import AccelPoolError
from accelpool.inventory import Device, Inventory, Partition
from accelpool.types import AttributeValue, PartitionProfile, Placement
from accelpool_kubernetes.names import dns_label

#: partition kinds a container can use (vGPUs go to VMs, sub-devices live in one process)
CONTAINER_KINDS = frozenset({"mig", "vnpu", "mim", "smlu"})
MEMORY, COMPUTE = "memory", "compute-units"


@dataclass(frozen=True)
class LogicalDevice:
    """One device as the scheduler sees it: a whole device or one partition."""

    name: str
    backend: str
    device: Device
    profile: PartitionProfile | None = None
    placement: Placement | None = None
    slot: int | None = None
    #: the live partition behind it, if it exists now
    partition: Partition | None = None
    consumes: Mapping[str, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.partition is not None:
            return self.partition.kind
        return self.profile.kind if self.profile is not None else "device"

    @property
    def memory_bytes(self) -> int:
        if self.partition is not None:
            return self.partition.memory_bytes
        return self.profile.memory_bytes if self.profile else self.device.memory_bytes

    @property
    def compute_units(self) -> int:
        if self.partition is not None:
            return self.partition.compute_units
        return self.profile.compute_units if self.profile else self.device.compute_units

    @property
    def target_id(self) -> str | None:
        """The accelpool id to claim: the device, the live partition, or None (to create)."""
        if self.profile is None:
            return self.device.id
        return self.partition.id if self.partition is not None else None


@dataclass(frozen=True)
class PhysicalDevice:
    """One accelerator, with its counter set (empty when it cannot be partitioned)."""

    device: Device
    counter_set: str
    counters: Mapping[str, int]
    devices: tuple[LogicalDevice, ...]


def device_name(dev: Device) -> str:
    return dns_label(f"{dev.backend}-{dev.index}")


def partition_name(dev: Device, profile: str, kind: str, n: int) -> str:
    """``nvidia-0-mig-1g5gb-3``: device, kind, profile, then placement start or slot."""
    base = f"{device_name(dev)}-{kind}-"
    suffix = f"-{n}"
    return base + dns_label(profile, 63 - len(base) - len(suffix)) + suffix


def _shared_resources(
    dev: Device, profiles: Sequence[PartitionProfile]
) -> dict[str, tuple[str, int]]:
    """Integer profile attributes that draw on a device-wide total of the same name."""
    out: dict[str, tuple[str, int]] = {}
    for p in profiles:
        for key, value in p.attributes.items():
            total = dev.attributes.get(key)
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and isinstance(total, int)
                and not isinstance(total, bool)
                and total > 0
            ):
                out[key] = (dns_label(key.rpartition("/")[2]), total)
    return out


class _Shape:
    """The counters of one device and what a profile at a placement consumes of them."""

    def __init__(self, dev: Device, profiles: Sequence[PartitionProfile]) -> None:
        self.dev = dev
        self.profiles = {p.name: p for p in profiles}
        self.units = max((pl.start + pl.size for p in profiles for pl in p.placements), default=0)
        self.shared = _shared_resources(dev, profiles)
        self.capped = {
            p.name: p.max_count
            for p in profiles
            if p.placements and p.max_count < len(p.placements)
        }
        full: dict[str, int] = {MEMORY: dev.memory_bytes, COMPUTE: dev.compute_units}
        full.update({f"unit-{k}": 1 for k in range(self.units)})
        full.update({name: total for name, total in self.shared.values()})
        full.update({self._cap(p): n for p, n in self.capped.items()})
        self.full = full

    @staticmethod
    def _cap(profile: str) -> str:
        return "count-" + dns_label(profile, 57)

    def need(
        self, profile: PartitionProfile, placement: Placement | None, memory: int, compute: int
    ) -> dict[str, int]:
        out = {MEMORY: memory, COMPUTE: compute}
        if placement is not None:
            out.update(
                {f"unit-{k}": 1 for k in range(placement.start, placement.start + placement.size)}
            )
        for key, (name, _) in self.shared.items():
            value = profile.attributes.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                out[name] = value
        if profile.name in self.capped:
            out[self._cap(profile.name)] = 1
        return {k: v for k, v in out.items() if v > 0}


def fits(consumptions: Sequence[Mapping[str, int]], counters: Mapping[str, int]) -> bool:
    """Whether devices consuming these together stay within ``counters``."""
    total: dict[str, int] = {}
    for c in consumptions:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return all(k in counters and v <= counters[k] for k, v in total.items())


def physical_device(
    dev: Device, bindings: Mapping[str, str] | None = None
) -> PhysicalDevice | None:
    """The counters and logical devices of one device; None when it offers nothing.

    ``bindings`` maps logical names to the partition ids created for them (by prepare),
    so that a partition made for a slot keeps that slot's name.
    """
    if dev.lost:
        return None
    try:
        profiles = [p for p in dev.profiles() if p.kind in CONTAINER_KINDS]
    except AccelPoolError:
        profiles = []
    try:
        parts = [p for p in dev.partitions() if p.complete and p.kind in CONTAINER_KINDS]
    except AccelPoolError:
        parts = []
    shape = _Shape(dev, profiles)
    counters = dict(shape.full)
    out: list[LogicalDevice] = []
    if not parts and _usable(dev):
        out.append(
            LogicalDevice(
                device_name(dev), dev.backend, dev, consumes=dict(shape.full) if profiles else {}
            )
        )
    by_id = {pid: name for name, pid in (bindings or {}).items()}
    taken: dict[str, set[int]] = {}
    live_names: set[str] = set()
    for part in sorted(parts, key=lambda p: p.id):
        prof = shape.profiles.get(part.profile)
        if prof is None:
            continue
        for k, v in shape.need(prof, part.placement, part.memory_bytes, part.compute_units).items():
            counters[k] = max(0, counters.get(k, 0) - v)
        if prof.placements and part.placement is not None:
            n = part.placement.start
        elif part.id in by_id and by_id[part.id].startswith(
            partition_name(dev, prof.name, prof.kind, 0)[:-1]
        ):
            n = int(by_id[part.id].rsplit("-", 1)[1])
        else:
            n = min(set(range(len(parts) + prof.max_count + 1)) - taken.get(prof.name, set()))
        taken.setdefault(prof.name, set()).add(n)
        name = partition_name(dev, prof.name, part.kind, n)
        live_names.add(name)
        out.append(LogicalDevice(name, dev.backend, dev, prof, part.placement, n, part))
    for prof in profiles:
        candidates: list[tuple[int, Placement | None]]
        if prof.placements:
            candidates = [(pl.start, pl) for pl in prof.placements]
        else:
            free = [n for n in range(prof.max_count) if n not in taken.get(prof.name, set())]
            if prof.available is not None:
                free = free[: max(0, prof.available)]
            candidates = [(n, None) for n in free]
        for n, pl in candidates:
            name = partition_name(dev, prof.name, prof.kind, n)
            if name in live_names:
                continue
            need = shape.need(prof, pl, prof.memory_bytes, prof.compute_units)
            if fits([need], counters):
                out.append(LogicalDevice(name, dev.backend, dev, prof, pl, n, None, need))
    if not out:
        return None
    return PhysicalDevice(
        dev, f"{device_name(dev)}-counters", counters if profiles else {}, tuple(out)
    )


def _usable(dev: Device) -> bool:
    """Whether a container can be given the whole device (not a MIG-enabled GPU)."""
    try:
        dev.visibility_env()
    except AccelPoolError:
        return False
    return True


def host_catalog(
    inv: Inventory, bindings: Mapping[str, str] | None = None
) -> dict[str, list[PhysicalDevice]]:
    """Per available backend, its physical devices that offer anything."""
    out: dict[str, list[PhysicalDevice]] = {}
    for status in inv.backends():
        if not status.available:
            continue
        found = [pd for d in inv.devices(status.name) if (pd := physical_device(d, bindings))]
        if found:
            out[status.name] = found
    return out


def attributes_of(ld: LogicalDevice) -> dict[str, AttributeValue]:
    """The vendor's own attributes of a logical device: partition, profile, then device."""
    out: dict[str, AttributeValue] = {}
    sources: list[Mapping[str, AttributeValue]] = []
    if ld.partition is not None:
        sources.append(ld.partition.attributes)
    if ld.profile is not None:
        sources.append(ld.profile.attributes)
    sources.append(ld.device.attributes)
    for src in sources:
        for k, v in src.items():
            out.setdefault(k, v)
    return out
