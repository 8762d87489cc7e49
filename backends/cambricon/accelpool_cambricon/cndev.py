"""A thin ctypes binding to Cambricon's CNDev (``libcndev.so``).

Written from the C declarations in ``cndev.h`` (as vendored by
Cambricon/cambricon-k8s-device-plugin, ``device-plugin/pkg/cndev/include/cndev.h``);
each method of :class:`CndevLibrary` quotes the function it calls. Structures carry
``version = CNDEV_VERSION_6`` as the device plugin sets it. The library is opened on
first use, each function pointer is looked up (and typed) the first time it is called,
and every non-zero ``cndevRet_t`` becomes a
:class:`~accelpool_cambricon.driver.CndevError` carrying CNDev's code.

This binding has not run against a real ``libcndev.so`` in this project's CI (no MLU
there); ``docs/backends/cambricon.md`` lists what a vendor must check.
"""

from __future__ import annotations

import ctypes
from ctypes import Structure, c_int
from typing import Any

from accelpool.native import c_text
from accelpool_cambricon.cndev_structs import (
    MAX_INSTANCES,
    NAME_SIZE,
    SIGNATURES,
    SMLU_MAX,
    cndevCardClusterCount_t,
    cndevCardCoreCount_t,
    cndevCardHealthState_t,
    cndevCardInfo_t,
    cndevCardName_t,
    cndevCardSN_t,
    cndevLibVersionInfo_t,
    cndevMemoryInfo_t,
    cndevMimMode_t,
    cndevMluInstanceInfo_t,
    cndevMluInstancePlacement_t,
    cndevMluInstanceProfileInfo_t,
    cndevSMluInfo_t,
    cndevSMLUMode_t,
    cndevSMluProfileIdInfo_t,
    cndevSMluProfileInfo_t,
    cndevSMluSet_t,
    cndevTemperatureInfo_t,
    cndevUtilizationInfo_t,
    cndevUUID_t,
)
from accelpool_cambricon.driver import (
    CNDEV_ERROR_INSUFFICIENT_SPACE,
    CNDEV_ERROR_INVALID_ARGUMENT,
    CNDEV_VERSION,
    CndevDriver,
    CndevError,
    MemoryUsage,
    MimInstanceInfo,
    MimProfileInfo,
    SmluInstanceInfo,
    SmluProfileInfo,
)
from accelpool_cambricon.library import DEFAULT_LOCATIONS as DEFAULT_LOCATIONS
from accelpool_cambricon.library import LIBRARY_ENV as LIBRARY_ENV
from accelpool_cambricon.library import LIBRARY_NAME as LIBRARY_NAME
from accelpool_cambricon.library import CndevLoader


def _uuid(raw: Any) -> str:
    return c_text(bytes(raw))


def _versioned(cls: type[Structure]) -> Any:
    s = cls()
    s.version = CNDEV_VERSION
    return s


def _mim_info(m: cndevMluInstanceInfo_t) -> MimInstanceInfo:
    return MimInstanceInfo(
        parent=int(m.parentDevice),
        instance_id=int(m.instanceId),
        profile_id=int(m.profileId),
        uuid=_uuid(m.uuid),
        start=int(m.placement.start),
        size=int(m.placement.size),
        mlu_cores=int(m.mluCoreCount),
        memory_mb=int(m.memorySize),
        profile_name=c_text(m.profileName),
        dev_node=c_text(m.devNodeName),
        ipcm_dev_node=c_text(m.ipcmDevNodeName),
        instance_name=c_text(m.instanceName),
    )


def _smlu_info(s: cndevSMluInfo_t) -> SmluInstanceInfo:
    return SmluInstanceInfo(
        profile_id=int(s.profileId),
        instance_id=int(s.instanceId),
        uuid=_uuid(s.uuid),
        profile_name=c_text(s.profileName),
        instance_name=c_text(s.instanceName),
        dev_node=c_text(s.devNodeName),
        quota=int(s.mluQuota[SMLU_MAX]),
        memory_bytes=int(s.memorySize[SMLU_MAX]),
    )


