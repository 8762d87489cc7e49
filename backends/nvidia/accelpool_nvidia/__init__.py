"""accelpool backend for NVIDIA GPUs: NVML (pynvml), MIG, vGPU and an NVML simulator."""

from accelpool_nvidia.visibility import format_cuda_visible_devices, parse_cuda_visible_devices

__all__ = ["format_cuda_visible_devices", "parse_cuda_visible_devices"]
