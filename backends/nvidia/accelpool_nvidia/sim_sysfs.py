"""The simulated hypervisor's sysfs tree: rendered from the state, written through the kernel.

The mdev tree (``class/mdev_bus``, ``bus/mdev/devices``) under the fleet's state folder
is rewritten whenever the state changes; a write made to it by other means is applied
first. :class:`SimMdevSysfs` is the backend's mdev interface over it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelpool.safefs import SafeDir
from accelpool.statedir import open_state_tree
from accelpool_nvidia.mdev import MdevDevice, MdevSysfs
from accelpool_nvidia.sim_abi import _Fail
from accelpool_nvidia.sim_fleet import SimGpu
from accelpool_nvidia.sim_state import _Snapshot
from accelpool_nvidia.sim_vgpu import SimVgpu

if TYPE_CHECKING:
    from accelpool_nvidia.simulator import NvmlSimulator


class SimSysfs(SimVgpu):
    """The sysfs tree that plays ``/sys`` for the mediated-device interface."""

    #: the state the tree last showed (declared in SimState, set by NvmlSimulator)
    _rendered: _Snapshot | None

    def sync_sysfs(self) -> None:
        """Apply writes made to the tree by other means, then rewrite it from the state."""
        if not self._vgpu_gpus:
            return
        marker = self.sysfs_root / ".accelpool-sim"
        # Cheap checks first: most calls find nothing to do and take no lock.
        if marker.exists() and not self._pending_writes() and self.snapshot() is self._rendered:
            return
        with self.store.lock():
            pending = self._pending_writes() if marker.exists() else []
            if pending:
                for path, text in pending:
                    with contextlib.suppress(OSError):
                        self.sysfs_write(path, text)
                return
            snap = self.snapshot()
            if snap is not self._rendered or not marker.exists():
                self._render_sysfs(snap.ns)
                self._rendered = snap

    def _type_dir(self, gpu: SimGpu, type_id: int) -> Path:
        return (
            self.sysfs_root
            / "class"
            / "mdev_bus"
            / gpu.sysfs_pci
            / "mdev_supported_types"
            / f"nvidia-{type_id}"
        )

    def _pending_writes(self) -> list[tuple[Path, str]]:
        """Files of the tree someone wrote to (the simulator leaves them empty)."""
        candidates = [
            self._type_dir(gpu, t.id) / "create"
            for gpu in self._vgpu_gpus
            for t in gpu.model.vgpu_types
        ]
        devices = self.sysfs_root / "bus" / "mdev" / "devices"
        with contextlib.suppress(OSError):
            candidates += [d / "remove" for d in devices.iterdir()]
        found = []
        for path in candidates:
            with contextlib.suppress(OSError):
                if path.stat().st_size:
                    text = path.read_text()
                    if text.strip():
                        found.append((path, text))
        return found

    def _sysfs_tree(self) -> SafeDir:
        # The tree is opened from the state directory down without following links;
        # anything foreign found in it (a planted link, say) is replaced, never followed.
        top = open_state_tree(self.root)
        assert top is not None  # made when missing
        with top:
            return top.makedirs("sys", replace=True)

    def _render_sysfs(self, ns: Mapping[str, Any]) -> None:
        with self._sysfs_tree() as root, root.makedirs("bus/mdev/devices", replace=True) as devs:
            live: dict[str, tuple[SimGpu, int]] = {}
            for gpu in self.vgpu_gpus():
                try:
                    types = self._vgpu_types(gpu.index, ns)
                    creatable = {t.id for t in self._creatable(gpu.index, ns)}
                except _Fail:
                    types, creatable = [], set()
                wanted = {f"nvidia-{t.id}" for t in types}
                vgpus = self._g(ns, gpu.index).get("vgpus", {})
                rel = f"class/mdev_bus/{gpu.sysfs_pci}/mdev_supported_types"
                with root.makedirs(rel, replace=True) as base:
                    for stale in base.listdir():
                        if stale not in wanted:
                            base.remove(stale)
                    for t in types:
                        avail = self._available(gpu.index, ns, t) if t.id in creatable else 0
                        files = {
                            "name": f"{t.name}\n",
                            "available_instances": f"{avail}\n",
                            "device_api": "vfio-pci\n",
                            # the kernel module's wording, sizes in M (vgpuConfig.xml 510.47.03)
                            "description": (
                                f"num_heads=1, frl_config=60, "
                                f"framebuffer={t.framebuffer_mb}M, max_resolution="
                                f"4096x2160, max_instance={t.max_instances}\n"
                            ),
                            "create": "",
                        }
                        with base.makedirs(f"nvidia-{t.id}", replace=True) as d:
                            d.makedirs("devices", replace=True).close()
                            for fname, text in files.items():
                                d.write_if_changed(fname, text.encode())
                for v in vgpus.values():
                    live[v["mdev"]] = (gpu, v["type"])
            for name in devs.listdir():
                if name not in live:
                    devs.remove(name)
            for mdev, (gpu, type_id) in live.items():
                with devs.makedirs(mdev, replace=True) as d:
                    d.write_if_changed("remove", b"")
                    d.symlink(self._type_dir(gpu, type_id), "mdev_type")
            root.write_bytes(".accelpool-sim", f"{self.fleet}\n".encode())

    def sysfs_write(self, path: Path, text: str) -> None:
        """The simulated kernel's answer to ``write(path, text)`` in the mdev tree.

        Raises ``OSError`` with the errno the kernel would give: ENOSPC when the type
        has no instance left, EEXIST for a UUID in use, EINVAL for a malformed one,
        EBUSY when removing a vGPU still in use, ENOENT for a path that is not there.
        """
        path = Path(path)
        with self.mutate() as ns:
            try:
                self._kernel_write(ns, path, text)
            finally:
                # Keep the tree consistent whatever happened (clears the written file).
                self._render_sysfs(ns)


class SimMdevSysfs(MdevSysfs):
    """The mdev tree of a simulated hypervisor: writes take effect at once, as in the kernel."""

    def __init__(self, sim: NvmlSimulator) -> None:
        super().__init__(sim.sysfs_root)
        self.sim = sim

    def devices(self) -> list[MdevDevice]:
        self.sim.sync_sysfs()
        return super().devices()

    def available_instances(self, pci: str, type_id: int) -> int | None:
        self.sim.sync_sysfs()
        return super().available_instances(pci, type_id)

    def _write(self, path: Path, text: str) -> None:
        self.sim.sync_sysfs()
        self.sim.sysfs_write(path, text)
