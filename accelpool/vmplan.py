"""``accelpool vm plan``: how many VMs of each flavour this host can hold now.

A flavours file (TOML) lists ``[[flavour]]`` entries with ``name`` and either
``gpus = N`` (whole devices passed through per VM) or ``vgpu = "PROFILE"`` with
``count = N`` (vGPU instances per VM). Each flavour is planned on its own against the
host as it is now (flavours compete for the same devices: the counts are each one's
maximum, not a mix), with the capacity model ``partition create`` uses:

* a vGPU flavour takes, on each device, the profile's ``available`` count (how many
  more the backend says fit now: NVML's creatable count, the free placements), and
  where a backend cannot tell, the free placements left by the partitions there, else
  ``max_count`` less the instances of the profile already there;
* a passthrough flavour takes each device a VM may have whole: a PCI function with no
  partitions, no claim (one bound to ``vfio-pci`` but attached to no VM counts), no
  process using it and no IOMMU group partner on a host driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from accelpool.errors import AccelPoolError, InvalidRequest

if TYPE_CHECKING:
    from accelpool.inventory import Device, Inventory
    from accelpool.types import PartitionProfile


@dataclass(frozen=True)
class Flavour:
    name: str
    gpus: int = 0  # whole devices per VM; 0 for a vGPU flavour
    vgpu: str = ""
    count: int = 1  # vGPU instances per VM


@dataclass
class FlavourPlan:
    flavour: str
    vms: int
    #: device (BACKEND:INDEX) -> vGPU instances that fit there, or 1 for a whole device
    devices: dict[str, int] = field(default_factory=dict)
    device_ids: list[str] = field(default_factory=list)
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "flavour": self.flavour,
            "vms": self.vms,
            "devices": self.devices,
            "device_ids": self.device_ids,
            "reason": self.reason,
        }


def load(path: str) -> list[Flavour]:
    from accelpool.layout.spec import read_toml

    data = read_toml(path, "flavours file")
    raw = data.get("flavour")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest(f"{path} has no [[flavour]] entries: add name and gpus or vgpu")
    out = []
    for i, f in enumerate(raw):
        name = f.get("name") if isinstance(f, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{path}: flavour {i} needs a name")
        gpus, vgpu, count = f.get("gpus"), f.get("vgpu"), f.get("count", 1)
        if (gpus is None) == (vgpu is None):
            raise InvalidRequest(f"{path}: flavour {name!r} needs gpus = N or vgpu = PROFILE")
        if gpus is not None and (not isinstance(gpus, int) or gpus < 1):
            raise InvalidRequest(f"{path}: flavour {name!r}: gpus must be a whole number >= 1")
        if vgpu is not None and (not isinstance(vgpu, str) or not vgpu):
            raise InvalidRequest(f"{path}: flavour {name!r}: vgpu must name a profile")
        if not isinstance(count, int) or count < 1:
            raise InvalidRequest(f"{path}: flavour {name!r}: count must be a whole number >= 1")
        out.append(Flavour(name, gpus or 0, vgpu or "", count))
    return out


def _room(d: Device, p: PartitionProfile) -> int:
    """How many more partitions of ``p`` fit on ``d`` now (the backend's count first)."""
    if p.available is not None:
        return max(p.available, 0)
    parts = d.partitions()
    if p.placements:
        taken = [x.placement for x in parts if x.placement is not None]
        free = sorted(
            (pl for pl in p.placements if not any(pl.overlaps(t) for t in taken)),
            key=lambda pl: pl.start + pl.size,
        )
        n, end = 0, -1
        for pl in free:  # the most non-overlapping placements: earliest end first
            if pl.start >= end:
                n, end = n + 1, pl.start + pl.size
        return n
    return max(p.max_count - sum(1 for x in parts if x.profile == p.name), 0)


def _whole_ok(d: Device) -> bool:
    from accelpool import claims, vfio

    if d.lost or d.backend_instance.pci_address(d.info) is None or d.partitions():
        return False
    c = claims.lookup(d)
    if c is not None and c.holder != vfio.holder_of(d.id):
        return False  # a session, a named holder or a VM has it
    if any(x.target != d.id for x in claims.blockers(d)):
        return False
    try:
        st = vfio.state(d)
        pids = d.backend_instance.device_processes(d.info)
    except AccelPoolError:
        return False
    return not st.group_blockers and st.pending is None and not pids


def plan_flavour(inv: Inventory, f: Flavour) -> FlavourPlan:
    from accelpool import claims

    if f.gpus:
        free = [d for d in inv.devices() if _whole_ok(d)]
        vms = len(free) // f.gpus
        used = free[: vms * f.gpus]
        why = "" if vms else f"{len(free)} device(s) free for passthrough, {f.gpus} per VM"
        return FlavourPlan(f.name, vms, {_ref(d): 1 for d in used}, [d.id for d in used], why)
    rooms: dict[str, int] = {}
    ids: list[str] = []
    kinds = set()
    for d in inv.devices():
        if d.lost or claims.lookup(d) is not None:  # whole-device claim: vfio, VM, session
            continue
        p = next((x for x in d.profiles() if x.name == f.vgpu), None)
        if p is None:
            continue
        kinds.add(p.kind)
        room = _room(d, p) if p.kind == "vgpu" else 0
        if room > 0:
            rooms[_ref(d)] = room
            ids.append(d.id)
    if kinds and "vgpu" not in kinds:
        raise InvalidRequest(
            f"flavour {f.name!r}: {f.vgpu} is a {sorted(kinds)[0]} profile; a VM takes a "
            "vGPU profile (kind vgpu) or whole GPUs (gpus = N)"
        )
    total = sum(rooms.values())
    why = "" if total else f"no device offers {f.vgpu} now (is the host in vGPU mode?)"
    if total and total < f.count:
        why = f"{total} {f.vgpu} instance(s) fit, {f.count} per VM"
    return FlavourPlan(f.name, total // f.count, rooms, ids, why)


def _ref(d: Device) -> str:
    return f"{d.backend}:{d.index}"


def plan(inv: Inventory, flavours: list[Flavour]) -> list[FlavourPlan]:
    return [plan_flavour(inv, f) for f in flavours]
