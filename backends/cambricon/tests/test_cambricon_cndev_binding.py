"""The ctypes CNDev binding, driven through a fake ``libcndev.so`` made of Python functions.

The fake stands where ``ctypes.CDLL`` would and fills the structures the binding
passes by pointer; the real backend then runs on top of the real binding code.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest
from accelpool_cambricon import cndev
from accelpool_cambricon.backend import CambriconBackend
from accelpool_cambricon.driver import CndevDriver, CndevError, CndevUnavailable

import accelpool
from accelpool.spi import BackendContext
from accelpool.testing import FakeLib

MIB = 1 << 20
UUID = b"10001012-1916-0000-0000-000000000000"  # as in the device plugin's mock.json


def _put(array: Any, data: bytes) -> None:
    for i, b in enumerate(data):
        array[i] = b


class FakeMlu370:
    """One MLU370-X4 in MIM mode offering only the 2-cluster profile (id 7)."""

    def __init__(self) -> None:
        self.instances: dict[int, int] = {}  # instance id -> start
        self.create_rc = 0
        self.versions: set[int] = set()

    def cndevInit(self, reserved: int) -> int:
        return 0

    def cndevRelease(self) -> int:
        return 0

    def cndevGetLibVersion(self, info: Any) -> int:
        info.contents.libMajorVersion, info.contents.libMinorVersion = 3, 9
        return 0

    def cndevGetDeviceCount(self, info: Any) -> int:
        self.versions.add(info.contents.version)
        info.contents.number = 1
        return 0

    def cndevGetDeviceHandleByIndex(self, index: int, handle: Any) -> int:
        handle.contents.value = index
        return 0 if index == 0 else 6

    def cndevGetUUID(self, info: Any, device: int) -> int:
        _put(info.contents.uuid, UUID + b"\0")
        return 0

    def cndevGetCardName(self, info: Any, device: int) -> int:
        info.contents.id = 23
        return 0

    def cndevGetCardNameStringByDevId(self, device: int) -> bytes:
        return b"MLU370-X4"

    def cndevGetCardSN(self, info: Any, device: int) -> int:
        info.contents.sn = 0xABC
        return 0

    def cndevGetMemoryUsage(self, info: Any, device: int) -> int:
        info.contents.physicalMemoryTotal = 24576
        info.contents.physicalMemoryUsed = 512
        return 0

    def cndevGetCoreCount(self, info: Any, device: int) -> int:
        info.contents.count = 24
        return 0

    def cndevGetClusterCount(self, info: Any, device: int) -> int:
        info.contents.count = 6
        return 0

    def cndevGetCardHealthState(self, info: Any, device: int) -> int:
        info.contents.health = 1
        return 0

    def cndevGetMimMode(self, info: Any, device: int) -> int:
        info.contents.mimMode = 1
        return 0

    def cndevGetSMLUMode(self, info: Any, device: int) -> int:
        info.contents.smluMode = 0
        return 0

    def cndevGetMluInstanceProfileInfo(self, info: Any, profile: int, device: int) -> int:
        if profile != 2:
            return 10  # CNDEV_ERROR_NOT_SUPPORTED
        info.contents.profileId = 7
        info.contents.mluCoreCount = 8
        info.contents.memorySize = 8192
        info.contents.name = b"2m.8gb"
        return 0

    def cndevGetMaxMluInstanceCount(self, count: Any, pid: int, device: int) -> int:
        count.contents.value = 3
        return 0

    def cndevGetMluInstanceRemainingCapacity(self, count: Any, pid: int, device: int) -> int:
        count.contents.value = 3 - len(self.instances)
        return 0

    def cndevGetMluInstancePossiblePlacements(
        self, count: Any, placements: Any, pid: int, device: int
    ) -> int:
        assert count.contents.value >= 3
        for i, start in enumerate((0, 2, 4)):
            placements[i].start, placements[i].size = start, 2
        count.contents.value = 3
        return 0

    def _create(self, handle: Any, start: int) -> int:
        if self.create_rc:
            return self.create_rc
        iid = len(self.instances) + 1
        self.instances[iid] = start
        handle.contents.value = (iid << 8) | 0
        return 0

    def cndevCreateMluInstanceByProfileId(
        self, handle: Any, pid: int, device: int, name: bytes
    ) -> int:
        assert pid == 7 and name.startswith(b"accelpool-")
        taken = set(self.instances.values())
        return self._create(handle, next(s for s in (0, 2, 4) if s not in taken))

    def cndevCreateMluInstanceByProfileIdWithPlacement(
        self, placement: Any, handle: Any, pid: int, device: int, name: bytes
    ) -> int:
        assert placement.contents.size == 2
        return self._create(handle, placement.contents.start)

    def _fill(self, info: Any, iid: int) -> None:
        info.instanceId = iid
        info.profileId = 7
        _put(info.uuid, f"aaaaaaaa-0000-0000-0000-{iid:012d}".encode() + b"\0")
        info.placement.start, info.placement.size = self.instances[iid], 2
        info.mluCoreCount, info.memorySize = 8, 8192
        info.profileName = b"2m.8gb"
        info.devNodeName = f"/dev/cambricon-caps/cap_dev0_mi{iid}".encode()
        info.ipcmDevNodeName = b"/dev/cambricon_ipcm0"

    def cndevGetMluInstanceInfo(self, info: Any, handle: int) -> int:
        if handle >> 8 not in self.instances:
            return 14
        self._fill(info.contents, handle >> 8)
        return 0

    def cndevGetAllMluInstanceInfo(self, count: Any, infos: Any, device: int) -> int:
        if count.contents.value < len(self.instances):
            count.contents.value = len(self.instances)
            return 9  # CNDEV_ERROR_INSUFFICIENT_SPACE: ask again with room
        for i, iid in enumerate(sorted(self.instances)):
            self._fill(infos[i], iid)
        count.contents.value = len(self.instances)
        return 0

    def cndevGetMluInstanceByIndex(self, handle: Any, index: int, device: int) -> int:
        ids = sorted(self.instances)
        if index >= len(ids):
            return 14
        handle.contents.value = ids[index] << 8
        return 0

    def cndevDestroyMluInstanceByHandle(self, handle: int) -> int:
        if self.instances.pop(handle >> 8, None) is None:
            return 14
        return 0


@pytest.fixture
def fake() -> FakeMlu370:
    return FakeMlu370()


def _backend(lib: FakeLib) -> CambriconBackend:
    backend = CambriconBackend(BackendContext("cambricon", options={"library": lib}))
    backend.probe()
    return backend


def test_functions_are_looked_up_lazily_and_once(fake: FakeMlu370) -> None:
    lib = FakeLib(fake)
    binding = cndev.CndevLibrary(lib=lib)
    assert isinstance(binding, CndevDriver)
    assert lib.lookups == []
    assert binding.device_count() == binding.device_count() == 1
    assert lib.lookups == ["cndevGetDeviceCount"]
    assert fake.versions == {6}  # CNDEV_VERSION_6 filled in, as the device plugin does
    fn = binding._fns["cndevGetDeviceCount"]
    assert fn.restype is ctypes.c_int
    assert fn.argtypes == [ctypes.POINTER(cndev.cndevCardInfo_t)]
    assert binding.card_name_string(0) == "MLU370-X4"
    assert binding._fns["cndevGetCardNameStringByDevId"].restype is ctypes.c_char_p


def test_return_codes_become_cndev_errors(fake: FakeMlu370) -> None:
    binding = cndev.CndevLibrary(lib=FakeLib(fake))
    with pytest.raises(CndevError) as err:
        binding.device_handle(3)
    assert err.value.code == 6 and err.value.name == "CNDEV_ERROR_INVALID_DEVICE_ID"
    with pytest.raises(CndevUnavailable, match="cndevGetXidErrorV2"):
        binding.function("cndevGetXidErrorV2")


def test_the_instance_list_is_read_again_with_the_size_cndev_asks_for(
    fake: FakeMlu370,
) -> None:
    binding = cndev.CndevLibrary(lib=FakeLib(fake))
    fake.instances = {i: 0 for i in range(1, 20)}  # more than the first buffer holds
    assert len(binding.all_mim_instances(0)) == 19


def test_the_backend_runs_over_the_binding(fake: FakeMlu370) -> None:
    backend = _backend(FakeLib(fake))
    [dev] = backend.devices()
    assert dev.native_id == f"MLU-{UUID.decode()}"
    assert (dev.model, dev.compute_units, dev.memory_bytes) == ("MLU370-X4", 24, 24576 * MIB)
    assert dev.attributes["cambricon.com/chip"] == "MLU370"
    [prof] = backend.profiles(dev)
    assert (prof.name, prof.max_count, prof.available) == ("2m.8gb", 3, 3)
    assert [p.start for p in prof.placements] == [0, 2, 4]
    part = backend.create_partition(dev, "2m.8gb", placement=4)
    assert part.placement is not None and part.placement.start == 4
    assert part.native_id == f"{dev.native_id}-mim-aaaaaaaa-0000-0000-0000-000000000001"
    assert [p.native_id for p in backend.partitions(dev)] == [part.native_id]
    with pytest.raises(accelpool.InsufficientCapacity):
        backend.create_partition(dev, "2m.8gb", placement=4)
    backend.destroy_partition(part)
    assert backend.partitions(dev) == []
    with pytest.raises(accelpool.NotFound):
        backend.destroy_partition(part)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (9, accelpool.InsufficientCapacity),
        (13, accelpool.PermissionDenied),
        (15, accelpool.InUse),
        (18, accelpool.DeviceLost),
        (7, accelpool.AccelPoolError),
    ],
)
def test_create_errors_map_onto_accelpool_errors(
    fake: FakeMlu370, code: int, error: type[accelpool.AccelPoolError]
) -> None:
    backend = _backend(FakeLib(fake))
    [dev] = backend.devices()
    fake.create_rc = code
    with pytest.raises(error) as err:
        backend.create_partition(dev, "2m.8gb")
    assert err.value.vendor_code == code
    assert "\n" not in str(err.value)
    assert fake.instances == {}


def test_a_missing_telemetry_function_is_unsupported_not_a_crash(fake: FakeMlu370) -> None:
    backend = _backend(FakeLib(fake))
    [dev] = backend.devices()
    with pytest.raises(accelpool.UnsupportedOperation, match="cndevGetDeviceUtilizationInfo"):
        backend.telemetry(dev)
