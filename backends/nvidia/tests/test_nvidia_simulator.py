"""The NVML simulator through pynvml's real wrappers: return codes, MIG semantics, faults."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest
from accelpool_nvidia.simulator import NvmlSimulator, SimError

import accelpool
from accelpool.sim.fleet import load_fleet

Sim = Callable[..., NvmlSimulator]


def _gi_with_ci(h: object, profile_id: int, ci_enum: int, start: int | None = None) -> object:
    if start is None:
        gi = pynvml.nvmlDeviceCreateGpuInstance(h, profile_id)
    else:
        size = {19: 1, 15: 2, 14: 2, 9: 4, 5: 4, 0: 8}[profile_id]
        slot = pynvml.c_nvmlGpuInstancePlacement_t(start, size)
        gi = pynvml.nvmlDeviceCreateGpuInstanceWithPlacement(h, profile_id, ctypes.byref(slot))
    pynvml.nvmlGpuInstanceCreateComputeInstance(gi, ci_enum)
    return gi


def test_pynvml_wrappers_are_the_real_ones() -> None:
    # The tests never mock pynvml: its functions are its own and call through nvmlLib.
    for name in ("nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceCreateGpuInstance"):
        fn = getattr(pynvml, name)
        assert fn.__module__ == "pynvml" and type(fn).__name__ == "function"
    here = Path(__file__).parent
    for f in here.glob("*.py"):
        text = f.read_text()
        assert "unittest" + ".mock" not in text and "Magic" + "Mock" not in text, f.name


def test_basic_queries(plain_pynvml: Sim) -> None:
    plain_pynvml("dgx-a100")
    assert pynvml.nvmlDeviceGetCount() == 8
    h = pynvml.nvmlDeviceGetHandleByIndex(2)
    assert pynvml.nvmlDeviceGetName(h) == "NVIDIA A100-SXM4-40GB"
    uuid = pynvml.nvmlDeviceGetUUID(h)
    assert uuid.startswith("GPU-")
    h2 = pynvml.nvmlDeviceGetHandleByUUID(uuid)
    assert pynvml.nvmlDeviceGetIndex(h2) == 2
    assert pynvml.nvmlDeviceGetMemoryInfo(h).total == 40960 << 20
    v2 = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert v2.total == 40960 << 20 and v2.used + v2.free + v2.reserved == v2.total
    assert pynvml.nvmlDeviceGetCudaComputeCapability(h) == (8, 0)
    assert pynvml.nvmlDeviceGetArchitecture(h) == pynvml.NVML_DEVICE_ARCH_AMPERE
    assert pynvml.nvmlDeviceGetPciInfo(h).pciDeviceId == 0x20B010DE
    assert pynvml.nvmlDeviceGetMigMode(h) == [1, 1]
    assert pynvml.nvmlDeviceGetVirtualizationMode(h) == pynvml.NVML_GPU_VIRTUALIZATION_MODE_NONE
    assert pynvml.nvmlSystemGetDriverVersion().count(".") == 2
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetHandleByIndex(8)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetHandleByUUID("GPU-00000000-0000-0000-0000-000000000000")
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        pynvml.nvmlDeviceGetNvLinkState(h, 0)  # not simulated: as with an older driver


def test_uninitialised_calls_fail(tmp_path: Path) -> None:
    sim = NvmlSimulator.for_fleet(load_fleet("dgx-a100"))
    previous = sim.install()
    try:
        with pytest.raises(pynvml.NVMLError_Uninitialized):
            pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlLib = previous
        pynvml._nvmlGetFunctionPointer_cache.clear()


def test_profile_info_placements_and_remaining(plain_pynvml: Sim) -> None:
    plain_pynvml("hgx-h200")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_3_SLICE)
    assert (info.id, info.sliceCount, info.instanceCount, info.multiprocessorCount) == (9, 3, 2, 60)
    assert info.name == "MIG 3g.71gb"  # _PrintableStructure decodes it
    arr = (pynvml.c_nvmlGpuInstancePlacement_t * 8)()
    count = ctypes.c_uint(8)
    pynvml.nvmlDeviceGetGpuInstancePossiblePlacements(h, 15, arr, ctypes.byref(count))
    assert [(arr[i].start, arr[i].size) for i in range(count.value)] == [
        (0, 2),
        (2, 2),
        (4, 2),
        (6, 2),
    ]
    assert pynvml.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 19) == 7
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetGpuInstanceProfileInfo(h, pynvml.NVML_GPU_INSTANCE_PROFILE_8_SLICE)


def test_gpu_and_compute_instance_semantics(plain_pynvml: Sim) -> None:
    plain_pynvml("dgx-a100")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    bad = pynvml.c_nvmlGpuInstancePlacement_t(1, 4)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):  # a placement 3g does not offer
        pynvml.nvmlDeviceCreateGpuInstanceWithPlacement(h, 9, ctypes.byref(bad))
    by_value = pynvml.c_nvmlGpuInstancePlacement_t(0, 4)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):  # a struct by value is wrong
        pynvml.nvmlDeviceCreateGpuInstanceWithPlacement(h, 9, by_value)
    gi = pynvml.nvmlDeviceCreateGpuInstance(h, 9)  # 3g.20gb
    info = pynvml.nvmlGpuInstanceGetInfo(gi)
    assert (info.profileId, info.placement.size) == (9, 4)
    ci = pynvml.nvmlGpuInstanceCreateComputeInstance(gi, 2)  # the full 3-slice CI
    with pytest.raises(pynvml.NVMLError_InsufficientResources) as e:
        pynvml.nvmlGpuInstanceCreateComputeInstance(gi, 0)
    assert str(e.value) == "Insufficient Resources"  # through nvmlErrorString
    with pytest.raises(pynvml.NVMLError_InUse) as e2:
        pynvml.nvmlGpuInstanceDestroy(gi)
    assert str(e2.value) == "In use by another client"
    pynvml.nvmlComputeInstanceDestroy(ci)
    pynvml.nvmlGpuInstanceDestroy(gi)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):  # a stale handle
        pynvml.nvmlGpuInstanceGetInfo(gi)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetGpuInstanceById(h, info.id)
    for _ in range(2):
        _gi_with_ci(h, 9, 2)
    with pytest.raises(pynvml.NVMLError_InsufficientResources):
        pynvml.nvmlDeviceCreateGpuInstance(h, 9)


def test_mig_devices_and_handles(plain_pynvml: Sim) -> None:
    plain_pynvml("dgx-a100")
    h = pynvml.nvmlDeviceGetHandleByIndex(1)
    assert pynvml.nvmlDeviceGetMaxMigDeviceCount(h) == 7
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)
    _gi_with_ci(h, 14, 1, start=2)
    mh = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)
    assert pynvml.nvmlDeviceIsMigDeviceHandle(mh)  # a c_uint, truthy
    assert not pynvml.nvmlDeviceIsMigDeviceHandle(h).value
    mig_uuid = pynvml.nvmlDeviceGetUUID(mh)
    assert mig_uuid.startswith("MIG-")
    assert pynvml.nvmlDeviceGetName(mh) == "NVIDIA A100-SXM4-40GB MIG 2g.10gb"
    assert pynvml.nvmlDeviceGetGpuInstanceId(mh) == 4  # 2g at start 2: id 3 + 2/2
    again = pynvml.nvmlDeviceGetHandleByUUID(mig_uuid)
    parent = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(again)
    assert pynvml.nvmlDeviceGetUUID(parent) == pynvml.nvmlDeviceGetUUID(h)
    assert pynvml.nvmlDeviceGetAttributes(mh).multiprocessorCount == 28
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetAttributes(h)


def test_mig_made_with_plain_pynvml_is_listed(plain_pynvml: Sim) -> None:
    plain_pynvml("dgx-a100")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    _gi_with_ci(h, 5, 3)  # 4g.20gb with its full compute instance
    split = pynvml.nvmlDeviceCreateGpuInstance(h, 9)  # a 3g with three 1-slice CIs
    for _ in range(3):
        pynvml.nvmlGpuInstanceCreateComputeInstance(split, 0)
    mig_uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, 0))

    inv = accelpool.discover(sim="dgx-a100", backends=["nvidia"])
    try:
        parts = inv.device("nvidia:0").partitions()
        assert sorted(p.profile for p in parts) == ["1c.3g.20gb"] * 3 + ["4g.20gb"]
        assert f"nvidia:{mig_uuid}" in {p.id for p in parts}
        assert {p.compute_units for p in parts if p.profile == "1c.3g.20gb"} == {14}
        # destroying the 1-slice CIs one by one frees the GPU instance with the last
        for p in [p for p in parts if p.profile == "1c.3g.20gb"]:
            p.destroy()
        assert [p.profile for p in inv.device("nvidia:0").partitions()] == ["4g.20gb"]
    finally:
        inv.close()
    # pynvml still talks to the simulator the test installed
    assert pynvml.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 9) == 1


def test_bare_gpu_instance_is_listed_and_destroyable(plain_pynvml: Sim) -> None:
    plain_pynvml("dgx-a100")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    pynvml.nvmlDeviceCreateGpuInstance(h, 0)  # 7g without a compute instance
    with accelpool.discover(sim="dgx-a100", backends=["nvidia"]) as inv:
        (part,) = inv.device("nvidia:0").partitions()
        assert part.profile == "7g.40gb" and part.attributes["nvidia.com/computeInstances"] == 0
        with pytest.raises(accelpool.InvalidRequest, match="without a compute instance"):
            part.visibility_env()
        part.destroy()
        assert inv.device("nvidia:0").partitions() == []


def test_ampere_pending_mig_mode(plain_pynvml: Sim, fleet_file: Callable[..., str]) -> None:
    sim = plain_pynvml(load_fleet(fleet_file("A100-SXM4-40GB", mig=False)))
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported):  # MIG off: no GPU instances
        pynvml.nvmlDeviceCreateGpuInstance(h, 19)
    pid = sim.add_process(sim.gpus[0].uuid)
    status = pynvml.nvmlDeviceSetMigMode(h, pynvml.NVML_DEVICE_MIG_ENABLE)
    assert status == pynvml.NVML_ERROR_IN_USE  # accepted, but pending a reset
    assert pynvml.nvmlDeviceGetMigMode(h) == [0, 1]
    with pytest.raises(SimError):
        sim.reset_gpu(0)
    sim.remove_process(pid)
    sim.reset_gpu(0)
    assert pynvml.nvmlDeviceGetMigMode(h) == [1, 1]
    pynvml.nvmlDeviceCreateGpuInstance(h, 19)
    with pytest.raises(pynvml.NVMLError_InUse):  # instances exist: cannot disable
        pynvml.nvmlDeviceSetMigMode(h, pynvml.NVML_DEVICE_MIG_DISABLE)


def test_unprivileged_gets_no_permission(plain_pynvml: Sim, fleet_file: Callable[..., str]) -> None:
    plain_pynvml(load_fleet(fleet_file("A100-SXM4-40GB", mig=True, privileged=False)))
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        pynvml.nvmlDeviceCreateGpuInstance(h, 19)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        pynvml.nvmlDeviceSetMigMode(h, 0)


def test_gpu_lost_and_nth_call_faults_are_shared(plain_pynvml: Sim) -> None:
    sim = plain_pynvml("dgx-a100")
    h = pynvml.nvmlDeviceGetHandleByIndex(5)
    # A second simulator over the same state plays another process.
    other = NvmlSimulator.for_fleet(load_fleet("dgx-a100"))
    other.lose_gpu(5)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetName(h)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetHandleByIndex(5)
    assert pynvml.nvmlDeviceGetCount() == 8  # still counted, as on real hardware
    other.fail_call("nvmlDeviceGetUUID", nth=3, code=pynvml.NVML_ERROR_UNKNOWN)
    h0 = pynvml.nvmlDeviceGetHandleByIndex(0)
    pynvml.nvmlDeviceGetUUID(h0)
    pynvml.nvmlDeviceGetUUID(h0)
    with pytest.raises(pynvml.NVMLError_Unknown):
        pynvml.nvmlDeviceGetUUID(h0)
    pynvml.nvmlDeviceGetUUID(h0)  # fails once, then works again
    sim.clear_faults()
    assert pynvml.nvmlDeviceGetName(h) == "NVIDIA A100-SXM4-40GB"
    assert sim.calls["nvmlDeviceGetUUID"] == 4


def test_state_is_cached_until_the_file_changes(plain_pynvml: Sim) -> None:
    sim = plain_pynvml("dgx-a100")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    first = sim.snapshot()
    pynvml.nvmlDeviceGetName(h)
    assert sim.snapshot() is first
    pynvml.nvmlDeviceCreateGpuInstance(h, 0)
    assert sim.snapshot() is not first


def test_batch_is_one_transaction(plain_pynvml: Sim) -> None:
    sim = plain_pynvml("dgx-a100")
    other = NvmlSimulator.for_fleet(load_fleet("dgx-a100"))
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(RuntimeError), sim.batch():
        pynvml.nvmlDeviceCreateGpuInstance(h, 19)
        assert pynvml.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 19) == 6  # seen inside
        raise RuntimeError("abandon the batch")
    assert pynvml.nvmlDeviceGetGpuInstanceRemainingCapacity(h, 19) == 7  # nothing kept
    with sim.batch():
        for _ in range(3):
            pynvml.nvmlDeviceCreateGpuInstance(h, 19)
    assert len(other.snapshot().gpus["0"]["gis"]) == 3
