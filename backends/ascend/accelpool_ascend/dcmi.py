"""A thin ctypes binding to Huawei's DCMI (``libdcmi.so``).

Written from the C declarations in ``dcmi_interface_api.h`` (Ascend/mind-cluster,
``component/ascend-common/devmanager/dcmi``); each method of :class:`DcmiLibrary`
quotes the function it calls. The library is opened on first use, each function
pointer is looked up (and its ``argtypes``/``restype`` set) the first time it is
called, and every non-zero return code becomes a :class:`~accelpool_ascend.driver.DcmiError`
carrying DCMI's code. Nothing here interprets the numbers: that is the backend's job.

This binding has not run against a real ``libdcmi.so`` in this project's CI (no
Ascend hardware there); ``docs/backends/ascend.md`` lists what a vendor must check.
"""

from __future__ import annotations

import ctypes
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_float,
    c_int,
    c_uint,
    c_ulong,
    c_ulonglong,
    c_ushort,
    c_void_p,
    sizeof,
)
from typing import Any, ClassVar

from accelpool.native import c_text
from accelpool_ascend.driver import (
    DIE_VDIE,
    MAIN_CMD_VDEV_MNG,
    VDEV_ID_AUTO,
    VMNG_SUB_CMD_GET_FREE_RESOURCE,
    VMNG_SUB_CMD_GET_TOTAL_RESOURCE,
    VMNG_SUB_CMD_GET_VDEV_RESOURCE,
    ChipInfo,
    DcmiDriver,
    DcmiError,
    HbmInfo,
    MemoryInfo,
    SocResource,
    VdevCreated,
    VdevInfo,
)
from accelpool_ascend.library import DEFAULT_LOCATIONS as DEFAULT_LOCATIONS
from accelpool_ascend.library import LIBRARY_ENV as LIBRARY_ENV
from accelpool_ascend.library import LIBRARY_NAME as LIBRARY_NAME
from accelpool_ascend.library import DcmiLoader

MAX_CHIP_NAME_LEN = 32
TEMPLATE_NAME_LEN = 32
DIE_ID_COUNT = 5
DCMI_VDEV_RES_NAME_LEN = 16
DCMI_VDEV_SIZE = 20
DCMI_VDEV_FOR_RESERVE = 32
DCMI_SOC_SPLIT_MAX = 32
MAX_CARDS = 64
VERSION_LEN = 64


# -- structures (field order and types exactly as in dcmi_interface_api.h) ----------
class dcmi_chip_info(Structure):
    _fields_: ClassVar = [
        ("chip_type", c_char * MAX_CHIP_NAME_LEN),
        ("chip_name", c_char * MAX_CHIP_NAME_LEN),
        ("chip_ver", c_char * MAX_CHIP_NAME_LEN),
        ("aicore_cnt", c_uint),
    ]


class dcmi_die_id(Structure):
    _fields_: ClassVar = [("soc_die", c_uint * DIE_ID_COUNT)]


class dcmi_hbm_info(Structure):
    _fields_: ClassVar = [
        ("memory_size", c_ulonglong),
        ("freq", c_uint),
        ("memory_usage", c_ulonglong),
        ("temp", c_int),
        ("bandwith_util_rate", c_uint),
    ]


class dcmi_get_memory_info_stru(Structure):
    _fields_: ClassVar = [
        ("memory_size", c_ulonglong),
        ("memory_available", c_ulonglong),
        ("freq", c_uint),
        ("hugepagesize", c_ulong),
        ("hugepages_total", c_ulong),
        ("hugepages_free", c_ulong),
        ("utiliza", c_uint),
        ("reserve", c_char * 60),
    ]


class dcmi_base_resource(Structure):
    _fields_: ClassVar = [
        ("token", c_ulonglong),
        ("token_max", c_ulonglong),
        ("task_timeout", c_ulonglong),
        ("vfg_id", c_uint),
        ("vip_mode", ctypes.c_ubyte),
        ("reserved", ctypes.c_ubyte * (DCMI_VDEV_FOR_RESERVE - 1)),
    ]


class dcmi_computing_resource(Structure):
    _fields_: ClassVar = [
        ("aic", c_float),
        ("aiv", c_float),
        ("dsa", c_ushort),
        ("rtsq", c_ushort),
        ("acsq", c_ushort),
        ("cdqm", c_ushort),
        ("c_core", c_ushort),
        ("ffts", c_ushort),
        ("sdma", c_ushort),
        ("pcie_dma", c_ushort),
        ("memory_size", c_ulonglong),
        ("event_id", c_uint),
        ("notify_id", c_uint),
        ("stream_id", c_uint),
        ("model_id", c_uint),
        ("topic_schedule_aicpu", c_ushort),
        ("host_ctrl_cpu", c_ushort),
        ("host_aicpu", c_ushort),
        ("device_aicpu", c_ushort),
        ("topic_ctrl_cpu_slot", c_ushort),
        ("vdev_aicore_utilization", c_uint),
        ("vdev_memory_total", c_ulonglong),
        ("vdev_memory_free", c_ulonglong),
        ("reserved", ctypes.c_ubyte * (DCMI_VDEV_FOR_RESERVE - DCMI_VDEV_SIZE)),
    ]