class CndevLibrary(CndevLoader, CndevDriver):
    """:class:`CndevDriver` over the real ``libcndev.so``.

    ``lib`` replaces the loaded library (tests pass an object whose attributes are
    the C functions); ``path`` names the shared object to open. Loading and its errors
    are :class:`~accelpool_cambricon.library.CndevLoader`'s; this class adds the
    signatures.
    """

    signatures = SIGNATURES

    # -- CndevDriver: identity -----------------------------------------------
    def init(self) -> None:
        """``cndevRet_t cndevInit(int reserved)``."""
        self.call("cndevInit", 0)

    def release(self) -> None:
        """``cndevRet_t cndevRelease()``."""
        self.call("cndevRelease")

    def lib_version(self) -> str:
        """``cndevRet_t cndevGetLibVersion(cndevLibVersionInfo_t *libVerInfo)``."""
        info = _versioned(cndevLibVersionInfo_t)
        self.call("cndevGetLibVersion", ctypes.pointer(info))
        return f"{info.libMajorVersion}.{info.libMinorVersion}.{info.libBuildVersion}"

    def device_count(self) -> int:
        """``cndevRet_t cndevGetDeviceCount(cndevCardInfo_t *cardNum)``."""
        info = _versioned(cndevCardInfo_t)
        self.call("cndevGetDeviceCount", ctypes.pointer(info))
        return int(info.number)

    def device_handle(self, index: int) -> int:
        """``cndevRet_t cndevGetDeviceHandleByIndex(int index, cndevDevice_t *handle)``."""
        out = c_int(0)
        self.call("cndevGetDeviceHandleByIndex", index, ctypes.pointer(out))
        return int(out.value)

    def uuid(self, device: int) -> str:
        """``cndevRet_t cndevGetUUID(cndevUUID_t *uuidInfo, cndevDevice_t device)``."""
        info = _versioned(cndevUUID_t)
        self.call("cndevGetUUID", ctypes.pointer(info), device)
        return _uuid(info.uuid)

    def card_name(self, device: int) -> int:
        """``cndevRet_t cndevGetCardName(cndevCardName_t *cardName, cndevDevice_t device)``."""
        info = _versioned(cndevCardName_t)
        self.call("cndevGetCardName", ctypes.pointer(info), device)
        return int(info.id)

    def card_name_string(self, device: int) -> str:
        """``const char *cndevGetCardNameStringByDevId(cndevDevice_t device)``."""
        raw = self.function("cndevGetCardNameStringByDevId")(device)
        return c_text(raw) if raw else ""

    def card_sn(self, device: int) -> tuple[int, int]:
        """``cndevRet_t cndevGetCardSN(cndevCardSN_t *cardSN, cndevDevice_t device)``."""
        info = _versioned(cndevCardSN_t)
        self.call("cndevGetCardSN", ctypes.pointer(info), device)
        return int(info.sn), int(info.motherBoardSn)

    def memory_usage(self, device: int) -> MemoryUsage:
        """``cndevRet_t cndevGetMemoryUsage(cndevMemoryInfo_t *memInfo, cndevDevice_t device)``."""
        info = _versioned(cndevMemoryInfo_t)
        self.call("cndevGetMemoryUsage", ctypes.pointer(info), device)
        return MemoryUsage(int(info.physicalMemoryTotal), int(info.physicalMemoryUsed))

    def core_count(self, device: int) -> int:
        """``cndevRet_t cndevGetCoreCount(cndevCardCoreCount_t *, cndevDevice_t device)``."""
        info = _versioned(cndevCardCoreCount_t)
        self.call("cndevGetCoreCount", ctypes.pointer(info), device)
        return int(info.count)

    def cluster_count(self, device: int) -> int:
        """``cndevRet_t cndevGetClusterCount(cndevCardClusterCount_t *, cndevDevice_t)``."""
        info = _versioned(cndevCardClusterCount_t)
        self.call("cndevGetClusterCount", ctypes.pointer(info), device)
        return int(info.count)

    def health(self, device: int) -> int:
        """``cndevRet_t cndevGetCardHealthState(cndevCardHealthState_t *, cndevDevice_t)``."""
        info = _versioned(cndevCardHealthState_t)
        self.call("cndevGetCardHealthState", ctypes.pointer(info), device)
        return int(info.health)

    def utilization(self, device: int) -> int:
        """``cndevRet_t cndevGetDeviceUtilizationInfo(cndevUtilizationInfo_t *, cndevDevice_t)``."""
        info = _versioned(cndevUtilizationInfo_t)
        self.call("cndevGetDeviceUtilizationInfo", ctypes.pointer(info), device)
        return int(info.averageCoreUtilization)

    def temperature(self, device: int) -> int:
        """``cndevRet_t cndevGetTemperatureInfo(cndevTemperatureInfo_t *, cndevDevice_t)``."""
        info = _versioned(cndevTemperatureInfo_t)
        self.call("cndevGetTemperatureInfo", ctypes.pointer(info), device)
        return int(info.board)

    def mim_mode(self, device: int) -> bool:
        """``cndevRet_t cndevGetMimMode(cndevMimMode_t *mode, cndevDevice_t device)``."""
        info = _versioned(cndevMimMode_t)
        self.call("cndevGetMimMode", ctypes.pointer(info), device)
        return int(info.mimMode) == 1

    def smlu_mode(self, device: int) -> bool:
        """``cndevRet_t cndevGetSMLUMode(cndevSMLUMode_t *mode, cndevDevice_t device)``."""
        info = _versioned(cndevSMLUMode_t)
        self.call("cndevGetSMLUMode", ctypes.pointer(info), device)
        return int(info.smluMode) == 1

    # -- CndevDriver: MIM -----------------------------------------------------
    def mim_profile_info(self, device: int, profile_type: int) -> MimProfileInfo:
        """``cndevRet_t cndevGetMluInstanceProfileInfo(cndevMluInstanceProfileInfo_t *,
        int profile, cndevDevice_t device)``."""
        info = _versioned(cndevMluInstanceProfileInfo_t)
        self.call("cndevGetMluInstanceProfileInfo", ctypes.pointer(info), profile_type, device)
        return MimProfileInfo(
            int(info.profileId),
            int(info.mluCoreCount),
            int(info.vpuCount),
            int(info.jpuCount),
            int(info.memorySize),
            c_text(info.name),
        )

    def mim_max_count(self, device: int, profile_id: int) -> int:
        """``cndevRet_t cndevGetMaxMluInstanceCount(int *count, int profileId, cndevDevice_t)``."""
        out = c_int(0)
        self.call("cndevGetMaxMluInstanceCount", ctypes.pointer(out), profile_id, device)
        return int(out.value)

    def mim_remaining_capacity(self, device: int, profile_id: int) -> int:
        """``cndevRet_t cndevGetMluInstanceRemainingCapacity(int *count, int profileId,
        cndevDevice_t device)``."""
        out = c_int(0)
        self.call("cndevGetMluInstanceRemainingCapacity", ctypes.pointer(out), profile_id, device)
        return int(out.value)

    def mim_possible_placements(self, device: int, profile_id: int) -> list[tuple[int, int]]:
        """``cndevRet_t cndevGetMluInstancePossiblePlacements(int *count,
        cndevMluInstancePlacement_t *placement, int profileId, cndevDevice_t device)``."""
        count = c_int(MAX_INSTANCES)
        buf = (cndevMluInstancePlacement_t * MAX_INSTANCES)()
        for p in buf:
            p.version = CNDEV_VERSION
        self.call(
            "cndevGetMluInstancePossiblePlacements", ctypes.pointer(count), buf, profile_id, device
        )
        return [(int(buf[i].start), int(buf[i].size)) for i in range(min(count.value, len(buf)))]

    def create_mim(
        self, device: int, profile_id: int, name: str, placement: tuple[int, int] | None = None
    ) -> int:
        """``cndevCreateMluInstanceByProfileId(cndevMluInstance_t *, unsigned int profileId,
        cndevDevice_t, char *instanceName)`` or its ``...WithPlacement`` form."""
        handle = c_int(0)
        encoded = name.encode()
        if len(encoded) >= NAME_SIZE:
            raise CndevError(CNDEV_ERROR_INVALID_ARGUMENT, "cndevCreateMluInstanceByProfileId")
        if placement is None:
            self.call(
                "cndevCreateMluInstanceByProfileId",
                ctypes.pointer(handle),
                profile_id,
                device,
                encoded,
            )
        else:
            where = cndevMluInstancePlacement_t(CNDEV_VERSION, placement[0], placement[1])
            self.call(
                "cndevCreateMluInstanceByProfileIdWithPlacement",
                ctypes.pointer(where),
                ctypes.pointer(handle),
                profile_id,
                device,
                encoded,
            )
        return int(handle.value)

    def mim_instance_info(self, mi_handle: int) -> MimInstanceInfo:
        """``cndevRet_t cndevGetMluInstanceInfo(cndevMluInstanceInfo_t *miInfo,
        cndevMluInstance_t miHandle)``."""
        info = _versioned(cndevMluInstanceInfo_t)
        self.call("cndevGetMluInstanceInfo", ctypes.pointer(info), mi_handle)
        return _mim_info(info)

    def all_mim_instances(self, device: int) -> list[MimInstanceInfo]:
        """``cndevRet_t cndevGetAllMluInstanceInfo(int *count, cndevMluInstanceInfo_t *miInfo,
        cndevDevice_t device)``; retried once with the size CNDev asks for."""
        size = 16
        for _ in range(2):
            count = c_int(size)
            buf = (cndevMluInstanceInfo_t * size)()
            buf[0].version = CNDEV_VERSION
            try:
                self.call("cndevGetAllMluInstanceInfo", ctypes.pointer(count), buf, device)
            except CndevError as e:
                if e.code == CNDEV_ERROR_INSUFFICIENT_SPACE and count.value > size:
                    size = count.value
                    continue
                raise
            return [_mim_info(buf[i]) for i in range(min(count.value, size))]
        raise CndevError(CNDEV_ERROR_INSUFFICIENT_SPACE, "cndevGetAllMluInstanceInfo")

    def mim_instance_by_index(self, device: int, index: int) -> int:
        """``cndevRet_t cndevGetMluInstanceByIndex(cndevMluInstance_t *miHandle, int index,
        cndevDevice_t device)``."""
        out = c_int(0)
        self.call("cndevGetMluInstanceByIndex", ctypes.pointer(out), index, device)
        return int(out.value)

    def destroy_mim(self, mi_handle: int) -> None:
        """``cndevRet_t cndevDestroyMluInstanceByHandle(cndevMluInstance_t miHandle)``."""
        self.call("cndevDestroyMluInstanceByHandle", mi_handle)

    # -- CndevDriver: dynamic SMLU ---------------------------------------------
    def create_smlu_profile(self, device: int, quota: int, memory_bytes: int) -> int:
        """``cndevRet_t cndevCreateSMluProfileInfo(cndevSMluSet_t *profileInfo,
        int *profileId, cndevDevice_t device)``."""
        request = cndevSMluSet_t(CNDEV_VERSION, quota, memory_bytes)
        out = c_int(0)
        self.call(
            "cndevCreateSMluProfileInfo", ctypes.pointer(request), ctypes.pointer(out), device
        )
        return int(out.value)

    def destroy_smlu_profile(self, device: int, profile_id: int) -> None:
        """``cndevRet_t cndevDestroySMluProfileInfo(int profileId, cndevDevice_t device)``."""
        self.call("cndevDestroySMluProfileInfo", profile_id, device)

    def smlu_profile_ids(self, device: int) -> list[int]:
        """``cndevRet_t cndevGetSMluProfileIdInfo(cndevSMluProfileIdInfo_t *, cndevDevice_t)``."""
        info = _versioned(cndevSMluProfileIdInfo_t)
        self.call("cndevGetSMluProfileIdInfo", ctypes.pointer(info), device)
        return [int(info.profileId[i]) for i in range(min(int(info.count), 128))]

    def smlu_profile_info(self, device: int, profile_id: int) -> SmluProfileInfo:
        """``cndevRet_t cndevGetSMluProfileInfo(cndevSMluProfileInfo_t *profileInfo,
        int profile, cndevDevice_t device)``."""
        info = _versioned(cndevSMluProfileInfo_t)
        self.call("cndevGetSMluProfileInfo", ctypes.pointer(info), profile_id, device)
        return SmluProfileInfo(
            int(info.profileId),
            c_text(info.name),
            int(info.totalCapacity),
            int(info.remainCapacity),
            int(info.mluQuota[SMLU_MAX]),
            int(info.memorySize[SMLU_MAX]),
        )

    def create_smlu_instance(self, device: int, profile_id: int, name: str) -> int:
        """``cndevRet_t cndevCreateSMluInstanceByProfileId(cndevMluInstance_t *miHandle,
        unsigned int profileId, cndevDevice_t device, char *name)``."""
        handle = c_int(0)
        self.call(
            "cndevCreateSMluInstanceByProfileId",
            ctypes.pointer(handle),
            profile_id,
            device,
            name.encode(),
        )
        return int(handle.value)

    def smlu_instance_info(self, mi_handle: int) -> SmluInstanceInfo:
        """``cndevRet_t cndevGetSMluInstanceInfo(cndevSMluInfo_t *smluInfo,
        cndevMluInstance_t miHandle)``."""
        info = _versioned(cndevSMluInfo_t)
        self.call("cndevGetSMluInstanceInfo", ctypes.pointer(info), mi_handle)
        return _smlu_info(info)

    def all_smlu_instances(self, device: int) -> list[SmluInstanceInfo]:
        """``cndevRet_t cndevGetAllSMluInstanceInfo(int *count, cndevSMluInfo_t *smluInfo,
        cndevDevice_t device)``."""
        count = c_int(MAX_INSTANCES)
        buf = (cndevSMluInfo_t * MAX_INSTANCES)()
        buf[0].version = CNDEV_VERSION
        self.call("cndevGetAllSMluInstanceInfo", ctypes.pointer(count), buf, device)
        return [_smlu_info(buf[i]) for i in range(min(count.value, MAX_INSTANCES))]

    def destroy_smlu_instance(self, mi_handle: int) -> None:
        """``cndevRet_t cndevDestroySMluInstanceByHandle(cndevMluInstance_t miHandle)``."""
        self.call("cndevDestroySMluInstanceByHandle", mi_handle)

    def error_string(self, code: int) -> str:
        """``const char *cndevGetErrorString(cndevRet_t errorId)``."""
        raw = self.function("cndevGetErrorString")(code)
        return c_text(raw) if raw else ""
