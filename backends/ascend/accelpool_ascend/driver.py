"""The DCMI driver interface the Ascend backend talks to.

Two implementations sit behind it: :class:`accelpool_ascend.dcmi.DcmiLibrary`, a thin
ctypes binding to Huawei's ``libdcmi.so``, and
:class:`accelpool_ascend.sim.SimulatedDcmi`, a simulator with the real chips' vNPU
templates. Every method mirrors one DCMI C function (named in its docstring), takes
DCMI's own ids (``card_id``, ``device_id``, logic and physical ids) and raises
:class:`DcmiError` with DCMI's return code when the call fails.

Signatures follow ``dcmi_interface_api.h`` (Ascend/mind-cluster,
``component/ascend-common/devmanager/dcmi``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from accelpool_ascend.library import (  # re-exported: the driver interface's vocabulary
    DCMI_OK,
    DIE_NDIE,
    DIE_VDIE,
    ERR_ABORT_OPERATE,
    ERR_CONFIG_INFO_NOT_EXIST,
    ERR_DEVICE_NOT_EXIST,
    ERR_FILE_OPERATE_FAIL,
    ERR_INNER_ERR,
    ERR_INVALID_DEVICE_ID,
    ERR_INVALID_PARAMETER,
    ERR_IOCTL_FAIL,
    ERR_IS_UPGRADING,
    ERR_MEM_OPERATE_FAIL,
    ERR_NOT_READY,
    ERR_NOT_SUPPORT,
    ERR_NOT_SUPPORT_IN_CONTAINER,
    ERR_OPER_NOT_PERMITTED,
    ERR_PARTITION_NOT_RIGHT,
    ERR_RECV_MSG_FAIL,
    ERR_RESET_FAIL,
    ERR_RESOURCE_OCCUPIED,
    ERR_SECURE_FUN_FAIL,
    ERR_SEND_MSG_FAIL,
    ERR_TIME_OUT,
    ERROR_NAMES,
    MAIN_CMD_VDEV_MNG,
    UTILIZATION_AICORE,
    VDEV_ID_AUTO,
    VMNG_SUB_CMD_GET_FREE_RESOURCE,
    VMNG_SUB_CMD_GET_TOTAL_RESOURCE,
    VMNG_SUB_CMD_GET_VDEV_RESOURCE,
    DcmiError,
    DcmiUnavailable,
)

__all__ = [
    "DCMI_OK",
    "DIE_NDIE",
    "DIE_VDIE",
    "ERROR_NAMES",
    "ERR_ABORT_OPERATE",
    "ERR_CONFIG_INFO_NOT_EXIST",
    "ERR_DEVICE_NOT_EXIST",
    "ERR_FILE_OPERATE_FAIL",
    "ERR_INNER_ERR",
    "ERR_INVALID_DEVICE_ID",
    "ERR_INVALID_PARAMETER",
    "ERR_IOCTL_FAIL",
    "ERR_IS_UPGRADING",
    "ERR_MEM_OPERATE_FAIL",
    "ERR_NOT_READY",
    "ERR_NOT_SUPPORT",
    "ERR_NOT_SUPPORT_IN_CONTAINER",
    "ERR_OPER_NOT_PERMITTED",
    "ERR_PARTITION_NOT_RIGHT",
    "ERR_RECV_MSG_FAIL",
    "ERR_RESET_FAIL",
    "ERR_RESOURCE_OCCUPIED",
    "ERR_SECURE_FUN_FAIL",
    "ERR_SEND_MSG_FAIL",
    "ERR_TIME_OUT",
    "MAIN_CMD_VDEV_MNG",
    "UTILIZATION_AICORE",
    "VDEV_ID_AUTO",
    "VMNG_SUB_CMD_GET_FREE_RESOURCE",
    "VMNG_SUB_CMD_GET_TOTAL_RESOURCE",
    "VMNG_SUB_CMD_GET_VDEV_RESOURCE",
    "ChipInfo",
    "DcmiDriver",
    "DcmiError",
    "DcmiUnavailable",
    "HbmInfo",
    "MemoryInfo",
    "SocResource",
    "VdevCreated",
    "VdevInfo",
]


@dataclass(frozen=True)
class ChipInfo:
    """``struct dcmi_chip_info``."""

    chip_type: str
    chip_name: str
    chip_ver: str
    aicore_cnt: int


@dataclass(frozen=True)
class MemoryInfo:
    """``struct dcmi_get_memory_info_stru`` (sizes in MB)."""

    memory_size_mb: int
    memory_available_mb: int
    utilization: int


@dataclass(frozen=True)
class HbmInfo:
    """``struct dcmi_hbm_info`` (sizes in MB)."""

    memory_size_mb: int
    memory_usage_mb: int
    temperature_c: int


@dataclass(frozen=True)
class VdevCreated:
    """``struct dcmi_create_vdev_out``."""

    vdev_id: int
    vfg_id: int


@dataclass(frozen=True)
class SocResource:
    """The computing part of ``struct dcmi_soc_total_resource`` / ``dcmi_soc_free_resource``.

    ``vdev_ids`` is filled for the total-resource query only.
    """

    aicore: float
    aicpu: int
    memory_mb: int
    vdev_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class VdevInfo:
    """``struct dcmi_vdev_query_info``, the fields accelpool uses."""

    vdev_id: int
    name: str
    status: int
    is_container_used: int
    vfg_id: int
    aicore: float
    aicpu: int
    memory_mb: int


class DcmiDriver(abc.ABC):
    """What the Ascend backend needs from DCMI, one method per C function."""

    @abc.abstractmethod
    def init(self) -> None:
        """``int dcmi_init(void)``."""

    @abc.abstractmethod
    def version(self) -> str:
        """``int dcmi_get_dcmi_version(char *dcmi_ver, int buf_size)``."""

    @abc.abstractmethod
    def card_list(self) -> list[int]:
        """``int dcmi_get_card_list(int *card_num, int *card_list, int list_len)``."""

    @abc.abstractmethod
    def device_num_in_card(self, card_id: int) -> int:
        """``int dcmi_get_device_num_in_card(int card_id, int *device_num)``."""

    @abc.abstractmethod
    def logic_id(self, card_id: int, device_id: int) -> int:
        """``int dcmi_get_device_logic_id(int *device_logic_id, int card_id, int device_id)``."""

    @abc.abstractmethod
    def phy_id_from_logic_id(self, logic_id: int) -> int:
        """``int dcmi_get_device_phyid_from_logicid(unsigned int logicid, unsigned int *phyid)``."""

    @abc.abstractmethod
    def chip_info(self, card_id: int, device_id: int) -> ChipInfo:
        """``int dcmi_get_device_chip_info(int card_id, int device_id,
        struct dcmi_chip_info *)``."""

    @abc.abstractmethod
    def die_id(self, card_id: int, device_id: int, die_type: int = DIE_VDIE) -> tuple[int, ...]:
        """``int dcmi_get_device_die_v2(int card_id, int device_id, enum dcmi_die_type,
        struct dcmi_die_id *)``: five 32-bit words."""

    @abc.abstractmethod
    def memory_info(self, card_id: int, device_id: int) -> MemoryInfo:
        """``int dcmi_get_device_memory_info_v3(int card_id, int device_id,
        struct dcmi_get_memory_info_stru *)``."""

    @abc.abstractmethod
    def hbm_info(self, card_id: int, device_id: int) -> HbmInfo:
        """``int dcmi_get_device_hbm_info(int card_id, int device_id, struct dcmi_hbm_info *)``."""

    @abc.abstractmethod
    def health(self, card_id: int, device_id: int) -> int:
        """``int dcmi_get_device_health(int card_id, int device_id, unsigned int *health)``."""

    @abc.abstractmethod
    def utilization_rate(self, card_id: int, device_id: int, input_type: int) -> int:
        """``int dcmi_get_device_utilization_rate(int card_id, int device_id, int input_type,
        unsigned int *utilization_rate)``."""

    @abc.abstractmethod
    def temperature(self, card_id: int, device_id: int) -> int:
        """``int dcmi_get_device_temperature(int card_id, int device_id, int *temperature)``."""

    @abc.abstractmethod
    def power_decawatts(self, card_id: int, device_id: int) -> int:
        """``int dcmi_get_device_power_info(int card_id, int device_id, int *power)``
        (units of 0.1 W)."""

    @abc.abstractmethod
    def create_vdevice(
        self, card_id: int, device_id: int, template_name: str, vdev_id: int = VDEV_ID_AUTO
    ) -> VdevCreated:
        """``int dcmi_create_vdevice(int card_id, int device_id,
        struct dcmi_create_vdev_res_stru *vdev, struct dcmi_create_vdev_out *out)``."""

    @abc.abstractmethod
    def destroy_vdevice(self, card_id: int, device_id: int, vdev_id: int) -> None:
        """``int dcmi_set_destroy_vdevice(int card_id, int device_id, unsigned int vdevid)``."""

    @abc.abstractmethod
    def total_resource(self, card_id: int, device_id: int) -> SocResource:
        """``dcmi_get_device_info(card, dev, DCMI_MAIN_CMD_VDEV_MNG,
        VMNG_SUB_CMD_GET_TOTAL_RESOURCE, struct dcmi_soc_total_resource *, &size)``."""

    @abc.abstractmethod
    def free_resource(self, card_id: int, device_id: int) -> SocResource:
        """``dcmi_get_device_info(card, dev, DCMI_MAIN_CMD_VDEV_MNG,
        VMNG_SUB_CMD_GET_FREE_RESOURCE, struct dcmi_soc_free_resource *, &size)``."""

    @abc.abstractmethod
    def vdevice_info(self, card_id: int, device_id: int, vdev_id: int) -> VdevInfo:
        """``dcmi_get_device_info(card, dev, DCMI_MAIN_CMD_VDEV_MNG,
        VMNG_SUB_CMD_GET_VDEV_RESOURCE, struct dcmi_vdev_query_stru *, &size)``."""

    def close(self) -> None:  # noqa: B027 - DCMI has no de-init; simulators may hold nothing
        """Release what the driver holds."""
