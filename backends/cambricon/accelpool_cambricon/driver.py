"""The CNDev driver interface the Cambricon backend talks to.

Two implementations sit behind it: :class:`accelpool_cambricon.cndev.CndevLibrary`, a
thin ctypes binding to Cambricon's ``libcndev.so``, and
:class:`accelpool_cambricon.sim.SimulatedCndev`, a simulator with MIM profiles and
dynamic SMLU. Every method mirrors one CNDev C function (named in its docstring),
takes CNDev's device handle (``cndevDevice_t``) or MLU instance handle
(``cndevMluInstance_t``), and raises :class:`CndevError` with CNDev's return code when
the call fails.

Signatures follow ``cndev.h`` as vendored in Cambricon/cambricon-k8s-device-plugin
(``device-plugin/pkg/cndev/include/cndev.h``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from accelpool_cambricon.library import (  # re-exported: the driver interface's vocabulary
    CNDEV_ERROR_DUPLICATE,
    CNDEV_ERROR_IN_PROBLEM,
    CNDEV_ERROR_IN_USE,
    CNDEV_ERROR_INSUFFICIENT_SPACE,
    CNDEV_ERROR_INVALID_ARGUMENT,
    CNDEV_ERROR_INVALID_DEVICE_ID,
    CNDEV_ERROR_INVALID_LINK,
    CNDEV_ERROR_LOW_DRIVER_VERSION,
    CNDEV_ERROR_MALLOC,
    CNDEV_ERROR_NO_DEVICES,
    CNDEV_ERROR_NO_DRIVER,
    CNDEV_ERROR_NO_PERMISSION,
    CNDEV_ERROR_NOT_FOUND,
    CNDEV_ERROR_NOT_SUPPORTED,
    CNDEV_ERROR_TIMEOUT,
    CNDEV_ERROR_UNINITIALIZED,
    CNDEV_ERROR_UNKNOWN,
    CNDEV_ERROR_UNSUPPORTED_API_VERSION,
    CNDEV_SUCCESS,
    CNDEV_VERSION,
    ERROR_NAMES,
    HEALTH_GOOD,
    CndevError,
    CndevUnavailable,
)

__all__ = [
    "CNDEV_ERROR_DUPLICATE",
    "CNDEV_ERROR_INSUFFICIENT_SPACE",
    "CNDEV_ERROR_INVALID_ARGUMENT",
    "CNDEV_ERROR_INVALID_DEVICE_ID",
    "CNDEV_ERROR_INVALID_LINK",
    "CNDEV_ERROR_IN_PROBLEM",
    "CNDEV_ERROR_IN_USE",
    "CNDEV_ERROR_LOW_DRIVER_VERSION",
    "CNDEV_ERROR_MALLOC",
    "CNDEV_ERROR_NOT_FOUND",
    "CNDEV_ERROR_NOT_SUPPORTED",
    "CNDEV_ERROR_NO_DEVICES",
    "CNDEV_ERROR_NO_DRIVER",
    "CNDEV_ERROR_NO_PERMISSION",
    "CNDEV_ERROR_TIMEOUT",
    "CNDEV_ERROR_UNINITIALIZED",
    "CNDEV_ERROR_UNKNOWN",
    "CNDEV_ERROR_UNSUPPORTED_API_VERSION",
    "CNDEV_SUCCESS",
    "CNDEV_VERSION",
    "ERROR_NAMES",
    "HEALTH_GOOD",
    "CndevDriver",
    "CndevError",
    "CndevUnavailable",
    "MemoryUsage",
    "MimInstanceInfo",
    "MimProfileInfo",
    "SmluInstanceInfo",
    "SmluProfileInfo",
]


@dataclass(frozen=True)
class MemoryUsage:
    """``cndevMemoryInfo_t`` (MB)."""

    total_mb: int
    used_mb: int


@dataclass(frozen=True)
class MimProfileInfo:
    """``cndevMluInstanceProfileInfo_t``."""

    profile_id: int
    mlu_cores: int
    vpu: int
    jpu: int
    memory_mb: int
    name: str


@dataclass(frozen=True)
class MimInstanceInfo:
    """``cndevMluInstanceInfo_t``, the fields accelpool uses."""

    parent: int
    instance_id: int
    profile_id: int
    uuid: str
    start: int
    size: int
    mlu_cores: int
    memory_mb: int
    profile_name: str
    dev_node: str
    ipcm_dev_node: str
    instance_name: str


@dataclass(frozen=True)
class SmluProfileInfo:
    """``cndevSMluProfileInfo_t`` (``CNDEV_SMLU_MAX`` entries)."""

    profile_id: int
    name: str
    total_capacity: int
    remain_capacity: int
    quota: int
    memory_bytes: int


@dataclass(frozen=True)
class SmluInstanceInfo:
    """``cndevSMluInfo_t`` (``CNDEV_SMLU_MAX`` entries)."""

    profile_id: int
    instance_id: int
    uuid: str
    profile_name: str
    instance_name: str
    dev_node: str
    quota: int
    memory_bytes: int


class CndevDriver(abc.ABC):
    """What the Cambricon backend needs from CNDev, one method per C function."""

    @abc.abstractmethod
    def init(self) -> None:
        """``cndevRet_t cndevInit(int reserved)``."""

    @abc.abstractmethod
    def release(self) -> None:
        """``cndevRet_t cndevRelease()``."""

    @abc.abstractmethod
    def lib_version(self) -> str:
        """``cndevRet_t cndevGetLibVersion(cndevLibVersionInfo_t *libVerInfo)``."""

    @abc.abstractmethod
    def device_count(self) -> int:
        """``cndevRet_t cndevGetDeviceCount(cndevCardInfo_t *cardNum)``."""

    @abc.abstractmethod
    def device_handle(self, index: int) -> int:
        """``cndevRet_t cndevGetDeviceHandleByIndex(int index, cndevDevice_t *handle)``."""

    @abc.abstractmethod
    def uuid(self, device: int) -> str:
        """``cndevRet_t cndevGetUUID(cndevUUID_t *uuidInfo, cndevDevice_t device)``."""

    @abc.abstractmethod
    def card_name(self, device: int) -> int:
        """``cndevRet_t cndevGetCardName(cndevCardName_t *cardName, cndevDevice_t device)``."""

    @abc.abstractmethod
    def card_name_string(self, device: int) -> str:
        """``const char *cndevGetCardNameStringByDevId(cndevDevice_t device)``."""

    @abc.abstractmethod
    def card_sn(self, device: int) -> tuple[int, int]:
        """``cndevRet_t cndevGetCardSN(cndevCardSN_t *cardSN, cndevDevice_t device)``:
        ``(sn, motherBoardSn)``."""

    @abc.abstractmethod
    def memory_usage(self, device: int) -> MemoryUsage:
        """``cndevRet_t cndevGetMemoryUsage(cndevMemoryInfo_t *memInfo, cndevDevice_t device)``."""

    @abc.abstractmethod
    def core_count(self, device: int) -> int:
        """``cndevRet_t cndevGetCoreCount(cndevCardCoreCount_t *cardCoreCount,
        cndevDevice_t device)``."""

    @abc.abstractmethod
    def cluster_count(self, device: int) -> int:
        """``cndevRet_t cndevGetClusterCount(cndevCardClusterCount_t *clusCount,
        cndevDevice_t device)``."""

    @abc.abstractmethod
    def health(self, device: int) -> int:
        """``cndevRet_t cndevGetCardHealthState(cndevCardHealthState_t *cardHealthState,
        cndevDevice_t device)``: the ``health`` flag (1 = good)."""

    @abc.abstractmethod
    def utilization(self, device: int) -> int:
        """``cndevRet_t cndevGetDeviceUtilizationInfo(cndevUtilizationInfo_t *utilInfo,
        cndevDevice_t device)``: ``averageCoreUtilization``."""

    @abc.abstractmethod
    def temperature(self, device: int) -> int:
        """``cndevRet_t cndevGetTemperatureInfo(cndevTemperatureInfo_t *tempInfo,
        cndevDevice_t device)``: ``board``."""

    @abc.abstractmethod
    def mim_mode(self, device: int) -> bool:
        """``cndevRet_t cndevGetMimMode(cndevMimMode_t *mode, cndevDevice_t device)``."""

    @abc.abstractmethod
    def smlu_mode(self, device: int) -> bool:
        """``cndevRet_t cndevGetSMLUMode(cndevSMLUMode_t *mode, cndevDevice_t device)``."""

    # -- MIM --------------------------------------------------------------------
    @abc.abstractmethod
    def mim_profile_info(self, device: int, profile_type: int) -> MimProfileInfo:
        """``cndevRet_t cndevGetMluInstanceProfileInfo(cndevMluInstanceProfileInfo_t *,
        int profile, cndevDevice_t device)``."""

    @abc.abstractmethod
    def mim_max_count(self, device: int, profile_id: int) -> int:
        """``cndevRet_t cndevGetMaxMluInstanceCount(int *count, int profileId,
        cndevDevice_t device)``."""

    @abc.abstractmethod
    def mim_remaining_capacity(self, device: int, profile_id: int) -> int:
        """``cndevRet_t cndevGetMluInstanceRemainingCapacity(int *count, int profileId,
        cndevDevice_t device)``."""

    @abc.abstractmethod
    def mim_possible_placements(self, device: int, profile_id: int) -> list[tuple[int, int]]:
        """``cndevRet_t cndevGetMluInstancePossiblePlacements(int *count,
        cndevMluInstancePlacement_t *placement, int profileId, cndevDevice_t device)``."""

    @abc.abstractmethod
    def create_mim(
        self, device: int, profile_id: int, name: str, placement: tuple[int, int] | None = None
    ) -> int:
        """``cndevCreateMluInstanceByProfileId(cndevMluInstance_t *miHandle, unsigned int
        profileId, cndevDevice_t device, char *instanceName)``, or
        ``cndevCreateMluInstanceByProfileIdWithPlacement(cndevMluInstancePlacement_t *, ...)``
        when ``placement`` is ``(start, size)``."""

    @abc.abstractmethod
    def mim_instance_info(self, mi_handle: int) -> MimInstanceInfo:
        """``cndevRet_t cndevGetMluInstanceInfo(cndevMluInstanceInfo_t *miInfo,
        cndevMluInstance_t miHandle)``."""

    @abc.abstractmethod
    def all_mim_instances(self, device: int) -> list[MimInstanceInfo]:
        """``cndevRet_t cndevGetAllMluInstanceInfo(int *count, cndevMluInstanceInfo_t *miInfo,
        cndevDevice_t device)``."""

    @abc.abstractmethod
    def mim_instance_by_index(self, device: int, index: int) -> int:
        """``cndevRet_t cndevGetMluInstanceByIndex(cndevMluInstance_t *miHandle, int index,
        cndevDevice_t device)``."""

    @abc.abstractmethod
    def destroy_mim(self, mi_handle: int) -> None:
        """``cndevRet_t cndevDestroyMluInstanceByHandle(cndevMluInstance_t miHandle)``."""

    # -- dynamic SMLU --------------------------------------------------------------
    @abc.abstractmethod
    def create_smlu_profile(self, device: int, quota: int, memory_bytes: int) -> int:
        """``cndevRet_t cndevCreateSMluProfileInfo(cndevSMluSet_t *profileInfo, int *profileId,
        cndevDevice_t device)``."""

    @abc.abstractmethod
    def destroy_smlu_profile(self, device: int, profile_id: int) -> None:
        """``cndevRet_t cndevDestroySMluProfileInfo(int profileId, cndevDevice_t device)``."""

    @abc.abstractmethod
    def smlu_profile_ids(self, device: int) -> list[int]:
        """``cndevRet_t cndevGetSMluProfileIdInfo(cndevSMluProfileIdInfo_t *profileID,
        cndevDevice_t device)``."""

    @abc.abstractmethod
    def smlu_profile_info(self, device: int, profile_id: int) -> SmluProfileInfo:
        """``cndevRet_t cndevGetSMluProfileInfo(cndevSMluProfileInfo_t *profileInfo,
        int profile, cndevDevice_t device)``."""

    @abc.abstractmethod
    def create_smlu_instance(self, device: int, profile_id: int, name: str) -> int:
        """``cndevRet_t cndevCreateSMluInstanceByProfileId(cndevMluInstance_t *miHandle,
        unsigned int profileId, cndevDevice_t device, char *name)``."""

    @abc.abstractmethod
    def smlu_instance_info(self, mi_handle: int) -> SmluInstanceInfo:
        """``cndevRet_t cndevGetSMluInstanceInfo(cndevSMluInfo_t *smluInfo,
        cndevMluInstance_t miHandle)``."""

    @abc.abstractmethod
    def all_smlu_instances(self, device: int) -> list[SmluInstanceInfo]:
        """``cndevRet_t cndevGetAllSMluInstanceInfo(int *count, cndevSMluInfo_t *smluInfo,
        cndevDevice_t device)``."""

    @abc.abstractmethod
    def destroy_smlu_instance(self, mi_handle: int) -> None:
        """``cndevRet_t cndevDestroySMluInstanceByHandle(cndevMluInstance_t miHandle)``."""

    def smlu_instance_handle(self, device: int, instance_id: int) -> int:
        """The ``cndevMluInstance_t`` of SMLU instance ``instance_id`` on ``device``.

        CNDev hands the handle out only at creation; this rebuilds it as
        ``(instance_id << 8) | device`` (the layout the device plugin's mock library
        returns). **Unverified** on hardware: the backend checks the handle's UUID
        with :meth:`smlu_instance_info` before destroying through it.
        """
        return (instance_id << 8) | device
