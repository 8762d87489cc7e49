"""The C side of CNDev: the structures and function signatures of ``cndev.h``.

Field order and types follow ``cndev.h`` as vendored by
Cambricon/cambricon-k8s-device-plugin (``device-plugin/pkg/cndev/include/cndev.h``).
:class:`accelpool_cambricon.cndev.CndevLibrary` types each function from
:data:`SIGNATURES` the first time it calls it.
"""

from __future__ import annotations

from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int,
    c_int64,
    c_uint,
    c_uint8,
    c_uint32,
    c_uint64,
)
from typing import Any, ClassVar

UUID_SIZE = 37
NAME_SIZE = 100  # CNDEV_MLUINSTANCE_PROFILE_NAME_BUFFER_SIZE / ..._DEVICE_NODE_NAME_...
SMLU_ITEMS = 2  # CNDEV_SMLU_ITEM_COUNT: [CNDEV_SMLU_MAX, CNDEV_SMLU_USAGE]
SMLU_MAX = 0
MAX_INSTANCES = 128


# -- structures (field order and types as in cndev.h) ------------------------------
class cndevCardInfo_t(Structure):
    _fields_: ClassVar = [("version", c_int), ("number", c_uint)]


class cndevUUID_t(Structure):
    _fields_: ClassVar = [
        ("version", c_int),
        ("uuid", c_uint8 * UUID_SIZE),
        ("ncsUUID64", c_uint64),
    ]


class cndevMemoryInfo_t(Structure):
    _fields_: ClassVar = [
        ("version", c_int),
        ("physicalMemoryTotal", c_int64),
        ("physicalMemoryUsed", c_int64),
        ("virtualMemoryTotal", c_int64),
        ("virtualMemoryUsed", c_int64),
        ("channelNumber", c_int64),
        ("channelMemoryUsed", c_int64 * 20),
        ("globalMemory", c_uint64),
    ]


class cndevCardName_t(Structure):
    _fields_: ClassVar = [("version", c_int), ("id", c_int)]


class cndevCardSN_t(Structure):
    _fields_: ClassVar = [("version", c_int), ("sn", c_uint64), ("motherBoardSn", c_uint64)]


class cndevCardCoreCount_t(Structure):
    _fields_: ClassVar = [("version", c_int), ("count", c_int)]


class cndevCardClusterCount_t(Structure):
    _fields_: ClassVar = [("version", c_int), ("count", c_int)]


class cndevCardHealthState_t(Structure):
    _fields_: ClassVar = [
        ("version", c_int),
        ("health", c_int),
        ("deviceState", c_int),
        ("driverState", c_int),
    ]


class cndevUtilizationInfo_t(Structure):
    _fields_: ClassVar = [
        ("version", c_int),
        ("averageCoreUtilization", c_int),
        ("coreUtilization", c_int * 80),
    ]


class cndevTemperatureInfo_t(Structure):
    _fields_: ClassVar = [
        ("version", c_int),
        ("board", c_int),
        ("cluster", c_int * 20),
        ("memoryDie", c_int * 8),
        ("chip", c_int),
        ("airInlet", c_int),
        ("airOutlet", c_int),
        ("memory", c_int),
        ("videoInput", c_int),
        ("cpu", c_int),
        ("isp", c_int),
    ]


class cndevLibVersionInfo_t(Structure):
    _fields_: ClassVar = [
        ("version", c_int),
        ("libMajorVersion", c_uint),
        ("libMinorVersion", c_uint),
        ("libBuildVersion", c_uint),
    ]


class cndevMimMode_t(Structure):
    _fields_: ClassVar = [("version", c_int), ("mimMode", c_int)]


class cndevSMLUMode_t(Structure):
    _fields_: ClassVar = [("version", c_int), ("smluMode", c_int)]


class cndevMluInstancePlacement_t(Structure):
    _fields_: ClassVar = [("version", c_int), ("start", c_int), ("size", c_int)]


class cndevMluInstanceProfileInfo_t(Structure):
    _fields_: ClassVar = [
        ("version", c_int),
        ("profileId", c_int),
        ("mluCoreCount", c_int),
        ("vpuCount", c_int),
        ("jpuCount", c_int),
        ("gdmaCount", c_int),
        ("memorySize", c_int),
        ("name", c_char * NAME_SIZE),
    ]


class cndevMluInstanceInfo_t(Structure):
    _fields_: ClassVar = [
        ("version", c_int),
        ("parentDevice", c_int),
        ("instanceId", c_int),
        ("profileId", c_int),
        ("uuid", c_uint8 * UUID_SIZE),
        ("domain", c_int),
        ("bus", c_int),
        ("device", c_int),
        ("function", c_int),
        ("placement", cndevMluInstancePlacement_t),
        ("mluCoreCount", c_int),
        ("vpuCount", c_int),
        ("jpuCount", c_int),
        ("gdmaCount", c_int),
        ("memorySize", c_int),
        ("profileName", c_char * NAME_SIZE),
        ("devNodeName", c_char * NAME_SIZE),
        ("ipcmDevNodeName", c_char * NAME_SIZE),
        ("instanceName", c_char * NAME_SIZE),
        ("reserved", c_uint * 128),
    ]


class cndevSMluSet_t(Structure):
    _fields_: ClassVar = [("version", c_int), ("mluQuota", c_uint32), ("memorySize", c_uint64)]


