"""mig-parted's default layouts apply on the simulated GPUs as they do on real ones.

Layouts: NVIDIA/mig-parted ``deployments/systemd/config-default.yaml``, the entries
whose device filter matches each GPU. mig-parted creates a layout's instances biggest
profile first (``MigConfig.Flatten`` sorts by compute slices) with
``nvmlDeviceCreateGpuInstance``, so the driver chooses every placement.
"""

from __future__ import annotations

from collections.abc import Callable

import pynvml
import pytest
from accelpool_nvidia.models import CI_ENUM_BY_SLICES, GI_PROFILE_COUNT
from accelpool_nvidia.simulator import NvmlSimulator

import accelpool
from accelpool.sim.fleet import load_fleet

Sim = Callable[..., NvmlSimulator]
Inv = Callable[[str], accelpool.Inventory]
Layout = dict[str, int]


def _layouts(
    small: str, me: str, double: str, two: str, three: str, four: str, seven: str
) -> dict[str, Layout]:
    """The per-GPU layouts of config-default.yaml, by name (profile -> count)."""
    return {
        f"all-{small}": {small: 7},
        f"all-{small}.me": {me: 1},
        f"all-{double}": {double: 4},
        f"all-{two}": {two: 3},
        f"all-{three}": {three: 2},
        f"all-{four}": {four: 1},
        f"all-{seven}": {seven: 1},
        "all-balanced": {small: 2, two: 1, three: 1},
    }


#: GPU model (fleet model string) -> its layouts in config-default.yaml
LAYOUTS: dict[str, dict[str, Layout]] = {
    # device filters 0x20B010DE and 0x20F110DE (all-1g.10gb is "1g.10gb": 4 for these)
    "A100-SXM4-40GB": _layouts(
        "1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"
    ),
    "A100-PCIE-40GB": _layouts(
        "1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"
    ),
    # device filters 0x20B210DE, 0x233010DE and 0x233110DE (A100-80GB, H100-80GB SXM/PCIe)
    "A100-SXM4-80GB": _layouts(
        "1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"
    ),
    "H100-80GB-HBM3": _layouts(
        "1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"
    ),
    "H100-PCIE": _layouts(
        "1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"
    ),
    # device filter 0x233510DE (H200-141GB)
    "H200": _layouts(
        "1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"
    ),
}

#: Placements real GPUs ended with, by (model, layout): profile -> starts in creation order
TRANSCRIPTS: dict[tuple[str, str], dict[str, list[int]]] = {
    # NVIDIA MIG user guide: seven `-cgi 19` land on 6, 4, 5, 0, 1, 2, 3.
    ("A100-SXM4-40GB", "all-1g.5gb"): {"1g.5gb": [6, 4, 5, 0, 1, 2, 3]},
    # NVIDIA/DCGM#138: all-balanced on an A100-SXM4-80GB through the GPU operator.
    ("A100-SXM4-80GB", "all-balanced"): {"3g.40gb": [4], "2g.20gb": [0], "1g.10gb": [2, 3]},
}

CASES = [(model, name) for model, layouts in LAYOUTS.items() for name in layouts]


def _flatten(layout: Layout) -> list[str]:
    """mig-parted's creation order: most compute slices first, then +attributes first."""

    def key(name: str) -> tuple[int, str]:
        return int(name.split("g.", 1)[0]), name.partition("+")[2]

    return sorted((p for p, n in layout.items() for _ in range(n)), key=key, reverse=True)


def _profile_ids(h: object) -> dict[str, tuple[int, int]]:
    """Profile name -> (GI profile id, compute slices), walking the enums as mig-parted does."""
    found = {}
    for enum in range(GI_PROFILE_COUNT):
        try:
            info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(h, enum)
        except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_InvalidArgument):
            continue
        found[info.name.removeprefix("MIG ")] = (info.id, info.sliceCount)
    return found


def _fleet(fleet_file: Callable[..., str], model: str) -> str:
    return fleet_file(model, count=len(LAYOUTS[model]), mig=True)


@pytest.mark.parametrize("model", list(LAYOUTS))
def test_layouts_apply_through_plain_nvml(
    model: str, plain_pynvml: Sim, fleet_file: Callable[..., str]
) -> None:
    plain_pynvml(load_fleet(_fleet(fleet_file, model)))
    for index, (name, layout) in enumerate(LAYOUTS[model].items()):
        h = pynvml.nvmlDeviceGetHandleByIndex(index)  # one fresh GPU per layout
        ids = _profile_ids(h)
        starts: dict[str, list[int]] = {}
        for profile in _flatten(layout):
            gi_profile, slices = ids[profile]
            gi = pynvml.nvmlDeviceCreateGpuInstance(h, gi_profile)
            pynvml.nvmlGpuInstanceCreateComputeInstance(gi, CI_ENUM_BY_SLICES[slices])
            starts.setdefault(profile, []).append(pynvml.nvmlGpuInstanceGetInfo(gi).placement.start)
        assert {p: len(s) for p, s in starts.items()} == layout, name
        assert pynvml.nvmlDeviceGetMaxMigDeviceCount(h) == 7
        expected = TRANSCRIPTS.get((model, name))
        if expected is not None:
            assert starts == expected, name


@pytest.mark.parametrize("model", list(LAYOUTS))
def test_layouts_apply_through_accelpool(
    model: str, inventory: Inv, fleet_file: Callable[..., str]
) -> None:
    # accelpool's own placement without --placement agrees with the driver's.
    inv = inventory(_fleet(fleet_file, model))
    for index, (name, layout) in enumerate(LAYOUTS[model].items()):
        dev = inv.device(f"nvidia:{index}")
        starts: dict[str, list[int]] = {}
        for profile in _flatten(layout):
            part = dev.create_partition(profile)
            assert part.placement is not None
            starts.setdefault(profile, []).append(part.placement.start)
        assert sorted(p.profile for p in dev.partitions()) == sorted(_flatten(layout)), name
        expected = TRANSCRIPTS.get((model, name))
        if expected is not None:
            assert starts == expected, name
