"""The OpenCL backend on the real PoCL CPU device (any compute-unit count)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import accelpool_opencl
import numpy as np
import pyopencl as cl
import pytest
from accelpool_opencl.backend import ATTR, OpenCLBackend
from accelpool_opencl.errors import cl_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import accelpool
from accelpool.capabilities import Capability, Support
from accelpool.errors import (
    BackendUnavailable,
    InsufficientCapacity,
    InvalidRequest,
    NotFound,
    UnsupportedOperation,
)
from accelpool.spi import BackendContext

VADD = """
__kernel void vadd(__global const float *a, __global const float *b, __global float *c) {
    int i = get_global_id(0);
    c[i] = a[i] + b[i];
}
"""


@pytest.fixture
def inv() -> Iterator[accelpool.Inventory]:
    inventory = accelpool.discover(backends=["opencl"])
    yield inventory
    inventory.close()


@pytest.fixture
def dev(inv: accelpool.Inventory) -> accelpool.Device:
    pocl = [
        d
        for d in inv.devices("opencl")
        if str(d.attributes[ATTR + "platform"]).startswith("Portable")
    ]
    assert pocl, f"no PoCL device found: {inv.backends()}"
    return pocl[0]


def _child_env(**extra: str) -> dict[str, str]:
    # The child imports this very package, however it is installed.
    root = str(Path(accelpool_opencl.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, ACCELPOOL_BACKENDS="opencl", **extra)


def vector_add(handle: accelpool_opencl.OpenCLHandle, queue: cl.CommandQueue) -> None:
    """Run the kernel on ``queue`` and check the sum with numpy."""
    rng = np.random.default_rng(7)
    a = rng.random(4096, dtype=np.float32)
    b = rng.random(4096, dtype=np.float32)
    mf = cl.mem_flags
    ctx = handle.context
    a_buf = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=a)
    b_buf = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=b)
    c_buf = cl.Buffer(ctx, mf.WRITE_ONLY, a.nbytes)
    program = cl.Program(ctx, VADD).build()
    program.vadd(queue, a.shape, None, a_buf, b_buf, c_buf)
    c = np.empty_like(a)
    cl.enqueue_copy(queue, c, c_buf)
    queue.finish()
    np.testing.assert_array_equal(c, a + b)


# -- discovery ----------------------------------------------------------------


def test_discovery_reports_the_pocl_cpu_device(dev: accelpool.Device) -> None:
    assert dev.id == f"opencl:{dev.info.native_id}"
    assert not dev.info.native_id.isdigit()
    assert dev.info.native_id.startswith("pocl-")
    assert dev.memory_bytes > 0 and dev.compute_units >= 1
    assert dev.vendor and dev.model
    attrs = dev.attributes
    assert attrs[ATTR + "deviceType"] == "CPU"
    assert str(attrs[ATTR + "version"]).count(".") == 1  # e.g. "3.0"
    assert str(attrs[ATTR + "versionString"]).startswith("OpenCL ")
    assert attrs[ATTR + "driverVersion"]
    assert "BY_COUNTS" in str(attrs[ATTR + "partitionProperties"])
    assert int(attrs[ATTR + "maxSubDevices"]) >= 1
    # The same facts pyopencl gives by hand.
    by_hand = [d for p in cl.get_platforms() for d in p.get_devices()]
    assert dev.memory_bytes in {d.global_mem_size for d in by_hand}
    assert dev.compute_units in {d.max_compute_units for d in by_hand}


def test_devices_are_addressable_by_index_and_id(inv: accelpool.Inventory) -> None:
    devices = inv.devices("opencl")
    assert [d.index for d in devices] == list(range(len(devices)))
    for d in devices:
        assert inv.device(f"opencl:{d.index}") is inv.device(d.id)


def test_ids_are_stable_across_processes(inv: accelpool.Inventory) -> None:
    code = (
        "import accelpool, json; inv = accelpool.discover(backends=['opencl']); "
        "print(json.dumps([[d.id, d.index] for d in inv.devices('opencl')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_child_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == [[d.id, d.index] for d in inv.devices("opencl")]


def test_capabilities_are_declared(dev: accelpool.Device) -> None:
    caps = dev.capabilities
    for c in (Capability.DISCOVERY, Capability.PARTITION, Capability.PARTITION_SUBDEVICE):
        assert caps.supports(c)
    assert caps.support(Capability.PARTITION_DEVICE_SCOPE) is Support.UNSUPPORTED
    assert caps.support(Capability.TELEMETRY) is Support.UNSUPPORTED
    with pytest.raises(UnsupportedOperation):
        dev.telemetry()


def test_no_pyopencl_means_unavailable_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyopencl", None)
    with pytest.raises(BackendUnavailable, match="pyopencl cannot be imported"):
        OpenCLBackend(BackendContext(name="opencl")).probe()


def test_no_platform_means_unavailable_naming_an_icd(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_platforms() -> list[cl.Platform]:
        raise cl.LogicError(cl._cl._ErrorRecord("clGetPlatformIDs", -1001, "none"))

    monkeypatch.setattr(cl, "get_platforms", no_platforms)
    with pytest.raises(BackendUnavailable, match="no OpenCL platform found") as err:
        OpenCLBackend(BackendContext(name="opencl")).probe()
    assert err.value.vendor_code == -1001
    monkeypatch.setattr(cl, "get_platforms", list)
    with pytest.raises(BackendUnavailable, match="pocl-binary-distribution"):
        OpenCLBackend(BackendContext(name="opencl")).probe()


# -- profiles and partitions ------------------------------------------------------


def test_profiles_follow_the_compute_units(dev: accelpool.Device) -> None:
    cus = dev.compute_units
    profiles = {p.name: p for p in dev.profiles()}
    for n in range(1, cus + 1):
        p = profiles[f"equally-{n}"]
        assert (p.kind, p.compute_units, p.max_count, p.available) == (
            "subdevice",
            n,
            cus // n,
            cus // n,
        )
        assert [pl.start for pl in p.placements] == list(range(0, (cus // n) * n, n))
        assert p.memory_bytes == dev.memory_bytes
        assert p.attributes[ATTR + "memoryShared"] is True
    counts = [p for p in profiles.values() if p.name.startswith("counts-")]
    assert len(counts) == min(cus, int(dev.attributes[ATTR + "maxSubDevices"]), 8) - 1
    for p in counts:
        sizes = [int(s) for s in p.name.removeprefix("counts-").split("+")]
        assert sum(sizes) == p.compute_units == cus and p.max_count == 1


def test_equally_one_fills_the_device_then_capacity_runs_out(dev: accelpool.Device) -> None:
    cus = dev.compute_units
    parts = [dev.create_partition("equally-1") for _ in range(cus)]
    assert {p.placement.start for p in parts if p.placement} == set(range(cus))
    assert all(p.scope == "process" and p.compute_units == 1 for p in parts)
    assert all(p.id.startswith(dev.id + ".sub") for p in parts)
    assert len({p.id for p in parts}) == cus
    assert {p.id for p in dev.partitions()} == {p.id for p in parts}
    assert all(p.available == 0 for p in dev.profiles())
    with pytest.raises(InsufficientCapacity, match="destroy"):
        dev.create_partition("equally-1")
    parts[0].destroy()
    assert dev.profile("equally-1").available == 1
    again = dev.create_partition("equally-1")
    assert again.placement == parts[0].placement
    assert again.id not in {p.id for p in parts}  # ids are never reused
    for p in [again, *parts[1:]]:
        p.destroy()
    assert dev.partitions() == []


def test_destroying_twice_is_not_found(dev: accelpool.Device) -> None:
    part = dev.create_partition(f"equally-{dev.compute_units}")
    part.destroy()
    with pytest.raises(NotFound, match="already destroyed"):
        part.destroy()
    with pytest.raises(NotFound):
        accelpool_opencl.opencl_handle(part)


def test_a_taken_placement_is_refused_and_a_bad_one_is_invalid(dev: accelpool.Device) -> None:
    part = dev.create_partition("equally-1", placement=0)
    assert part.placement == accelpool.Placement(0, 1)
    with pytest.raises(InsufficientCapacity, match="taken"):
        dev.create_partition("equally-1", placement=0)
    with pytest.raises(InsufficientCapacity):
        dev.create_partition(f"equally-{dev.compute_units}")
    with pytest.raises(InvalidRequest, match="valid placements"):
        dev.create_partition("equally-1", placement=dev.compute_units)
    part.destroy()


@pytest.mark.parametrize("name", ["equally-x", "counts-", "counts-0+1", "bogus", "equally-0"])
def test_malformed_profiles_are_invalid(dev: accelpool.Device, name: str) -> None:
    with pytest.raises(InvalidRequest, match="valid profiles: equally-N"):
        dev.create_partition(name)
    assert dev.partitions() == []


def test_out_of_range_profiles_are_invalid(dev: accelpool.Device) -> None:
    cus = dev.compute_units
    for name in (f"equally-{cus + 1}", f"counts-{cus}+1"):
        with pytest.raises(InvalidRequest, match=f"at most {cus}|<= {cus}"):
            dev.create_partition(name)
    assert dev.partitions() == []


def test_vendor_errors_keep_their_cl_code(dev: accelpool.Device) -> None:
    raw = dev.backend_instance._devices[dev.info.native_id].cl  # type: ignore[attr-defined]
    with pytest.raises(cl.Error) as caught:
        raw.create_sub_devices([0x1087, dev.compute_units + 1, 0])
    err = cl_error(caught.value, "creating sub-devices")
    assert isinstance(err, InvalidRequest)
    assert err.vendor_code == -68 and "INVALID_DEVICE_PARTITION_COUNT" in str(err)


def test_partitions_live_in_their_inventory_only(dev: accelpool.Device) -> None:
    part = dev.create_partition("equally-1")
    with accelpool.discover(backends=["opencl"]) as other:
        assert other.device(dev.id).partitions() == []
    part.destroy()


def test_closing_the_inventory_releases_its_partitions(inv: accelpool.Inventory) -> None:
    dev = inv.device("opencl:0")
    dev.create_partition("equally-1")
    inv.close()
    assert dev.partitions() == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 63)), max_size=12))
def test_random_creates_and_destroys_keep_exact_accounting(
    dev: accelpool.Device, ops: list[tuple[bool, int]]
) -> None:
    cus = dev.compute_units
    names = [p.name for p in dev.profiles()]
    live: list[accelpool.Partition] = []
    try:
        for create, pick in ops:
            if create or not live:
                name = names[pick % len(names)]
                fits = dev.profile(name).available
                try:
                    live.append(dev.create_partition(name))
                    assert fits
                except InsufficientCapacity:
                    assert fits == 0
            else:
                live.pop(pick % len(live)).destroy()
            placed = [p.placement for p in dev.partitions() if p.placement]
            assert sum(pl.size for pl in placed) <= cus
            assert not any(a.overlaps(b) for i, a in enumerate(placed) for b in placed[i + 1 :])
            used = {u for pl in placed for u in range(pl.start, pl.start + pl.size)}
            for prof in dev.profiles():
                free = [
                    pl
                    for pl in prof.placements
                    if used.isdisjoint(range(pl.start, pl.start + pl.size))
                ]
                assert prof.available == len(free)
    finally:
        for part in live:
            part.destroy()


# -- running work ---------------------------------------------------------------


def test_vector_add_on_the_device(dev: accelpool.Device) -> None:
    handle = accelpool_opencl.opencl_handle(dev)
    assert handle.devices[0].max_compute_units == dev.compute_units
    vector_add(handle, handle.queue)


def test_vector_add_on_a_sub_device(dev: accelpool.Device) -> None:
    part = dev.create_partition("equally-1")
    backend = part.backend_instance
    assert isinstance(backend, OpenCLBackend)
    ctx, queue = backend.context_and_queue(part.info)
    # PoCL lists the root device in CL_CONTEXT_DEVICES; the queue names the sub-device.
    assert queue.device.max_compute_units == 1
    assert queue.device.parent_device is not None
    assert backend.context_and_queue(part.info) == (ctx, queue)  # made once
    vector_add(accelpool_opencl.opencl_handle(part), queue)
    part.destroy()


def test_vector_add_on_each_sub_device_of_a_counts_partition(dev: accelpool.Device) -> None:
    counts = [p for p in dev.profiles() if p.name.startswith("counts-")]
    if not counts:
        pytest.skip("a one-compute-unit device offers no counts- fission")
    part = dev.create_partition(counts[0].name)
    handle = accelpool_opencl.opencl_handle(part)
    sizes = [int(s) for s in part.profile.removeprefix("counts-").split("+")]
    assert [d.max_compute_units for d in handle.devices] == sizes
    assert [q.device.max_compute_units for q in handle.queues] == sizes
    for queue in handle.queues:
        vector_add(handle, queue)
    part.destroy()


def test_opencl_handle_refuses_other_objects() -> None:
    with pytest.raises(InvalidRequest, match="not a device or partition of the OpenCL backend"):
        accelpool_opencl.opencl_handle(object())


def test_onnx_runs_on_the_cpu_provider_with_the_targets_threads(dev: accelpool.Device) -> None:
    placement = dev.onnx_placement()
    assert [p.name for p in placement.providers] == ["CPUExecutionProvider"]
    assert placement.intra_op_num_threads == dev.compute_units
    part = dev.create_partition("equally-1")
    assert part.onnx_placement().intra_op_num_threads == 1
    part.destroy()


def test_visibility_env_restricts_pocl_to_the_partitions_compute_units(
    dev: accelpool.Device,
) -> None:
    part = dev.create_partition("equally-1")
    env = part.visibility_env()
    assert env["POCL_DEVICES"] in dev.model
    part.destroy()
    code = (
        "import pyopencl as cl; "
        "print([d.max_compute_units for p in cl.get_platforms() for d in p.get_devices()])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_child_env(**env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == [1]
    assert dev.visibility_env()["POCL_MAX_PTHREAD_COUNT"] == str(dev.compute_units)
    with pytest.raises(NotFound):
        part.visibility_env()
