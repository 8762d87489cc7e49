"""vGPU on a simulated hypervisor host: NVML types plus the mediated-device sysfs tree."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from accelpool_nvidia.mdev import MdevSysfs

import accelpool
from accelpool.errors import AccelPoolError, InsufficientCapacity, InUse, UnsupportedOperation

Inv = Callable[[str], accelpool.Inventory]


def _tree(dev: accelpool.Device) -> MdevSysfs:
    sim = dev.backend_instance.simulator  # type: ignore[attr-defined]
    sim.sync_sysfs()
    return MdevSysfs(sim.sysfs_root)  # plain file access, as another tool would do


def _pci(dev: accelpool.Device) -> str:
    domain, rest = str(dev.attributes["nvidia.com/pciBusID"]).split(":", 1)
    return f"{int(domain, 16):04x}:{rest.lower()}"


def test_vgpu_types_are_profiles(inventory: Inv) -> None:
    dev = inventory("vgpu-host").device("nvidia:0")
    assert dev.attributes["nvidia.com/virtualizationMode"] == "host-vgpu"
    profiles = {p.name: p for p in dev.profiles()}
    assert list(profiles) == [
        "A100X-4C",
        "A100X-5C",
        "A100X-8C",
        "A100X-10C",
        "A100X-20C",
        "A100X-40C",
    ]
    p = profiles["A100X-10C"]
    assert (p.kind, p.memory_bytes, p.max_count, p.available) == ("vgpu", 10 << 30, 4, 4)
    assert p.attributes["nvidia.com/vgpuTypeId"] == 460 and p.placements == ()


def test_vgpu_create_fill_destroy(inventory: Inv) -> None:
    dev = inventory("vgpu-host").device("nvidia:0")
    parts = [dev.create_partition("A100X-10C") for _ in range(4)]
    assert all(p.id.startswith("nvidia:vgpu-") and p.kind == "vgpu" for p in parts)
    with pytest.raises(InsufficientCapacity, match="every instance"):
        dev.create_partition("A100X-10C")
    tree = _tree(dev)
    assert tree.available_instances(_pci(dev), 460) == 0
    assert {d.uuid for d in tree.devices()} == {p.attributes["nvidia.com/mdevUUID"] for p in parts}
    parts[0].destroy()
    assert tree.available_instances(_pci(dev), 460) == 1
    assert len(inventory("vgpu-host").device("nvidia:0").partitions()) == 3  # another view


def test_time_sliced_types_do_not_mix(inventory: Inv) -> None:
    dev = inventory("vgpu-host").device("nvidia:1")
    dev.create_partition("A100X-20C")
    with pytest.raises(InsufficientCapacity, match="runs A100X-20C"):
        dev.create_partition("A100X-4C")
    avail = {p.name: p.available for p in dev.profiles()}
    assert avail == {
        "A100X-4C": 0,
        "A100X-5C": 0,
        "A100X-8C": 0,
        "A100X-10C": 0,
        "A100X-20C": 1,
        "A100X-40C": 0,
    }


def test_mdev_made_by_hand_is_listed(inventory: Inv) -> None:
    dev = inventory("vgpu-host").device("nvidia:0")
    tree = _tree(dev)
    made = str(uuid.uuid4())
    # what an administrator's `echo $uuid > .../create` does
    (tree.type_dir(_pci(dev), 458) / "create").write_text(made)
    (part,) = dev.partitions()
    assert part.id == f"nvidia:vgpu-{made}" and part.profile == "A100X-5C"
    assert tree.available_instances(_pci(dev), 458) == 7


def test_vgpu_in_use_cannot_be_removed(inventory: Inv) -> None:
    dev = inventory("vgpu-host").device("nvidia:0")
    part = dev.create_partition("A100X-40C")
    sim = dev.backend_instance.simulator  # type: ignore[attr-defined]
    pid = sim.add_process(part.attributes["nvidia.com/mdevUUID"])  # a VM using it
    with pytest.raises(InUse, match="VM"):
        part.destroy()
    sim.remove_process(pid)
    part.destroy()
    assert dev.partitions() == []


def test_vgpu_create_fails_midway_is_rolled_back(inventory: Inv) -> None:
    dev = inventory("vgpu-host").device("nvidia:0")
    dev.backend_instance.inject_fault("create-fails-midway", dev.info)
    with pytest.raises(AccelPoolError, match="rolled back"):
        dev.create_partition("A100X-8C")
    assert dev.partitions() == [] and _tree(dev).devices() == []
    assert dev.create_partition("A100X-8C").profile == "A100X-8C"


def test_non_vgpu_gpu_has_no_vgpu_profiles(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    assert {p.kind for p in dev.profiles()} == {"mig"}
    with pytest.raises(UnsupportedOperation, match="vGPU"):
        dev.backend_instance.visibility_env(
            [
                accelpool.PartitionInfo(
                    "vgpu-x", dev.info.native_id, "A100X-4C", "vgpu", 1, 1, None, "device"
                )
            ]
        )


def test_mig_backed_vgpu_takes_a_gpu_instance(
    inventory: Inv, fleet_file: Callable[..., str]
) -> None:
    fleet = fleet_file("A100-SXM4-40GB", mig=True, virtualization="host-vgpu")
    dev = inventory(fleet).device("nvidia:0")
    vgpus = {p.name: p for p in dev.profiles() if p.kind == "vgpu"}
    assert list(vgpus) == [
        "A100X-1-5C",
        "A100X-2-10C",
        "A100X-3-20C",
        "A100X-4-20C",
        "A100X-7-40C",
        "A100X-1-5CME",
    ]
    three = vgpus["A100X-3-20C"]
    assert (three.available, three.compute_units, three.memory_bytes) == (2, 42, 20 << 30)
    assert [(p.start, p.size) for p in three.placements] == [(0, 4), (4, 4)]
    part = dev.create_partition("A100X-3-20C")
    assert part.kind == "vgpu" and part.placement == accelpool.Placement(4, 4)
    gi_id = part.attributes["nvidia.com/gpuInstanceId"]
    # the GPU instance is the vGPU's: not listed again as a MIG partition
    assert [p.id for p in dev.partitions()] == [part.id]
    sim = dev.backend_instance.simulator  # type: ignore[attr-defined]
    assert sim.free_gis(sim.snapshot().ns, 0, 9) == []
    avail = {p.name: p.available for p in dev.profiles()}
    assert avail["A100X-3-20C"] == 1 and avail["3g.20gb"] == 1 and avail["7g.40gb"] == 0
    # MIG partitions and MIG-backed vGPUs share the GPU's slices
    mig = dev.create_partition("3g.20gb")
    with pytest.raises(InsufficientCapacity, match=r"no room for 3g\.20gb"):
        dev.create_partition("A100X-3-20C")
    mig.destroy()
    second = dev.create_partition("A100X-3-20C")
    assert second.attributes["nvidia.com/gpuInstanceId"] != gi_id
    with pytest.raises(InsufficientCapacity):
        dev.create_partition("A100X-3-20C")
    part.destroy()
    second.destroy()
    assert dev.partitions() == []
    assert all(p.available == p.max_count for p in dev.profiles() if p.kind == "mig")


def test_mig_backed_vgpu_failing_midway_gives_its_gpu_instance_back(
    inventory: Inv, fleet_file: Callable[..., str]
) -> None:
    fleet = fleet_file("A100-SXM4-40GB", mig=True, virtualization="host-vgpu")
    dev = inventory(fleet).device("nvidia:0")
    dev.backend_instance.inject_fault("create-fails-midway", dev.info)
    with pytest.raises(AccelPoolError, match="rolled back"):
        dev.create_partition("A100X-7-40C")
    assert dev.partitions() == []
    assert dev.create_partition("A100X-7-40C").placement == accelpool.Placement(0, 8)
