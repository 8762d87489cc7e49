"""The NVIDIA backend: GPUs, MIG and vGPU partitions, telemetry and visibility over pynvml.

Production code only: in a simulated fleet the same code runs over
:class:`~accelpool_nvidia.simulator.NvmlSimulator`, installed beneath pynvml as its
``nvmlLib`` for the duration of each call.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pynvml

from accelpool.capabilities import Capabilities, Capability
from accelpool.errors import (
    AccelPoolError,
    BackendUnavailable,
    DeviceLost,
    InsufficientCapacity,
    InvalidRequest,
    NotFound,
    UnsupportedOperation,
)
from accelpool.spi import FAULTS, Backend, BackendContext, Target
from accelpool.types import (
    AttributeValue,
    DeviceInfo,
    ExecutionProvider,
    OnnxPlacement,
    PartitionInfo,
    PartitionProfile,
    Placement,
    Telemetry,
)
from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.boards import board_sms
from accelpool_nvidia.errors import HINTS, from_nvml, from_oserror, nvml_errors, nvml_text
from accelpool_nvidia.visibility import format_cuda_visible_devices

if TYPE_CHECKING:
    from accelpool.container import ContainerEdits
    from accelpool_nvidia.journal import CreateJournal
    from accelpool_nvidia.mdev import MdevSysfs
    from accelpool_nvidia.placement import Geometry

# The MIG tables, placement search and mdev sysfs helpers are imported where used:
# discovery on a machine without NVML never needs them (see benchmarks/bench_discovery.py).

log = logging.getLogger("accelpool.nvidia")

__all__ = ["MigModeChange", "NvidiaBackend"]

#: pynvml is one module with one ``nvmlLib``: calls through it are serialised, and a
#: simulated backend swaps its library in for the duration of each operation.
_PYNVML_LOCK = threading.RLock()

_VIRT_NAMES = {0: "none", 1: "passthrough", 2: "vgpu", 3: "host-vgpu", 4: "host-vsga"}
_VIRT_HOST_VGPU = 3
_NO_GI_PROFILE = 0xFFFFFFFF
_MAX_PLACEMENTS = 32
#: reads of a partition list that another process's destroy keeps invalidating
_READ_TRIES = 8
#: NVML's answers for a handle whose instance was destroyed after it was looked up
_STALE = (pynvml.NVMLError_InvalidArgument, pynvml.NVMLError_NotFound)
T = TypeVar("T")
_CREATE_MIDWAY_FUNCTIONS = (
    "nvmlGpuInstanceCreateComputeInstance",
    "nvmlGpuInstanceCreateComputeInstanceWithPlacement",
    "nvmlDeviceGetActiveVgpus",
)


@dataclass(frozen=True)
class MigModeChange:
    """The outcome of switching MIG mode on one GPU, told honestly.

    ``status`` is ``"applied"`` (current mode is what was asked), ``"pending"`` (the
    driver accepted it but it waits for a GPU reset: see ``reason``) or
    ``"unchanged"`` (the GPU was already in that mode).
    """

    device_id: str
    requested: bool
    current: bool
    pending: bool
    status: str
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device_id,
            "requested": "enabled" if self.requested else "disabled",
            "current": "enabled" if self.current else "disabled",
            "pending": "enabled" if self.pending else "disabled",
            "status": self.status,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class _GiProfile:
    enum: int
    id: int
    name: str
    slices: int
    instances: int
    sms: int
    memory_mb: int
    copy_engines: int
    decoders: int
    encoders: int
    jpegs: int
    ofas: int
    placements: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        return self.placements[0][1] if self.placements else 0

    def geometry(self) -> Geometry:
        from accelpool_nvidia.placement import Geometry

        return Geometry(self.id, self.size, tuple(s for s, _ in self.placements), self.instances)


@dataclass(frozen=True)
class _VgpuType:
    framebuffer: int
    max_instances: int
    gi_profile: int
    vgpu_class: str


def _cores_per_sm(cc: tuple[int, int]) -> int:
    major, minor = cc
    if major >= 9 or (major == 8 and minor != 0):
        return 128
    return 64


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvidiaBackend(Backend):
    """accelpool backend for NVIDIA GPUs through NVML (``pynvml``)."""

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._lib: Any = None
        self._sim: Any = None  # NvmlSimulator when running in a simulated fleet
        self._mdev: MdevSysfs | None = None
        self._initialised = False
        self._vgpu_names: dict[int, str] = {}
        self._gi_cache: dict[str, list[_GiProfile]] = {}
        self._vgpu_statics: dict[int, _VgpuType] = {}
        self._journal_obj: CreateJournal | None = None
        #: the last good facts of each GPU by index, for one that is lost later
        self._known: dict[int, DeviceInfo] = {}

    # -- plumbing ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _nvml(self, action: str) -> Iterator[None]:
        """Hold pynvml with this backend's library installed; map NVML errors."""
        if self._lib is None:
            raise BackendUnavailable(f"{action}: the NVIDIA backend was not probed successfully")
        with _PYNVML_LOCK:
            previous = pynvml.nvmlLib
            swap = previous is not self._lib
            if swap:
                self._install(self._lib)
            try:
                with nvml_errors(action):
                    yield
            finally:
                if swap:
                    self._install(previous)

    @staticmethod
    def _install(lib: Any) -> None:
        with pynvml.libLoadLock:
            pynvml.nvmlLib = lib
            pynvml._nvmlGetFunctionPointer_cache.clear()

    def _handle(self, device: DeviceInfo) -> Any:
        if device.lost:
            raise DeviceLost(
                f"NVIDIA GPU {self._dev_id(device)} (index {device.index}) is lost: "
                + HINTS[rc.GPU_IS_LOST],
                vendor_code=rc.GPU_IS_LOST,
            )
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(device.native_id)
        except pynvml.NVMLError as e:
            if e.value == rc.NOT_FOUND:
                raise NotFound(
                    f"no NVIDIA GPU {device.native_id} here any more; run 'accelpool ls'",
                    vendor_code=rc.NOT_FOUND,
                    vendor_message=nvml_text(e),
                ) from e
            raise

    def _dev_id(self, device: DeviceInfo) -> str:
        return f"{self.name}:{device.native_id}"

    # -- probe and discovery -------------------------------------------------------------
    def probe(self) -> str | None:
        sim = self.context.sim
        if sim is not None:
            from accelpool_nvidia.simulator import NvmlSimulator, SimMdevSysfs

            try:
                self._sim = NvmlSimulator(sim.fleet, sim.devices, sim.state, sim.root)
            except ValueError as e:
                raise BackendUnavailable(f"simulated fleet {sim.fleet!r}: {e}") from None
            self._lib = self._sim.lib
            self._mdev = SimMdevSysfs(self._sim)
        else:
            self._lib = self._load_real_library()
            from accelpool_nvidia.mdev import MdevSysfs

            root = self.context.options.get("sysfs_root") or os.environ.get(
                "ACCELPOOL_NVIDIA_SYSFS_ROOT", "/sys"
            )
            self._mdev = MdevSysfs(Path(root))
        with self._nvml("initialising NVML"):
            if sim is not None:
                pynvml.nvmlInit()
            self._initialised = True
            version: str = _str(pynvml.nvmlSystemGetDriverVersion())
        return version

    def _load_real_library(self) -> Any:
        # Only a process that simulated before can have a simulated nvmlLib installed;
        # do not import the simulator just to find out (it costs discovery time).
        simulator = sys.modules.get("accelpool_nvidia.simulator")
        sim_lib: type = getattr(simulator, "NvmlLib", type(None)) if simulator else type(None)

        with _PYNVML_LOCK:
            previous = pynvml.nvmlLib
            if previous is not None and isinstance(previous, sim_lib):
                self._install(None)  # let pynvml load the real library
            try:
                pynvml.nvmlInit()
                lib = pynvml.nvmlLib
            except pynvml.NVMLError as e:
                if e.value == rc.LIBRARY_NOT_FOUND:
                    raise BackendUnavailable(
                        "NVML library not found (libnvidia-ml.so.1): install the NVIDIA "
                        "driver, or use a simulated fleet with --sim",
                        vendor_code=rc.LIBRARY_NOT_FOUND,
                        vendor_message=nvml_text(e),
                    ) from None
                if e.value == rc.DRIVER_NOT_LOADED:
                    raise BackendUnavailable(
                        "NVIDIA driver not loaded: load the nvidia kernel module "
                        "(modprobe nvidia) or reinstall the driver",
                        vendor_code=rc.DRIVER_NOT_LOADED,
                        vendor_message=nvml_text(e),
                    ) from None
                raise from_nvml(e, "initialising NVML") from None
            finally:
                if previous is not None and isinstance(previous, sim_lib):
                    self._install(previous)
        return lib

    def close(self) -> None:
        if self._initialised and self._lib is not None:
            with contextlib.suppress(AccelPoolError), self._nvml("shutting NVML down"):
                pynvml.nvmlShutdown()
            self._initialised = False

    def capabilities(self) -> Capabilities:
        supported = [
            Capability.DISCOVERY,
            Capability.PARTITION,
            Capability.PARTITION_MIG,
            Capability.PARTITION_VGPU,
            Capability.PARTITION_DEVICE_SCOPE,
            Capability.TELEMETRY,
            Capability.VISIBILITY,
            Capability.SESSION_ONNX,
            Capability.MIG_MODE,
        ]
        unsupported = [
            Capability.PARTITION_VNPU,
            Capability.PARTITION_MIM,
            Capability.PARTITION_SMLU,
            Capability.PARTITION_SUBDEVICE,
            # A host-side vGPU is reached only inside the VM it is given to: partitions
            # of this kind are no session targets here (the conformance suite's rule).
            "session.onnx.vgpu",
        ]
        if self.context.sim is not None:
            supported.append(Capability.FAULT_INJECTION)
        else:
            unsupported.append(Capability.FAULT_INJECTION)
        return Capabilities.of(supported, unsupported)

    def devices(self) -> Sequence[DeviceInfo]:
        with self._nvml("listing NVIDIA GPUs"):
            driver = _str(pynvml.nvmlSystemGetDriverVersion())
            cuda = pynvml.nvmlSystemGetCudaDriverVersion()
            result = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                try:
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    result.append(self._device_info(i, h, driver, cuda))
                except pynvml.NVMLError as e:
                    if e.value != rc.GPU_IS_LOST:
                        raise
                    # Listed as lost at its index, so other GPUs keep their indexes.
                    log.warning("NVIDIA GPU %d is lost (fell off the bus)", i)
                    result.append(self._lost_info(i))
            self._known.update((d.index, d) for d in result if not d.lost)
            return result

    def _lost_info(self, index: int) -> DeviceInfo:
        known = self._known.get(index)
        if known is not None:
            return replace(known, lost=True)
        # A lost GPU answers nothing, not even its UUID: name it by its index.
        return DeviceInfo(
            native_id=f"lost-{index}",
            index=index,
            vendor="NVIDIA",
            model="unknown",
            memory_bytes=0,
            compute_units=0,
            attributes={},
            lost=True,
        )

    def _device_info(self, index: int, h: Any, driver: str, cuda: int) -> DeviceInfo:
        from accelpool_nvidia.models import ARCH_NAMES

        uuid = _str(pynvml.nvmlDeviceGetUUID(h))
        name = _str(pynvml.nvmlDeviceGetName(h))
        total = int(pynvml.nvmlDeviceGetMemoryInfo(h).total)
        pci = pynvml.nvmlDeviceGetPciInfo(h)
        cc = pynvml.nvmlDeviceGetCudaComputeCapability(h)
        attrs: dict[str, AttributeValue] = {
            "nvidia.com/uuid": uuid,
            "nvidia.com/productName": name,
            "nvidia.com/pciBusID": _str(pci.busId),
            "nvidia.com/pciDeviceID": f"0x{pci.pciDeviceId:08X}",
            "nvidia.com/cudaComputeCapability": f"{cc[0]}.{cc[1]}",
            "nvidia.com/driverVersion": driver,
            "nvidia.com/cudaDriverVersion": f"{cuda // 1000}.{(cuda % 1000) // 10}",
        }
        with contextlib.suppress(pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            attrs["nvidia.com/architecture"] = ARCH_NAMES.get(
                pynvml.nvmlDeviceGetArchitecture(h), "unknown"
            )
        compute_units = 0
        with contextlib.suppress(pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            cores = int(pynvml.nvmlDeviceGetNumGpuCores(h))
            attrs["nvidia.com/cudaCores"] = cores
            compute_units = cores // _cores_per_sm(cc)
        if not compute_units:
            # NVML gives no core count on a MIG-enabled GPU: use the board's SM count,
            # or at worst the SMs its biggest MIG profile spans.
            compute_units = board_sms(pci.pciDeviceId) or self._mig_sms(h)
        try:
            current, pending = pynvml.nvmlDeviceGetMigMode(h)
            attrs["nvidia.com/migCapable"] = True
            attrs["nvidia.com/migMode"] = "enabled" if current else "disabled"
            attrs["nvidia.com/migModePending"] = "enabled" if pending else "disabled"
        except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            attrs["nvidia.com/migCapable"] = False
        with contextlib.suppress(pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            virt = pynvml.nvmlDeviceGetVirtualizationMode(h)
            attrs["nvidia.com/virtualizationMode"] = _VIRT_NAMES.get(virt, str(virt))
        return DeviceInfo(
            native_id=uuid,
            index=index,
            vendor="NVIDIA",
            model=name,
            memory_bytes=total,
            compute_units=compute_units,
            attributes=attrs,
        )

    @staticmethod
    def _mig_sms(h: Any) -> int:
        """SMs of the largest GPU instance profile NVML offers (0 without MIG)."""
        from accelpool_nvidia.models import GI_PROFILE_COUNT

        best = 0
        for enum in range(GI_PROFILE_COUNT):
            try:
                info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(h, enum)
            except pynvml.NVMLError:
                continue
            best = max(best, int(info.multiprocessorCount))
        return best

    # -- MIG reads ---------------------------------------------------------------------------
    @staticmethod
    def _mig_on(h: Any) -> bool:
        try:
            return bool(pynvml.nvmlDeviceGetMigMode(h)[0])
        except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            return False

    def _gi_profiles(self, h: Any, device: DeviceInfo) -> list[_GiProfile]:
        """GPU instance profiles NVML offers, walking the profile enums as go-nvlib does.

        A GPU's profile table never changes, so it is read once per GPU (MIG enabled).
        """
        from accelpool_nvidia.models import GI_PROFILE_COUNT, mig_profile_name

        cached = self._gi_cache.get(device.native_id)
        if cached is not None:
            return cached
        total = device.memory_bytes
        found = []
        for enum in range(GI_PROFILE_COUNT):
            try:
                info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(h, enum)
            except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_InvalidArgument):
                continue
            arr = (pynvml.c_nvmlGpuInstancePlacement_t * _MAX_PLACEMENTS)()
            count = ctypes.c_uint(_MAX_PLACEMENTS)
            pynvml.nvmlDeviceGetGpuInstancePossiblePlacements(h, info.id, arr, ctypes.byref(count))
            slots = tuple((arr[i].start, arr[i].size) for i in range(count.value))
            found.append(
                _GiProfile(
                    enum=enum,
                    id=info.id,
                    name=mig_profile_name(info.sliceCount, info.memorySizeMB, total, enum),
                    slices=info.sliceCount,
                    instances=info.instanceCount,
                    sms=info.multiprocessorCount,
                    memory_mb=info.memorySizeMB,
                    copy_engines=info.copyEngineCount,
                    decoders=info.decoderCount,
                    encoders=info.encoderCount,
                    jpegs=info.jpegCount,
                    ofas=info.ofaCount,
                    placements=slots,
                )
            )
        found.sort(key=lambda p: (p.slices, p.memory_mb, p.enum))
        if found:
            self._gi_cache[device.native_id] = found
        return found

    @staticmethod
    def _stable(read: Callable[[], T], action: str) -> T:
        """Run a multi-call NVML read again when another process invalidated a handle.

        Listing GPU instances, then asking each for its info, races with destroys in
        other processes: NVML answers INVALID_ARGUMENT or NOT_FOUND for a handle whose
        instance vanished in between. That is no fault of the caller, so read afresh.
        """
        for _ in range(_READ_TRIES - 1):
            try:
                return read()
            except _STALE:
                continue
        try:
            return read()
        except _STALE as e:
            raise AccelPoolError(
                f"{action}: the partitions kept changing while being read "
                f"({_READ_TRIES} tries); retry",
                vendor_code=int(e.value),
                vendor_message=nvml_text(e),
            ) from e

    @staticmethod
    def _gpu_instances(h: Any, profile: _GiProfile) -> list[Any]:
        arr = (pynvml.c_nvmlGpuInstance_t * max(1, profile.instances))()
        count = ctypes.c_uint(len(arr))
        pynvml.nvmlDeviceGetGpuInstances(h, profile.id, arr, ctypes.byref(count))
        return [arr[i] for i in range(count.value)]

    def _layout(self, h: Any, profiles: Sequence[_GiProfile]) -> list[tuple[Any, Any]]:
        """Every GPU instance with its info: (handle, c_nvmlGpuInstanceInfo_t)."""
        out = []
        for p in profiles:
            for gi in self._gpu_instances(h, p):
                out.append((gi, pynvml.nvmlGpuInstanceGetInfo(gi)))
        return out

    @staticmethod
    def _mig_devices(h: Any) -> dict[tuple[int, int], dict[str, Any]]:
        """MIG devices by (GI id, CI id): UUID, index and attributes."""
        found: dict[tuple[int, int], dict[str, Any]] = {}
        for index in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                mh = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, index)
            except (pynvml.NVMLError_NotFound, pynvml.NVMLError_InvalidArgument):
                continue  # holes in the index space are normal
            gi_id = pynvml.nvmlDeviceGetGpuInstanceId(mh)
            ci_id = pynvml.nvmlDeviceGetComputeInstanceId(mh)
            attrs = pynvml.nvmlDeviceGetAttributes(mh)
            found[(gi_id, ci_id)] = {
                "uuid": _str(pynvml.nvmlDeviceGetUUID(mh)),
                "index": index,
                "sms": attrs.multiprocessorCount,
                "ci_slices": attrs.computeInstanceSliceCount,
                "gi_slices": attrs.gpuInstanceSliceCount,
            }
        return found

    def _mig_partitions(
        self, device: DeviceInfo, h: Any, hosting: Mapping[int, str] | None = None
    ) -> list[PartitionInfo]:
        """MIG partitions; GPU instances in ``hosting`` (GI id -> mdev) are vGPUs instead."""
        return self._stable(
            lambda: self._read_mig_partitions(device, h, hosting),
            f"listing partitions of {self._dev_id(device)}",
        )

    def _read_mig_partitions(
        self, device: DeviceInfo, h: Any, hosting: Mapping[int, str] | None
    ) -> list[PartitionInfo]:
        from accelpool_nvidia.models import MIB

        profiles = self._gi_profiles(h, device)
        by_id = {p.id: p for p in profiles}
        migs = self._mig_devices(h)
        result = []
        for _, info in self._layout(h, profiles):
            if hosting and info.id in hosting:
                continue  # listed as the MIG-backed vGPU it hosts
            prof = by_id[info.profileId]
            placement = Placement(info.placement.start, info.placement.size)
            base: dict[str, AttributeValue] = {
                "nvidia.com/gpuInstanceId": info.id,
                "nvidia.com/gpuInstanceProfileId": prof.id,
            }
            mine = sorted((k, v) for k, v in migs.items() if k[0] == info.id)
            if not mine:
                # A GPU instance without compute instances: no CUDA device, but it holds
                # capacity, so it is listed as incomplete (it can be destroyed, and
                # 'accelpool partition gc' removes one whose creator was killed).
                result.append(
                    PartitionInfo(
                        native_id=f"{device.native_id}/gi{info.id}",
                        device_native_id=device.native_id,
                        profile=prof.name,
                        kind="mig",
                        memory_bytes=prof.memory_mb * MIB,
                        compute_units=prof.sms,
                        placement=placement,
                        scope="device",
                        attributes={**base, "nvidia.com/computeInstances": 0},
                        complete=False,
                    )
                )
                continue
            for (_, ci_id), mig in mine:
                name = (
                    prof.name
                    if mig["ci_slices"] == prof.slices
                    else (f"{mig['ci_slices']}c.{prof.name}")
                )
                result.append(
                    PartitionInfo(
                        native_id=mig["uuid"],
                        device_native_id=device.native_id,
                        profile=name,
                        kind="mig",
                        memory_bytes=prof.memory_mb * MIB,
                        compute_units=mig["sms"],
                        placement=placement,
                        scope="device",
                        attributes={
                            **base,
                            "nvidia.com/computeInstanceId": ci_id,
                            "nvidia.com/migDeviceIndex": mig["index"],
                            "nvidia.com/uuid": mig["uuid"],
                        },
                    )
                )
        return result

    # -- profiles and partitions -------------------------------------------------------------
    def profiles(self, device: DeviceInfo) -> Sequence[PartitionProfile]:
        with self._nvml(f"reading partition profiles of {self._dev_id(device)}"):
            h = self._handle(device)
            result: list[PartitionProfile] = []
            if self._mig_on(h):
                for p in self._gi_profiles(h, device):
                    remaining = pynvml.nvmlDeviceGetGpuInstanceRemainingCapacity(h, p.id)
                    result.append(self._profile_of(p, remaining))
            if self._is_vgpu_host(device):
                result.extend(self._vgpu_profiles(device, h))
            return result

    @staticmethod
    def _profile_of(p: _GiProfile, remaining: int) -> PartitionProfile:
        from accelpool_nvidia.models import MIB

        return PartitionProfile(
            name=p.name,
            kind="mig",
            memory_bytes=p.memory_mb * MIB,
            compute_units=p.sms,
            max_count=p.instances,
            placements=tuple(Placement(s, n) for s, n in p.placements),
            available=remaining,
            attributes={
                "nvidia.com/gpuInstanceProfileId": p.id,
                "nvidia.com/computeSlices": p.slices,
                "nvidia.com/memorySlices": p.size,
                "nvidia.com/copyEngines": p.copy_engines,
                "nvidia.com/decoders": p.decoders,
                "nvidia.com/encoders": p.encoders,
                "nvidia.com/jpegs": p.jpegs,
                "nvidia.com/ofas": p.ofas,
            },
        )

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        with self._nvml(f"listing partitions of {self._dev_id(device)}"):
            h = self._handle(device)
            result: list[PartitionInfo] = []
            vgpu_host = self._is_vgpu_host(device)
            if self._mig_on(h):
                hosting = self._vgpu_gis(h) if vgpu_host else {}
                result.extend(self._mig_partitions(device, h, hosting))
            if vgpu_host:
                result.extend(self._vgpu_partitions(device, h))
            return result

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        dev_id = self._dev_id(device)
        with self._nvml(f"creating partition {profile} on {dev_id}"):
            h = self._handle(device)
            names: list[str] = []
            if self._mig_on(h):
                profiles = self._gi_profiles(h, device)
                for p in profiles:
                    if p.name == profile:
                        return self._create_mig(device, h, p, profiles, placement)
                names += [p.name for p in profiles]
            if self._is_vgpu_host(device):
                vgpus = self._vgpu_types(h)
                for type_id, name in vgpus.items():
                    if name == profile:
                        if placement is not None:
                            raise InvalidRequest(
                                f"vGPU profile {profile} takes no placement; omit --placement"
                            )
                        return self._create_vgpu(device, h, type_id, name)
                names += list(vgpus.values())
            if not names:
                if device.attributes.get("nvidia.com/migCapable"):
                    raise UnsupportedOperation(
                        f"MIG mode is disabled on {dev_id}, so it has no partition profiles; "
                        f"enable it with 'accelpool nvidia mig enable {dev_id}'"
                    )
                raise UnsupportedOperation(f"{dev_id} cannot be partitioned (no MIG, no vGPU)")
            raise InvalidRequest(
                f"{dev_id} has no profile {profile!r}; valid profiles: {', '.join(names)}"
            )

    def _create_mig(
        self,
        device: DeviceInfo,
        h: Any,
        prof: _GiProfile,
        profiles: Sequence[_GiProfile],
        placement: int | None,
    ) -> PartitionInfo:
        dev_id = self._dev_id(device)
        action = f"creating partition {prof.name} on {dev_id}"
        starts = [s for s, _ in prof.placements]
        if placement is not None and placement not in starts:
            raise InvalidRequest(
                f"{prof.name} cannot be placed at {placement} on {dev_id}; "
                f"its placements are {', '.join(map(str, starts))}"
            )
        journal = self._journal()
        if journal.has_abandoned():
            # Capacity a killed creator left half-made on this GPU is freed first.
            self._collect(journal, only_gpu=device.native_id)
        token = journal.begin(device.native_id, prof.id)
        try:
            gi = self._make_gpu_instance(h, prof, profiles, placement, action)
            try:
                journal.set_gpu_instance(token, pynvml.nvmlGpuInstanceGetInfo(gi).id)
            except (pynvml.NVMLError, OSError) as e:  # gc can still match it by profile
                log.debug("could not record the new GPU instance: %s", e)
            return self._finish_mig(device, h, prof, gi, action)
        finally:
            try:
                journal.finish(token)
            except OSError as e:  # the partition is made; a stale entry only waits for gc
                log.warning("could not update the record of MIG creates: %s", e)

    def _make_gpu_instance(
        self,
        h: Any,
        prof: _GiProfile,
        profiles: Sequence[_GiProfile],
        placement: int | None,
        action: str,
    ) -> Any:
        from accelpool_nvidia.placement import choose_placement

        for attempt in range(2):
            start = placement
            if start is None:
                layout = self._stable(lambda: self._layout(h, profiles), action)
                occupied = [(i.placement.start, i.placement.size) for _, i in layout]
                counts = Counter(i.profileId for _, i in layout)
                start = choose_placement(
                    prof.geometry(), [p.geometry() for p in profiles], occupied, counts
                )
            try:
                if start is None:
                    # Nothing free: let NVML say so in its own words.
                    gi = pynvml.nvmlDeviceCreateGpuInstance(h, prof.id)
                else:
                    slot = pynvml.c_nvmlGpuInstancePlacement_t(start, prof.size)
                    gi = pynvml.nvmlDeviceCreateGpuInstanceWithPlacement(
                        h, prof.id, ctypes.byref(slot)
                    )
                break
            except pynvml.NVMLError_InsufficientResources as e:
                if placement is None and start is not None and attempt == 0:
                    continue  # another process took the slot meanwhile: choose again
                where = f" at {start}" if start is not None else ""
                raise from_nvml(
                    e,
                    action,
                    f"no room for {prof.name}{where}: {self._room_hint(h, prof)}",
                ) from e
        return gi

    @staticmethod
    def _room_hint(h: Any, prof: _GiProfile) -> str:
        try:
            left = pynvml.nvmlDeviceGetGpuInstanceRemainingCapacity(h, prof.id)
        except pynvml.NVMLError:
            left = 0
        if left:
            return f"{left} more fit elsewhere; omit the placement or pick another"
        return "destroy a partition or choose a smaller profile (see 'accelpool profiles')"

    def _finish_mig(
        self, device: DeviceInfo, h: Any, prof: _GiProfile, gi: Any, action: str
    ) -> PartitionInfo:
        """Give a new GPU instance its full compute instance; roll back on any failure."""
        from accelpool_nvidia.models import MIB

        ci = None
        try:
            ci_info = self._full_ci_profile(gi, prof.slices)
            ci = pynvml.nvmlGpuInstanceCreateComputeInstance(gi, ci_info.id)
            gi_id = pynvml.nvmlGpuInstanceGetInfo(gi).id
            ci_id = pynvml.nvmlComputeInstanceGetInfo(ci).id
            mig = self._stable(lambda: self._mig_devices(h), action).get((gi_id, ci_id))
            if mig is None:
                raise AccelPoolError(f"{action}: NVML shows no MIG device for the new instance")
            placement = pynvml.nvmlGpuInstanceGetInfo(gi).placement
        except (pynvml.NVMLError, AccelPoolError) as e:
            leftover = self._rollback(gi, ci)
            note = "rolled back" if not leftover else f"rollback failed, {leftover} left behind"
            if isinstance(e, pynvml.NVMLError):
                raise from_nvml(e, action, f"the compute instance step failed ({note})") from e
            raise AccelPoolError(f"{e.message} ({note})") from e
        return PartitionInfo(
            native_id=mig["uuid"],
            device_native_id=device.native_id,
            profile=prof.name,
            kind="mig",
            memory_bytes=prof.memory_mb * MIB,
            compute_units=mig["sms"],
            placement=Placement(placement.start, placement.size),
            scope="device",
            attributes={
                "nvidia.com/gpuInstanceId": gi_id,
                "nvidia.com/gpuInstanceProfileId": prof.id,
                "nvidia.com/computeInstanceId": ci_id,
                "nvidia.com/migDeviceIndex": mig["index"],
                "nvidia.com/uuid": mig["uuid"],
            },
        )

    @staticmethod
    def _full_ci_profile(gi: Any, slices: int) -> Any:
        from accelpool_nvidia.models import CI_ENUM_BY_SLICES

        first = CI_ENUM_BY_SLICES.get(slices)
        order = ([first] if first is not None else []) + [
            e for e in range(pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT) if e != first
        ]
        for enum in order:
            try:
                info = pynvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(
                    gi, enum, pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
                )
            except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_InvalidArgument):
                continue
            if info.sliceCount == slices:
                return info
        raise AccelPoolError(f"NVML offers no compute instance spanning all {slices} slices")

    @staticmethod
    def _rollback(gi: Any, ci: Any) -> str | None:
        try:
            if ci is not None:
                pynvml.nvmlComputeInstanceDestroy(ci)
            pynvml.nvmlGpuInstanceDestroy(gi)
        except pynvml.NVMLError as e:
            log.error("could not roll back a half-made MIG partition: %s", nvml_text(e))
            return "a GPU instance"
        return None

    # -- half-made partitions (a creator killed between the GI and CI steps) ------------
    def _journal(self) -> CreateJournal:
        if self._journal_obj is None:
            from accelpool_nvidia.journal import CreateJournal

            sim = self.context.sim
            self._journal_obj = CreateJournal(sim.state if sim is not None else None)
        return self._journal_obj

    def collect_garbage(self) -> Sequence[str]:
        journal = self._journal()
        if not journal.has_abandoned():
            return []
        with self._nvml("removing MIG partitions that killed creators left half-made"):
            return self._collect(journal)

    def _bare_gpu_instances(self, h: Any, device: DeviceInfo) -> dict[int, tuple[Any, int]]:
        """GPU instance id -> (handle, profile id) of those without compute instances
        (a MIG-backed vGPU's instance has none either, but is not bare)."""
        profiles = self._gi_profiles(h, device)
        migs = self._mig_devices(h)
        taken = {gi_id for gi_id, _ in migs}
        if self._is_vgpu_host(device):
            taken |= set(self._vgpu_gis(h))
        return {
            info.id: (gi, info.profileId)
            for gi, info in self._layout(h, profiles)
            if info.id not in taken
        }

    def _collect(self, journal: CreateJournal, only_gpu: str | None = None) -> list[str]:
        """Destroy GPU instances that dead creators left bare; drop their records.

        Runs under the record's lock, so no live creator records a step meanwhile; a
        bare instance that a live creator of the same GPU and profile may still be
        finishing is left alone until that creator is done.
        """
        done: list[str] = []
        with journal.locked():
            entries = journal.entries()
            dead = [e for e in entries if not e.alive() and only_gpu in (None, e.gpu)]
            if not dead:
                return done
            live = [e for e in entries if e.alive()]
            waiting = {(e.gpu, e.profile) for e in live if e.gi is None}
            owned = {(e.gpu, e.gi) for e in live if e.gi is not None}
            if not all(any(d.native_id == e.gpu for d in self._known.values()) for e in dead):
                self.devices()  # learn the GPUs this backend has not listed yet
            known = {d.native_id: d for d in self._known.values()}
            finished: set[str] = set()
            for gpu in sorted({e.gpu for e in dead}):
                mine = [e for e in dead if e.gpu == gpu]
                device = known.get(gpu)
                try:
                    h = pynvml.nvmlDeviceGetHandleByUUID(gpu)
                except pynvml.NVMLError as err:
                    if err.value == rc.NOT_FOUND:  # not on this host (any more)
                        finished.update(e.token for e in mine)
                    continue  # a lost GPU keeps its records until it is back
                if device is None or not self._mig_on(h):
                    finished.update(e.token for e in mine)
                    continue
                bare = self._stable(
                    functools.partial(self._bare_gpu_instances, h, device),
                    f"reading GPU instances of nvidia:{gpu}",
                )
                for e in mine:
                    if e.gi is not None:
                        victims = [e.gi] if bare.get(e.gi, (None, -1))[1] == e.profile else []
                    elif (gpu, e.profile) in waiting:
                        continue  # a live creator of this shape may own it: decide later
                    else:
                        victims = [
                            g
                            for g, (_, p) in bare.items()
                            if p == e.profile and (gpu, g) not in owned
                        ]
                    for g in victims:
                        handle, _ = bare.pop(g)
                        try:
                            pynvml.nvmlGpuInstanceDestroy(handle)
                        except pynvml.NVMLError_InUse:
                            continue  # it got its compute instance after all
                        except _STALE:
                            continue  # destroyed by someone else meanwhile
                        done.append(
                            f"removed GPU instance {g} on nvidia:{gpu}, left half-made by "
                            f"process {e.pid}"
                        )
                    finished.add(e.token)
            journal.forget(finished)
        for line in done:
            log.warning("%s", line)
        return done

    def destroy_partition(self, partition: PartitionInfo) -> None:
        pid = f"{self.name}:{partition.native_id}"
        with self._nvml(f"destroying partition {pid}"):
            if partition.kind == "vgpu":
                self._destroy_vgpu(partition, pid)
            elif partition.native_id.startswith("MIG-"):
                self._destroy_mig(partition, pid)
            elif "/gi" in partition.native_id:
                self._destroy_bare_gi(partition, pid)
            else:
                raise InvalidRequest(f"{pid} is not an NVIDIA partition id")

    def _destroy_mig(self, partition: PartitionInfo, pid: str) -> None:
        gone = f"partition {pid} no longer exists; run 'accelpool ls'"
        try:
            mh = pynvml.nvmlDeviceGetHandleByUUID(partition.native_id)
            parent = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mh)
            gi = pynvml.nvmlDeviceGetGpuInstanceById(parent, pynvml.nvmlDeviceGetGpuInstanceId(mh))
            ci = pynvml.nvmlGpuInstanceGetComputeInstanceById(
                gi, pynvml.nvmlDeviceGetComputeInstanceId(mh)
            )
            try:
                pynvml.nvmlComputeInstanceDestroy(ci)
            except pynvml.NVMLError_InUse as e:
                raise from_nvml(
                    e,
                    f"destroying partition {pid}",
                    "processes are running on it; stop them and retry",
                ) from e
        except _STALE as e:
            # Destroyed by another process after we looked it up: a stale handle.
            raise NotFound(gone, vendor_code=int(e.value), vendor_message=nvml_text(e)) from e
        # Other compute instances may still live in this GPU instance: then keep it; it
        # may also be gone already (another process cleaned it up).
        with contextlib.suppress(pynvml.NVMLError_InUse, *_STALE):
            pynvml.nvmlGpuInstanceDestroy(gi)

    def _destroy_bare_gi(self, partition: PartitionInfo, pid: str) -> None:
        gpu_uuid, _, gi_text = partition.native_id.rpartition("/gi")
        gone = f"partition {pid} no longer exists; run 'accelpool ls'"
        if not gi_text.isascii() or not gi_text.isdigit():
            raise NotFound(gone)
        h = pynvml.nvmlDeviceGetHandleByUUID(gpu_uuid)
        try:
            gi = pynvml.nvmlDeviceGetGpuInstanceById(h, int(gi_text))
            with contextlib.suppress(pynvml.NVMLError_InvalidArgument):  # gone meanwhile
                pynvml.nvmlGpuInstanceDestroy(gi)
        except pynvml.NVMLError_InUse as e:
            raise from_nvml(
                e,
                f"destroying partition {pid}",
                "compute instances were created in it meanwhile; destroy those first",
            ) from e
        except pynvml.NVMLError_NotFound as e:
            raise NotFound(gone, vendor_code=rc.NOT_FOUND, vendor_message=nvml_text(e)) from e

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

    # -- telemetry, visibility, sessions ---------------------------------------------------------
    def telemetry(self, device: DeviceInfo) -> Telemetry:
        with self._nvml(f"reading telemetry of {self._dev_id(device)}"):
            h = self._handle(device)
            skip = (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            util = temp = power = None
            with contextlib.suppress(*skip):
                util = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            with contextlib.suppress(*skip):
                temp = float(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
            with contextlib.suppress(*skip):
                power = pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0
            return Telemetry(
                memory_used_bytes=int(mem.used),
                memory_total_bytes=int(mem.total),
                utilization_percent=util,
                temperature_c=temp,
                power_w=power,
            )

    def device_processes(self, device: DeviceInfo) -> list[int] | None:
        """NVML's compute processes on the GPU (its MIG devices included)."""
        with self._nvml(f"listing the processes on {self._dev_id(device)}"):
            try:
                procs = pynvml.nvmlDeviceGetComputeRunningProcesses(self._handle(device))
            except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
                return None
        return sorted({int(p.pid) for p in procs})

    def partition_telemetry(self, partition: PartitionInfo) -> Telemetry:
        # NVML reads the memory of a MIG device through its own handle; the utilisation
        # counters are not reported on MIG devices (DCGM profiles them instead).
        if partition.kind != "mig" or not partition.native_id.startswith("MIG-"):
            return super().partition_telemetry(partition)
        with self._nvml(f"reading telemetry of {self.name}:{partition.native_id}"):
            mem = pynvml.nvmlDeviceGetMemoryInfo(
                pynvml.nvmlDeviceGetHandleByUUID(partition.native_id)
            )
            return Telemetry(memory_used_bytes=int(mem.used), memory_total_bytes=int(mem.total))

    def _cuda_id(self, target: Target) -> str:
        if isinstance(target, PartitionInfo):
            pid = f"{self.name}:{target.native_id}"
            if target.kind == "vgpu":
                raise UnsupportedOperation(
                    f"{pid} is a vGPU: CUDA reaches it only inside the VM it is given to"
                )
            if not target.native_id.startswith("MIG-"):
                raise InvalidRequest(
                    f"{pid} is a GPU instance without a compute instance, so CUDA cannot use "
                    "it; destroy it and create the partition again"
                )
            return target.native_id
        with self._nvml(f"checking MIG mode of {self._dev_id(target)}"):
            if self._mig_on(self._handle(target)):
                raise InvalidRequest(
                    f"{self._dev_id(target)} has MIG enabled, so CUDA cannot use it whole; "
                    "target one of its MIG partitions, or disable MIG"
                )
        return target.native_id

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        ids = [self._cuda_id(t) for t in targets]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise InvalidRequest(
                f"targets name {', '.join(dupes)} more than once; list each device once"
            )
        return {"CUDA_VISIBLE_DEVICES": format_cuda_visible_devices(ids)}

    def container_edits(self, target: Target) -> ContainerEdits:
        """``/dev/nvidia<minor>`` (and for MIG the two ``nvidia-caps`` nodes), the control
        nodes shared, and ``CUDA_VISIBLE_DEVICES``."""
        from accelpool_nvidia.container import nvidia_edits

        return nvidia_edits(self, target)

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        self._cuda_id(target)
        return OnnxPlacement(
            providers=(
                ExecutionProvider(
                    "CUDAExecutionProvider",
                    # Visibility exposes exactly this target, so CUDA numbers it 0.
                    {"device_id": 0, "gpu_mem_limit": int(target.memory_bytes)},
                ),
                ExecutionProvider("CPUExecutionProvider"),
            )
        )

    # -- MIG mode --------------------------------------------------------------------------------
    def set_mig_mode(
        self, device: DeviceInfo, enabled: bool, *, force: bool = False
    ) -> MigModeChange:
        """Switch MIG mode on ``device`` and report what really happened.

        Raises :class:`InUse` when a session or a named holder claims the GPU or one of
        its partitions (unless ``force``, which is logged), when the GPU refuses (MIG
        partitions or vGPUs exist, or, on Hopper, processes run), :class:`PermissionDenied`
        without root and :class:`UnsupportedOperation` on a GPU without MIG.
        """
        from accelpool.claims import guard  # claims pull in the session package

        dev_id = self._dev_id(device)
        want = 1 if enabled else 0
        verb = "enabling" if enabled else "disabling"
        with self._nvml(f"{verb} MIG mode on {dev_id}"):
            h = self._handle(device)
            try:
                current, pending = pynvml.nvmlDeviceGetMigMode(h)
            except pynvml.NVMLError_NotSupported as e:
                raise UnsupportedOperation(
                    f"{dev_id} ({device.model}) does not support MIG",
                    vendor_code=rc.NOT_SUPPORTED,
                    vendor_message=nvml_text(e),
                ) from e
            if current == want and pending == want:
                return MigModeChange(dev_id, enabled, bool(current), bool(pending), "unchanged")
            in_use_hint = "stop the processes using the GPU and retry"
            if not enabled and self._mig_on(h):
                count = len(self._mig_partitions(device, h))
                if count:
                    in_use_hint = f"destroy its {count} MIG partition(s) first"
            with (
                guard(dev_id, "change MIG mode of", device=dev_id, force=force),
                nvml_errors(f"{verb} MIG mode on {dev_id}", {rc.IN_USE: in_use_hint}),
            ):
                status = pynvml.nvmlDeviceSetMigMode(h, want)
            current, pending = pynvml.nvmlDeviceGetMigMode(h)
        if current == want:
            return MigModeChange(dev_id, enabled, bool(current), bool(pending), "applied")
        if pending != want and status != rc.SUCCESS:
            # Refused outright (Hopper while busy): nothing is pending, nvml.h says to
            # idle the device and retry.
            raise from_nvml(pynvml.NVMLError(status), f"{verb} MIG mode on {dev_id}", in_use_hint)
        reason = rc.text(status) if status != rc.SUCCESS else "the GPU needs a reset"
        return MigModeChange(
            dev_id,
            enabled,
            bool(current),
            bool(pending),
            "pending",
            f"{reason}: the change takes effect after a GPU reset (stop every process "
            "on it, then 'nvidia-smi -r') or a reboot",
        )

    # -- faults (simulated fleets only) --------------------------------------------------------
    def _sim_index(self, device: DeviceInfo) -> int:
        if self._sim is None:
            raise UnsupportedOperation(
                f"backend {self.name} injects faults only in a simulated fleet (--sim)"
            )
        index: int | None = self._sim._by_uuid.get(device.native_id)
        if index is None:
            raise NotFound(f"no simulated GPU {device.native_id}")
        return index

    def inject_fault(self, fault: str, device: DeviceInfo) -> None:
        index = self._sim_index(device)
        if fault == "device-lost":
            self._sim.lose_gpu(index)
        elif fault == "create-fails-midway":
            self._sim.fail_call(
                _CREATE_MIDWAY_FUNCTIONS,
                nth=1,
                code=rc.UNKNOWN,
                gpu=index,
                armed_by=("gi-create", "mdev-create"),
            )
        else:
            raise InvalidRequest(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")

    def clear_faults(self) -> None:
        if self._sim is None:
            raise UnsupportedOperation(
                f"backend {self.name} injects faults only in a simulated fleet (--sim)"
            )
        self._sim.clear_faults()

    @property
    def simulator(self) -> Any:
        """The :class:`~accelpool_nvidia.simulator.NvmlSimulator` (None on real hardware)."""
        return self._sim
