"""The simulated NVML C functions of GPU instances and compute instances."""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.models import (
    CI_PROFILE_COUNT,
    GI_PROFILE_COUNT,
    GiProfileSpec,
    mig_profile_name,
)
from accelpool_nvidia.sim_abi import (
    _K_CI,
    _K_GI,
    _K_GPU,
    _CArg,
    _Fail,
    _fill_placements,
    _handle,
    _out,
    _set_field_ptr,
    _set_ptr,
    _val,
)
from accelpool_nvidia.sim_mig import _gi_id, _overlaps

if TYPE_CHECKING:
    from accelpool_nvidia.simulator import NvmlSimulator

_GI_INFO_V2 = 0x02000098
_CI_INFO_V2 = 0x02000088


class _MigApi:
    """NVML GPU instance and compute instance calls."""

    s: NvmlSimulator

    # -- GPU instances ---------------------------------------------------------------------
    def _fill_gi_info(self, info: Any, gpu: int, p: GiProfileSpec) -> None:
        if hasattr(info, "version"):
            if info.version != _GI_INFO_V2:
                raise _Fail(rc.ARGUMENT_VERSION_MISMATCH)
            model = self.s.gpus[gpu].model
            name = mig_profile_name(p.slices, p.memory_mb, model.memory_bytes, p.enum)
            info.name = f"MIG {name}".encode()
        info.id = p.id
        info.isP2pSupported = 0
        info.sliceCount = p.slices
        info.instanceCount = p.instances
        info.multiprocessorCount = p.sms
        info.copyEngineCount = p.copy_engines
        info.decoderCount = p.decoders
        info.encoderCount = p.encoders
        info.jpegCount = p.jpegs
        info.ofaCount = p.ofas
        info.memorySizeMB = p.memory_mb

    def nvmlDeviceGetGpuInstanceProfileInfoV(self, h: Any, profile: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        enum = _val(profile)
        if not 0 <= enum < GI_PROFILE_COUNT:
            raise _Fail(rc.INVALID_ARGUMENT)
        self.s._require_mig(gpu, self.s.snapshot().ns)
        spec = next((p for p in self.s.gpus[gpu].model.mig_profiles if p.enum == enum), None)
        if spec is None:
            raise _Fail(rc.NOT_SUPPORTED)
        self._fill_gi_info(_out(ref), gpu, spec)
        return rc.SUCCESS

    nvmlDeviceGetGpuInstanceProfileInfo = nvmlDeviceGetGpuInstanceProfileInfoV

    def nvmlDeviceGetGpuInstanceProfileInfoByIdV(self, h: Any, profile_id: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        self.s._require_mig(gpu, self.s.snapshot().ns)
        self._fill_gi_info(_out(ref), gpu, self.s._profile(gpu, _val(profile_id)))
        return rc.SUCCESS

    def nvmlDeviceGetGpuInstanceRemainingCapacity(self, h: Any, profile_id: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        ns = self.s.snapshot().ns
        self.s._require_mig(gpu, ns)
        p = self.s._profile(gpu, _val(profile_id))
        _out(ref).value = self.s._remaining(self.s._g(ns, gpu), p)
        return rc.SUCCESS

    def nvmlDeviceGetGpuInstancePossiblePlacements_v2(
        self, h: Any, profile_id: Any, arr: Any, count: Any
    ) -> int:
        gpu = self.s._gpu(h)
        if not self.s.gpus[gpu].mig_capable:
            raise _Fail(rc.NOT_SUPPORTED)
        # Offered whether or not MIG is enabled (NVML header).
        p = self.s._profile(gpu, _val(profile_id))
        return _fill_placements(arr, count, [(s, p.mem_slices) for s in p.starts()])

    def _create_gi(self, h: Any, profile_id: Any, placement: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        pid = _val(profile_id)
        if not self.s.gpus[gpu].privileged:
            raise _Fail(rc.NO_PERMISSION)
        with self.s.mutate() as ns:
            self.s._require_mig(gpu, ns)
            p = self.s._profile(gpu, pid)
            g = self.s._gw(ns, gpu)
            gis = g.setdefault("gis", {})
            occupied = self.s._occupied(g)
            if placement is not None:
                start, size = placement
                if start not in p.starts() or size != p.mem_slices:
                    raise _Fail(rc.INVALID_ARGUMENT)
            else:
                start = self.s._driver_placement(gpu, p, g)
                if start is None:
                    raise _Fail(rc.INSUFFICIENT_RESOURCES)
            if sum(1 for gi in gis.values() if gi["profile"] == pid) >= p.instances:
                raise _Fail(rc.INSUFFICIENT_RESOURCES)
            if any(_overlaps((start, p.mem_slices), o) for o in occupied):
                raise _Fail(rc.INSUFFICIENT_RESOURCES)
            serial = self.s._next_serial(ns)
            if "halves" not in g:
                # The first instance since MIG was enabled fixes which half is which.
                g["halves"] = int(start >= 4 and p.mem_slices < 8)
            gi_id = _gi_id(p.mem_slices, start, bool(g["halves"]))
            gis[str(gi_id)] = {
                "profile": pid,
                "start": start,
                "size": p.mem_slices,
                "serial": serial,
                "cis": {},
            }
            self.s._arm(ns, "gi-create", gpu)
        _set_ptr(ref, _handle(_K_GI, gpu, serial))
        return rc.SUCCESS

    def nvmlDeviceCreateGpuInstance(self, h: Any, profile_id: Any, ref: Any) -> int:
        return self._create_gi(h, profile_id, None, ref)

    def nvmlDeviceCreateGpuInstanceWithPlacement(
        self, h: Any, profile_id: Any, placement: Any, ref: Any
    ) -> int:
        if not isinstance(placement, _CArg | ctypes._Pointer):
            # A struct passed by value is a pointer-sized garbage value to the C library.
            raise _Fail(rc.INVALID_ARGUMENT)
        pl = _out(placement)
        return self._create_gi(h, profile_id, (int(pl.start), int(pl.size)), ref)

    def nvmlDeviceGetGpuInstances(self, h: Any, profile_id: Any, arr: Any, count: Any) -> int:
        gpu = self.s._gpu(h)
        ns = self.s.snapshot().ns
        self.s._require_mig(gpu, ns)
        pid = _val(profile_id)
        self.s._profile(gpu, pid)
        if arr is None or count is None:
            raise _Fail(rc.INVALID_ARGUMENT)
        target = _out(arr) if isinstance(arr, _CArg) else arr
        gis = sorted(
            (int(k), gi)
            for k, gi in self.s._g(ns, gpu).get("gis", {}).items()
            if gi["profile"] == pid
        )
        if len(gis) > len(target):
            _out(count).value = len(gis)
            raise _Fail(rc.INSUFFICIENT_SIZE)
        for i, (_, gi) in enumerate(gis):
            target[i] = ctypes.cast(
                ctypes.c_void_p(_handle(_K_GI, gpu, gi["serial"])), target._type_
            )
        _out(count).value = len(gis)
        return rc.SUCCESS

    def nvmlDeviceGetGpuInstanceById(self, h: Any, gi_id: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        ns = self.s.snapshot().ns
        self.s._require_mig(gpu, ns)
        gi = self.s._g(ns, gpu).get("gis", {}).get(str(_val(gi_id)))
        if gi is None:
            raise _Fail(rc.NOT_FOUND)
        _set_ptr(ref, _handle(_K_GI, gpu, gi["serial"]))
        return rc.SUCCESS

    def nvmlGpuInstanceGetInfo(self, h: Any, ref: Any) -> int:
        gpu, gi_id, gi = self.s._gi(h)
        info = _out(ref)
        _set_field_ptr(info, "device", _handle(_K_GPU, gpu))
        info.id = gi_id
        info.profileId = gi["profile"]
        info.placement.start = gi["start"]
        info.placement.size = gi["size"]
        return rc.SUCCESS

    def nvmlGpuInstanceDestroy(self, h: Any) -> int:
        gpu, _, _ = self.s._gi(h)
        if not self.s.gpus[gpu].privileged:
            raise _Fail(rc.NO_PERMISSION)
        with self.s.mutate() as ns:
            gi_id, gi = self.s._gi(h, ns)[1:]
            if gi.get("cis"):
                raise _Fail(rc.IN_USE)  # compute instances still exist
            if any(v.get("gi") == gi_id for v in self.s._g(ns, gpu).get("vgpus", {}).values()):
                raise _Fail(rc.IN_USE)  # a MIG-backed vGPU runs on it
            del self.s._gw(ns, gpu)["gis"][str(gi_id)]
        return rc.SUCCESS

    # -- compute instances -----------------------------------------------------------------
    def nvmlGpuInstanceGetComputeInstanceProfileInfoV(
        self, h: Any, profile: Any, eng: Any, ref: Any
    ) -> int:
        gpu, _, gi = self.s._gi(h)
        enum = _val(profile)
        if not 0 <= enum < CI_PROFILE_COUNT or _val(eng) != 0:
            raise _Fail(rc.INVALID_ARGUMENT)
        spec = self.s._ci_spec(gpu, gi, enum)
        gp = self.s._profile(gpu, gi["profile"])
        info = _out(ref)
        if hasattr(info, "version"):
            if info.version != _CI_INFO_V2:
                raise _Fail(rc.ARGUMENT_VERSION_MISMATCH)
            model = self.s.gpus[gpu].model
            info.name = (
                "MIG "
                + mig_profile_name(
                    gp.slices, gp.memory_mb, model.memory_bytes, gp.enum, spec["slices"]
                )
            ).encode()
        info.id = enum
        info.sliceCount = spec["slices"]
        info.instanceCount = spec["instances"]
        info.multiprocessorCount = spec["sms"]
        info.sharedCopyEngineCount = gp.copy_engines
        info.sharedDecoderCount = gp.decoders
        info.sharedEncoderCount = gp.encoders
        info.sharedJpegCount = gp.jpegs
        info.sharedOfaCount = gp.ofas
        return rc.SUCCESS

    nvmlGpuInstanceGetComputeInstanceProfileInfo = nvmlGpuInstanceGetComputeInstanceProfileInfoV

    def _ci_free(
        self, gpu: int, gi: Mapping[str, Any], enum: int
    ) -> tuple[dict[str, int], list[int]]:
        spec = self.s._ci_spec(gpu, gi, enum)
        g_slices = self.s._profile(gpu, gi["profile"]).slices
        used = [(c["start"], c["size"]) for c in gi.get("cis", {}).values()]
        free = [
            s
            for s in self.s._ci_starts(spec["slices"], g_slices)
            if not any(_overlaps((s, spec["slices"]), u) for u in used)
        ]
        return spec, free

    def nvmlGpuInstanceGetComputeInstanceRemainingCapacity(
        self, h: Any, profile: Any, ref: Any
    ) -> int:
        gpu, _, gi = self.s._gi(h)
        enum = _val(profile)
        spec, free = self._ci_free(gpu, gi, enum)
        count = sum(1 for c in gi.get("cis", {}).values() if c["profile"] == enum)
        fits, taken = 0, [(c["start"], c["size"]) for c in gi.get("cis", {}).values()]
        for s in free:
            if not any(_overlaps((s, spec["slices"]), t) for t in taken):
                taken.append((s, spec["slices"]))
                fits += 1
        _out(ref).value = max(0, min(spec["instances"] - count, fits))
        return rc.SUCCESS

    def nvmlGpuInstanceGetComputeInstancePossiblePlacements(
        self, h: Any, profile: Any, arr: Any, count: Any
    ) -> int:
        gpu, _, gi = self.s._gi(h)
        spec = self.s._ci_spec(gpu, gi, _val(profile))
        g_slices = self.s._profile(gpu, gi["profile"]).slices
        starts = self.s._ci_starts(spec["slices"], g_slices)
        return _fill_placements(arr, count, [(s, spec["slices"]) for s in starts])

    def _create_ci(self, h: Any, profile: Any, placement: tuple[int, int] | None, ref: Any) -> int:
        gpu, _, _ = self.s._gi(h)
        if not self.s.gpus[gpu].privileged:
            raise _Fail(rc.NO_PERMISSION)
        enum = _val(profile)
        with self.s.mutate() as ns:
            gi_id, gi = self.s._gi(h, ns)[1:]
            gi = self.s._gw(ns, gpu)["gis"][str(gi_id)]
            if any(v.get("gi") == gi_id for v in self.s._g(ns, gpu).get("vgpus", {}).values()):
                raise _Fail(rc.IN_USE)  # given to a MIG-backed vGPU: its VM makes the CIs
            spec, free = self._ci_free(gpu, gi, enum)
            cis = gi.setdefault("cis", {})
            if sum(1 for c in cis.values() if c["profile"] == enum) >= spec["instances"]:
                raise _Fail(rc.INSUFFICIENT_RESOURCES)
            g_slices = self.s._profile(gpu, gi["profile"]).slices
            if placement is not None:
                start, size = placement
                if start not in self.s._ci_starts(spec["slices"], g_slices) or (
                    size != spec["slices"]
                ):
                    raise _Fail(rc.INVALID_ARGUMENT)
                if start not in free:
                    raise _Fail(rc.INSUFFICIENT_RESOURCES)
            elif not free:
                raise _Fail(rc.INSUFFICIENT_RESOURCES)
            else:
                start = free[0]
            ci_id = next(i for i in itertools.count() if str(i) not in cis)
            serial = self.s._next_serial(ns)
            cis[str(ci_id)] = {
                "profile": enum,
                "start": start,
                "size": spec["slices"],
                "serial": serial,
                "uuid": self.s.mig_uuid(ns, gpu, gi["serial"], serial),
            }
        _set_ptr(ref, _handle(_K_CI, gpu, serial))
        return rc.SUCCESS

    def nvmlGpuInstanceCreateComputeInstance(self, h: Any, profile: Any, ref: Any) -> int:
        return self._create_ci(h, profile, None, ref)

    def nvmlGpuInstanceCreateComputeInstanceWithPlacement(
        self, h: Any, profile: Any, placement: Any, ref: Any
    ) -> int:
        if not isinstance(placement, _CArg | ctypes._Pointer):
            raise _Fail(rc.INVALID_ARGUMENT)
        pl = _out(placement)
        return self._create_ci(h, profile, (int(pl.start), int(pl.size)), ref)

    def nvmlGpuInstanceGetComputeInstances(self, h: Any, profile: Any, arr: Any, count: Any) -> int:
        gpu, _, gi = self.s._gi(h)
        enum = _val(profile)
        self.s._ci_spec(gpu, gi, enum)
        if arr is None or count is None:
            raise _Fail(rc.INVALID_ARGUMENT)
        target = _out(arr) if isinstance(arr, _CArg) else arr
        cis = sorted((int(k), c) for k, c in gi.get("cis", {}).items() if c["profile"] == enum)
        if len(cis) > len(target):
            _out(count).value = len(cis)
            raise _Fail(rc.INSUFFICIENT_SIZE)
        for i, (_, c) in enumerate(cis):
            target[i] = ctypes.cast(
                ctypes.c_void_p(_handle(_K_CI, gpu, c["serial"])), target._type_
            )
        _out(count).value = len(cis)
        return rc.SUCCESS

    def nvmlGpuInstanceGetComputeInstanceById(self, h: Any, ci_id: Any, ref: Any) -> int:
        gpu, _, gi = self.s._gi(h)
        ci = gi.get("cis", {}).get(str(_val(ci_id)))
        if ci is None:
            raise _Fail(rc.NOT_FOUND)
        _set_ptr(ref, _handle(_K_CI, gpu, ci["serial"]))
        return rc.SUCCESS

    def nvmlComputeInstanceGetInfo_v2(self, h: Any, ref: Any) -> int:
        gpu, _, gi, ci_id, ci = self.s._ci(h)
        info = _out(ref)
        _set_field_ptr(info, "device", _handle(_K_GPU, gpu))
        _set_field_ptr(info, "gpuInstance", _handle(_K_GI, gpu, gi["serial"]))
        info.id = ci_id
        info.profileId = ci["profile"]
        info.placement.start = ci["start"]
        info.placement.size = ci["size"]
        return rc.SUCCESS

    def nvmlComputeInstanceDestroy(self, h: Any) -> int:
        gpu, _, _, _, ci = self.s._ci(h)
        if not self.s.gpus[gpu].privileged:
            raise _Fail(rc.NO_PERMISSION)
        with self.s.mutate() as ns:
            for gi in self.s._gw(ns, gpu).get("gis", {}).values():
                for ci_id, c in list(gi.get("cis", {}).items()):
                    if c["serial"] == ci["serial"]:
                        if self.s._busy(ns, gpu, c["uuid"]):
                            raise _Fail(rc.IN_USE)  # processes still run on it
                        del gi["cis"][ci_id]
                        return rc.SUCCESS
        raise _Fail(rc.INVALID_ARGUMENT)
