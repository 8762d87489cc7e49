"""The hypervisor's mediated-device (mdev) sysfs interface, through which vGPUs are made.

NVML lists vGPU types but cannot create vGPUs; on a KVM host that is done by
writing a UUID to ``/sys/class/mdev_bus/<pci>/mdev_supported_types/nvidia-<id>/create``
and ``1`` to ``/sys/bus/mdev/devices/<uuid>/remove``. The root that plays ``/sys``
is configurable so tests can point it at a tree the simulator keeps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MdevDevice:
    """One mediated device: its UUID, parent GPU (sysfs PCI address) and vGPU type id."""

    uuid: str
    parent: str
    type_id: int


def sysfs_pci(nvml_bus_id: str) -> str:
    """NVML's ``00000000:07:00.0`` as sysfs spells it, ``0000:07:00.0``."""
    domain, rest = nvml_bus_id.split(":", 1)
    return f"{int(domain, 16):04x}:{rest.lower()}"


class MdevSysfs:
    """Reads and writes the mdev tree under ``root`` (``/sys`` on a real host)."""

    def __init__(self, root: Path | str = "/sys") -> None:
        self.root = Path(root)

    def type_dir(self, pci: str, type_id: int) -> Path:
        return self.root / "class" / "mdev_bus" / pci / "mdev_supported_types" / f"nvidia-{type_id}"

    def available_instances(self, pci: str, type_id: int) -> int | None:
        """The kernel's count of instances of a type still creatable, if it says."""
        try:
            return int((self.type_dir(pci, type_id) / "available_instances").read_text().strip())
        except (OSError, ValueError):
            return None

    def devices(self) -> list[MdevDevice]:
        """Every NVIDIA mediated device on the host."""
        base = self.root / "bus" / "mdev" / "devices"
        found = []
        try:
            entries = sorted(base.iterdir())
        except OSError:
            return []
        for d in entries:
            try:
                target = Path(os.path.realpath(d / "mdev_type"))
            except OSError:
                continue
            if not target.name.startswith("nvidia-"):
                continue
            try:
                type_id = int(target.name.split("-", 1)[1])
            except ValueError:
                continue
            found.append(MdevDevice(d.name, target.parent.parent.name, type_id))
        return found

    def create(self, pci: str, type_id: int, uuid: str) -> None:
        """Create a vGPU of ``type_id`` on the GPU at ``pci`` named ``uuid``."""
        self._write(self.type_dir(pci, type_id) / "create", uuid)

    def remove(self, uuid: str) -> None:
        self._write(self.root / "bus" / "mdev" / "devices" / uuid / "remove", "1")

    def _write(self, path: Path, text: str) -> None:
        # One write() call, as the kernel expects of sysfs attributes. O_NOFOLLOW: the
        # attribute files are never links, so one found in their place is not written
        # through (the simulated tree lives in a state directory).
        flags = (
            os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        )
        fd = os.open(path, flags)
        with open(fd, "w", encoding="ascii") as f:
            f.write(text)
