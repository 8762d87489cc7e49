"""The simulator against real drivers: each test pins one fact a public transcript shows.

Every test names its source. Where NVIDIA's own mocks (go-nvml's dgxh100/dgxh200)
disagree with a real transcript, the transcript wins.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest
from accelpool_nvidia.mdev import MdevSysfs
from accelpool_nvidia.models import MIB
from accelpool_nvidia.simulator import NvmlSimulator

import accelpool
from accelpool.cli.app import main
from accelpool.sim.fleet import load_fleet
from accelpool.testing import write_fleet

Inv = Callable[[str], accelpool.Inventory]
Sim = Callable[..., NvmlSimulator]


def test_h200_mig_memory_sizes(inventory: Inv) -> None:
    # Source: `nvidia-smi mig -lgip` on an H200 in NVIDIA/mig-parted#120: 1g.35gb and
    # 2g.35gb are 32.25 GiB, 3g.71gb and 4g.71gb 69.50 GiB.
    profiles = {p.name: p for p in inventory("hgx-h200").device("nvidia:0").profiles()}
    for name in ("1g.35gb", "2g.35gb"):
        assert profiles[name].memory_bytes == 33024 * MIB
    for name in ("3g.71gb", "4g.71gb"):
        assert profiles[name].memory_bytes == 71168 * MIB


def _create_gis(h: object, profile_id: int, n: int) -> list[tuple[int, int]]:
    """``nvidia-smi mig -cgi`` without placements: (GI id, start) per create, in order."""
    made = []
    for _ in range(n):
        info = pynvml.nvmlGpuInstanceGetInfo(pynvml.nvmlDeviceCreateGpuInstance(h, profile_id))
        made.append((info.id, info.placement.start))
    return made


def test_seven_1g_creates_land_and_number_as_on_a_real_a100(plain_pynvml: Sim) -> None:
    plain_pynvml("dgx-a100")
    made = _create_gis(pynvml.nvmlDeviceGetHandleByIndex(0), 19, 7)
    # Source: NVIDIA MIG user guide, `nvidia-smi mig -cgi 19` x7 then `-lgi`: the
    # driver takes slots 6, 4, 5, 0, 1, 2, 3.
    assert [start for _, start in made] == [6, 4, 5, 0, 1, 2, 3]
    # Source: rapidsai/dask-cuda#583, the same creates on a fresh A100-SXM4-40GB:
    # "Successfully created GPU instance ID 9, 7, 8, 11, 12, 13, 14". Id 14 has no
    # 1g placement of its own, so ids are not a function of the placement alone.
    assert [gi_id for gi_id, _ in made] == [9, 7, 8, 11, 12, 13, 14]


def test_gpu_instance_ids_depend_on_history(plain_pynvml: Sim) -> None:
    # Source: NVIDIA/DCGM#138, `nvidia-smi mig -lgi` on two A100-SXM4-80GB of one node
    # after the GPU operator applied all-balanced: the same placements carry ids
    # 2, 3, 9, 10 on GPU 0 and 1, 5, 13, 14 on GPU 1.
    plain_pynvml("dgx-a100-80gb")
    h0, h1 = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in (0, 1))
    # GPU 0 ran all-7g.80gb before: its first instance since MIG was enabled sat at 0.
    pynvml.nvmlGpuInstanceDestroy(pynvml.nvmlDeviceCreateGpuInstance(h0, 0))
    ids = {}
    for h in (h0, h1):
        # biggest first, as mig-parted applies a layout
        ids[h is h1] = [
            *_create_gis(h, 9, 1),  # 3g.40gb
            *_create_gis(h, 14, 1),  # 2g.20gb
            *_create_gis(h, 19, 2),  # 1g.10gb x2
        ]
    assert ids[False] == [(2, 4), (3, 0), (9, 2), (10, 3)]
    assert ids[True] == [(1, 4), (5, 0), (13, 2), (14, 3)]


def test_handle_by_uuid_accepts_the_legacy_mig_form(plain_pynvml: Sim) -> None:
    # Source: NVML R535 release notes: nvmlDeviceGetHandleByUUID takes both MIG UUID
    # forms, MIG-<uuid> and the pre-R470 MIG-GPU-<gpu uuid>/<gi>/<ci>.
    plain_pynvml("dgx-a100")
    h = pynvml.nvmlDeviceGetHandleByIndex(3)
    gi = pynvml.nvmlDeviceCreateGpuInstance(h, 9)
    pynvml.nvmlGpuInstanceCreateComputeInstance(gi, 2)
    gi_id = pynvml.nvmlGpuInstanceGetInfo(gi).id
    gpu_uuid = pynvml.nvmlDeviceGetUUID(h)
    modern = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, 0))
    legacy = pynvml.nvmlDeviceGetHandleByUUID(f"MIG-{gpu_uuid}/{gi_id}/0")
    assert pynvml.nvmlDeviceGetUUID(legacy) == modern
    assert pynvml.nvmlDeviceGetGpuInstanceId(legacy) == gi_id
    for missing in (f"MIG-{gpu_uuid}/{gi_id}/1", f"MIG-{gpu_uuid}/13/0", f"MIG-{gpu_uuid}/x/0"):
        with pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetHandleByUUID(missing)


def test_core_count_is_not_supported_under_mig(
    plain_pynvml: Sim, inventory: Inv, fleet_file: Callable[..., str]
) -> None:
    # Source: nvml.h, nvmlDeviceGetNumGpuCores: NOT_SUPPORTED on MIG devices and on
    # MIG-enabled GPUs.
    plain_pynvml("dgx-a100")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetNumGpuCores(h)
    gi = pynvml.nvmlDeviceCreateGpuInstance(h, 19)
    pynvml.nvmlGpuInstanceCreateComputeInstance(gi, 0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetNumGpuCores(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, 0))
    # The backend still counts the board's 108 SMs, with MIG on or off.
    on = inventory("dgx-a100").device("nvidia:0")
    off = inventory(fleet_file("A100-SXM4-40GB", mig=False)).device("nvidia:0")
    assert on.compute_units == off.compute_units == 108
    assert "nvidia.com/cudaCores" not in on.attributes
    assert off.attributes["nvidia.com/cudaCores"] == 6912


def test_hopper_reports_a_busy_refusal_through_activation_status(
    plain_pynvml: Sim, fleet_file: Callable[..., str]
) -> None:
    # Source: nvml.h, nvmlDeviceSetMigMode: "activationStatus would return the
    # appropriate error code upon unsuccessful activation. For example, if device
    # unbind fails because the device isn't idle, NVML_ERROR_IN_USE would be
    # returned"; the call itself succeeds. Hopper needs no reset, so nothing is left
    # pending (MIG user guide).
    sim = plain_pynvml(load_fleet(fleet_file("H100-80GB-HBM3", mig=False)))
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    pid = sim.add_process(sim.gpus[0].uuid)
    assert pynvml.nvmlDeviceSetMigMode(h, 1) == pynvml.NVML_ERROR_IN_USE
    assert pynvml.nvmlDeviceGetMigMode(h) == [0, 0]
    sim.remove_process(pid)
    assert pynvml.nvmlDeviceSetMigMode(h, 1) == pynvml.NVML_SUCCESS
    assert pynvml.nvmlDeviceGetMigMode(h) == [1, 1]


def _types(h: object) -> dict[int, str]:
    return {t: pynvml.nvmlVgpuTypeGetName(t) for t in pynvml.nvmlDeviceGetSupportedVgpus(h)}


def _vgpu_boards(folder: Path) -> str:
    return write_fleet(
        folder,
        "vgpu-boards",
        "nvidia",
        [
            ("A100-SXM4-40GB", 1, {"virtualization": "host-vgpu"}),
            ("A100-SXM4-40GB", 1, {"virtualization": "host-vgpu", "mig": True}),
            ("A100-SXM4-80GB", 1, {"virtualization": "host-vgpu"}),
            ("A100-SXM4-80GB", 1, {"virtualization": "host-vgpu", "mig": True}),
        ],
    )


def test_a100_vgpu_types_are_the_real_ones(plain_pynvml: Sim, tmp_path: Path) -> None:
    # Source: vgpuConfig.xml of driver 510.47.03 (the "GRID A100X" and "GRID A100DX"
    # tables): HGX A100 40GB is nvidia-457...467 plus 704 for 1-5CME; HGX A100 80GB is
    # nvidia-615...626 plus 705, with no 5C type.
    sim = plain_pynvml(load_fleet(_vgpu_boards(tmp_path)))
    sliced, mig, sliced80, mig80 = (_types(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(4))
    assert list(sliced) == list(range(457, 463))
    assert list(mig) == [*range(463, 468), 704]
    assert sliced[457] == "GRID A100X-4C" and mig[704] == "GRID A100X-1-5CME"
    assert mig[465] == "GRID A100X-3-20C"
    assert list(sliced80) == list(range(615, 622))
    assert list(mig80) == [*range(622, 627), 705]
    assert mig80[705] == "GRID A100DX-1-10CME" and "GRID A100DX-5C" not in sliced80.values()
    assert pynvml.nvmlVgpuTypeGetGpuInstanceProfileId(465) == 9  # MIG 3g.20gb
    # Source: the same file's mdev description form, sizes in M.
    sim.sync_sysfs()
    tree = MdevSysfs(sim.sysfs_root)
    text = (tree.type_dir(sim.gpus[0].sysfs_pci, 457) / "description").read_text()
    assert "framebuffer=4096M, max_resolution=4096x2160, max_instance=10" in text


def test_a_gpu_instance_given_to_a_vgpu_is_in_use(plain_pynvml: Sim, tmp_path: Path) -> None:
    # Source: nvml.h, nvmlVgpuInstanceGetGpuInstanceId: the GPU instance id of a
    # MIG-backed vGPU, INVALID_GPU_INSTANCE_ID (0xFFFFFFFF) for a time-sliced one.
    sim = plain_pynvml(load_fleet(_vgpu_boards(tmp_path)))
    h = pynvml.nvmlDeviceGetHandleByIndex(1)
    gi = pynvml.nvmlDeviceCreateGpuInstance(h, 9)
    sim.sync_sysfs()
    tree = MdevSysfs(sim.sysfs_root)
    assert tree.available_instances(sim.gpus[1].sysfs_pci, 465) == 1
    tree.create(sim.gpus[1].sysfs_pci, 465, str(uuid.uuid4()))
    (inst,) = pynvml.nvmlDeviceGetActiveVgpus(h)
    assert pynvml.nvmlVgpuInstanceGetGpuInstanceId(inst) == pynvml.nvmlGpuInstanceGetInfo(gi).id
    with pytest.raises(pynvml.NVMLError_InUse):
        pynvml.nvmlGpuInstanceDestroy(gi)
    with pytest.raises(pynvml.NVMLError_InUse):  # its VM, not the host, makes the CIs
        pynvml.nvmlGpuInstanceCreateComputeInstance(gi, 2)
    h0 = pynvml.nvmlDeviceGetHandleByIndex(0)
    tree.create(sim.gpus[0].sysfs_pci, 460, str(uuid.uuid4()))
    (sliced,) = pynvml.nvmlDeviceGetActiveVgpus(h0)
    assert pynvml.nvmlVgpuInstanceGetGpuInstanceId(sliced) == 0xFFFFFFFF


def test_boards_for_mixed_pools(inventory: Inv, plain_pynvml: Sim, tmp_path: Path) -> None:
    fleet = write_fleet(
        tmp_path,
        "mixed-boards",
        "nvidia",
        [("A100-PCIE-40GB", 1, {"mig": True}), ("H100-PCIE", 1, {"mig": True})],
    )
    a100, h100 = inventory(fleet).devices()
    assert (a100.model, a100.compute_units) == ("NVIDIA A100-PCIE-40GB", 108)
    assert a100.attributes["nvidia.com/pciDeviceID"] == "0x20F110DE"
    assert [p.name for p in a100.profiles()][-1] == "7g.40gb"
    # Source: `nvidia-smi` and `nvidia-smi mig -lgip` on an H100 PCIe, driver 570.169:
    # 81559 MiB, 350 W, 14/30/46/62/114 SMs for 1g/2g/3g/4g/7g.
    assert (h100.model, h100.compute_units) == ("NVIDIA H100 PCIe", 114)
    assert h100.memory_bytes == 81559 * MIB
    sms = {p.name: p.compute_units for p in h100.profiles()}
    assert sms == {
        "1g.10gb": 14,
        "1g.10gb+me": 14,
        "1g.20gb": 14,
        "2g.20gb": 30,
        "3g.40gb": 46,
        "4g.40gb": 62,
        "7g.80gb": 114,
    }
    # The same transcript: `-cgi 19` x7 gives GPU instance ids 9, 7, 8, 11, 12, 13, 14.
    plain_pynvml(load_fleet(fleet))
    made = _create_gis(pynvml.nvmlDeviceGetHandleByIndex(1), 19, 7)
    assert [gi_id for gi_id, _ in made] == [9, 7, 8, 11, 12, 13, 14]


def test_dgx_a100_80gb_preset(inventory: Inv) -> None:
    devices = inventory("dgx-a100-80gb").devices()
    assert [d.model for d in devices] == ["NVIDIA A100-SXM4-80GB"] * 8
    assert {d.memory_bytes for d in devices} == {81920 * MIB}
    assert {d.attributes["nvidia.com/migMode"] for d in devices} == {"enabled"}


def test_mig_uuids_stay_unique_across_sim_reset(inventory: Inv) -> None:
    # A real driver never hands out a MIG UUID twice; anything that cached one (a
    # scheduler, CUDA_VISIBLE_DEVICES in a job) must not find it naming a new device.
    seen = set()
    for _ in range(3):
        inv = inventory("dgx-a100")
        seen.add(inv.device("nvidia:0").create_partition("1g.5gb").id)
        inv.close()
        assert main(["--sim", "dgx-a100", "sim", "reset"]) == 0
    assert len(seen) == 3
