"""Fault injection of the NVIDIA backend: a lost GPU, a create that fails half way."""

from __future__ import annotations

from typing import Any

from accelpool.errors import InvalidRequest, NotFound, UnsupportedOperation
from accelpool.spi import FAULTS
from accelpool.types import DeviceInfo
from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.discovery import NvmlDiscovery

_CREATE_MIDWAY_FUNCTIONS = (
    "nvmlGpuInstanceCreateComputeInstance",
    "nvmlGpuInstanceCreateComputeInstanceWithPlacement",
    "nvmlDeviceGetActiveVgpus",
)


class SimFaults(NvmlDiscovery):
    """Faults injected into the simulator beneath pynvml (simulated fleets only)."""

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
