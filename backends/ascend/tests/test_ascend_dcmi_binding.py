"""The ctypes DCMI binding, driven through a fake ``libdcmi.so`` made of Python functions.

The fake stands where ``ctypes.CDLL`` would: it hands out function objects by name and
each function fills the structures the binding passes by pointer, as the C library
does. The real backend then runs on top of the real binding code.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest
from accelpool_ascend import dcmi
from accelpool_ascend.backend import AscendBackend
from accelpool_ascend.driver import DcmiDriver, DcmiError, DcmiUnavailable

import accelpool
from accelpool.spi import BackendContext
from accelpool.testing import FakeLib

MIB = 1 << 20


class Fake310P:
    """One card (id 3) with one 310P3 chip; a vir02 vNPU takes 2 cores, 2 CPUs, 6 GiB."""

    TEMPLATES = {"vir02": (2, 2, 6144)}

    def __init__(self) -> None:
        self.vdevs: dict[int, str] = {}
        self.create_rc = 0
        self.health_rc = 0

    def dcmi_init(self) -> int:
        return 0

    def dcmi_get_dcmi_version(self, buf: Any, size: int) -> int:
        buf.value = b"24.1.rc2"
        return 0

    def dcmi_get_card_list(self, num: Any, cards: Any, length: int) -> int:
        num.contents.value = 1
        cards[0] = 3
        return 0

    def dcmi_get_device_num_in_card(self, card: int, num: Any) -> int:
        if card != 3:
            return -8007
        num.contents.value = 1
        return 0

    def dcmi_get_device_logic_id(self, out: Any, card: int, dev: int) -> int:
        out.contents.value = 0
        return 0

    def dcmi_get_device_phyid_from_logicid(self, logic: int, out: Any) -> int:
        out.contents.value = 0
        return 0

    def dcmi_get_device_chip_info(self, card: int, dev: int, info: Any) -> int:
        info.contents.chip_type = b"Ascend"
        info.contents.chip_name = b"310P3"
        info.contents.chip_ver = b"V1"
        info.contents.aicore_cnt = 8
        return 0

    def dcmi_get_device_die_v2(self, card: int, dev: int, kind: int, die: Any) -> int:
        for i in range(5):
            die.contents.soc_die[i] = 0xA0 + i
        return 0

    def dcmi_get_device_hbm_info(self, card: int, dev: int, info: Any) -> int:
        return -8255  # a 310P has no HBM

    def dcmi_get_device_memory_info_v3(self, card: int, dev: int, info: Any) -> int:
        info.contents.memory_size = 24576
        info.contents.memory_available = 20480
        return 0

    def dcmi_get_device_health(self, card: int, dev: int, out: Any) -> int:
        out.contents.value = 0
        return self.health_rc

    def _used(self) -> tuple[int, int, int]:
        cores = sum(self.TEMPLATES[t][0] for t in self.vdevs.values())
        cpus = sum(self.TEMPLATES[t][1] for t in self.vdevs.values())
        mem = sum(self.TEMPLATES[t][2] for t in self.vdevs.values())
        return cores, cpus, mem

    def dcmi_get_device_info(
        self, card: int, dev: int, main: int, sub: int, buf: Any, size: Any
    ) -> int:
        assert main == 52  # DCMI_MAIN_CMD_VDEV_MNG
        assert size.contents.value == ctypes.sizeof(buf.contents)
        cores, cpus, mem = self._used()
        if sub == 1:  # total resource
            res = ctypes.cast(buf, ctypes.POINTER(dcmi.dcmi_soc_total_resource)).contents
            res.vdev_num = len(self.vdevs)
            for i, v in enumerate(sorted(self.vdevs)):
                res.vdev_id[i] = v
            res.computing.aic, res.computing.device_aicpu, res.computing.memory_size = 8, 7, 24576
        elif sub == 2:  # free resource
            res2 = ctypes.cast(buf, ctypes.POINTER(dcmi.dcmi_soc_free_resource)).contents
            res2.computing.aic = 8 - cores
            res2.computing.device_aicpu = 7 - cpus
            res2.computing.memory_size = 24576 - mem
        elif sub == 0:  # one vNPU
            q = ctypes.cast(buf, ctypes.POINTER(dcmi.dcmi_vdev_query_stru)).contents
            name = self.vdevs.get(q.vdev_id)
            if name is None:
                return -8007
            c, p, m = self.TEMPLATES[name]
            q.query_info.name = name.encode()
            q.query_info.computing.aic = c
            q.query_info.computing.device_aicpu = p
            q.query_info.computing.memory_size = m
        return 0

    def dcmi_create_vdevice(self, card: int, dev: int, req: Any, out: Any) -> int:
        if self.create_rc:
            return self.create_rc
        assert req.contents.vdev_id == 0xFFFFFFFF  # the driver picks the id
        vdev = 100 + len(self.vdevs)
        self.vdevs[vdev] = req.contents.template_name.decode()
        out.contents.vdev_id = vdev
        return 0

    def dcmi_set_destroy_vdevice(self, card: int, dev: int, vdev: int) -> int:
        if vdev not in self.vdevs:
            return -8007
        del self.vdevs[vdev]
        return 0


@pytest.fixture
def fake() -> Fake310P:
    return Fake310P()


def _backend(lib: FakeLib) -> AscendBackend:
    backend = AscendBackend(BackendContext("ascend", options={"library": lib}))
    backend.probe()
    return backend


def test_functions_are_looked_up_lazily_and_once(fake: Fake310P) -> None:
    lib = FakeLib(fake)
    binding = dcmi.DcmiLibrary(lib=lib)
    assert isinstance(binding, DcmiDriver)
    assert lib.lookups == []
    binding.init()
    binding.init()
    assert lib.lookups == ["dcmi_init"]
    assert binding.version() == "24.1.rc2"
    fn = binding._fns["dcmi_get_dcmi_version"]
    assert fn.argtypes == dcmi.SIGNATURES["dcmi_get_dcmi_version"]
    assert fn.restype is ctypes.c_int


def test_nonzero_return_codes_become_dcmi_errors(fake: Fake310P) -> None:
    binding = dcmi.DcmiLibrary(lib=FakeLib(fake))
    with pytest.raises(DcmiError) as err:
        binding.device_num_in_card(0)
    assert err.value.code == -8007
    assert err.value.name == "DCMI_ERR_CODE_INVALID_DEVICE_ID"
    assert "dcmi_get_device_num_in_card" in err.value.vendor_message


def test_a_missing_symbol_is_reported_not_crashed(fake: Fake310P) -> None:
    binding = dcmi.DcmiLibrary(lib=FakeLib(object()))
    with pytest.raises(DcmiUnavailable, match="dcmi_init"):
        binding.init()


def test_structures_have_the_c_sizes() -> None:
    assert ctypes.sizeof(dcmi.dcmi_chip_info) == 3 * 32 + 4
    assert ctypes.sizeof(dcmi.dcmi_die_id) == 5 * 4
    assert ctypes.sizeof(dcmi.dcmi_create_vdev_res_stru) == 4 + 4 + 32 + 64
    assert ctypes.sizeof(dcmi.dcmi_create_vdev_out) == 5 * 4 + 32
    # every function the binding calls has a declared signature
    assert set(dcmi.SIGNATURES) >= {"dcmi_create_vdevice", "dcmi_set_destroy_vdevice"}


def test_the_backend_runs_over_the_binding(fake: Fake310P) -> None:
    backend = _backend(FakeLib(fake))
    [dev] = backend.devices()
    assert dev.native_id == "000000A0-000000A1-000000A2-000000A3-000000A4"
    assert (dev.model, dev.compute_units, dev.memory_bytes) == ("Ascend310P3", 8, 24576 * MIB)
    assert dev.attributes["huawei.com/cardID"] == 3
    vir02 = next(p for p in backend.profiles(dev) if p.name == "vir02")
    assert (vir02.max_count, vir02.available) == (3, 3)  # 7 AI CPUs bound it
    part = backend.create_partition(dev, "vir02")
    assert part.native_id == "Ascend310P3-vir02-100-0"
    assert (part.compute_units, part.memory_bytes) == (2, 6144 * MIB)
    assert [p.native_id for p in backend.partitions(dev)] == [part.native_id]
    assert next(p for p in backend.profiles(dev) if p.name == "vir02").available == 2
    backend.destroy_partition(part)
    with pytest.raises(accelpool.NotFound):
        backend.destroy_partition(part)
    t = backend.telemetry(dev)
    assert (t.memory_total_bytes, t.memory_used_bytes) == (24576 * MIB, 4096 * MIB)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (-8020, accelpool.InsufficientCapacity),
        (-8002, accelpool.PermissionDenied),
        (-8255, accelpool.UnsupportedOperation),
        (-8005, accelpool.AccelPoolError),
    ],
)
def test_create_errors_map_onto_accelpool_errors(
    fake: Fake310P, code: int, error: type[accelpool.AccelPoolError]
) -> None:
    backend = _backend(FakeLib(fake))
    [dev] = backend.devices()
    fake.create_rc = code
    with pytest.raises(error) as err:
        backend.create_partition(dev, "vir02")
    assert err.value.vendor_code == code
    assert "\n" not in str(err.value)


def test_an_unhealthy_answer_is_device_lost(fake: Fake310P) -> None:
    backend = _backend(FakeLib(fake))
    [dev] = backend.devices()
    fake.health_rc = -8008
    with pytest.raises(accelpool.DeviceLost) as err:
        backend.profiles(dev)
    assert err.value.vendor_code == -8008


def test_fault_injection_is_unsupported_on_a_real_library(fake: Fake310P) -> None:
    backend = _backend(FakeLib(fake))
    [dev] = backend.devices()
    caps = backend.capabilities()
    assert caps.support(accelpool.Capability.FAULT_INJECTION) is accelpool.Support.UNSUPPORTED
    with pytest.raises(accelpool.UnsupportedOperation):
        backend.inject_fault("device-lost", dev)
