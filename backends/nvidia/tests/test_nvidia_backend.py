"""Backend contract beyond MIG layout: errors, faults, visibility, telemetry, availability."""

from __future__ import annotations

import ctypes.util
from collections.abc import Callable

import pynvml
import pytest
from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia import parse_cuda_visible_devices
from accelpool_nvidia.errors import from_nvml

import accelpool
from accelpool.capabilities import Capability
from accelpool.errors import (
    AccelPoolError,
    BackendUnavailable,
    DeviceLost,
    InsufficientCapacity,
    InUse,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    UnsupportedOperation,
)

Inv = Callable[[str], accelpool.Inventory]


@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is not None, reason="NVML is present")
def test_without_nvml_the_backend_is_unavailable() -> None:
    before = pynvml.nvmlLib
    with accelpool.discover() as inv:
        (status,) = [s for s in inv.backends() if s.name == "nvidia"]
        assert not status.available
        assert status.reason is not None
        assert status.reason.startswith("NVML library not found (libnvidia-ml.so.1)")
        assert "[vendor: 12, NVML Shared Library Not Found]" in status.reason
        assert inv.devices("nvidia") == []
        assert any(s.available for s in inv.backends())  # the others are unaffected
    assert pynvml.nvmlLib is before


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (rc.INSUFFICIENT_RESOURCES, InsufficientCapacity),
        (rc.IN_USE, InUse),
        (rc.INVALID_ARGUMENT, InvalidRequest),
        (rc.NOT_FOUND, NotFound),
        (rc.NOT_SUPPORTED, UnsupportedOperation),
        (rc.NO_PERMISSION, PermissionDenied),
        (rc.GPU_IS_LOST, DeviceLost),
        (rc.LIBRARY_NOT_FOUND, BackendUnavailable),
        (rc.DRIVER_NOT_LOADED, BackendUnavailable),
        (rc.UNKNOWN, AccelPoolError),
        (rc.RESET_REQUIRED, AccelPoolError),
    ],
)
def test_every_nvml_error_maps_with_code_and_text(code: int, cls: type) -> None:
    err = from_nvml(pynvml.NVMLError(code), "doing something")
    assert type(err) is cls
    assert err.vendor_code == code and err.vendor_message
    assert str(err).startswith("doing something: ") and "\n" not in str(err)


def test_capabilities(inventory: Inv) -> None:
    caps = inventory("dgx-a100").device("nvidia:0").capabilities
    for c in (
        Capability.PARTITION_MIG,
        Capability.PARTITION_VGPU,
        Capability.MIG_MODE,
        Capability.PARTITION_DEVICE_SCOPE,
        Capability.FAULT_INJECTION,
        Capability.SESSION_ONNX,
        Capability.VISIBILITY,
        Capability.TELEMETRY,
    ):
        assert caps.supports(c), c
    assert caps.declared[Capability.PARTITION_VNPU] is False


def test_device_lost_fault(inventory: Inv) -> None:
    inv = inventory("dgx-a100")
    dev = inv.device("nvidia:4")
    part = dev.create_partition("1g.5gb")
    dev.backend_instance.inject_fault("device-lost", dev.info)
    for call in (
        dev.profiles,
        dev.partitions,
        dev.telemetry,
        part.destroy,
        lambda: dev.create_partition("1g.5gb"),
    ):
        with pytest.raises(DeviceLost) as e:
            call()
        assert e.value.vendor_code == rc.GPU_IS_LOST and e.value.vendor_message == "GPU is lost"
    # another process lists the lost GPU as lost at its index; the rest keep theirs
    other = inventory("dgx-a100")
    assert [d.index for d in other.devices()] == list(range(8))
    assert [d.index for d in other.devices() if d.lost] == [4]
    dev.backend_instance.clear_faults()
    assert [p.id for p in dev.partitions()] == [part.id]


