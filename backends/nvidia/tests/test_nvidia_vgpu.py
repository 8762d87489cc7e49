"""vGPU on a simulated hypervisor host: NVML types plus the mediated-device sysfs tree."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

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
    assert p.attributes["nvidia.com/vgpuTypeId"] == 471 and p.placements == ()


def test_vgpu_create_fill_destroy(inventory: Inv) -> None:
    dev = inventory("vgpu-host").device("nvidia:0")
    parts = [dev.create_partition("A100X-10C") for _ in range(4)]
    assert all(p.id.startswith("nvidia:vgpu-") and p.kind == "vgpu" for p in parts)
    with pytest.raises(InsufficientCapacity, match="every instance"):
        dev.create_partition("A100X-10C")
    tree = _tree(dev)
    assert tree.available_instances(_pci(dev), 471) == 0
    assert {d.uuid for d in tree.devices()} == {p.attributes["nvidia.com/mdevUUID"] for p in parts}
    parts[0].destroy()
    assert tree.available_instances(_pci(dev), 471) == 1
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
    (tree.type_dir(_pci(dev), 469) / "create").write_text(made)
    (part,) = dev.partitions()
    assert part.id == f"nvidia:vgpu-{made}" and part.profile == "A100X-5C"
    assert tree.available_instances(_pci(dev), 469) == 7


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


def test_mig_backed_types_when_mig_is_on(
    inventory: Inv, fleet_file: Callable[..., str], tmp_path: Path
) -> None:
    dev = inventory(fleet_file("H200", mig=True, virtualization="host-vgpu")).device("nvidia:0")
    vgpus = [p for p in dev.profiles() if p.kind == "vgpu"]
    assert "H200X-3-71C" in {p.name for p in vgpus}
    assert all(p.available == 0 for p in vgpus)
    with pytest.raises(UnsupportedOperation, match="MIG-backed"):
        dev.create_partition("H200X-1-18C")
