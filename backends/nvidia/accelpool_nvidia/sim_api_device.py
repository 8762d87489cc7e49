"""The simulated NVML C functions of init, the system, devices, MIG mode and MIG devices."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.sim_abi import (
    _K_GPU,
    _K_MIG,
    _array_out,
    _Fail,
    _handle,
    _out,
    _ptr,
    _set_ptr,
    _set_str,
    _unpack,
    _val,
)
from accelpool_nvidia.sim_fleet import CUDA_DRIVER_VERSION, DRIVER_VERSION, NVML_VERSION

if TYPE_CHECKING:
    from accelpool_nvidia.simulator import NvmlSimulator

_MEMORY_V2 = 0x02000028


class _DeviceApi:
    """NVML init, system and device queries, MIG mode and MIG device handles."""

    s: NvmlSimulator

    # -- init ----------------------------------------------------------------------------
    def nvmlInitWithFlags(self, flags: Any) -> int:
        self.s._init_count += 1
        return rc.SUCCESS

    def nvmlInit_v2(self) -> int:
        return self.nvmlInitWithFlags(0)

    nvmlInit = nvmlInit_v2

    def nvmlShutdown(self) -> int:
        # NVML tolerates more shutdowns than inits, for backward compatibility.
        self.s._init_count = max(0, self.s._init_count - 1)
        return rc.SUCCESS

    # -- system --------------------------------------------------------------------------
    def nvmlSystemGetDriverVersion(self, buf: Any, length: Any) -> int:
        _set_str(buf, length, DRIVER_VERSION)
        return rc.SUCCESS

    def nvmlSystemGetNVMLVersion(self, buf: Any, length: Any) -> int:
        _set_str(buf, length, NVML_VERSION)
        return rc.SUCCESS

    def nvmlSystemGetCudaDriverVersion(self, ref: Any) -> int:
        _out(ref).value = CUDA_DRIVER_VERSION
        return rc.SUCCESS

    nvmlSystemGetCudaDriverVersion_v2 = nvmlSystemGetCudaDriverVersion

    # -- devices -------------------------------------------------------------------------
    def nvmlDeviceGetCount_v2(self, ref: Any) -> int:
        _out(ref).value = len(self.s.gpus)
        return rc.SUCCESS

    def nvmlDeviceGetHandleByIndex_v2(self, index: Any, ref: Any) -> int:
        i = _val(index)
        if not 0 <= i < len(self.s.gpus):
            raise _Fail(rc.INVALID_ARGUMENT)
        if i in self.s.snapshot().lost:
            raise _Fail(rc.GPU_IS_LOST)
        _set_ptr(ref, _handle(_K_GPU, i))
        return rc.SUCCESS

    def nvmlDeviceGetHandleByUUID(self, text: Any, ref: Any) -> int:
        raw = text.value if isinstance(text, ctypes.c_char_p) else text
        if not isinstance(raw, bytes | str):
            raise _Fail(rc.INVALID_ARGUMENT)
        key = raw.decode() if isinstance(raw, bytes) else raw
        snap = self.s.snapshot()
        if key in self.s._by_uuid:
            i = self.s._by_uuid[key]
            if i in snap.lost:
                raise _Fail(rc.GPU_IS_LOST)
            _set_ptr(ref, _handle(_K_GPU, i))
            return rc.SUCCESS
        if key in snap.mig:
            gpu, gi_id, ci_id = snap.mig[key]
            if gpu in snap.lost:
                raise _Fail(rc.GPU_IS_LOST)
            ci = snap.gpus[str(gpu)]["gis"][str(gi_id)]["cis"][str(ci_id)]
            _set_ptr(ref, _handle(_K_MIG, gpu, ci["serial"]))
            return rc.SUCCESS
        legacy = self._legacy_mig(key, snap)
        if legacy is not None:
            _set_ptr(ref, _handle(_K_MIG, *legacy))
            return rc.SUCCESS
        raise _Fail(rc.NOT_FOUND)

    def _legacy_mig(self, key: str, snap: Any) -> tuple[int, int] | None:
        """(gpu, CI serial) of a pre-R470 ``MIG-GPU-<gpu uuid>/<gi>/<ci>`` name.

        NVML still accepts that form (R535 release notes) alongside ``MIG-<uuid>``.
        """
        if not key.startswith("MIG-GPU-"):
            return None
        gpu_uuid, _, rest = key.removeprefix("MIG-").partition("/")
        gi_text, _, ci_text = rest.partition("/")
        gpu = self.s._by_uuid.get(gpu_uuid)
        if gpu is None or not gi_text.isdigit() or not ci_text.isdigit():
            return None
        if gpu in snap.lost:
            raise _Fail(rc.GPU_IS_LOST)
        gi = snap.gpus.get(str(gpu), {}).get("gis", {}).get(str(int(gi_text)))
        ci = (gi or {}).get("cis", {}).get(str(int(ci_text)))
        return None if ci is None else (gpu, ci["serial"])

    def nvmlDeviceGetHandleByPciBusId_v2(self, text: Any, ref: Any) -> int:
        raw = text.value if isinstance(text, ctypes.c_char_p) else text
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        i = self.s._by_pci.get(key.upper())
        if i is None:
            raise _Fail(rc.NOT_FOUND)
        if i in self.s.snapshot().lost:
            raise _Fail(rc.GPU_IS_LOST)
        _set_ptr(ref, _handle(_K_GPU, i))
        return rc.SUCCESS

    def _mig_handle(self, h: Any) -> tuple[int, int, Any, int, Any] | None:
        kind = _unpack(_ptr(h))[0]
        if kind == _K_MIG:
            return self.s._ci(h, _K_MIG)
        return None

    def nvmlDeviceGetIndex(self, h: Any, ref: Any) -> int:
        _out(ref).value = self.s._gpu(h)
        return rc.SUCCESS

    def nvmlDeviceGetMinorNumber(self, h: Any, ref: Any) -> int:
        _out(ref).value = self.s._gpu(h)
        return rc.SUCCESS

    def nvmlDeviceGetName(self, h: Any, buf: Any, length: Any) -> int:
        mig = self._mig_handle(h)
        if mig is not None:
            gpu, _, gi, _, ci = mig
            name = f"{self.s.gpus[gpu].model.name} MIG {self.s._mig_name(gpu, gi, ci)}"
        else:
            name = self.s.gpus[self.s._gpu(h)].model.name
        _set_str(buf, length, name)
        return rc.SUCCESS

    def nvmlDeviceGetUUID(self, h: Any, buf: Any, length: Any) -> int:
        mig = self._mig_handle(h)
        text = mig[4]["uuid"] if mig is not None else self.s.gpus[self.s._gpu(h)].uuid
        _set_str(buf, length, text)
        return rc.SUCCESS

    def nvmlDeviceGetSerial(self, h: Any, buf: Any, length: Any) -> int:
        _set_str(buf, length, self.s.gpus[self.s._gpu(h)].serial)
        return rc.SUCCESS

    def _memory(self, h: Any) -> tuple[int, int]:
        mig = self._mig_handle(h)
        if mig is not None:
            gpu, _, gi, _, _ = mig
            total = self.s._profile(gpu, gi["profile"]).memory_mb << 20
            return total, 13 << 20 if total else 0
        gpu = self.s._gpu(h)
        model = self.s.gpus[gpu].model
        g = self.s._g(self.s.snapshot().ns, gpu)
        # The driver reserves a little; each MIG GPU instance reserves a bit more.
        used = (model.memory_mib // 160 + 13 * len(g.get("gis", {}))) << 20
        return model.memory_bytes, used

    def nvmlDeviceGetMemoryInfo(self, h: Any, ref: Any) -> int:
        total, used = self._memory(h)
        m = _out(ref)
        m.total, m.used, m.free = total, used, total - used
        return rc.SUCCESS

    def nvmlDeviceGetMemoryInfo_v2(self, h: Any, ref: Any) -> int:
        m = _out(ref)
        if m.version != _MEMORY_V2:
            raise _Fail(rc.ARGUMENT_VERSION_MISMATCH)
        total, used = self._memory(h)
        reserved = min(used, total // 200)
        m.total, m.reserved, m.used, m.free = total, reserved, used - reserved, total - used
        return rc.SUCCESS

    def nvmlDeviceGetPciInfo_v3(self, h: Any, ref: Any) -> int:
        gpu = self.s.gpus[self.s._gpu(h)]
        p = _out(ref)
        domain, bus, rest = gpu.pci_bus_id.split(":")
        p.busId = gpu.pci_bus_id.encode()
        p.busIdLegacy = gpu.pci_bus_id[4:].encode()
        p.domain, p.bus, p.device = int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
        p.pciDeviceId = gpu.model.pci_device_id
        p.pciSubSystemId = 0x145F10DE
        return rc.SUCCESS

    def nvmlDeviceGetCudaComputeCapability(self, h: Any, major: Any, minor: Any) -> int:
        gpu = self.s.gpus[self.s._gpu(h, allow_mig=True)]
        _out(major).value, _out(minor).value = gpu.model.compute_capability
        return rc.SUCCESS

    def nvmlDeviceGetArchitecture(self, h: Any, ref: Any) -> int:
        _out(ref).value = self.s.gpus[self.s._gpu(h)].model.arch
        return rc.SUCCESS

    def nvmlDeviceGetNumGpuCores(self, h: Any, ref: Any) -> int:
        # NOT_SUPPORTED on MIG devices and on MIG-enabled GPUs (nvml.h).
        if self._mig_handle(h) is not None:
            raise _Fail(rc.NOT_SUPPORTED)
        gpu = self.s._gpu(h)
        if self.s.mig_mode(gpu)[0] == 1:
            raise _Fail(rc.NOT_SUPPORTED)
        _out(ref).value = self.s.gpus[gpu].model.cores
        return rc.SUCCESS

    def nvmlDeviceGetVirtualizationMode(self, h: Any, ref: Any) -> int:
        _out(ref).value = self.s.gpus[self.s._gpu(h)].virtualization
        return rc.SUCCESS

    def nvmlDeviceGetTemperature(self, h: Any, sensor: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        if _val(sensor) != 0:
            raise _Fail(rc.INVALID_ARGUMENT)
        _out(ref).value = 31 + (gpu * 7) % 9
        return rc.SUCCESS

    def nvmlDeviceGetPowerUsage(self, h: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        busy = self.s._busy(self.s.snapshot().ns, gpu)
        _out(ref).value = (62_000 + 1_000 * (gpu % 5)) + (180_000 if busy else 0)
        return rc.SUCCESS

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Any, ref: Any) -> int:
        _out(ref).value = self.s.gpus[self.s._gpu(h)].model.power_limit_w * 1000
        return rc.SUCCESS

    def nvmlDeviceGetUtilizationRates(self, h: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        if self.s.mig_mode(gpu)[0] == 1:
            raise _Fail(rc.NOT_SUPPORTED)  # as on real MIG-enabled GPUs
        u = _out(ref)
        busy = self.s._busy(self.s.snapshot().ns, gpu)
        u.gpu, u.memory = (87, 41) if busy else (0, 0)
        return rc.SUCCESS

    # -- MIG mode --------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, h: Any, cur: Any, pend: Any) -> int:
        gpu = self.s._gpu(h)
        if not self.s.gpus[gpu].mig_capable:
            raise _Fail(rc.NOT_SUPPORTED)
        _out(cur).value, _out(pend).value = self.s.mig_mode(gpu)
        return rc.SUCCESS

    def nvmlDeviceSetMigMode(self, h: Any, mode: Any, status: Any) -> int:
        gpu = self.s._gpu(h)
        m = _val(mode)
        sim_gpu = self.s.gpus[gpu]
        if not sim_gpu.mig_capable:
            raise _Fail(rc.NOT_SUPPORTED)
        if m not in (0, 1):
            raise _Fail(rc.INVALID_ARGUMENT)
        if not sim_gpu.privileged:
            raise _Fail(rc.NO_PERMISSION)
        out = _out(status)
        with self.s.mutate() as ns:
            g = self.s._gw(ns, gpu)
            if m == 0 and g.get("gis"):
                raise _Fail(rc.IN_USE)  # GPU instances still exist
            if g.get("vgpus"):
                raise _Fail(rc.IN_USE)
            cur, _ = self.s.mig_mode(gpu, ns)
            busy = self.s._busy(ns, gpu)
            if busy and cur != m and not sim_gpu.model.is_ampere:
                # Hopper applies at once or not at all; the refusal comes back in
                # activationStatus, the call itself succeeds (nvml.h: "if device unbind
                # fails because the device isn't idle, NVML_ERROR_IN_USE would be
                # returned" there, and the caller is to idle the device and retry).
                out.value = rc.IN_USE
            elif busy and cur != m:
                # Ampere: the change waits for a GPU reset the driver cannot do now.
                g["mig"] = [cur, m]
                out.value = rc.IN_USE
            else:
                if cur != m:
                    g.pop("halves", None)  # a MIG mode change starts the id numbering afresh
                g["mig"] = [m, m]
                out.value = rc.SUCCESS
        return rc.SUCCESS

    # -- MIG devices -----------------------------------------------------------------------
    def nvmlDeviceIsMigDeviceHandle(self, h: Any, ref: Any) -> int:
        kind = _unpack(_ptr(h))[0]
        if kind == _K_MIG:
            self.s._ci(h, _K_MIG)
            _out(ref).value = 1
        else:
            self.s._gpu(h)
            _out(ref).value = 0
        return rc.SUCCESS

    def nvmlDeviceGetGpuInstanceId(self, h: Any, ref: Any) -> int:
        mig = self._mig_handle(h)
        if mig is None:
            self.s._gpu(h)
            raise _Fail(rc.NOT_SUPPORTED)
        _out(ref).value = mig[1]
        return rc.SUCCESS

    def nvmlDeviceGetComputeInstanceId(self, h: Any, ref: Any) -> int:
        mig = self._mig_handle(h)
        if mig is None:
            self.s._gpu(h)
            raise _Fail(rc.NOT_SUPPORTED)
        _out(ref).value = mig[3]
        return rc.SUCCESS

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        on = self.s.gpus[gpu].mig_capable and self.s.mig_mode(gpu)[0] == 1
        _out(ref).value = 7 if on else 0
        return rc.SUCCESS

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Any, index: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        ns = self.s.snapshot().ns
        self.s._require_mig(gpu, ns)
        i = _val(index)
        if not 0 <= i < 7:
            raise _Fail(rc.INVALID_ARGUMENT)
        devs = self.s._mig_devices(self.s._g(ns, gpu))
        if i >= len(devs):
            raise _Fail(rc.NOT_FOUND)
        _set_ptr(ref, _handle(_K_MIG, gpu, devs[i][3]["serial"]))
        return rc.SUCCESS

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h: Any, ref: Any) -> int:
        mig = self._mig_handle(h)
        if mig is None:
            self.s._gpu(h)
            raise _Fail(rc.INVALID_ARGUMENT)
        _set_ptr(ref, _handle(_K_GPU, mig[0]))
        return rc.SUCCESS

    def nvmlDeviceGetAttributes_v2(self, h: Any, ref: Any) -> int:
        mig = self._mig_handle(h)
        if mig is None:
            self.s._gpu(h)
            raise _Fail(rc.NOT_SUPPORTED)  # only MIG device handles are supported
        gpu, _, gi, _, ci = mig
        gp = self.s._profile(gpu, gi["profile"])
        spec = self.s._ci_spec(gpu, gi, ci["profile"])
        a = _out(ref)
        a.multiprocessorCount = spec["sms"]
        a.sharedCopyEngineCount = gp.copy_engines
        a.sharedDecoderCount = gp.decoders
        a.sharedEncoderCount = gp.encoders
        a.sharedJpegCount = gp.jpegs
        a.sharedOfaCount = gp.ofas
        a.gpuInstanceSliceCount = gp.slices
        a.computeInstanceSliceCount = spec["slices"]
        a.memorySizeMB = gp.memory_mb
        return rc.SUCCESS

    def nvmlDeviceGetComputeRunningProcesses_v3(self, h: Any, count: Any, arr: Any) -> int:
        """Processes (``add_process``) on the GPU or its MIG devices and vGPUs."""
        gpu, ns = self.s._gpu(h), self.s.snapshot().ns
        procs = ns.get("procs", {}).items()
        pids = sorted(int(p) for p, t in procs if self.s._busy({**ns, "procs": {p: t}}, gpu))
        target = _array_out(count, arr, len(pids))
        if target is None:
            return rc.INSUFFICIENT_SIZE if pids else rc.SUCCESS
        for i, pid in enumerate(pids):
            target[i].pid, target[i].usedGpuMemory = pid, 0
            target[i].gpuInstanceId = target[i].computeInstanceId = 0xFFFFFFFF
        return rc.SUCCESS