class dcmi_media_resource(Structure):
    _fields_: ClassVar = [
        ("jpegd", c_float),
        ("jpege", c_float),
        ("vpc", c_float),
        ("vdec", c_float),
        ("pngd", c_float),
        ("venc", c_float),
        ("reserved", ctypes.c_ubyte * DCMI_VDEV_FOR_RESERVE),
    ]


class dcmi_create_vdev_res_stru(Structure):
    _fields_: ClassVar = [
        ("vdev_id", c_uint),
        ("vfg_id", c_uint),
        ("template_name", c_char * TEMPLATE_NAME_LEN),
        ("reserved", ctypes.c_ubyte * 64),
    ]


class dcmi_create_vdev_out(Structure):
    _fields_: ClassVar = [
        ("vdev_id", c_uint),
        ("pcie_bus", c_uint),
        ("pcie_device", c_uint),
        ("pcie_func", c_uint),
        ("vfg_id", c_uint),
        ("reserved", ctypes.c_ubyte * DCMI_VDEV_FOR_RESERVE),
    ]


class dcmi_vdev_query_info(Structure):
    _fields_: ClassVar = [
        ("name", c_char * DCMI_VDEV_RES_NAME_LEN),
        ("status", c_uint),
        ("is_container_used", c_uint),
        ("vfid", c_uint),
        ("vfg_id", c_uint),
        ("container_id", c_ulonglong),
        ("base", dcmi_base_resource),
        ("computing", dcmi_computing_resource),
        ("media", dcmi_media_resource),
    ]


class dcmi_vdev_query_stru(Structure):
    _fields_: ClassVar = [("vdev_id", c_uint), ("query_info", dcmi_vdev_query_info)]


class dcmi_soc_free_resource(Structure):
    _fields_: ClassVar = [
        ("vfg_num", c_uint),
        ("vfg_bitmap", c_uint),
        ("base", dcmi_base_resource),
        ("computing", dcmi_computing_resource),
        ("media", dcmi_media_resource),
    ]


class dcmi_soc_total_resource(Structure):
    _fields_: ClassVar = [
        ("vdev_num", c_uint),
        ("vdev_id", c_uint * DCMI_SOC_SPLIT_MAX),
        ("vfg_num", c_uint),
        ("vfg_bitmap", c_uint),
        ("base", dcmi_base_resource),
        ("computing", dcmi_computing_resource),
        ("media", dcmi_media_resource),
    ]


_P_INT = POINTER(c_int)
_P_UINT = POINTER(c_uint)

#: name -> argtypes; every DCMI function returns ``int`` (0 on success).
SIGNATURES: dict[str, list[Any]] = {
    "dcmi_init": [],
    "dcmi_get_dcmi_version": [POINTER(c_char), c_int],
    "dcmi_get_card_list": [_P_INT, _P_INT, c_int],
    "dcmi_get_device_num_in_card": [c_int, _P_INT],
    "dcmi_get_device_logic_id": [_P_INT, c_int, c_int],
    "dcmi_get_device_phyid_from_logicid": [c_uint, _P_UINT],
    "dcmi_get_device_chip_info": [c_int, c_int, POINTER(dcmi_chip_info)],
    "dcmi_get_device_die_v2": [c_int, c_int, c_int, POINTER(dcmi_die_id)],
    "dcmi_get_device_memory_info_v3": [c_int, c_int, POINTER(dcmi_get_memory_info_stru)],
    "dcmi_get_device_hbm_info": [c_int, c_int, POINTER(dcmi_hbm_info)],
    "dcmi_get_device_health": [c_int, c_int, _P_UINT],
    "dcmi_get_device_utilization_rate": [c_int, c_int, c_int, _P_UINT],
    "dcmi_get_device_temperature": [c_int, c_int, _P_INT],
    "dcmi_get_device_power_info": [c_int, c_int, _P_INT],
    "dcmi_create_vdevice": [
        c_int,
        c_int,
        POINTER(dcmi_create_vdev_res_stru),
        POINTER(dcmi_create_vdev_out),
    ],
    "dcmi_set_destroy_vdevice": [c_int, c_int, c_uint],
    "dcmi_get_device_info": [c_int, c_int, c_int, c_uint, c_void_p, _P_UINT],
}


