"""vGPU partitions on a vGPU host: types and profiles from NVML, instances as mdevs.

A vGPU is a mediated device made through sysfs (:mod:`accelpool_nvidia.mdev`) and
confirmed through NVML; a MIG-backed vGPU also owns a GPU instance, made here when no
free one of its profile exists.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any

import pynvml

from accelpool.errors import InsufficientCapacity, NotFound, UnsupportedOperation
from accelpool.types import AttributeValue, DeviceInfo, PartitionInfo, PartitionProfile, Placement
from accelpool_nvidia.discovery import _str
from accelpool_nvidia.errors import from_nvml, from_oserror
from accelpool_nvidia.mig_instances import MigInstances

if TYPE_CHECKING:
    from accelpool_nvidia.mdev import MdevSysfs
    from accelpool_nvidia.profile_types import _GiProfile, _VgpuType

_NO_GI_PROFILE = 0xFFFFFFFF


class VgpuPartitions(MigInstances):
    """vGPU types, their profiles, and vGPUs made and removed as mediated devices."""

    # -- vGPU --------------------------------------------------------------------------------
    @staticmethod
    def _is_vgpu_host(device: DeviceInfo) -> bool:
        return device.attributes.get("nvidia.com/virtualizationMode") == "host-vgpu"

    def _vgpu_name(self, type_id: int) -> str:
        name = self._vgpu_names.get(type_id)
        if name is None:
            raw = _str(pynvml.nvmlVgpuTypeGetName(type_id))
            for prefix in ("NVIDIA ", "GRID "):
                raw = raw.removeprefix(prefix)
            name = self._vgpu_names[type_id] = raw
        return name

    @staticmethod
    def _vgpu_list(fn: Any, h: Any) -> list[int]:
        """A vGPU id list; NVML's two-call protocol races with other processes, so retry."""
        for attempt in range(5):
            try:
                return [int(x) for x in fn(h)]
            except pynvml.NVMLError_InsufficientSize:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def _vgpu_types(self, h: Any) -> dict[int, str]:
        try:
            ids = self._vgpu_list(pynvml.nvmlDeviceGetSupportedVgpus, h)
        except pynvml.NVMLError_NotSupported:
            return {}
        return {int(t): self._vgpu_name(int(t)) for t in ids}

    def _mdev_of(self, device: DeviceInfo) -> tuple[MdevSysfs, str]:
        from accelpool_nvidia.mdev import sysfs_pci

        if self._mdev is None:
            raise UnsupportedOperation("no mediated-device sysfs interface is configured")
        return self._mdev, sysfs_pci(str(device.attributes.get("nvidia.com/pciBusID", "")))

    def _vgpu_profiles(self, device: DeviceInfo, h: Any) -> list[PartitionProfile]:
        types = self._vgpu_types(h)
        if not types:
            return []
        creatable = set(self._vgpu_list(pynvml.nvmlDeviceGetCreatableVgpus, h))
        mdev, pci = self._mdev_of(device)
        active = Counter(d.type_id for d in mdev.devices() if d.parent == pci)
        gi_profiles: dict[int, _GiProfile] = {}
        result = []
        for type_id, name in types.items():
            static = self._vgpu_static(h, type_id)
            max_count = static.max_instances
            available = mdev.available_instances(pci, type_id)
            if available is None:
                available = max_count - active[type_id] if type_id in creatable else 0
            attrs: dict[str, AttributeValue] = {
                "nvidia.com/vgpuTypeId": type_id,
                "nvidia.com/vgpuClass": static.vgpu_class,
                "nvidia.com/creatable": type_id in creatable,
            }
            # time-sliced vGPUs share every SM of the GPU
            compute_units = device.compute_units
            placements: tuple[Placement, ...] = ()
            if static.gi_profile != _NO_GI_PROFILE:
                attrs["nvidia.com/gpuInstanceProfileId"] = static.gi_profile
                if not gi_profiles:
                    gi_profiles = {p.id: p for p in self._gi_profiles(h, device)}
                prof = gi_profiles[static.gi_profile]
                compute_units = prof.sms
                placements = tuple(Placement(s, n) for s, n in prof.placements)
                # a free GPU instance of the profile, or room to make one
                room = pynvml.nvmlDeviceGetGpuInstanceRemainingCapacity(h, prof.id)
                available = min(max_count - active[type_id], available + room)
            result.append(
                PartitionProfile(
                    name=name,
                    kind="vgpu",
                    memory_bytes=static.framebuffer,
                    compute_units=compute_units,
                    max_count=max_count,
                    placements=placements,
                    available=max(0, available),
                    attributes=attrs,
                )
            )
        return result

    def _vgpu_static(self, h: Any, type_id: int) -> _VgpuType:
        """A vGPU type's fixed facts, read once."""
        static = self._vgpu_statics.get(type_id)
        if static is None:
            from accelpool_nvidia.profile_types import _VgpuType  # built only on vGPU hosts

            static = self._vgpu_statics[type_id] = _VgpuType(
                framebuffer=int(pynvml.nvmlVgpuTypeGetFramebufferSize(type_id)),
                max_instances=int(pynvml.nvmlVgpuTypeGetMaxInstances(h, type_id)),
                gi_profile=int(pynvml.nvmlVgpuTypeGetGpuInstanceProfileId(type_id)),
                vgpu_class=_str(pynvml.nvmlVgpuTypeGetClass(type_id)),
            )
        return static

    def _active_vgpus(self, h: Any) -> dict[str, int]:
        """mdev UUID -> vGPU instance id of the vGPUs NVML reports active."""
        instances: dict[str, int] = {}
        for inst in self._vgpu_list(pynvml.nvmlDeviceGetActiveVgpus, h):
            # one may vanish between the list and this call (another process)
            with contextlib.suppress(pynvml.NVMLError_InvalidArgument, pynvml.NVMLError_NotFound):
                instances[_str(pynvml.nvmlVgpuInstanceGetMdevUUID(inst))] = inst
        return instances

    def _vgpu_gis(self, h: Any) -> dict[int, str]:
        """GPU instance id -> mdev UUID of each MIG-backed vGPU NVML reports active."""
        hosting: dict[int, str] = {}
        with contextlib.suppress(pynvml.NVMLError_NotSupported):
            for mdev_uuid, inst in self._active_vgpus(h).items():
                with contextlib.suppress(
                    pynvml.NVMLError_InvalidArgument, pynvml.NVMLError_NotFound
                ):
                    gi_id = int(pynvml.nvmlVgpuInstanceGetGpuInstanceId(inst))
                    if gi_id != _NO_GI_PROFILE:
                        hosting[gi_id] = mdev_uuid
        return hosting

    def _vgpu_partitions(self, device: DeviceInfo, h: Any) -> list[PartitionInfo]:
        mdev, pci = self._mdev_of(device)
        mine = [d for d in mdev.devices() if d.parent == pci]
        if not mine:
            return []
        instances: dict[str, int] = {}
        with contextlib.suppress(pynvml.NVMLError_NotSupported):
            instances = self._active_vgpus(h)
        result = []
        for d in mine:
            attrs: dict[str, AttributeValue] = {
                "nvidia.com/mdevUUID": d.uuid,
                "nvidia.com/vgpuTypeId": d.type_id,
            }
            if d.uuid in instances:
                attrs["nvidia.com/vgpuInstance"] = instances[d.uuid]
            result.append(self._vgpu_info(device, h, d.uuid, d.type_id, attrs))
        return result

    def _vgpu_info(
        self,
        device: DeviceInfo,
        h: Any,
        mdev_uuid: str,
        type_id: int,
        attrs: dict[str, AttributeValue],
    ) -> PartitionInfo:
        static = self._vgpu_static(h, type_id)
        compute_units, placement = device.compute_units, None
        inst = attrs.get("nvidia.com/vgpuInstance")
        if static.gi_profile != _NO_GI_PROFILE and isinstance(inst, int):
            # A MIG-backed vGPU owns its GPU instance: its SMs and its placement.
            with contextlib.suppress(pynvml.NVMLError_InvalidArgument, pynvml.NVMLError_NotFound):
                gi_id = int(pynvml.nvmlVgpuInstanceGetGpuInstanceId(inst))
                gi_info = pynvml.nvmlGpuInstanceGetInfo(
                    pynvml.nvmlDeviceGetGpuInstanceById(h, gi_id)
                )
                prof = next(p for p in self._gi_profiles(h, device) if p.id == static.gi_profile)
                attrs["nvidia.com/gpuInstanceId"] = gi_id
                compute_units = prof.sms
                placement = Placement(gi_info.placement.start, gi_info.placement.size)
        return PartitionInfo(
            native_id=f"vgpu-{mdev_uuid}",
            device_native_id=device.native_id,
            profile=self._vgpu_name(type_id),
            kind="vgpu",
            memory_bytes=static.framebuffer,
            compute_units=compute_units,
            placement=placement,
            scope="device",
            attributes=attrs,
        )

    def _create_vgpu(self, device: DeviceInfo, h: Any, type_id: int, name: str) -> PartitionInfo:
        dev_id = self._dev_id(device)
        action = f"creating vGPU {name} on {dev_id}"
        static = self._vgpu_static(h, type_id)
        creatable = set(self._vgpu_list(pynvml.nvmlDeviceGetCreatableVgpus, h))
        mdev, pci = self._mdev_of(device)
        made_gi = None
        if static.gi_profile != _NO_GI_PROFILE:
            if type_id not in creatable:
                # No free GPU instance of its profile: make one, without compute
                # instances (the VM creates those).
                profiles = self._gi_profiles(h, device)
                prof = next((p for p in profiles if p.id == static.gi_profile), None)
                if prof is None:
                    raise UnsupportedOperation(
                        f"{action}: NVML offers no GPU instance profile {static.gi_profile}"
                    )
                made_gi = self._make_gpu_instance(h, prof, profiles, None, action)
        elif type_id not in creatable:
            running = sorted(
                {self._vgpu_name(d.type_id) for d in mdev.devices() if d.parent == pci}
            )
            if running and running != [name]:
                why = (
                    f"it runs {', '.join(running)} vGPUs, and time-sliced vGPUs of "
                    "different types cannot share a GPU; destroy those first"
                )
            else:
                why = "every instance of this type is in use; destroy one first"
            raise InsufficientCapacity(f"{action}: {why}")
        import uuid  # only vGPU creation needs it

        mdev_uuid = str(uuid.uuid4())
        try:
            mdev.create(pci, type_id, mdev_uuid)
        except OSError as e:
            if made_gi is not None:
                self._rollback(made_gi, None)
            raise from_oserror(e, action) from e
        try:
            # Confirm through NVML that the driver took the new vGPU.
            instances = self._active_vgpus(h)
        except pynvml.NVMLError as e:
            note = "rolled back"
            try:
                mdev.remove(mdev_uuid)
            except OSError:
                note = f"rollback failed, mediated device {mdev_uuid} left behind"
            if made_gi is not None and self._rollback(made_gi, None):
                note += ", and a GPU instance was left behind"
            raise from_nvml(e, action, f"NVML failed after the mdev was made ({note})") from e
        attrs: dict[str, AttributeValue] = {
            "nvidia.com/mdevUUID": mdev_uuid,
            "nvidia.com/vgpuTypeId": type_id,
        }
        if mdev_uuid in instances:
            attrs["nvidia.com/vgpuInstance"] = instances[mdev_uuid]
        return self._vgpu_info(device, h, mdev_uuid, type_id, attrs)

    def _destroy_vgpu(self, partition: PartitionInfo, pid: str) -> None:
        mdev_uuid = partition.native_id.removeprefix("vgpu-")
        mdev = self._mdev
        if mdev is None:
            raise UnsupportedOperation("no mediated-device sysfs interface is configured")
        h = pynvml.nvmlDeviceGetHandleByUUID(partition.device_native_id)
        pynvml.nvmlDeviceGetVirtualizationMode(h)  # DeviceLost when the GPU is gone
        if not any(d.uuid == mdev_uuid for d in mdev.devices()):
            raise NotFound(f"partition {pid} no longer exists; run 'accelpool ls'")
        gi_id = next((g for g, m in self._vgpu_gis(h).items() if m == mdev_uuid), None)
        try:
            mdev.remove(mdev_uuid)
        except OSError as e:
            raise from_oserror(e, f"destroying partition {pid}") from e
        if gi_id is not None:
            # The GPU instance was the vGPU's: give its capacity back too. Keep it if
            # someone has put compute instances in it meanwhile.
            with contextlib.suppress(pynvml.NVMLError_InUse, pynvml.NVMLError_NotFound):
                pynvml.nvmlGpuInstanceDestroy(pynvml.nvmlDeviceGetGpuInstanceById(h, gi_id))
