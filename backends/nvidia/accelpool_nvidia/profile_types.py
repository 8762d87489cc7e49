"""The fixed facts NVML gives of a GPU instance profile and of a vGPU type.

Both are read once per GPU (a profile table never changes) and cached by the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accelpool_nvidia.placement import Geometry


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