class DcmiLibrary(DcmiLoader, DcmiDriver):
    """:class:`DcmiDriver` over the real ``libdcmi.so``.

    ``lib`` replaces the loaded library (tests pass an object whose attributes are
    the C functions); ``path`` names the shared object to open. Loading and its errors
    are :class:`~accelpool_ascend.library.DcmiLoader`'s; this class adds the signatures.
    """

    signatures: ClassVar = {name: (c_int, argtypes) for name, argtypes in SIGNATURES.items()}

    # -- DcmiDriver --------------------------------------------------------
    def init(self) -> None:
        """``int dcmi_init(void)``."""
        self.call("dcmi_init")

    def version(self) -> str:
        """``int dcmi_get_dcmi_version(char *dcmi_ver, int buf_size)``."""
        buf = ctypes.create_string_buffer(VERSION_LEN)
        self.call("dcmi_get_dcmi_version", buf, VERSION_LEN)
        return c_text(buf.raw)

    def card_list(self) -> list[int]:
        """``int dcmi_get_card_list(int *card_num, int *card_list, int list_len)``."""
        num = c_int(0)
        cards = (c_int * MAX_CARDS)()
        self.call("dcmi_get_card_list", ctypes.pointer(num), cards, MAX_CARDS)
        return [int(cards[i]) for i in range(min(num.value, MAX_CARDS))]

    def device_num_in_card(self, card_id: int) -> int:
        """``int dcmi_get_device_num_in_card(int card_id, int *device_num)``."""
        num = c_int(0)
        self.call("dcmi_get_device_num_in_card", card_id, ctypes.pointer(num))
        return int(num.value)

    def logic_id(self, card_id: int, device_id: int) -> int:
        """``int dcmi_get_device_logic_id(int *device_logic_id, int card_id, int device_id)``."""
        out = c_int(0)
        self.call("dcmi_get_device_logic_id", ctypes.pointer(out), card_id, device_id)
        return int(out.value)

    def phy_id_from_logic_id(self, logic_id: int) -> int:
        """``int dcmi_get_device_phyid_from_logicid(unsigned int logicid, unsigned int *phyid)``."""
        out = c_uint(0)
        self.call("dcmi_get_device_phyid_from_logicid", logic_id, ctypes.pointer(out))
        return int(out.value)

    def chip_info(self, card_id: int, device_id: int) -> ChipInfo:
        """``int dcmi_get_device_chip_info(int card_id, int device_id,
        struct dcmi_chip_info *)``."""
        info = dcmi_chip_info()
        self.call("dcmi_get_device_chip_info", card_id, device_id, ctypes.pointer(info))
        return ChipInfo(
            c_text(info.chip_type), c_text(info.chip_name), c_text(info.chip_ver), info.aicore_cnt
        )

    def die_id(self, card_id: int, device_id: int, die_type: int = DIE_VDIE) -> tuple[int, ...]:
        """``int dcmi_get_device_die_v2(int card_id, int device_id, enum dcmi_die_type,
        struct dcmi_die_id *)``."""
        die = dcmi_die_id()
        self.call("dcmi_get_device_die_v2", card_id, device_id, die_type, ctypes.pointer(die))
        return tuple(int(x) for x in die.soc_die)

    def memory_info(self, card_id: int, device_id: int) -> MemoryInfo:
        """``int dcmi_get_device_memory_info_v3(int card_id, int device_id,
        struct dcmi_get_memory_info_stru *)``."""
        info = dcmi_get_memory_info_stru()
        self.call("dcmi_get_device_memory_info_v3", card_id, device_id, ctypes.pointer(info))
        return MemoryInfo(int(info.memory_size), int(info.memory_available), int(info.utiliza))

    def hbm_info(self, card_id: int, device_id: int) -> HbmInfo:
        """``int dcmi_get_device_hbm_info(int card_id, int device_id, struct dcmi_hbm_info *)``."""
        info = dcmi_hbm_info()
        self.call("dcmi_get_device_hbm_info", card_id, device_id, ctypes.pointer(info))
        return HbmInfo(int(info.memory_size), int(info.memory_usage), int(info.temp))

    def health(self, card_id: int, device_id: int) -> int:
        """``int dcmi_get_device_health(int card_id, int device_id, unsigned int *health)``."""
        out = c_uint(0)
        self.call("dcmi_get_device_health", card_id, device_id, ctypes.pointer(out))
        return int(out.value)

    def utilization_rate(self, card_id: int, device_id: int, input_type: int) -> int:
        """``int dcmi_get_device_utilization_rate(int card_id, int device_id, int input_type,
        unsigned int *utilization_rate)``."""
        out = c_uint(0)
        self.call(
            "dcmi_get_device_utilization_rate", card_id, device_id, input_type, ctypes.pointer(out)
        )
        return int(out.value)

    def temperature(self, card_id: int, device_id: int) -> int:
        """``int dcmi_get_device_temperature(int card_id, int device_id, int *temperature)``."""
        out = c_int(0)
        self.call("dcmi_get_device_temperature", card_id, device_id, ctypes.pointer(out))
        return int(out.value)

    def power_decawatts(self, card_id: int, device_id: int) -> int:
        """``int dcmi_get_device_power_info(int card_id, int device_id, int *power)``."""
        out = c_int(0)
        self.call("dcmi_get_device_power_info", card_id, device_id, ctypes.pointer(out))
        return int(out.value)

    def create_vdevice(
        self, card_id: int, device_id: int, template_name: str, vdev_id: int = VDEV_ID_AUTO
    ) -> VdevCreated:
        """``int dcmi_create_vdevice(int card_id, int device_id,
        struct dcmi_create_vdev_res_stru *vdev, struct dcmi_create_vdev_out *out)``."""
        encoded = template_name.encode()
        if len(encoded) >= TEMPLATE_NAME_LEN:
            raise DcmiError(-8001, "dcmi_create_vdevice")
        # vfg_id: like vdev_id, all ones asks the driver to choose the vGroup.
        request = dcmi_create_vdev_res_stru(vdev_id=vdev_id, vfg_id=0xFFFFFFFF)
        request.template_name = encoded
        out = dcmi_create_vdev_out()
        self.call(
            "dcmi_create_vdevice",
            card_id,
            device_id,
            ctypes.pointer(request),
            ctypes.pointer(out),
        )
        return VdevCreated(int(out.vdev_id), int(out.vfg_id))

    def destroy_vdevice(self, card_id: int, device_id: int, vdev_id: int) -> None:
        """``int dcmi_set_destroy_vdevice(int card_id, int device_id, unsigned int vdevid)``."""
        self.call("dcmi_set_destroy_vdevice", card_id, device_id, vdev_id)

    def _device_info(self, card_id: int, device_id: int, sub_cmd: int, buf: Structure) -> None:
        size = c_uint(sizeof(buf))
        self.call(
            "dcmi_get_device_info",
            card_id,
            device_id,
            MAIN_CMD_VDEV_MNG,
            sub_cmd,
            ctypes.pointer(buf),
            ctypes.pointer(size),
        )

    def total_resource(self, card_id: int, device_id: int) -> SocResource:
        """``dcmi_get_device_info(..., DCMI_MAIN_CMD_VDEV_MNG, VMNG_SUB_CMD_GET_TOTAL_RESOURCE,
        struct dcmi_soc_total_resource *, &size)``."""
        res = dcmi_soc_total_resource()
        self._device_info(card_id, device_id, VMNG_SUB_CMD_GET_TOTAL_RESOURCE, res)
        n = min(int(res.vdev_num), DCMI_SOC_SPLIT_MAX)
        return SocResource(
            aicore=float(res.computing.aic),
            aicpu=int(res.computing.device_aicpu),
            memory_mb=int(res.computing.memory_size),
            vdev_ids=tuple(int(res.vdev_id[i]) for i in range(n)),
        )

    def free_resource(self, card_id: int, device_id: int) -> SocResource:
        """``dcmi_get_device_info(..., DCMI_MAIN_CMD_VDEV_MNG, VMNG_SUB_CMD_GET_FREE_RESOURCE,
        struct dcmi_soc_free_resource *, &size)``."""
        res = dcmi_soc_free_resource()
        self._device_info(card_id, device_id, VMNG_SUB_CMD_GET_FREE_RESOURCE, res)
        return SocResource(
            aicore=float(res.computing.aic),
            aicpu=int(res.computing.device_aicpu),
            memory_mb=int(res.computing.memory_size),
        )

    def vdevice_info(self, card_id: int, device_id: int, vdev_id: int) -> VdevInfo:
        """``dcmi_get_device_info(..., DCMI_MAIN_CMD_VDEV_MNG, VMNG_SUB_CMD_GET_VDEV_RESOURCE,
        struct dcmi_vdev_query_stru *, &size)``."""
        query = dcmi_vdev_query_stru(vdev_id=vdev_id)
        self._device_info(card_id, device_id, VMNG_SUB_CMD_GET_VDEV_RESOURCE, query)
        q = query.query_info
        return VdevInfo(
            vdev_id=vdev_id,
            name=c_text(q.name),
            status=int(q.status),
            is_container_used=int(q.is_container_used),
            vfg_id=int(q.vfg_id),
            aicore=float(q.computing.aic),
            aicpu=int(q.computing.device_aicpu),
            memory_mb=int(q.computing.memory_size),
        )
