"""The Cambricon backend: MLU devices, MIM and dynamic-SMLU partitions, visibility.

It talks to CNDev through :class:`~accelpool_cambricon.driver.CndevDriver`: the ctypes
binding to ``libcndev.so`` on a real host, the simulator in a simulated fleet. Each
chip is in the mode its host set (``cnmon``): MIM chips offer CNDev's MIM profiles,
SMLU chips offer compute/memory shares, others no partitions. onnxruntime has no
Cambricon execution provider, so ONNX sessions are declared unsupported.

The layers, one job each: :mod:`~accelpool_cambricon.discovery` (driver, errors,
chips), :mod:`~accelpool_cambricon.partitions` (MIM and SMLU),
:mod:`~accelpool_cambricon.visibility` (environment and container edits); this
module assembles them into the SPI backend.
"""

from __future__ import annotations

from accelpool.capabilities import Capabilities, Capability
from accelpool.errors import AccelPoolError, UnsupportedOperation
from accelpool.spi import Target
from accelpool.types import DeviceInfo, OnnxPlacement, Telemetry
from accelpool_cambricon.discovery import MIB
from accelpool_cambricon.visibility import MluVisibility

NO_ONNX = (
    "onnxruntime has no Cambricon (MLU) execution provider, so accelpool cannot run ONNX "
    "models on an MLU; use Cambricon's MagicMind runtime instead"
)


class CambriconBackend(MluVisibility):
    """Cambricon MLUs through CNDev; MIM and SMLU partitions (scope ``device``)."""

    # -- SPI: discovery ------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        try:
            modes = {m.mode for m in self._enumerate()}
        except AccelPoolError:
            modes = set()
        supported = [
            Capability.DISCOVERY,
            Capability.PARTITION_DEVICE_SCOPE,
            Capability.TELEMETRY,
            Capability.VISIBILITY,
        ]
        unsupported = [
            Capability.SESSION_ONNX,
            Capability.PARTITION_MIG,
            Capability.PARTITION_VGPU,
            Capability.PARTITION_VNPU,
            Capability.PARTITION_SUBDEVICE,
            Capability.MIG_MODE,
        ]
        for mode, cap in (("mim", Capability.PARTITION_MIM), ("smlu", Capability.PARTITION_SMLU)):
            (supported if mode in modes else unsupported).append(cap)
        (supported if modes & {"mim", "smlu"} else unsupported).append(Capability.PARTITION)
        (supported if self.simulated else unsupported).append(Capability.FAULT_INJECTION)
        return Capabilities.of(supported, unsupported)

    # -- SPI: telemetry, visibility, sessions ----------------------------------------
    def telemetry(self, device: DeviceInfo) -> Telemetry:
        mlu = self._mlu(device)
        self._alive(mlu)
        drv, h = self.driver, mlu.handle
        doing = f"reading telemetry of {self.name}:{mlu.index}"
        mem = self._do(doing, lambda: drv.memory_usage(h))
        util = self._do(doing, lambda: drv.utilization(h))
        temp = self._do(doing, lambda: drv.temperature(h))
        return Telemetry(
            memory_used_bytes=mem.used_mb * MIB,
            memory_total_bytes=mem.total_mb * MIB,
            utilization_percent=float(util),
            temperature_c=float(temp),
            power_w=None,
        )

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        raise UnsupportedOperation(NO_ONNX)
