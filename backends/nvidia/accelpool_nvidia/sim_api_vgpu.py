"""The simulated NVML C functions of vGPU types and vGPU instances."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.sim_abi import _array_out, _Fail, _out, _set_str, _val
from accelpool_nvidia.sim_fleet import _NS

if TYPE_CHECKING:
    from accelpool_nvidia.simulator import NvmlSimulator

_INVALID_GI_PROFILE_ID = 0xFFFFFFFF


class _VgpuApi:
    """NVML vGPU type and instance calls."""

    s: NvmlSimulator

    # -- vGPU ------------------------------------------------------------------------------
    def _id_list(self, ids: list[int], count: Any, arr: Any) -> int:
        target = _array_out(count, arr, len(ids))
        if target is None:
            return rc.INSUFFICIENT_SIZE if ids else rc.SUCCESS
        for i, v in enumerate(ids):
            target[i] = v
        return rc.SUCCESS

    def nvmlDeviceGetSupportedVgpus(self, h: Any, count: Any, arr: Any) -> int:
        gpu = self.s._gpu(h)
        self.s.sync_sysfs()
        types = self.s._vgpu_types(gpu, self.s.snapshot().ns)
        return self._id_list([t.id for t in types], count, arr)

    def nvmlDeviceGetCreatableVgpus(self, h: Any, count: Any, arr: Any) -> int:
        gpu = self.s._gpu(h)
        self.s.sync_sysfs()
        types = self.s._creatable(gpu, self.s.snapshot().ns)
        return self._id_list([t.id for t in types], count, arr)

    def nvmlDeviceGetActiveVgpus(self, h: Any, count: Any, arr: Any) -> int:
        gpu = self.s._gpu(h)
        self.s.sync_sysfs()
        ns = self.s.snapshot().ns
        self.s._vgpu_types(gpu, ns)
        ids = sorted(int(k) for k in self.s._g(ns, gpu).get("vgpus", {}))
        return self._id_list(ids, count, arr)

    def nvmlVgpuTypeGetName(self, type_id: Any, buf: Any, size: Any) -> int:
        t = self.s._vgpu_type(_val(type_id))
        _set_str(buf, _val(size), t.name)
        return rc.SUCCESS

    def nvmlVgpuTypeGetClass(self, type_id: Any, buf: Any, size: Any) -> int:
        t = self.s._vgpu_type(_val(type_id))
        _set_str(buf, _val(size), t.vgpu_class)
        return rc.SUCCESS

    def nvmlVgpuTypeGetFramebufferSize(self, type_id: Any, ref: Any) -> int:
        _out(ref).value = self.s._vgpu_type(_val(type_id)).framebuffer_mb << 20
        return rc.SUCCESS

    def nvmlVgpuTypeGetMaxInstances(self, h: Any, type_id: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        t = self.s._vgpu_type(_val(type_id))
        if t not in self.s.gpus[gpu].model.vgpu_types:
            raise _Fail(rc.INVALID_ARGUMENT)
        _out(ref).value = t.max_instances
        return rc.SUCCESS

    def nvmlVgpuTypeGetGpuInstanceProfileId(self, type_id: Any, ref: Any) -> int:
        t = self.s._vgpu_type(_val(type_id))
        _out(ref).value = (
            t.gi_profile_id if t.gi_profile_id is not None else (_INVALID_GI_PROFILE_ID)
        )
        return rc.SUCCESS

    def _vgpu(self, inst: Any) -> tuple[int, Mapping[str, Any]]:
        key = str(_val(inst))
        snap = self.s.snapshot()
        for k, g in snap.gpus.items():
            v = g.get("vgpus", {}).get(key)
            if v is not None:
                if int(k) in snap.lost:
                    raise _Fail(rc.GPU_IS_LOST)
                return int(k), v
        raise _Fail(rc.INVALID_ARGUMENT)

    def nvmlVgpuInstanceGetType(self, inst: Any, ref: Any) -> int:
        _out(ref).value = self._vgpu(inst)[1]["type"]
        return rc.SUCCESS

    def nvmlVgpuInstanceGetMdevUUID(self, inst: Any, buf: Any, size: Any) -> int:
        _set_str(buf, size, self._vgpu(inst)[1]["mdev"])
        return rc.SUCCESS

    def nvmlVgpuInstanceGetUUID(self, inst: Any, buf: Any, size: Any) -> int:
        _, v = self._vgpu(inst)
        _set_str(buf, size, str(uuidlib.uuid5(_NS, "vgpu/" + v["mdev"])))
        return rc.SUCCESS

    def nvmlVgpuInstanceGetGpuInstanceId(self, inst: Any, ref: Any) -> int:
        # INVALID_GPU_INSTANCE_ID for a time-sliced vGPU (nvml.h)
        _out(ref).value = self._vgpu(inst)[1].get("gi", _INVALID_GI_PROFILE_ID)
        return rc.SUCCESS

    def nvmlVgpuInstanceGetFbUsage(self, inst: Any, ref: Any) -> int:
        self._vgpu(inst)
        _out(ref).value = 0
        return rc.SUCCESS
