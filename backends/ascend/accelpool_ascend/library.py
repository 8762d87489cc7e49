"""What looking for ``libdcmi.so`` needs, and nothing more.

Discovery probes every installed backend, and on most hosts DCMI is absent: this
module is all the Ascend backend imports to find that out (DCMI's return codes and
errors, and :class:`DcmiLoader`, which opens the library without its signature
tables). The ctypes structures and signatures (:mod:`accelpool_ascend.dcmi`), the
driver interface, the chip models and the simulator load only once the library is
found or a fleet is simulated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from accelpool.native import NativeError, NativeLibrary, check_presence

if TYPE_CHECKING:
    from accelpool.spi import BackendContext

LIBRARY_NAME = "libdcmi.so"
#: Where the Ascend driver package installs DCMI when it is not on the loader path.
DEFAULT_LOCATIONS = (LIBRARY_NAME, "/usr/local/dcmi/libdcmi.so")
#: Environment variable naming the library explicitly.
LIBRARY_ENV = "ACCELPOOL_DCMI_LIBRARY"

# -- DCMI return codes (dcmi_interface_api.h: DCMI_ERROR_CODE_BASE = -8000) -----------
DCMI_OK = 0
ERR_INVALID_PARAMETER = -8001
ERR_OPER_NOT_PERMITTED = -8002
ERR_MEM_OPERATE_FAIL = -8003
ERR_SECURE_FUN_FAIL = -8004
ERR_INNER_ERR = -8005
ERR_TIME_OUT = -8006
ERR_INVALID_DEVICE_ID = -8007
ERR_DEVICE_NOT_EXIST = -8008
ERR_IOCTL_FAIL = -8009
ERR_SEND_MSG_FAIL = -8010
ERR_RECV_MSG_FAIL = -8011
ERR_NOT_READY = -8012
ERR_NOT_SUPPORT_IN_CONTAINER = -8013
ERR_FILE_OPERATE_FAIL = -8014
ERR_RESET_FAIL = -8015
ERR_ABORT_OPERATE = -8016
ERR_IS_UPGRADING = -8017
ERR_RESOURCE_OCCUPIED = -8020
ERR_PARTITION_NOT_RIGHT = -8022
ERR_CONFIG_INFO_NOT_EXIST = -8023
ERR_NOT_SUPPORT = -8255

ERROR_NAMES: dict[int, tuple[str, str]] = {
    ERR_INVALID_PARAMETER: ("DCMI_ERR_CODE_INVALID_PARAMETER", "invalid parameter"),
    ERR_OPER_NOT_PERMITTED: ("DCMI_ERR_CODE_OPER_NOT_PERMITTED", "operation not permitted"),
    ERR_MEM_OPERATE_FAIL: ("DCMI_ERR_CODE_MEM_OPERATE_FAIL", "memory operation failed"),
    ERR_SECURE_FUN_FAIL: ("DCMI_ERR_CODE_SECURE_FUN_FAIL", "secure function failed"),
    ERR_INNER_ERR: ("DCMI_ERR_CODE_INNER_ERR", "internal error"),
    ERR_TIME_OUT: ("DCMI_ERR_CODE_TIME_OUT", "timed out"),
    ERR_INVALID_DEVICE_ID: ("DCMI_ERR_CODE_INVALID_DEVICE_ID", "invalid device id"),
    ERR_DEVICE_NOT_EXIST: ("DCMI_ERR_CODE_DEVICE_NOT_EXIST", "device does not exist"),
    ERR_IOCTL_FAIL: ("DCMI_ERR_CODE_IOCTL_FAIL", "ioctl failed"),
    ERR_SEND_MSG_FAIL: ("DCMI_ERR_CODE_SEND_MSG_FAIL", "sending a message failed"),
    ERR_RECV_MSG_FAIL: ("DCMI_ERR_CODE_RECV_MSG_FAIL", "receiving a message failed"),
    ERR_NOT_READY: ("DCMI_ERR_CODE_NOT_REDAY", "not ready"),
    ERR_NOT_SUPPORT_IN_CONTAINER: (
        "DCMI_ERR_CODE_NOT_SUPPORT_IN_CONTAINER",
        "not supported in a container",
    ),
    ERR_FILE_OPERATE_FAIL: ("DCMI_ERR_CODE_FILE_OPERATE_FAIL", "file operation failed"),
    ERR_RESET_FAIL: ("DCMI_ERR_CODE_RESET_FAIL", "reset failed"),
    ERR_ABORT_OPERATE: ("DCMI_ERR_CODE_ABORT_OPERATE", "operation aborted"),
    ERR_IS_UPGRADING: ("DCMI_ERR_CODE_IS_UPGRADING", "the device is being upgraded"),
    ERR_RESOURCE_OCCUPIED: ("DCMI_ERR_CODE_RESOURCE_OCCUPIED", "device resources are occupied"),
    ERR_PARTITION_NOT_RIGHT: ("DCMI_ERR_CODE_PARTITION_NOT_RIGHT", "partition not right"),
    ERR_CONFIG_INFO_NOT_EXIST: (
        "DCMI_ERR_CODE_CONFIG_INFO_NOT_EXIST",
        "configuration information does not exist",
    ),
    ERR_NOT_SUPPORT: ("DCMI_ERR_CODE_NOT_SUPPORT", "not supported"),
}

#: ``enum dcmi_main_cmd``: DCMI_MAIN_CMD_VDEV_MNG (= DCMI_MAIN_CMD_SVM + 1).
MAIN_CMD_VDEV_MNG = 52
#: VDEV_MNG sub-commands (mind-cluster devmanager/dcmi/constants.go).
VMNG_SUB_CMD_GET_VDEV_RESOURCE = 0
VMNG_SUB_CMD_GET_TOTAL_RESOURCE = 1
VMNG_SUB_CMD_GET_FREE_RESOURCE = 2
#: ``enum dcmi_die_type``.
DIE_NDIE = 0
DIE_VDIE = 1
#: ``vdev_id`` meaning "let the driver choose" (``npu-smi ... -v 4294967295``).
VDEV_ID_AUTO = 0xFFFFFFFF
#: ``dcmi_get_device_utilization_rate`` input type for the AI Core.
UTILIZATION_AICORE = 2


class DcmiError(NativeError):
    """A DCMI call returned a non-zero code."""

    error_names = ERROR_NAMES
    unknown_name = "DCMI error {code}"


class DcmiUnavailable(Exception):
    """``libdcmi.so`` (or one of its functions) cannot be loaded here."""


class DcmiLoader(NativeLibrary):
    """Opens ``libdcmi.so`` as :class:`~accelpool.native.NativeLibrary` does, with no
    functions typed yet; :class:`accelpool_ascend.dcmi.DcmiLibrary` adds the signatures."""

    library_name = LIBRARY_NAME
    default_locations = DEFAULT_LOCATIONS
    env_var = LIBRARY_ENV
    signatures: ClassVar[dict[str, tuple[Any, list[Any]]]] = {}

    def not_found(self, detail: str) -> Exception:
        return DcmiUnavailable(
            f"Ascend DCMI library not found ({LIBRARY_NAME}){detail}: install the "
            f"Ascend NPU driver, set {LIBRARY_ENV} to its path, or use a simulated "
            "fleet with --sim"
        )

    def missing_function(self, name: str, library: str) -> Exception:
        return DcmiUnavailable(
            f"{library} has no {name}; the Ascend driver is too old for this operation"
        )

    def failed(self, code: int, name: str) -> Exception:
        return DcmiError(code, name)


def presence(context: BackendContext) -> None:
    """The ``accelpool.presence`` check: DCMI opens here, or the backend is unavailable."""
    check_presence(DcmiLoader, DcmiUnavailable, context)
