"""The simulator's vGPU host: vGPU types, which are creatable, and the kernel's mdev writes.

A vGPU is a mediated device: creating or removing one is a write into the simulated
sysfs tree, answered here with the errno the kernel would give.
"""

from __future__ import annotations

import errno
import uuid as uuidlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.models import VgpuTypeSpec
from accelpool_nvidia.sim_abi import _Fail
from accelpool_nvidia.sim_fleet import VIRT_HOST_VGPU, SimGpu
from accelpool_nvidia.sim_mig import SimMig


class SimVgpu(SimMig):
    """vGPU types and mediated devices of the simulated host GPUs."""

    # -- vGPU ------------------------------------------------------------------------------
    def _vgpu_types(self, gpu: int, ns: Mapping[str, Any]) -> list[VgpuTypeSpec]:
        sim_gpu = self.gpus[gpu]
        if sim_gpu.virtualization != VIRT_HOST_VGPU:
            raise _Fail(rc.NOT_SUPPORTED)
        mig_on = self.mig_mode(gpu, ns)[0] == 1
        return [t for t in sim_gpu.model.vgpu_types if (t.gi_profile_id is not None) == mig_on]

    def _vgpu_type(self, type_id: int) -> VgpuTypeSpec:
        for g in self.gpus:
            for t in g.model.vgpu_types:
                if t.id == type_id:
                    return t
        raise _Fail(rc.INVALID_ARGUMENT)

    def free_gis(self, ns: Mapping[str, Any], gpu: int, profile_id: int) -> list[int]:
        """GPU instances of a profile that can host a MIG-backed vGPU, lowest id first.

        A MIG-backed vGPU takes a whole GPU instance that has no compute instances (its
        VM makes those) and no vGPU yet.
        """
        g = self._g(ns, gpu)
        hosting = {v.get("gi") for v in g.get("vgpus", {}).values()}
        return sorted(
            int(k)
            for k, gi in g.get("gis", {}).items()
            if gi["profile"] == profile_id and not gi.get("cis") and int(k) not in hosting
        )

    def _available(self, gpu: int, ns: Mapping[str, Any], t: VgpuTypeSpec) -> int:
        """What the mdev type's ``available_instances`` shows."""
        if t.id not in {c.id for c in self._creatable(gpu, ns)}:
            return 0
        active = sum(1 for v in self._g(ns, gpu).get("vgpus", {}).values() if v["type"] == t.id)
        left = t.max_instances - active
        if t.gi_profile_id is not None:
            left = min(left, len(self.free_gis(ns, gpu, t.gi_profile_id)))
        return max(0, left)

    def _creatable(self, gpu: int, ns: Mapping[str, Any]) -> list[VgpuTypeSpec]:
        types = self._vgpu_types(gpu, ns)
        active = Counter(v["type"] for v in self._g(ns, gpu).get("vgpus", {}).values())
        if any(t.gi_profile_id is not None for t in types):
            # MIG-backed: each type needs a free GPU instance of its profile.
            return [
                t
                for t in types
                if t.gi_profile_id is not None
                and active[t.id] < t.max_instances
                and self.free_gis(ns, gpu, t.gi_profile_id)
            ]
        if active:
            # Homogeneous time-sliced mode: only the type already running, while it fits.
            (running,) = active
            return [t for t in types if t.id == running and active[running] < t.max_instances]
        return types

    # -- sysfs tree of the simulated hypervisor ------------------------------------------
    @property
    def sysfs_root(self) -> Path:
        """The folder that plays ``/sys`` for the mediated-device interface."""
        return self.root / "sys"

    def vgpu_gpus(self) -> list[SimGpu]:
        return list(self._vgpu_gpus)

    def _kernel_write(self, ns: dict[str, Any], path: Path, text: str) -> None:
        try:
            rel = path.relative_to(self.sysfs_root) if path.is_absolute() else path
        except ValueError:
            raise OSError(errno.ENOENT, "not in the simulated sysfs tree", str(path)) from None
        parts = rel.parts
        if parts[:3] == ("bus", "mdev", "devices") and len(parts) == 5 and parts[4] == "remove":
            if text.strip() != "1":
                raise OSError(errno.EINVAL, "write 1 to remove", str(path))
            for k, g in ns.get("gpus", {}).items():
                for inst, v in list(g.get("vgpus", {}).items()):
                    if v["mdev"] == parts[3]:
                        if g.get("lost"):
                            raise OSError(errno.EIO, "GPU is lost", str(path))
                        if self._busy(ns, int(k), v["mdev"]):
                            raise OSError(errno.EBUSY, "vGPU is in use by a VM", str(path))
                        del g["vgpus"][inst]
                        return
            raise OSError(errno.ENOENT, "no such mediated device", str(path))
        if (
            len(parts) == 6
            and parts[:2] == ("class", "mdev_bus")
            and parts[3] == "mdev_supported_types"
            and parts[5] == "create"
            and parts[4].startswith("nvidia-")
        ):
            gpu = next((g for g in self.vgpu_gpus() if g.sysfs_pci == parts[2]), None)
            if gpu is None:
                raise OSError(errno.ENOENT, "no such mdev parent", str(path))
            if self._g(ns, gpu.index).get("lost"):
                raise OSError(errno.EIO, "GPU is lost", str(path))
            try:
                mdev = str(uuidlib.UUID(text.strip()))
            except ValueError:
                raise OSError(errno.EINVAL, "not a UUID", str(path)) from None
            if any(
                v["mdev"] == mdev
                for g in ns.get("gpus", {}).values()
                for v in g.get("vgpus", {}).values()
            ):
                raise OSError(errno.EEXIST, "mediated device exists", str(path))
            type_id = int(parts[4].split("-", 1)[1])
            try:
                creatable = {t.id for t in self._creatable(gpu.index, ns)}
            except _Fail:
                creatable = set()
            if type_id not in creatable:
                raise OSError(errno.ENOSPC, "no vGPU instance of this type available", str(path))
            inst = 1000 + self._next_serial(ns)
            vgpu: dict[str, Any] = {"type": type_id, "mdev": mdev}
            spec = self._vgpu_type(type_id)
            if spec.gi_profile_id is not None:
                vgpu["gi"] = self.free_gis(ns, gpu.index, spec.gi_profile_id)[0]
            self._gw(ns, gpu.index).setdefault("vgpus", {})[str(inst)] = vgpu
            self._arm(ns, "mdev-create", gpu.index)
            return
        raise OSError(errno.EACCES, "not writable", str(path))
