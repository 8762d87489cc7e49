"""The Ascend backend on its simulator: devices, vNPU templates and the hard split."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from accelpool_ascend import models

import accelpool

GIB = 1 << 30
MIB = 1 << 20


def test_atlas_800_lists_eight_910b3_with_vendor_attributes(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    devices = discover("atlas-800-910b").devices()
    assert len(devices) == 8
    assert [d.index for d in devices] == list(range(8))
    assert len({d.id for d in devices}) == 8
    for d in devices:
        assert d.vendor == "Huawei"
        assert d.model == "Ascend910B3"
        assert d.compute_units == 20
        assert d.memory_bytes == 64 * GIB
        assert d.attributes["huawei.com/chipName"] == "910B3"
        assert d.attributes["huawei.com/aiCore"] == 20
        assert d.attributes["huawei.com/aiCpu"] == 7
        assert d.attributes["huawei.com/logicID"] == d.index
        assert d.attributes["huawei.com/memoryType"] == "HBM"
        # the native id is the chip's die id, not a bare index
        native = d.id.split(":", 1)[1]
        assert native == d.attributes["huawei.com/dieID"]
        assert len(native.split("-")) == 5 and not native.isdigit()


def test_device_ids_are_stable_across_discoveries(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    first = [d.id for d in discover("atlas-800-910b").devices()]
    second = [d.id for d in discover("atlas-800-910b").devices()]
    assert first == second


def test_910b3_offers_its_two_templates_with_ai_cores_and_memory(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    profiles = {p.name: p for p in discover("atlas-800-910b").device("ascend:0").profiles()}
    assert set(profiles) == {"vir05_1c_16g", "vir10_3c_32g"}
    small, large = profiles["vir05_1c_16g"], profiles["vir10_3c_32g"]
    assert (small.kind, small.compute_units, small.memory_bytes) == ("vnpu", 5, 16 * GIB)
    assert (large.kind, large.compute_units, large.memory_bytes) == ("vnpu", 10, 32 * GIB)
    assert small.attributes["huawei.com/aiCpu"] == 1
    assert large.attributes["huawei.com/aiCpu"] == 3
    assert (small.max_count, small.available) == (4, 4)
    assert (large.max_count, large.available) == (2, 2)
    assert small.placements == () and large.placements == ()


def test_310p3_offers_vir01_vir02_vir04(discover: Callable[[str], accelpool.Inventory]) -> None:
    dev = discover("atlas-300i-310p").device("ascend:0")
    assert dev.model == "Ascend310P3"
    assert dev.memory_bytes == 24 * GIB
    assert dev.attributes["huawei.com/memoryType"] == "DDR"
    names = [p.name for p in dev.profiles()]
    assert {"vir01", "vir02", "vir04"} <= set(names)


@pytest.mark.parametrize("template", ["vir05_1c_16g", "vir10_3c_32g"])
def test_vnpus_use_up_the_20_ai_cores_and_memory_then_refuse(
    discover: Callable[[str], accelpool.Inventory], template: str
) -> None:
    dev = discover("atlas-800-910b").device("ascend:2")
    made: list[accelpool.Partition] = []
    while len(made) < 10:
        try:
            made.append(dev.create_partition(template))
        except accelpool.InsufficientCapacity as e:
            assert template in str(e)
            break
    assert len(made) == dev.profile(template).max_count
    assert sum(p.compute_units for p in made) == 20
    assert sum(p.memory_bytes for p in made) == 64 * GIB
    assert all(p.available == 0 for p in dev.profiles())
    with pytest.raises(accelpool.InsufficientCapacity, match="destroy a vNPU"):
        dev.create_partition("vir05_1c_16g")
    # the other chips are untouched
    assert discover("atlas-800-910b").device("ascend:3").profile(template).available == len(made)


def test_mixed_templates_share_one_chip(discover: Callable[[str], accelpool.Inventory]) -> None:
    dev = discover("atlas-800-910b").device("ascend:0")
    big = dev.create_partition("vir10_3c_32g")
    assert dev.profile("vir05_1c_16g").available == 2
    assert dev.profile("vir10_3c_32g").available == 1
    dev.create_partition("vir05_1c_16g")
    dev.create_partition("vir05_1c_16g")
    with pytest.raises(accelpool.InsufficientCapacity):
        dev.create_partition("vir05_1c_16g")
    big.destroy()
    assert dev.profile("vir10_3c_32g").available == 1
    assert dev.profile("vir05_1c_16g").available == 2


def test_a_vnpu_reports_its_template(discover: Callable[[str], accelpool.Inventory]) -> None:
    dev = discover("atlas-800-910b").device("ascend:1")
    part = dev.create_partition("vir05_1c_16g")
    assert part.kind == "vnpu" and part.scope == "device" and part.placement is None
    assert part.profile == "vir05_1c_16g"
    assert (part.compute_units, part.memory_bytes) == (5, 16 * GIB)
    assert part.attributes["huawei.com/aiCpu"] == 1
    # vNPU ids come from the driver's range for physical chip 1: [116, 123]
    assert part.attributes["huawei.com/vnpuID"] in models.vnpu_id_range(1)
    assert part.id == f"ascend:Ascend910B3-vir05_1c_16g-{part.attributes['huawei.com/vnpuID']}-1"
    assert [p.id for p in dev.partitions()] == [part.id]
    assert part.device_id == dev.id


def test_destroy_frees_the_template_and_twice_is_not_found(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    dev = discover("atlas-800-910b").device("ascend:0")
    part = dev.create_partition("vir10_3c_32g")
    assert dev.profile("vir10_3c_32g").available == 1
    part.destroy()
    assert dev.partitions() == []
    assert dev.profile("vir10_3c_32g").available == 2
    with pytest.raises(accelpool.NotFound, match="no longer exists"):
        part.destroy()


def test_a_reused_vnpu_id_does_not_make_an_old_partition_destroyable(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    dev = discover("atlas-800-910b").device("ascend:0")
    old = dev.create_partition("vir05_1c_16g")
    old.destroy()
    newer = [dev.create_partition("vir10_3c_32g") for _ in range(2)]
    assert old.id not in {p.id for p in newer}
    with pytest.raises(accelpool.NotFound):
        old.destroy()
    assert len(dev.partitions()) == 2


def test_unknown_template_and_placement_are_invalid(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    dev = discover("atlas-800-910b").device("ascend:0")
    with pytest.raises(accelpool.InvalidRequest, match="vir05_1c_16g, vir10_3c_32g"):
        dev.create_partition("vir04")
    with pytest.raises(accelpool.InvalidRequest, match="no placement"):
        dev.create_partition("vir05_1c_16g", placement=0)
    assert dev.partitions() == []


@pytest.mark.parametrize(
    ("chip", "template"),
    [(c.chip_name, t.name) for c in models.CHIPS.values() for t in c.templates],
)
def test_every_template_of_every_chip_fills_to_max_count_within_budget(
    discover: Callable[[str], accelpool.Inventory],
    ascend_fleet: Callable[..., str],
    chip: str,
    template: str,
) -> None:
    dev = discover(ascend_fleet({chip: 1}, name=f"one-{chip}")).device("ascend:0")
    model = models.CHIPS[chip]
    expected = dev.profile(template).max_count
    made = []
    for _ in range(expected):
        made.append(dev.create_partition(template))
    with pytest.raises(accelpool.InsufficientCapacity):
        dev.create_partition(template)
    assert sum(p.compute_units for p in made) <= model.aicore
    assert sum(p.memory_bytes for p in made) <= model.memory_mb * MIB
    if model.aicpu is not None:
        assert sum(int(p.attributes["huawei.com/aiCpu"]) for p in made) <= model.aicpu
    t = model.template(template)
    assert t is not None
    # what ran out is a real limit of the chip: cores, memory, AI CPUs or vNPU ids
    left_cores = model.aicore - len(made) * t.aicore
    left_mem = model.memory_mb - len(made) * t.memory_mb
    left_cpu = None if model.aicpu is None else model.aicpu - len(made) * t.aicpu
    assert (
        left_cores < t.aicore
        or left_mem < t.memory_mb
        or (left_cpu is not None and left_cpu < t.aicpu)
        or len(made) == models.VNPU_IDS_PER_CHIP
    )


def test_310p3_ai_cpus_bound_the_split(discover: Callable[[str], accelpool.Inventory]) -> None:
    # 8 AI cores but 7 AI CPUs: four vir02 (2 AI CPUs each) do not fit, three and a
    # vir02_1c do, as the Ascend edge documentation's example splits a 310P.
    dev = discover("atlas-300i-310p").device("ascend:0")
    for _ in range(3):
        dev.create_partition("vir02")
    with pytest.raises(accelpool.InsufficientCapacity, match="AI CPUs"):
        dev.create_partition("vir02")
    last = dev.create_partition("vir02_1c")
    assert sum(p.compute_units for p in dev.partitions()) == 8
    assert last.attributes["huawei.com/aiCpu"] == 1


def test_telemetry_of_a_simulated_chip(discover: Callable[[str], accelpool.Inventory]) -> None:
    t = discover("atlas-800-910b").device("ascend:0").telemetry()
    assert t.memory_total_bytes == 64 * GIB
    assert t.memory_used_bytes == 0
    assert t.utilization_percent == 0.0
    assert t.temperature_c is not None and t.power_w is not None and t.power_w > 0


def test_capabilities(discover: Callable[[str], accelpool.Inventory]) -> None:
    caps = discover("atlas-800-910b").device("ascend:0").capabilities
    for c in (
        accelpool.Capability.PARTITION,
        accelpool.Capability.PARTITION_VNPU,
        accelpool.Capability.PARTITION_DEVICE_SCOPE,
        accelpool.Capability.VISIBILITY,
        accelpool.Capability.SESSION_ONNX,
        accelpool.Capability.TELEMETRY,
        accelpool.Capability.FAULT_INJECTION,
    ):
        assert caps.supports(c), c
    assert caps.support(accelpool.Capability.PARTITION_MIG) is accelpool.Support.UNSUPPORTED


def test_unknown_chip_in_a_fleet_makes_the_backend_unavailable(
    ascend_fleet: Callable[..., str],
) -> None:
    with accelpool.discover(sim=ascend_fleet({"910Z9": 1}), backends=["ascend"]) as inv:
        status = inv.backends()[0]
    assert not status.available
    assert "910Z9" in (status.reason or "") and "910B3" in (status.reason or "")
