"""NVIDIA discovery: NVML through pynvml, the GPUs it lists and their attributes.

:class:`NvmlDiscovery` is the base of :class:`~accelpool_nvidia.backend.NvidiaBackend`:
it loads NVML (or installs the simulator beneath pynvml as its ``nvmlLib``), holds
pynvml for the duration of each operation, maps a GPU to its handle and reads each
GPU's facts (memory, SMs, PCI, compute capability, MIG and virtualisation mode).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pynvml

from accelpool.errors import AccelPoolError, BackendUnavailable, DeviceLost, NotFound
from accelpool.spi import Backend, BackendContext
from accelpool.types import AttributeValue, DeviceInfo
from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.boards import board_sms
from accelpool_nvidia.errors import HINTS, from_nvml, nvml_errors, nvml_text
from accelpool_nvidia.presence import library_not_found

if TYPE_CHECKING:
    from accelpool_nvidia.journal import CreateJournal
    from accelpool_nvidia.mdev import MdevSysfs
    from accelpool_nvidia.profile_types import _GiProfile, _VgpuType

# The MIG tables, placement search and mdev sysfs helpers are imported where used:
# discovery on a machine without NVML never needs them (see benchmarks/bench_discovery.py).

log = logging.getLogger("accelpool.nvidia")

#: pynvml is one module with one ``nvmlLib``: calls through it are serialised, and a
#: simulated backend swaps its library in for the duration of each operation.
_PYNVML_LOCK = threading.RLock()

_VIRT_NAMES = {0: "none", 1: "passthrough", 2: "vgpu", 3: "host-vgpu", 4: "host-vsga"}
_VIRT_HOST_VGPU = 3


def _cores_per_sm(cc: tuple[int, int]) -> int:
    major, minor = cc
    if major >= 9 or (major == 8 and minor != 0):
        return 128
    return 64


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlDiscovery(Backend):
    """NVML through pynvml: loading and holding the library, the GPUs and their attributes."""

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._lib: Any = None
        self._sim: Any = None  # NvmlSimulator when running in a simulated fleet
        self._mdev: MdevSysfs | None = None
        self._initialised = False
        self._vgpu_names: dict[int, str] = {}
        self._gi_cache: dict[tuple[object, ...], list[_GiProfile]] = {}
        self._vgpu_statics: dict[int, _VgpuType] = {}
        self._journal_obj: CreateJournal | None = None
        #: the last good facts of each GPU by index, for one that is lost later
        self._known: dict[int, DeviceInfo] = {}

    # -- plumbing ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _nvml(self, action: str) -> Iterator[None]:
        """Hold pynvml with this backend's library installed; map NVML errors."""
        if self._lib is None:
            raise BackendUnavailable(f"{action}: the NVIDIA backend was not probed successfully")
        with _PYNVML_LOCK:
            previous = pynvml.nvmlLib
            swap = previous is not self._lib
            if swap:
                self._install(self._lib)
            try:
                with nvml_errors(action):
                    yield
            finally:
                if swap:
                    self._install(previous)

    @staticmethod
    def _install(lib: Any) -> None:
        with pynvml.libLoadLock:
            pynvml.nvmlLib = lib
            pynvml._nvmlGetFunctionPointer_cache.clear()

    def _handle(self, device: DeviceInfo) -> Any:
        if device.lost:
            raise DeviceLost(
                f"NVIDIA GPU {self._dev_id(device)} (index {device.index}) is lost: "
                + HINTS[rc.GPU_IS_LOST],
                vendor_code=rc.GPU_IS_LOST,
            )
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(device.native_id)
        except pynvml.NVMLError as e:
            if e.value == rc.NOT_FOUND:
                raise NotFound(
                    f"no NVIDIA GPU {device.native_id} here any more; run 'accelpool ls'",
                    vendor_code=rc.NOT_FOUND,
                    vendor_message=nvml_text(e),
                ) from e
            raise

    def _dev_id(self, device: DeviceInfo) -> str:
        return f"{self.name}:{device.native_id}"

    # -- probe and discovery -------------------------------------------------------------
    def probe(self) -> str | None:
        sim = self.context.sim
        if sim is not None:
            from accelpool_nvidia.simulator import NvmlSimulator, SimMdevSysfs

            try:
                self._sim = NvmlSimulator(sim.fleet, sim.devices, sim.state, sim.root)
            except ValueError as e:
                raise BackendUnavailable(f"simulated fleet {sim.fleet!r}: {e}") from None
            self._lib = self._sim.lib
            self._mdev = SimMdevSysfs(self._sim)
        else:
            self._lib = self._load_real_library()
            from accelpool_nvidia.mdev import MdevSysfs

            root = self.context.options.get("sysfs_root") or os.environ.get(
                "ACCELPOOL_NVIDIA_SYSFS_ROOT", "/sys"
            )
            self._mdev = MdevSysfs(Path(root))
        with self._nvml("initialising NVML"):
            if sim is not None:
                pynvml.nvmlInit()
            self._initialised = True
            version: str = _str(pynvml.nvmlSystemGetDriverVersion())
        return version

    def _load_real_library(self) -> Any:
        # Only a process that simulated before can have a simulated nvmlLib installed;
        # do not import the simulator just to find out (it costs discovery time).
        simulator = sys.modules.get("accelpool_nvidia.simulator")
        sim_lib: type = getattr(simulator, "NvmlLib", type(None)) if simulator else type(None)

        with _PYNVML_LOCK:
            previous = pynvml.nvmlLib
            if previous is not None and isinstance(previous, sim_lib):
                self._install(None)  # let pynvml load the real library
            try:
                pynvml.nvmlInit()
                lib = pynvml.nvmlLib
            except pynvml.NVMLError as e:
                if e.value == rc.LIBRARY_NOT_FOUND:
                    raise library_not_found(nvml_text(e)) from None
                if e.value == rc.DRIVER_NOT_LOADED:
                    raise BackendUnavailable(
                        "NVIDIA driver not loaded: load the nvidia kernel module "
                        "(modprobe nvidia) or reinstall the driver",
                        vendor_code=rc.DRIVER_NOT_LOADED,
                        vendor_message=nvml_text(e),
                    ) from None
                raise from_nvml(e, "initialising NVML") from None
            finally:
                if previous is not None and isinstance(previous, sim_lib):
                    self._install(previous)
        return lib

    def close(self) -> None:
        if self._initialised and self._lib is not None:
            with contextlib.suppress(AccelPoolError), self._nvml("shutting NVML down"):
                pynvml.nvmlShutdown()
            self._initialised = False

    def devices(self) -> Sequence[DeviceInfo]:
        with self._nvml("listing NVIDIA GPUs"):
            driver = _str(pynvml.nvmlSystemGetDriverVersion())
            cuda = pynvml.nvmlSystemGetCudaDriverVersion()
            result = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                try:
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    result.append(self._device_info(i, h, driver, cuda))
                except pynvml.NVMLError as e:
                    if e.value != rc.GPU_IS_LOST:
                        raise
                    # Listed as lost at its index, so other GPUs keep their indexes.
                    log.warning("NVIDIA GPU %d is lost (fell off the bus)", i)
                    result.append(self._lost_info(i))
            self._known.update((d.index, d) for d in result if not d.lost)
            return result

    def _lost_info(self, index: int) -> DeviceInfo:
        known = self._known.get(index)
        if known is not None:
            return replace(known, lost=True)
        # A lost GPU answers nothing, not even its UUID: name it by its index.
        return DeviceInfo(
            native_id=f"lost-{index}",
            index=index,
            vendor="NVIDIA",
            model="unknown",
            memory_bytes=0,
            compute_units=0,
            attributes={},
            lost=True,
        )

    def _device_info(self, index: int, h: Any, driver: str, cuda: int) -> DeviceInfo:
        from accelpool_nvidia.models import ARCH_NAMES

        uuid = _str(pynvml.nvmlDeviceGetUUID(h))
        name = _str(pynvml.nvmlDeviceGetName(h))
        total = int(pynvml.nvmlDeviceGetMemoryInfo(h).total)
        pci = pynvml.nvmlDeviceGetPciInfo(h)
        cc = pynvml.nvmlDeviceGetCudaComputeCapability(h)
        attrs: dict[str, AttributeValue] = {
            "nvidia.com/uuid": uuid,
            "nvidia.com/productName": name,
            "nvidia.com/pciBusID": _str(pci.busId),
            "nvidia.com/pciDeviceID": f"0x{pci.pciDeviceId:08X}",
            "nvidia.com/cudaComputeCapability": f"{cc[0]}.{cc[1]}",
            "nvidia.com/driverVersion": driver,
            "nvidia.com/cudaDriverVersion": f"{cuda // 1000}.{(cuda % 1000) // 10}",
        }
        with contextlib.suppress(pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            attrs["nvidia.com/architecture"] = ARCH_NAMES.get(
                pynvml.nvmlDeviceGetArchitecture(h), "unknown"
            )
        compute_units = 0
        with contextlib.suppress(pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            cores = int(pynvml.nvmlDeviceGetNumGpuCores(h))
            attrs["nvidia.com/cudaCores"] = cores
            compute_units = cores // _cores_per_sm(cc)
        if not compute_units:
            # NVML gives no core count on a MIG-enabled GPU: use the board's SM count,
            # or at worst the SMs its biggest MIG profile spans.
            compute_units = board_sms(pci.pciDeviceId) or self._mig_sms(h)
        try:
            current, pending = pynvml.nvmlDeviceGetMigMode(h)
            attrs["nvidia.com/migCapable"] = True
            attrs["nvidia.com/migMode"] = "enabled" if current else "disabled"
            attrs["nvidia.com/migModePending"] = "enabled" if pending else "disabled"
        except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            attrs["nvidia.com/migCapable"] = False
        with contextlib.suppress(pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
            virt = pynvml.nvmlDeviceGetVirtualizationMode(h)
            attrs["nvidia.com/virtualizationMode"] = _VIRT_NAMES.get(virt, str(virt))
        return DeviceInfo(
            native_id=uuid,
            index=index,
            vendor="NVIDIA",
            model=name,
            memory_bytes=total,
            compute_units=compute_units,
            attributes=attrs,
        )

    @staticmethod
    def _mig_sms(h: Any) -> int:
        """SMs of the largest GPU instance profile NVML offers (0 without MIG)."""
        from accelpool_nvidia.models import GI_PROFILE_COUNT

        best = 0
        for enum in range(GI_PROFILE_COUNT):
            try:
                info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(h, enum)
            except pynvml.NVMLError:
                continue
            best = max(best, int(info.multiprocessorCount))
        return best
