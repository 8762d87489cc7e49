"""Cambricon discovery: the CNDev driver, its error mapping and the MLU chips it lists.

:class:`MluDiscovery` opens CNDev (the ctypes binding on a real host, the simulator in
a simulated fleet), maps ``cndevRet_t`` codes onto accelpool's errors and enumerates
the chips with their attributes. The partition, visibility and SPI layers build on it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from accelpool.driver_backend import DriverBackend
from accelpool.errors import (
    AccelPoolError,
    DeviceLost,
    InsufficientCapacity,
    InUse,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    UnsupportedOperation,
)
from accelpool.native import NativeError
from accelpool.types import AttributeValue, DeviceInfo
from accelpool_cambricon.library import (
    CNDEV_ERROR_DUPLICATE,
    CNDEV_ERROR_IN_PROBLEM,
    CNDEV_ERROR_IN_USE,
    CNDEV_ERROR_INSUFFICIENT_SPACE,
    CNDEV_ERROR_INVALID_ARGUMENT,
    CNDEV_ERROR_INVALID_DEVICE_ID,
    CNDEV_ERROR_NO_PERMISSION,
    CNDEV_ERROR_NOT_FOUND,
    CNDEV_ERROR_NOT_SUPPORTED,
    HEALTH_GOOD,
    CndevError,
    CndevLoader,
    CndevUnavailable,
)

if TYPE_CHECKING:
    # Only for annotations: discovery on a host without CNDev must not import the
    # driver interface; the methods that need the card models import them.
    from accelpool_cambricon.driver import CndevDriver
    from accelpool_cambricon.sim import SimulatedCndev

log = logging.getLogger("accelpool.cambricon")
MIB = 1 << 20
VENDOR = "Cambricon"
ATTR = "cambricon.com/"


@dataclass(frozen=True)
class _Mlu:
    """One enumerated MLU chip: its CNDev handle, mode and what accelpool reports."""

    index: int
    handle: int
    mode: str
    info: DeviceInfo


class MluDiscovery(DriverBackend["CndevDriver", _Mlu]):
    """The CNDev driver of the Cambricon backend and the chips it enumerates."""

    # options["library"]: a path to libcndev.so, or an already loaded CDLL-like object.
    loader = CndevLoader
    unavailable_error = CndevUnavailable
    driver_error = CndevError
    init_failure = "cndevInit failed ({name}); check the MLU driver with 'cnmon'"
    listing = "listing Cambricon devices"
    device_noun = "Cambricon device"

    # -- driver ---------------------------------------------------------------
    def _simulator(self) -> type[SimulatedCndev]:
        from accelpool_cambricon.sim import SimulatedCndev

        return SimulatedCndev

    def _binding(self, lib: Any, path: str | None) -> CndevDriver:
        from accelpool_cambricon.cndev import CndevLibrary

        return CndevLibrary(lib=lib, path=path)

    def _driver_version(self, driver: CndevDriver) -> str:
        return driver.lib_version()

    def _close_driver(self, driver: CndevDriver) -> None:
        # Releasing is best effort; nothing of the user's is held here.
        with contextlib.suppress(CndevError, CndevUnavailable):
            driver.release()

    def _fault_index(self, device: DeviceInfo) -> int:
        return self._mlu(device).index

    # -- error mapping ----------------------------------------------------------
    def _error(self, e: NativeError, doing: str, context: str = "") -> AccelPoolError:
        kw: dict[str, Any] = {"vendor_code": e.code, "vendor_message": e.vendor_message}
        code = e.code
        if code == CNDEV_ERROR_IN_PROBLEM:
            return DeviceLost(f"{doing}: the MLU is in problem; check 'cnmon' and reset it", **kw)
        if code == CNDEV_ERROR_INSUFFICIENT_SPACE:
            return InsufficientCapacity(f"{doing}: the MLU has no room left", **kw)
        if code == CNDEV_ERROR_IN_USE:
            return InUse(f"{doing}: the MLU or instance is in use", **kw)
        if code in (CNDEV_ERROR_NOT_FOUND, CNDEV_ERROR_INVALID_DEVICE_ID):
            return NotFound(f"{doing}: no such MLU or instance", **kw)
        if code in (CNDEV_ERROR_INVALID_ARGUMENT, CNDEV_ERROR_DUPLICATE):
            return InvalidRequest(f"{doing}: CNDev rejected the request", **kw)
        if code == CNDEV_ERROR_NO_PERMISSION:
            return PermissionDenied(f"{doing}: not permitted; run as root", **kw)
        if code == CNDEV_ERROR_NOT_SUPPORTED:
            return UnsupportedOperation(f"{doing}: not supported by this MLU or driver", **kw)
        return AccelPoolError(f"{doing}: CNDev call failed", **kw)

    # -- enumeration --------------------------------------------------------------
    def _read_devices(self) -> list[_Mlu]:
        from accelpool_cambricon import models

        drv = self.driver
        out = []
        for index in range(drv.device_count()):
            h = drv.device_handle(index)
            try:
                healthy = drv.health(h) == HEALTH_GOOD
            except CndevError as e:
                if e.code != CNDEV_ERROR_IN_PROBLEM:
                    raise
                healthy = False
            if not healthy:
                # As a GPU that fell off the bus: the others are still worth listing.
                log.warning("Cambricon MLU %d is in problem; skipping it", index)
                continue
            uuid = drv.uuid(h)
            chip = models.CHIP_NAMES.get(drv.card_name(h), "MLU")
            product = drv.card_name_string(h) or chip
            sn, _ = drv.card_sn(h)
            mem = drv.memory_usage(h)
            cores = drv.core_count(h)
            clusters = drv.cluster_count(h)
            mode = "mim" if drv.mim_mode(h) else "smlu" if drv.smlu_mode(h) else "default"
            attrs: dict[str, AttributeValue] = {
                ATTR + "productName": product,
                ATTR + "chip": chip,
                ATTR + "uuid": uuid,
                ATTR + "index": index,
                ATTR + "cardSN": f"{sn:X}",
                ATTR + "mluCores": cores,
                ATTR + "clusters": clusters,
                ATTR + "mode": mode,
            }
            info = DeviceInfo(
                native_id=f"MLU-{uuid}",
                index=index,
                vendor=VENDOR,
                model=product,
                memory_bytes=mem.total_mb * MIB,
                compute_units=cores,
                attributes=attrs,
            )
            out.append(_Mlu(index, h, mode, info))
        return out

    def _mlu(self, device: DeviceInfo) -> _Mlu:
        return self._entry(device.native_id)

    def _alive(self, mlu: _Mlu) -> None:
        """Every operation on a device starts here: a lost MLU gives DeviceLost."""
        lost = f"Cambricon MLU {mlu.info.native_id} (index {mlu.index}) "
        try:
            health = self.driver.health(mlu.handle)
        except CndevError as e:
            raise DeviceLost(
                lost + "stopped answering; check 'cnmon' and reset the MLU",
                vendor_code=e.code,
                vendor_message=e.vendor_message,
            ) from None
        if health != HEALTH_GOOD:
            raise DeviceLost(lost + "reports itself in problem; check 'cnmon' and reset it")
