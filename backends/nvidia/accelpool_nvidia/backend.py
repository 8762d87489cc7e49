"""The NVIDIA backend: GPUs, MIG and vGPU partitions, telemetry and visibility over pynvml.

Production code only: in a simulated fleet the same code runs over
:class:`~accelpool_nvidia.simulator.NvmlSimulator`, installed beneath pynvml as its
``nvmlLib`` for the duration of each call.

The backend is assembled from one module per job: :mod:`~accelpool_nvidia.discovery`
(NVML, GPUs, attributes), :mod:`~accelpool_nvidia.mig_reads`,
:mod:`~accelpool_nvidia.mig_instances`, :mod:`~accelpool_nvidia.mig_recovery` and
:mod:`~accelpool_nvidia.mig_mode` (MIG), :mod:`~accelpool_nvidia.vgpu`,
:mod:`~accelpool_nvidia.telemetry`, :mod:`~accelpool_nvidia.targets` (visibility,
container edits, ONNX placement) and :mod:`~accelpool_nvidia.faults`; this module
declares the capabilities and routes profiles, partitions, creates and destroys to
MIG or vGPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import pynvml

from accelpool.capabilities import Capabilities, Capability
from accelpool.errors import InvalidRequest, UnsupportedOperation
from accelpool.types import DeviceInfo, PartitionInfo, PartitionProfile
from accelpool_nvidia.faults import SimFaults
from accelpool_nvidia.mig_mode import MigModeChange as MigModeChange
from accelpool_nvidia.mig_mode import MigModeSwitch
from accelpool_nvidia.targets import CudaTargets
from accelpool_nvidia.telemetry import NvmlTelemetry

__all__ = ["MigModeChange", "NvidiaBackend"]


class NvidiaBackend(MigModeSwitch, CudaTargets, NvmlTelemetry, SimFaults):
    """accelpool backend for NVIDIA GPUs through NVML (``pynvml``)."""

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
