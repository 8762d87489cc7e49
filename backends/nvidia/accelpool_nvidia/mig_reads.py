"""MIG reads: GPU instance profiles, GPU instances, MIG devices and the partitions they make.

Every multi-call read that races with another process's destroy runs through
:meth:`MigReads._stable`, which reads afresh when NVML reports a stale handle.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pynvml

from accelpool.errors import AccelPoolError
from accelpool.types import AttributeValue, DeviceInfo, PartitionInfo, PartitionProfile, Placement
from accelpool_nvidia.discovery import NvmlDiscovery, _str
from accelpool_nvidia.errors import nvml_text

if TYPE_CHECKING:
    from accelpool_nvidia.profile_types import _GiProfile

_MAX_PLACEMENTS = 32
#: reads of a partition list that another process's destroy keeps invalidating
_READ_TRIES = 8
#: NVML's answers for a handle whose instance was destroyed after it was looked up
_STALE = (pynvml.NVMLError_InvalidArgument, pynvml.NVMLError_NotFound)
T = TypeVar("T")


def _virt(device: DeviceInfo) -> object:
    return device.attributes.get("nvidia.com/virtualizationMode")


class MigReads(NvmlDiscovery):
    """What a MIG-enabled GPU holds: its profile table, GPU instances and MIG devices."""

    # -- MIG reads ---------------------------------------------------------------------------
    @staticmethod
    def _mig_on(h: Any) -> bool:
        try:
            return bool(pynvml.nvmlDeviceGetMigMode(h)[0])
        except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            return False

    def _gi_profiles(self, h: Any, device: DeviceInfo) -> list[_GiProfile]:
        """GPU instance profiles NVML offers, walking the profile enums as go-nvlib does.

        A GPU's profile table never changes and is the same on every GPU of one model,
        memory size and virtualization mode, so it is read once per such kind of GPU
        (with MIG enabled), not once per GPU: a fleet of one model reads it once.
        """
        from accelpool_nvidia.models import GI_PROFILE_COUNT, mig_profile_name
        from accelpool_nvidia.profile_types import _GiProfile  # built only with MIG on

        kind = (device.model, device.memory_bytes, device.compute_units, _virt(device))
        cached = self._gi_cache.get(kind)
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
            self._gi_cache[kind] = found
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
