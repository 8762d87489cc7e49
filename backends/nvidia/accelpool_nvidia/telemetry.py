"""NVIDIA telemetry: what NVML reports of a GPU, and of a MIG device through its handle."""

from __future__ import annotations

import contextlib

import pynvml

from accelpool.types import DeviceInfo, PartitionInfo, Telemetry
from accelpool_nvidia.discovery import NvmlDiscovery


class NvmlTelemetry(NvmlDiscovery):
    """Memory, utilisation, temperature and power of GPUs and MIG devices."""

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
