"""A simulated host's PCI sysfs: a tree laid out exactly like ``/sys``, and the kernel's part.

:class:`SimPciKernel` makes the tree (functions under ``sys/devices``, the kernel's
links ``bus/pci/devices/<addr>``, ``driver``, ``iommu_group`` and
``kernel/iommu_groups/<n>/devices/<addr>``, the drivers' ``bind``/``unbind`` files and
``bus/pci/drivers_probe``) and, called after each write that
:class:`accelpool.pcisysfs.PciSysfs` makes, does what the kernel would: set or clear a
``driver_override``, unbind, probe (the override wins, else the function's own driver).
Every change goes through :mod:`accelpool.safefs` on the tree's own descriptors.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from accelpool.errors import InvalidRequest
from accelpool.pcisysfs import VFIO_DRIVER, PciSysfs, pci_address
from accelpool.safefs import SafeDir
from accelpool.statedir import open_state_tree

__all__ = ["SimPciKernel"]

_NATIVE = ".accelpool-sim-pci.json"  # which driver each function's ids match (the modalias)


def _new_node(pci: str) -> str:
    return f"sys/devices/pci{pci[:4]}:00/{pci}"


class SimPciKernel:
    """The kernel of a simulated host whose ``/`` is ``root``."""

    def __init__(
        self,
        root: Path,
        lock: Callable[[], AbstractContextManager[object]] | None = None,
        native: dict[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self._lock = lock or contextlib.nullcontext
        self._native = dict(native or {})  # function -> its own driver, beyond the record

    def _node(self, pci: str) -> str:
        """The function's node under ``sys/devices``, from its ``bus/pci/devices`` link."""
        fd, parts = PciSysfs(self.root)._walk(f"sys/bus/pci/devices/{pci}")
        os.close(fd)
        return "/".join(parts)

    def _rel(self, node: str, to: str) -> str:
        """The relative link text from directory ``node`` to ``to`` (both below the root)."""
        return os.path.relpath(to, node)

    @contextlib.contextmanager
    def _tree(self) -> Iterator[SafeDir]:
        with self._lock():
            top = open_state_tree(self.root)
            assert top is not None  # made when missing
            with top:
                yield top

    # -- making the tree ---------------------------------------------------------------
    def add_function(
        self, pci: str, driver: str | None, *, group: int | None = None, native: str | None = None
    ) -> None:
        """A PCI function bound to ``driver`` (``None``: unbound), alone in a new IOMMU
        group unless ``group`` is given; nothing changes if it is already there."""
        pci = pci_address(pci)
        with self._tree() as top:
            with top.makedirs("sys/bus/pci/devices") as devs:
                if devs.lstat(pci) is not None:
                    return
            with top.makedirs("sys/bus/pci") as bus:
                bus.ensure_file("drivers_probe")
            self._driver_dir(top, VFIO_DRIVER).close()
            node = _new_node(pci)
            with top.makedirs(node) as d:
                d.write_bytes("driver_override", b"(null)\n")
                d.write_bytes("vendor", b"0x10de\n")
            if group is None:
                with top.makedirs("sys/kernel/iommu_groups") as groups:
                    used = [int(n) for n in groups.listdir() if n.isdigit()]
                group = max(used, default=-1) + 1
            with top.makedirs(f"sys/kernel/iommu_groups/{group}/devices") as gd:
                gd.symlink(self._rel(f"sys/kernel/iommu_groups/{group}/devices", node), pci)
            with top.makedirs(node) as d:
                d.symlink(self._rel(node, f"sys/kernel/iommu_groups/{group}"), "iommu_group")
            native_map = json.loads(top.read_bytes(_NATIVE) or b"{}")
            native_map[pci] = native or driver
            top.write_bytes(_NATIVE, json.dumps(native_map).encode())
            with top.makedirs("sys/bus/pci/devices") as devs:
                devs.symlink(self._rel("sys/bus/pci/devices", node), pci)
            if driver is not None:
                self._bind(top, pci, driver)

    def _driver_dir(self, top: SafeDir, driver: str) -> SafeDir:
        d = top.makedirs(f"sys/bus/pci/drivers/{driver}")
        for attr in ("bind", "unbind", "new_id", "remove_id"):
            d.ensure_file(attr)
        return d

    def _bind(self, top: SafeDir, pci: str, driver: str) -> None:
        node, drv = self._node(pci), f"sys/bus/pci/drivers/{driver}"
        with self._driver_dir(top, driver) as dd:
            dd.symlink(self._rel(drv, node), pci)
        with top.makedirs(node) as d:
            d.symlink(self._rel(node, drv), "driver")

    # -- the kernel's part -----------------------------------------------------------------
    def __call__(self, parts: tuple[str, ...], text: str) -> None:
        with self._tree() as top:
            path = "/".join(parts)
            if parts[-1] == "driver_override":
                value = text.strip() or "(null)"
                with top.makedirs("/".join(parts[:-1])) as d:
                    d.write_bytes("driver_override", value.encode() + b"\n")
                return
            pci = pci_address(text)
            with top.makedirs("/".join(parts[:-1])) as d:  # write-only attributes read empty
                d.write_bytes(parts[-1], b"")
            if parts[:4] == ("sys", "bus", "pci", "drivers") and parts[-1] == "unbind":
                if self._bound(top, pci) != parts[4]:
                    raise InvalidRequest(
                        f"the kernel refused {pci} written to {path}: no such device"
                    )
                with top.makedirs(f"sys/bus/pci/drivers/{parts[4]}") as dd:
                    dd.remove(pci)
                with top.makedirs(self._node(pci)) as d:
                    d.remove("driver")
            elif parts[:4] == ("sys", "bus", "pci", "drivers") and parts[-1] == "bind":
                if self._bound(top, pci) is not None:
                    raise InvalidRequest(f"the kernel refused {pci} written to {path}: busy")
                self._probe(top, pci, only=parts[4])
            elif parts == ("sys", "bus", "pci", "drivers_probe") and self._bound(top, pci) is None:
                self._probe(top, pci)

    def _bound(self, top: SafeDir, pci: str) -> str | None:
        with top.makedirs(self._node(pci)) as d:
            link = d.readlink("driver")
        return link.rsplit("/", 1)[-1] if link else None

    def _probe(self, top: SafeDir, pci: str, only: str | None = None) -> None:
        with top.makedirs(self._node(pci)) as d:
            override = (d.read_bytes("driver_override") or b"").decode().strip()
        if override and override != "(null)":
            want: str | None = override
        else:
            recorded = json.loads(top.read_bytes(_NATIVE) or b"{}")
            want = self._native.get(pci, recorded.get(pci))
        if want is None or (only is not None and only != want):
            return
        with top.makedirs("sys/bus/pci/drivers") as drivers:
            if drivers.lstat(want) is None:
                return  # that driver is not loaded: the function stays unbound
        self._bind(top, pci, want)