class cndevSMluProfileIdInfo_t(Structure):
    _fields_: ClassVar = [("version", c_int), ("count", c_int), ("profileId", c_int * 128)]


class cndevSMluProfileInfo_t(Structure):
    _fields_: ClassVar = [
        ("version", c_int),
        ("profileId", c_int),
        ("name", c_char * NAME_SIZE),
        ("totalCapacity", c_uint32),
        ("remainCapacity", c_uint32),
        ("mluQuota", c_uint32 * SMLU_ITEMS),
        ("memorySize", c_uint64 * SMLU_ITEMS),
    ]


class cndevSMluInfo_t(Structure):
    _fields_: ClassVar = [
        ("version", c_int),
        ("profileId", c_int),
        ("instanceId", c_int),
        ("uuid", c_uint8 * UUID_SIZE),
        ("domain", c_int),
        ("bus", c_int),
        ("device", c_int),
        ("function", c_int),
        ("profileName", c_char * NAME_SIZE),
        ("instanceName", c_char * NAME_SIZE),
        ("devNodeName", c_char * NAME_SIZE),
        ("mluQuota", c_uint32 * SMLU_ITEMS),
        ("memorySize", c_uint64 * SMLU_ITEMS),
        ("reserved", c_uint * 128),
    ]


_P_INT = POINTER(c_int)

#: name -> (restype, argtypes). ``cndevDevice_t`` and ``cndevMluInstance_t`` are ``int``.
SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "cndevInit": (c_int, [c_int]),
    "cndevRelease": (c_int, []),
    "cndevGetErrorString": (c_char_p, [c_int]),
    "cndevGetLibVersion": (c_int, [POINTER(cndevLibVersionInfo_t)]),
    "cndevGetDeviceCount": (c_int, [POINTER(cndevCardInfo_t)]),
    "cndevGetDeviceHandleByIndex": (c_int, [c_int, _P_INT]),
    "cndevGetUUID": (c_int, [POINTER(cndevUUID_t), c_int]),
    "cndevGetCardName": (c_int, [POINTER(cndevCardName_t), c_int]),
    "cndevGetCardNameStringByDevId": (c_char_p, [c_int]),
    "cndevGetCardSN": (c_int, [POINTER(cndevCardSN_t), c_int]),
    "cndevGetMemoryUsage": (c_int, [POINTER(cndevMemoryInfo_t), c_int]),
    "cndevGetCoreCount": (c_int, [POINTER(cndevCardCoreCount_t), c_int]),
    "cndevGetClusterCount": (c_int, [POINTER(cndevCardClusterCount_t), c_int]),
    "cndevGetCardHealthState": (c_int, [POINTER(cndevCardHealthState_t), c_int]),
    "cndevGetDeviceUtilizationInfo": (c_int, [POINTER(cndevUtilizationInfo_t), c_int]),
    "cndevGetTemperatureInfo": (c_int, [POINTER(cndevTemperatureInfo_t), c_int]),
    "cndevGetMimMode": (c_int, [POINTER(cndevMimMode_t), c_int]),
    "cndevGetSMLUMode": (c_int, [POINTER(cndevSMLUMode_t), c_int]),
    "cndevGetMluInstanceProfileInfo": (
        c_int,
        [POINTER(cndevMluInstanceProfileInfo_t), c_int, c_int],
    ),
    "cndevGetMaxMluInstanceCount": (c_int, [_P_INT, c_int, c_int]),
    "cndevGetMluInstanceRemainingCapacity": (c_int, [_P_INT, c_int, c_int]),
    "cndevGetMluInstancePossiblePlacements": (
        c_int,
        [_P_INT, POINTER(cndevMluInstancePlacement_t), c_int, c_int],
    ),
    "cndevCreateMluInstanceByProfileId": (c_int, [_P_INT, c_uint, c_int, c_char_p]),
    "cndevCreateMluInstanceByProfileIdWithPlacement": (
        c_int,
        [POINTER(cndevMluInstancePlacement_t), _P_INT, c_uint, c_int, c_char_p],
    ),
    "cndevGetMluInstanceInfo": (c_int, [POINTER(cndevMluInstanceInfo_t), c_int]),
    "cndevGetAllMluInstanceInfo": (c_int, [_P_INT, POINTER(cndevMluInstanceInfo_t), c_int]),
    "cndevGetMluInstanceByIndex": (c_int, [_P_INT, c_int, c_int]),
    "cndevDestroyMluInstanceByHandle": (c_int, [c_int]),
    "cndevCreateSMluProfileInfo": (c_int, [POINTER(cndevSMluSet_t), _P_INT, c_int]),
    "cndevDestroySMluProfileInfo": (c_int, [c_int, c_int]),
    "cndevGetSMluProfileIdInfo": (c_int, [POINTER(cndevSMluProfileIdInfo_t), c_int]),
    "cndevGetSMluProfileInfo": (c_int, [POINTER(cndevSMluProfileInfo_t), c_int, c_int]),
    "cndevCreateSMluInstanceByProfileId": (c_int, [_P_INT, c_uint, c_int, c_char_p]),
    "cndevGetSMluInstanceInfo": (c_int, [POINTER(cndevSMluInfo_t), c_int]),
    "cndevGetAllSMluInstanceInfo": (c_int, [_P_INT, POINTER(cndevSMluInfo_t), c_int]),
    "cndevDestroySMluInstanceByHandle": (c_int, [c_int]),
}
