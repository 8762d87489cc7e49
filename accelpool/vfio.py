"""Whole-device passthrough (VDGA): hand a PCI device to ``vfio-pci`` and take it back.

The core's part: the safety rules and the claim; the sysfs steps are the backend's
(:meth:`accelpool.spi.Backend.bind_vfio`), whose default, :func:`sysfs_bind`, is the
kernel's documented sequence on :class:`accelpool.pcisysfs.PciSysfs`: write ``vfio-pci``
to the device's ``driver_override``, its address to its driver's ``unbind``, then to
``drivers_probe``; giving it back clears the override, unbinds and probes again.

A bind is refused while the device has partitions, a claim, processes using it (where
the backend can tell), or an IOMMU group partner on a host driver; each refusal names
its blocker. A bound device holds the named claim ``vfio:<device id>``, so sessions and
partition changes refuse it. The claim is taken before the first sysfs step and its
owner text says which operation runs (``binding``/``unbinding``) and the host driver:
a bind or unbind killed midway is reported by :func:`status` as ``pending`` and the
next bind or unbind completes it, every step being idempotent.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from accelpool.errors import InUse, InvalidRequest, UnsupportedOperation
from accelpool.pcisysfs import STUB_DRIVERS, VFIO_DRIVER, PassthroughInfo, PciSysfs

if TYPE_CHECKING:
    from accelpool.inventory import Device

__all__ = [
    "VFIO_DRIVER",
    "PassthroughState",
    "bind",
    "holder_of",
    "state",
    "status",
    "sysfs_bind",
    "sysfs_unbind",
    "unbind",
]

_BINDING, _UNBINDING, _BOUND = "binding to vfio-pci", "unbinding from vfio-pci", "passed through"
_HOST = re.compile(r"\(host driver ([^)]*)\)")


@dataclass(frozen=True)
class PassthroughState:
    device: str
    pci: str
    driver: str | None
    host_driver: str | None
    override: str | None
    iommu_group: str | None
    group_blockers: tuple[str, ...]
    passed_through: bool
    pending: str | None  # "bind" or "unbind" left half done by a killed process
    holder: str | None  # the claim on the device, if any

    def to_json(self) -> dict[str, object]:
        doc = asdict(self)
        doc["group_blockers"] = list(self.group_blockers)
        return doc


def holder_of(device_id: str) -> str:
    return "vfio:" + device_id.replace(" ", "_")


def _crash_point(step: str) -> None:
    """Tests: ``ACCELPOOL_VFIO_DIE_AFTER=step`` kills this process (SIGKILL) right here."""
    if os.environ.get("ACCELPOOL_VFIO_DIE_AFTER") == step:
        os.kill(os.getpid(), 9)


# -- the default sysfs steps (behind the SPI) ---------------------------------------------
def sysfs_bind(fs: PciSysfs, pci: str) -> PassthroughInfo:
    """The kernel's steps binding ``pci`` to ``vfio-pci``; each is skipped when done."""
    info = fs.info(pci)
    _refuse_group(pci, info)
    if not fs.vfio_loaded():
        raise UnsupportedOperation(
            f"cannot pass {pci} through: the vfio-pci driver is not loaded "
            "(modprobe vfio-pci; the IOMMU must be on: intel_iommu=on or amd_iommu=on)"
        )
    if info.override != VFIO_DRIVER:
        fs.set_override(pci, VFIO_DRIVER)
        _crash_point("driver_override")
    if info.driver not in (None, VFIO_DRIVER):
        fs.unbind_driver(pci)
        _crash_point("unbind")
    if fs.driver(pci) != VFIO_DRIVER:
        fs.probe(pci)
        _crash_point("probe")
    after = fs.info(pci)
    if not after.on_vfio:
        raise InvalidRequest(
            f"vfio-pci did not take {pci} (driver now {after.driver or 'none'}); check the "
            "kernel log (dmesg) and that the IOMMU is on; run 'accelpool vfio unbind' to undo"
        )
    return after


def sysfs_unbind(fs: PciSysfs, pci: str) -> PassthroughInfo:
    """The kernel's steps giving ``pci`` back to its own driver."""
    info = fs.info(pci)
    if info.override is not None:
        fs.set_override(pci, None)
        _crash_point("driver_override")
    if info.driver == VFIO_DRIVER:
        fs.unbind_driver(pci)
        _crash_point("unbind")
    if fs.driver(pci) is None:
        fs.probe(pci)
        _crash_point("probe")
    after = fs.info(pci)
    if after.on_vfio:
        raise InvalidRequest(f"{pci} is still bound to vfio-pci after unbind; see dmesg")
    return after


def _refuse_group(who: str, info: PassthroughInfo) -> None:
    if info.group_blockers:
        raise InUse(
            f"cannot pass {who} through: IOMMU group {info.iommu_group} member "
            f"{', '.join(info.group_blockers)} is still bound to a host driver; bind "
            f"every function of the group to {VFIO_DRIVER} (or {STUB_DRIVERS[1]}) first"
        )


