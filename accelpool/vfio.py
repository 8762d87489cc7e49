"""Whole-device passthrough (VDGA): hand a PCI device to ``vfio-pci`` and take it back.

The kernel's documented steps are: write ``vfio-pci`` to the device's
``driver_override``, write its address to its current driver's ``unbind``, then to
``drivers_probe`` (or ``vfio-pci``'s ``bind``); giving it back clears the override and
probes again. Every other function of the device's IOMMU group must already be bound
to ``vfio-pci`` (or a stub) or the group cannot be assigned.

In a simulated fleet this runs on a simulated sysfs tree under the fleet's own folder
(``sysfs/bus/pci/devices/<addr>/{driver,driver_override,iommu_group}``), written
through :mod:`accelpool.safefs`: nothing outside the tree, no link followed. A bound
device holds a named claim ``vfio:<device id>``, so sessions and partition changes
refuse it with a line naming the claim. A bind or unbind killed midway leaves a
``pending`` record that :func:`status` reports and the next bind or unbind completes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from accelpool.errors import InUse, InvalidRequest, UnsupportedOperation
from accelpool.safefs import Policy, SafeDir, open_root

if TYPE_CHECKING:
    from accelpool.inventory import Device

__all__ = ["VFIO_DRIVER", "PassthroughState", "bind", "holder_of", "status", "unbind"]

VFIO_DRIVER = "vfio-pci"
STUBS = (VFIO_DRIVER, "pci-stub")


@dataclass(frozen=True)
class PassthroughState:
    device: str
    pci: str
    driver: str | None
    host_driver: str
    iommu_group: str
    passed_through: bool
    pending: str | None  # "bind" or "unbind" left half done by a killed process

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def holder_of(device_id: str) -> str:
    return "vfio:" + device_id.replace(" ", "_")


def _pci(dev: Device) -> str:
    for k, v in dev.attributes.items():
        if k.lower().endswith("pcibusid") and isinstance(v, str) and ":" in v:
            dom, rest = v.split(":", 1)
            return f"{int(dom, 16):04x}:{rest.lower()}"
    raise UnsupportedOperation(f"{dev.id} has no PCI address: it cannot be passed through")


def _host_driver(dev: Device) -> str:
    return {"nvidia": "nvidia", "ascend": "devdrv", "cambricon": "cambricon"}.get(
        dev.backend, dev.backend
    )


class _Tree:
    """The simulated sysfs of one fleet (the kernel's effects played by this class)."""

    def __init__(self, dev: Device) -> None:
        sim = dev.backend_instance.context.sim
        if sim is None:
            raise UnsupportedOperation(
                "vfio on a real host is not built yet; use a simulated fleet (--sim PRESET)"
            )
        root = open_root(sim.root, Policy(), create=True, what="simulated fleet folder")
        assert root is not None
        self.root: SafeDir = root
        self.devs = root.makedirs("sysfs/bus/pci/devices")

    def close(self) -> None:
        self.devs.close()
        self.root.close()

    def ensure(self, pci: str, host: str, group: str) -> SafeDir:
        d = self.devs.makedirs(pci)
        if d.lstat("iommu_group") is None:
            d.write_bytes("iommu_group", group.encode())
            d.write_bytes("driver", host.encode())
            d.write_bytes("host_driver", host.encode())
            d.write_bytes("driver_override", b"(null)")
        return d

    def read(self, d: SafeDir, name: str) -> str:
        return (d.read_bytes(name) or b"").decode().strip()

    def group_members(self, group: str) -> list[str]:
        out = []
        for name in sorted(self.devs.listdir()):
            d = self.devs.subdir(name, create=False)
            if d is None:
                continue
            with d:
                if self.read(d, "iommu_group") == group:
                    out.append(name)
        return out


def _state(tree: _Tree, dev: Device) -> tuple[SafeDir, PassthroughState]:
    pci = _pci(dev)
    group = str(dev.index + 1)
    d = tree.ensure(pci, _host_driver(dev), group)
    drv = tree.read(d, "driver") or None
    pend = tree.read(d, "pending") or None
    st = PassthroughState(
        dev.id,
        pci,
        drv,
        tree.read(d, "host_driver"),
        tree.read(d, "iommu_group"),
        drv == VFIO_DRIVER and pend is None,
        pend,
    )
    return d, st


def status(devices: list[Device]) -> list[PassthroughState]:
    out = []
    for dev in devices:
        try:
            _pci(dev)
        except UnsupportedOperation:
            continue
        tree = _Tree(dev)
        try:
            d, st = _state(tree, dev)
            d.close()
        finally:
            tree.close()
        out.append(st)
    return out


def _step(d: SafeDir, name: str, value: str) -> None:
    d.write_bytes(name, value.encode())
    if os.environ.get("ACCELPOOL_VFIO_DIE_AFTER") == name:  # tests: kill -9 between steps
        os.kill(os.getpid(), 9)


def bind(dev: Device) -> PassthroughState:
    """Detach ``dev`` from its host driver and bind it to ``vfio-pci``."""
    from accelpool import claims

    tree = _Tree(dev)
    try:
        d, st = _state(tree, dev)
        with d:
            if st.passed_through:
                return st
            if st.pending is None:
                if dev.partitions():
                    raise InUse(
                        f"cannot pass {dev.id} through: it has {len(dev.partitions())} "
                        "partition(s); destroy them first (accelpool partition destroy ID)"
                    )
                found = claims.blockers(dev)
                if found:
                    raise InUse(
                        f"cannot pass {dev.id} through: it is claimed by "
                        f"{found[0].describe()}; release it first"
                    )
                for other in tree.group_members(st.iommu_group):
                    if other == st.pci:
                        continue
                    od = tree.devs.subdir(other, create=False)
                    assert od is not None
                    with od:
                        drv = tree.read(od, "driver")
                    if drv and drv not in STUBS:
                        raise InUse(
                            f"cannot pass {dev.id} through: IOMMU group {st.iommu_group} "
                            f"member {other} is still bound to host driver {drv}; bind it to "
                            f"{VFIO_DRIVER} first"
                        )
            d.write_bytes("pending", b"bind")
            claims.claim(dev, holder=holder_of(dev.id), owner=f"passed through to {VFIO_DRIVER}")
            _step(d, "driver_override", VFIO_DRIVER)
            _step(d, "driver", "")  # unbind from the host driver
            _step(d, "driver", VFIO_DRIVER)  # drivers_probe picks the override
            d.remove("pending")
            return _state(tree, dev)[1]
    finally:
        tree.close()


def unbind(dev: Device) -> PassthroughState:
    """Give ``dev`` back to its host driver."""
    from accelpool import claims

    tree = _Tree(dev)
    try:
        d, st = _state(tree, dev)
        with d:
            if st.driver != VFIO_DRIVER and st.pending is None:
                return st
            for c in claims.blockers(dev):
                if c.named and c.holder != holder_of(dev.id):
                    raise InUse(
                        f"cannot unbind {dev.id}: it is attached to {c.describe()}; "
                        "detach it first (accelpool vm detach)"
                    )
            d.write_bytes("pending", b"unbind")
            _step(d, "driver_override", "(null)")
            _step(d, "driver", "")
            _step(d, "driver", st.host_driver)
            claims.release(holder_of(dev.id))
            d.remove("pending")
            return _state(tree, dev)[1]
    finally:
        tree.close()


def dumps(states: list[PassthroughState]) -> str:
    return json.dumps([s.to_json() for s in states], indent=2)


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
