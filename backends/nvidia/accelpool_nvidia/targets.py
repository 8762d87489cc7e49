"""CUDA targets: ``CUDA_VISIBLE_DEVICES``, container edits and the ONNX placement.

Only a whole GPU without MIG or a MIG partition with a compute instance is a CUDA
target; a vGPU is reached only inside its VM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from accelpool.errors import InvalidRequest, UnsupportedOperation
from accelpool.spi import Target
from accelpool.types import ExecutionProvider, OnnxPlacement, PartitionInfo
from accelpool_nvidia.mig_reads import MigReads
from accelpool_nvidia.visibility import format_cuda_visible_devices

if TYPE_CHECKING:
    from accelpool.container import ContainerEdits


class CudaTargets(MigReads):
    """What a CUDA process is given to reach a GPU or MIG partition."""

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
