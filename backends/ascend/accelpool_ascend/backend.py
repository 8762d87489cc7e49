"""The Huawei Ascend backend: devices, vNPU hard split, visibility and CANN placement.

It talks to DCMI through :class:`~accelpool_ascend.driver.DcmiDriver`: the ctypes
binding to ``libdcmi.so`` on a real host, the simulator in a simulated fleet. The
backend owns the rules a pool plans with (which templates a chip offers, how many
more fit, which variables make a target visible); the driver owns the state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from accelpool.capabilities import Capabilities, Capability
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
from accelpool.spi import Target
from accelpool.types import (
    AttributeValue,
    DeviceInfo,
    ExecutionProvider,
    OnnxPlacement,
    PartitionInfo,
    PartitionProfile,
    Telemetry,
)
from accelpool_ascend.library import (
    ERR_DEVICE_NOT_EXIST,
    ERR_INVALID_DEVICE_ID,
    ERR_INVALID_PARAMETER,
    ERR_NOT_SUPPORT,
    ERR_NOT_SUPPORT_IN_CONTAINER,
    ERR_OPER_NOT_PERMITTED,
    ERR_RESOURCE_OCCUPIED,
    UTILIZATION_AICORE,
    DcmiError,
    DcmiLoader,
    DcmiUnavailable,
)

#: control nodes every Ascend container needs (Ascend Docker Runtime mounts them)
SHARED_NODES = ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")

if TYPE_CHECKING:
    # Only for annotations: discovery on a host without DCMI must not import these
    # (the driver interface, chip models); the methods that need them import them.
    from accelpool.container import ContainerEdits
    from accelpool_ascend import models
    from accelpool_ascend.driver import DcmiDriver, SocResource, VdevInfo
    from accelpool_ascend.sim import SimulatedDcmi

log = logging.getLogger("accelpool.ascend")
MIB = 1 << 20
VENDOR = "Huawei"
ATTR = "huawei.com/"

#: The CANN per-process visibility variable (logical ids, renumbered from 0).
RT_VISIBLE = "ASCEND_RT_VISIBLE_DEVICES"
#: Read by the Ascend container runtime: physical ids, or vNPU ids with VIRTUAL.
RUNTIME_VISIBLE = "ASCEND_VISIBLE_DEVICES"
RUNTIME_OPTIONS = "ASCEND_RUNTIME_OPTIONS"
CANN_PROVIDER = "CANNExecutionProvider"


@dataclass(frozen=True)
class _Chip:
    """One enumerated chip: DCMI's ids for it, its model, and what accelpool reports."""

    card_id: int
    device_id: int
    logic_id: int
    phy_id: int
    model: models.AscendChip | None
    info: DeviceInfo


def _die_string(words: Sequence[int]) -> str:
    # As mind-cluster's DcGetDieID: each word as 8 upper-case hex digits, dash-joined.
    return "-".join(f"{w & 0xFFFFFFFF:08X}" for w in words)


def _resources(res: SocResource) -> dict[str, int]:
    return {"aicore": int(res.aicore), "aicpu": int(res.aicpu), "memory_mb": int(res.memory_mb)}


def _describe_need(need: dict[str, int]) -> str:
    names = {"aicore": "AI cores", "aicpu": "AI CPUs", "memory_mb": "MiB of memory"}
    return ", ".join(f"{need[k]} {names[k]}" for k in names if k in need)