# -- the core: state, safety rules and the claim -----------------------------------------
def _info(dev: Device) -> PassthroughInfo:
    from accelpool.inventory import _guard

    b = dev.backend_instance
    return _guard(b, lambda: b.passthrough_state(dev.info))


def state(dev: Device) -> PassthroughState:
    """What sysfs and the claims say about ``dev``."""
    from accelpool import claims

    info = _info(dev)
    c = claims.lookup(dev)
    holder = c.holder if c is not None and c.named else None
    owner = (c.owner or "") if c is not None and holder == holder_of(dev.id) else ""
    pending = "bind" if owner.startswith(_BINDING) else None
    pending = "unbind" if owner.startswith(_UNBINDING) else pending
    m = _HOST.search(owner)
    host = m.group(1) if m else (info.driver if info.driver not in STUB_DRIVERS else None)
    return PassthroughState(
        dev.id,
        info.pci,
        info.driver,
        host,
        info.override,
        info.iommu_group,
        info.group_blockers,
        info.on_vfio and pending is None,
        pending,
        holder,
    )


def status(devices: list[Device]) -> list[PassthroughState]:
    """The state of every device that is a PCI function (the others are left out)."""
    out = []
    for dev in devices:
        if dev.lost or dev.backend_instance.pci_address(dev.info) is None:
            continue
        out.append(state(dev))
    return out


def _refuse_busy(dev: Device, st: PassthroughState) -> None:
    from accelpool import claims
    from accelpool.inventory import _guard

    parts = dev.partitions()
    if parts:
        raise InUse(
            f"cannot pass {dev.id} through: it has {len(parts)} partition(s) "
            f"({', '.join(p.id for p in parts[:3])}); destroy them first "
            "(accelpool partition destroy ID)"
        )
    found = [c for c in claims.blockers(dev) if c.holder != holder_of(dev.id)]
    if found:
        raise InUse(
            f"cannot pass {dev.id} through: it is claimed by {found[0].describe()} "
            f"({found[0].target}); release it first"
        )
    b = dev.backend_instance
    pids = _guard(b, lambda: b.device_processes(dev.info))
    if pids:
        raise InUse(
            f"cannot pass {dev.id} through: process(es) {', '.join(map(str, pids))} use it; "
            "stop them first"
        )
    _refuse_group(dev.id, PassthroughInfo(st.pci, None, None, st.iommu_group, st.group_blockers))


def bind(dev: Device) -> PassthroughState:
    """Detach ``dev`` from its host driver and bind it to ``vfio-pci``."""
    from accelpool import claims
    from accelpool.inventory import _guard

    st = state(dev)
    if st.passed_through and st.holder is not None:
        return st
    if st.pending is None:
        _refuse_busy(dev, st)
    host = st.host_driver or "none"
    me = holder_of(dev.id)
    claims.claim(dev, holder=me, owner=f"{_BINDING} (host driver {host})")
    _crash_point("claim")
    b = dev.backend_instance
    _guard(b, lambda: b.bind_vfio(dev.info))
    claims.claim(dev, holder=me, owner=f"{_BOUND} to {VFIO_DRIVER} (host driver {host})")
    return state(dev)


def unbind(dev: Device) -> PassthroughState:
    """Give ``dev`` back to its host driver."""
    from accelpool import claims
    from accelpool.inventory import _guard

    st = state(dev)
    me = holder_of(dev.id)
    if not st.passed_through and st.pending is None and st.driver != VFIO_DRIVER:
        if st.holder == me:
            claims.release(me)
        return state(dev)
    for c in claims.blockers(dev):
        if c.holder != me:
            raise InUse(
                f"cannot unbind {dev.id}: it is attached to {c.describe()}; "
                "detach it first (accelpool vm detach)"
            )
    claims.claim(dev, holder=me, owner=f"{_UNBINDING} (host driver {st.host_driver or 'none'})")
    _crash_point("claim")
    b = dev.backend_instance
    _guard(b, lambda: b.unbind_vfio(dev.info))
    claims.release(me)
    return state(dev)


def pci_of(dev: Device) -> str:
    pci = dev.backend_instance.pci_address(dev.info)
    if pci is None:
        raise UnsupportedOperation(f"{dev.id} has no PCI address: it cannot be passed through")
    return pci


def require_device(ref: object) -> None:
    if not isinstance(ref, str) or not ref:
        raise InvalidRequest("give a device id or BACKEND:INDEX, e.g. nvidia:0")


def refuse_if_passed_through(dev: Device, action: str) -> None:
    """Raise :class:`InUse` if ``dev`` is bound to ``vfio-pci`` by accelpool."""
    from accelpool import claims

    c = claims.lookup(dev)
    holder = (c.holder or "") if c is not None else ""
    if holder == holder_of(dev.id) or holder.startswith("vm:"):
        raise InUse(
            f"cannot {action} {dev.id}: it is passed through to {VFIO_DRIVER}; "
            f"give it back first (accelpool vfio unbind {dev.id})"
        )
