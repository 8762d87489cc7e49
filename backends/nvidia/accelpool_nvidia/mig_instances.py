"""MIG instances: making a GPU instance at a placement, its full compute instance,
rolling a half-made one back, and destroying MIG partitions and bare GPU instances.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pynvml

from accelpool.errors import AccelPoolError, NotFound
from accelpool.types import DeviceInfo, PartitionInfo, Placement
from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.discovery import log
from accelpool_nvidia.errors import from_nvml, nvml_text
from accelpool_nvidia.mig_reads import _STALE, MigReads

if TYPE_CHECKING:
    from accelpool_nvidia.profile_types import _GiProfile


class MigInstances(MigReads):
    """GPU and compute instances made, rolled back and destroyed."""

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

    def _destroy_mig(self, partition: PartitionInfo, pid: str) -> None:
        gone = f"partition {pid} no longer exists; run 'accelpool ls'"
        try:
            mh = pynvml.nvmlDeviceGetHandleByUUID(partition.native_id)
            parent = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mh)
            gi = pynvml.nvmlDeviceGetGpuInstanceById(parent, pynvml.nvmlDeviceGetGpuInstanceId(mh))
            ci = pynvml.nvmlGpuInstanceGetComputeInstanceById(
                gi, pynvml.nvmlDeviceGetComputeInstanceId(mh)
            )
        except _STALE as e:
            # Destroyed by another process after we looked it up: a stale handle.
            raise NotFound(gone, vendor_code=int(e.value), vendor_message=nvml_text(e)) from e
        with self._destroying(partition.device_native_id, gi):
            try:
                pynvml.nvmlComputeInstanceDestroy(ci)
            except pynvml.NVMLError_InUse as e:
                raise from_nvml(
                    e,
                    f"destroying partition {pid}",
                    "processes are running on it; stop them and retry",
                ) from e
            except _STALE as e:
                raise NotFound(gone, vendor_code=int(e.value), vendor_message=nvml_text(e)) from e
            # Other compute instances may still live in this GPU instance: then keep it;
            # it may also be gone already (another process cleaned it up).
            with contextlib.suppress(pynvml.NVMLError_InUse, *_STALE):
                pynvml.nvmlGpuInstanceDestroy(gi)

    def _destroying(self, gpu: str, gi: Any) -> contextlib.AbstractContextManager[None]:
        """Around the two steps of a MIG destroy (:class:`MigRecovery` records them)."""
        return contextlib.nullcontext()

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