def test_create_fails_midway_leaves_nothing(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    before = {p.name: p.available for p in dev.profiles()}
    dev.backend_instance.inject_fault("create-fails-midway", dev.info)
    with pytest.raises(AccelPoolError, match="rolled back") as e:
        dev.create_partition("3g.20gb")
    assert e.value.vendor_code == rc.UNKNOWN
    assert dev.partitions() == []
    assert {p.name: p.available for p in dev.profiles()} == before
    assert dev.create_partition("3g.20gb").profile == "3g.20gb"  # the fault fired once


def test_fault_injection_rejects_unknown_fault(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    with pytest.raises(InvalidRequest, match="device-lost"):
        dev.backend_instance.inject_fault("meteor-strike", dev.info)


def test_visibility_and_onnx(inventory: Inv, fleet_file: Callable[..., str]) -> None:
    inv = inventory("dgx-a100")
    dev = inv.device("nvidia:0")
    a = dev.create_partition("3g.20gb")
    b = dev.create_partition("2g.10gb")
    assert a.visibility_env() == {"CUDA_VISIBLE_DEVICES": a.info.native_id}
    both = dev.backend_instance.visibility_env([a.info, b.info])
    assert parse_cuda_visible_devices(both["CUDA_VISIBLE_DEVICES"]) == (
        a.info.native_id,
        b.info.native_id,
    )
    with pytest.raises(InvalidRequest, match="more than once"):
        dev.backend_instance.visibility_env([a.info, a.info])
    with pytest.raises(InvalidRequest, match="MIG enabled"):
        dev.visibility_env()
    onnx = a.onnx_placement()
    cuda, cpu = onnx.providers
    assert cuda.name == "CUDAExecutionProvider" and cpu.name == "CPUExecutionProvider"
    assert dict(cuda.options) == {"device_id": 0, "gpu_mem_limit": 19968 << 20}

    whole = inventory(fleet_file("H100-80GB-HBM3", mig=False)).device("nvidia:0")
    assert whole.visibility_env() == {"CUDA_VISIBLE_DEVICES": whole.info.native_id}
    assert dict(whole.onnx_placement().providers[0].options)["gpu_mem_limit"] == (
        whole.memory_bytes
    )


def test_telemetry(inventory: Inv, fleet_file: Callable[..., str]) -> None:
    t = inventory("dgx-a100").device("nvidia:0").telemetry()
    assert t.memory_total_bytes == 40960 << 20 and (t.memory_used_bytes or 0) > 0
    assert t.utilization_percent is None  # NVML gives none on MIG-enabled GPUs
    assert t.temperature_c is not None and t.power_w is not None and t.power_w > 10
    t2 = inventory(fleet_file("H200", mig=False)).device("nvidia:0").telemetry()
    assert t2.utilization_percent == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("0,2", (0, 2)),
        (" 1 , 0 ", (1, 0)),
        ("GPU-8932F937-D72C-4106-C12F-20BD9FAED9F6", ("GPU-8932f937-d72c-4106-c12f-20bd9faed9f6",)),
        (
            "MIG-8932f937-d72c-4106-c12f-20bd9faed9f6,0",
            ("MIG-8932f937-d72c-4106-c12f-20bd9faed9f6", 0),
        ),
        (
            "MIG-GPU-8932f937-d72c-4106-c12f-20bd9faed9f6/1/0",
            ("MIG-GPU-8932f937-d72c-4106-c12f-20bd9faed9f6/1/0",),
        ),
    ],
)
def test_parse_cuda_visible_devices(value: str, expected: tuple[object, ...]) -> None:
    assert parse_cuda_visible_devices(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0,0", "twice"),
        (
            "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6,gpu-8932F937-d72c-4106-c12f-20bd9faed9f6",
            "not a whole",
        ),
        (
            "MIG-8932f937-d72c-4106-c12f-20bd9faed9f6,MIG-8932F937-D72C-4106-C12F-20BD9FAED9F6",
            "twice",
        ),
        ("0,,1", "empty"),
        ("-1", "negative"),
        ("GPU-8932f937", "not a whole"),
        ("cuda:0", "neither"),
        ("all", "neither"),
    ],
)
def test_parse_cuda_visible_devices_rejects(value: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_cuda_visible_devices(value)


def test_unprivileged_create_is_permission_denied(
    inventory: Inv, fleet_file: Callable[..., str]
) -> None:
    dev = inventory(fleet_file("A100-SXM4-80GB", mig=True, privileged=False)).device("nvidia:0")
    with pytest.raises(PermissionDenied, match="root") as e:
        dev.create_partition("1g.10gb")
    assert e.value.vendor_code == rc.NO_PERMISSION


def test_mig_mode_api(inventory: Inv, fleet_file: Callable[..., str]) -> None:
    dev = inventory(fleet_file("H100-80GB-HBM3", count=2, mig=False)).device("nvidia:1")
    backend = dev.backend_instance
    sim = backend.simulator  # type: ignore[attr-defined]
    pid = sim.add_process(dev.info.native_id)
    with pytest.raises(InUse, match="stop the processes"):  # Hopper refuses while busy
        backend.set_mig_mode(dev.info, True)  # type: ignore[attr-defined]
    sim.remove_process(pid)
    change = backend.set_mig_mode(dev.info, True)  # type: ignore[attr-defined]
    assert (change.status, change.current, change.pending) == ("applied", True, True)
    assert [p.name for p in dev.profiles()][-1] == "7g.80gb"