class AscendBackend(DriverBackend["DcmiDriver", _Chip]):
    """Ascend NPUs through DCMI; vNPUs from the chip's templates (scope ``device``)."""

    # options["library"]: a path to libdcmi.so, or an already loaded CDLL-like object.
    loader = DcmiLoader
    unavailable_error = DcmiUnavailable
    driver_error = DcmiError
    init_failure = "dcmi_init failed ({name}); check the Ascend driver with 'npu-smi info'"
    listing = "listing Ascend devices"
    device_noun = "Ascend device"

    # -- driver ---------------------------------------------------------------
    def _simulator(self) -> type[SimulatedDcmi]:
        from accelpool_ascend.sim import SimulatedDcmi

        return SimulatedDcmi

    def _binding(self, lib: Any, path: str | None) -> DcmiDriver:
        from accelpool_ascend.dcmi import DcmiLibrary

        return DcmiLibrary(lib=lib, path=path)

    def _driver_version(self, driver: DcmiDriver) -> str:
        return driver.version()

    def _close_driver(self, driver: DcmiDriver) -> None:
        driver.close()

    def _fault_index(self, device: DeviceInfo) -> int:
        return self._chip(device).logic_id

    # -- error mapping ----------------------------------------------------------
    def _error(self, e: NativeError, doing: str, context: str = "") -> AccelPoolError:
        kw: dict[str, Any] = {"vendor_code": e.code, "vendor_message": e.vendor_message}
        code = e.code
        if code == ERR_DEVICE_NOT_EXIST:
            return DeviceLost(
                f"{doing}: the NPU stopped answering; check 'npu-smi info' and reset it", **kw
            )
        if code == ERR_RESOURCE_OCCUPIED:
            if context == "create":
                return InsufficientCapacity(
                    f"{doing}: the driver has no room left; destroy a vNPU first", **kw
                )
            return InUse(f"{doing}: the NPU or vNPU is in use by a container or process", **kw)
        if code == ERR_INVALID_DEVICE_ID:
            return NotFound(f"{doing}: no such device or vNPU", **kw)
        if code == ERR_INVALID_PARAMETER:
            return InvalidRequest(f"{doing}: DCMI rejected the request", **kw)
        if code == ERR_OPER_NOT_PERMITTED:
            return PermissionDenied(
                f"{doing}: not permitted; run as root or as a member of HwHiAiUser", **kw
            )
        if code in (ERR_NOT_SUPPORT, ERR_NOT_SUPPORT_IN_CONTAINER):
            return UnsupportedOperation(f"{doing}: not supported by this NPU or driver", **kw)
        return AccelPoolError(f"{doing}: DCMI call failed", **kw)

    # -- enumeration --------------------------------------------------------------
    def _read_devices(self) -> list[_Chip]:
        from accelpool_ascend import models

        drv = self.driver
        chips = []
        for card in drv.card_list():
            for dev in range(drv.device_num_in_card(card)):
                try:
                    drv.health(card, dev)
                except DcmiError as e:
                    if e.code != ERR_DEVICE_NOT_EXIST:
                        raise
                    # As a GPU that fell off the bus: the others are still worth listing.
                    log.warning(
                        "Ascend chip %d of card %d is not answering; skipping it", dev, card
                    )
                    continue
                logic = drv.logic_id(card, dev)
                phy = drv.phy_id_from_logic_id(logic)
                chip_info = drv.chip_info(card, dev)
                die = _die_string(drv.die_id(card, dev))
                model = models.chip(chip_info.chip_name)
                hbm = self._hbm_size(card, dev)
                memory_mb = hbm if hbm else drv.memory_info(card, dev).memory_size_mb
                attrs: dict[str, AttributeValue] = {
                    ATTR + "chipName": chip_info.chip_name,
                    ATTR + "chipType": chip_info.chip_type,
                    ATTR + "chipVersion": chip_info.chip_ver,
                    ATTR + "aiCore": chip_info.aicore_cnt,
                    ATTR + "logicID": logic,
                    ATTR + "phyID": phy,
                    ATTR + "cardID": card,
                    ATTR + "deviceID": dev,
                    ATTR + "dieID": die,
                    ATTR + "memoryType": "HBM" if hbm else "DDR",
                }
                if model is not None and model.aicpu is not None:
                    attrs[ATTR + "aiCpu"] = model.aicpu
                info = DeviceInfo(
                    native_id=die,
                    index=logic,
                    vendor=VENDOR,
                    model=f"{chip_info.chip_type}{chip_info.chip_name}",
                    memory_bytes=memory_mb * MIB,
                    compute_units=chip_info.aicore_cnt,
                    attributes=attrs,
                )
                chips.append(_Chip(card, dev, logic, phy, model, info))
        return sorted(chips, key=lambda c: c.logic_id)

    def _hbm_size(self, card: int, dev: int) -> int:
        # 910-series chips report their HBM here; others answer "not supported" and
        # their device memory comes from the memory-info call instead.
        try:
            return self.driver.hbm_info(card, dev).memory_size_mb
        except DcmiError as e:
            if e.code == ERR_NOT_SUPPORT:
                return 0
            raise

    def _chip(self, device: DeviceInfo) -> _Chip:
        return self._entry(device.native_id)

    def _alive(self, chip: _Chip) -> None:
        """Every operation on a device starts here: a lost device gives DeviceLost."""
        try:
            self.driver.health(chip.card_id, chip.device_id)
        except DcmiError as e:
            raise DeviceLost(
                f"Ascend device {chip.info.native_id} (logic id {chip.logic_id}) stopped "
                "answering; check 'npu-smi info' and reset the NPU",
                vendor_code=e.code,
                vendor_message=e.vendor_message,
            ) from None

    # -- SPI: discovery ------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        supported = [
            Capability.DISCOVERY,
            Capability.PARTITION,
            Capability.PARTITION_VNPU,
            Capability.PARTITION_DEVICE_SCOPE,
            Capability.TELEMETRY,
            Capability.VISIBILITY,
            Capability.SESSION_ONNX,
        ]
        unsupported = [
            Capability.PARTITION_MIG,
            Capability.PARTITION_VGPU,
            Capability.PARTITION_MIM,
            Capability.PARTITION_SMLU,
            Capability.PARTITION_SUBDEVICE,
            Capability.MIG_MODE,
        ]
        (supported if self.simulated else unsupported).append(Capability.FAULT_INJECTION)
        return Capabilities.of(supported, unsupported)

    # -- SPI: partitions ------------------------------------------------------------
    def profiles(self, device: DeviceInfo) -> Sequence[PartitionProfile]:
        from accelpool.sim import allocator
        from accelpool_ascend import models

        chip = self._chip(device)
        self._alive(chip)
        model = chip.model
        if model is None:
            return []
        doing = f"reading vNPU resources of {device.native_id}"
        drv = self.driver
        total = self._do(doing, lambda: drv.total_resource(chip.card_id, chip.device_id))
        free = _resources(self._do(doing, lambda: drv.free_resource(chip.card_id, chip.device_id)))
        ids_left = models.VNPU_IDS_PER_CHIP - len(total.vdev_ids)
        budget = model.budget()
        out = []
        for t in model.templates:
            need = model.need(t)
            out.append(
                PartitionProfile(
                    name=t.name,
                    kind="vnpu",
                    memory_bytes=t.memory_mb * MIB,
                    compute_units=t.aicore,
                    max_count=min(allocator.fit_count(budget, need), models.VNPU_IDS_PER_CHIP),
                    available=max(0, min(allocator.fit_count(free, need), ids_left)),
                    attributes={
                        ATTR + "aiCore": t.aicore,
                        ATTR + "aiCpu": t.aicpu,
                        ATTR + "memoryMiB": t.memory_mb,
                    },
                )
            )
        return out

    def _partition(self, chip: _Chip, v: VdevInfo) -> PartitionInfo:
        return PartitionInfo(
            # As the runtime names vNPUs: <chip>-<template>-<vNPU id>-<physical id>.
            native_id=f"{chip.info.model}-{v.name}-{v.vdev_id}-{chip.phy_id}",
            device_native_id=chip.info.native_id,
            profile=v.name,
            kind="vnpu",
            memory_bytes=v.memory_mb * MIB,
            compute_units=round(v.aicore),
            placement=None,
            scope="device",
            attributes={
                ATTR + "vnpuID": v.vdev_id,
                ATTR + "vfgID": v.vfg_id,
                ATTR + "template": v.name,
                ATTR + "aiCpu": v.aicpu,
                ATTR + "containerUsed": bool(v.is_container_used),
            },
        )

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        chip = self._chip(device)
        self._alive(chip)
        drv = self.driver
        doing = f"listing vNPUs of {device.native_id}"
        total = self._do(doing, lambda: drv.total_resource(chip.card_id, chip.device_id))
        out = []
        for vdev_id in sorted(total.vdev_ids):
            try:
                v = drv.vdevice_info(chip.card_id, chip.device_id, vdev_id)
            except DcmiError as e:
                if e.code == ERR_INVALID_DEVICE_ID:
                    continue  # destroyed since the listing: it is simply gone
                raise self._error(e, doing) from None
            out.append(self._partition(chip, v))
        return out

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        from accelpool.sim import allocator
        from accelpool_ascend import models

        chip = self._chip(device)
        self._alive(chip)
        model = chip.model
        if model is None:
            raise UnsupportedOperation(
                f"accelpool has no vNPU template table for chip {device.model}; "
                "add it to accelpool_ascend.models"
            )
        template = model.template(profile) if isinstance(profile, str) else None
        if template is None:
            raise InvalidRequest(
                f"{device.model} has no vNPU template {profile!r}; templates: "
                + ", ".join(t.name for t in model.templates)
            )
        if placement is not None:
            raise InvalidRequest(
                "Ascend vNPU templates take no placement (DCMI places each vNPU itself); "
                "create it without one"
            )
        drv = self.driver
        where = f"vNPU {template.name} on {self.name}:{device.index}"
        total = self._do(
            f"creating {where}", lambda: drv.total_resource(chip.card_id, chip.device_id)
        )
        if len(total.vdev_ids) >= models.VNPU_IDS_PER_CHIP:
            raise InsufficientCapacity(
                f"cannot create {where}: all {models.VNPU_IDS_PER_CHIP} vNPU ids of the chip "
                "are in use; destroy a vNPU first"
            )
        free = _resources(
            self._do(f"creating {where}", lambda: drv.free_resource(chip.card_id, chip.device_id))
        )
        need = dict(model.need(template))
        short = allocator.shortfall(free, need)
        if short:
            have = {k: free.get(k, 0) for k in need}
            raise InsufficientCapacity(
                f"cannot create {where}: it needs {_describe_need(need)} and the chip has "
                f"{_describe_need(have)} free; destroy a vNPU or pick a smaller template"
            )
        created = self._do(
            f"creating {where}",
            lambda: drv.create_vdevice(chip.card_id, chip.device_id, template.name),
            context="create",
        )
        try:
            v = drv.vdevice_info(chip.card_id, chip.device_id, created.vdev_id)
        except BaseException as e:
            # Step two failed: take the vNPU away again so nothing is left behind.
            self._rollback(chip, created.vdev_id, where)
            if isinstance(e, DcmiError):
                raise self._error(
                    e,
                    f"created {where} as vNPU {created.vdev_id} but could not read it back "
                    "(it was destroyed again)",
                ) from None
            raise
        return self._partition(chip, v)

    def _rollback(self, chip: _Chip, vdev_id: int, where: str) -> None:
        try:
            self.driver.destroy_vdevice(chip.card_id, chip.device_id, vdev_id)
        except DcmiError as e:
            raise AccelPoolError(
                f"creating {where} failed half way and vNPU {vdev_id} could not be destroyed "
                f"again; remove it with 'npu-smi set -t destroy-vnpu -i {chip.card_id} "
                f"-c {chip.device_id} -v {vdev_id}'",
                vendor_code=e.code,
                vendor_message=e.vendor_message,
            ) from None

    def _vnpu(self, partition: PartitionInfo) -> tuple[_Chip, VdevInfo]:
        """The live vNPU behind ``partition``; NotFound when it is gone."""
        chip = self._entry(partition.device_native_id)
        self._alive(chip)
        gone = NotFound(
            f"no Ascend vNPU {partition.native_id}: it no longer exists (already destroyed?)"
        )
        try:
            _, template, vdev, phy = partition.native_id.rsplit("-", 3)
            vdev_id, phy_id = int(vdev), int(phy)
        except ValueError:
            raise gone from None
        if phy_id != chip.phy_id:
            raise gone
        try:
            v = self.driver.vdevice_info(chip.card_id, chip.device_id, vdev_id)
        except DcmiError as e:
            if e.code == ERR_INVALID_DEVICE_ID:
                raise gone from None
            raise self._error(e, f"reading vNPU {vdev_id}") from None
        if v.name != template:
            raise gone  # the id was handed to a newer vNPU of another template
        return chip, v

    def destroy_partition(self, partition: PartitionInfo) -> None:
        chip, v = self._vnpu(partition)
        if v.is_container_used:
            raise InUse(
                f"vNPU {partition.native_id} is mounted in a running container; stop the "
                "container first"
            )
        try:
            self.driver.destroy_vdevice(chip.card_id, chip.device_id, v.vdev_id)
        except DcmiError as e:
            if e.code == ERR_INVALID_DEVICE_ID:
                raise NotFound(
                    f"no Ascend vNPU {partition.native_id}: it was destroyed meanwhile",
                    vendor_code=e.code,
                    vendor_message=e.vendor_message,
                ) from None
            raise self._error(e, f"destroying vNPU {partition.native_id}") from None

    # -- SPI: telemetry, visibility, sessions ----------------------------------------
    def telemetry(self, device: DeviceInfo) -> Telemetry:
        chip = self._chip(device)
        self._alive(chip)
        drv = self.driver
        c, d = chip.card_id, chip.device_id
        doing = f"reading telemetry of {device.native_id}"
        if chip.info.attributes.get(ATTR + "memoryType") == "HBM":
            hbm = self._do(doing, lambda: drv.hbm_info(c, d))
            used, total = hbm.memory_usage_mb, hbm.memory_size_mb
        else:
            mem = self._do(doing, lambda: drv.memory_info(c, d))
            used, total = mem.memory_size_mb - mem.memory_available_mb, mem.memory_size_mb
        util = self._optional(doing, lambda: drv.utilization_rate(c, d, UTILIZATION_AICORE))
        temp = self._optional(doing, lambda: drv.temperature(c, d))
        power = self._optional(doing, lambda: drv.power_decawatts(c, d))
        return Telemetry(
            memory_used_bytes=used * MIB,
            memory_total_bytes=total * MIB,
            utilization_percent=None if util is None else float(util),
            temperature_c=None if temp is None else float(temp),
            power_w=None if power is None else power / 10.0,
        )

    def _optional(self, doing: str, call: Callable[[], int]) -> int | None:
        try:
            return call()
        except DcmiError as e:
            if e.code in (ERR_NOT_SUPPORT, ERR_NOT_SUPPORT_IN_CONTAINER):
                return None
            raise self._error(e, doing) from None
        except DcmiUnavailable:
            return None

    def _resolve(self, target: Target) -> tuple[_Chip, VdevInfo | None]:
        if isinstance(target, PartitionInfo):
            return self._vnpu(target)
        if isinstance(target, DeviceInfo):
            chip = self._chip(target)
            self._alive(chip)
            return chip, None
        raise InvalidRequest(f"not a device or partition: {target!r}")

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        """Whole devices: ``ASCEND_RT_VISIBLE_DEVICES`` with their logical ids.

        A vNPU is reached only through the Ascend container runtime, which mounts
        ``/dev/davinci<vNPU id>`` and nothing else (``ASCEND_VISIBLE_DEVICES=<vNPU id>``,
        ``ASCEND_RUNTIME_OPTIONS=VIRTUAL``); inside, CANN numbers it 0. The hard split
        gives a multi-device request whole devices only, so a vNPU is always alone.
        """
        if not targets:
            raise InvalidRequest("name at least one Ascend device or vNPU to make visible")
        resolved = [self._resolve(t) for t in targets]
        keys = [(c.logic_id, v.vdev_id if v else None) for c, v in resolved]
        if len(set(keys)) != len(keys):
            raise InvalidRequest("a device or vNPU is named twice; name each target once")
        vnpus = [v for _, v in resolved if v is not None]
        if vnpus:
            if len(resolved) > 1:
                raise InvalidRequest(
                    "a vNPU is used alone: Ascend gives multi-device requests whole devices "
                    "only; ask for whole devices or a single vNPU"
                )
            return {
                RUNTIME_VISIBLE: str(vnpus[0].vdev_id),
                RUNTIME_OPTIONS: "VIRTUAL",
                RT_VISIBLE: "0",
            }
        return {RT_VISIBLE: ",".join(str(c.logic_id) for c, _ in sorted(resolved, key=_logic))}

    def container_edits(self, target: Target) -> ContainerEdits:
        """``/dev/davinci<phy id>`` for a chip, ``/dev/davinci<vNPU id>`` for a vNPU (as the
        Ascend container runtime mounts it), and the managers every NPU container needs."""
        from accelpool.container import ContainerEdits, node

        env = self.visibility_env([target])
        chip, v = self._resolve(target)
        number = v.vdev_id if v is not None else chip.phy_id
        return ContainerEdits(
            env=env,
            device_nodes=(node(self, f"/dev/davinci{number}"),),
            shared_device_nodes=tuple(node(self, p) for p in SHARED_NODES),
        )

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        """``CANNExecutionProvider`` on the first visible NPU, limited to the target's memory."""
        chip, v = self._resolve(target)
        limit = v.memory_mb * MIB if v is not None else chip.info.memory_bytes
        return OnnxPlacement(
            (
                ExecutionProvider(CANN_PROVIDER, {"device_id": 0, "npu_mem_limit": limit}),
                ExecutionProvider("CPUExecutionProvider"),
            )
        )


def _logic(item: tuple[_Chip, VdevInfo | None]) -> int:
    return item[0].logic_id
