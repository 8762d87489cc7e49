"""accelpool backend for NVIDIA GPUs: NVML (pynvml), MIG, vGPU and an NVML simulator."""

from typing import TYPE_CHECKING

from accelpool.lazyload import lazy_attributes

if TYPE_CHECKING:
    from accelpool_nvidia.visibility import format_cuda_visible_devices, parse_cuda_visible_devices

# Loaded on first use: the presence check imports this package, and its regular
# expressions are needed only by code that reads or writes CUDA_VISIBLE_DEVICES.
__getattr__ = lazy_attributes(
    __name__,
    {
        "format_cuda_visible_devices": "accelpool_nvidia.visibility",
        "parse_cuda_visible_devices": "accelpool_nvidia.visibility",
    },
)

__all__ = ["format_cuda_visible_devices", "parse_cuda_visible_devices"]
