"""MIG through accelpool's API on simulated fleets: the issue's done-when scenarios."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from accelpool_nvidia.models import GIB, MIB, mig_memory_gb, mig_profile_name

import accelpool
from accelpool.errors import InsufficientCapacity, InUse, InvalidRequest, NotFound

Inv = Callable[[str], accelpool.Inventory]


def test_dgx_a100_lists_eight_named_gpus(inventory: Inv) -> None:
    devices = inventory("dgx-a100").devices()
    assert len(devices) == 8
    assert {d.model for d in devices} == {"NVIDIA A100-SXM4-40GB"}
    assert [d.index for d in devices] == list(range(8))
    d = devices[0]
    assert d.id.startswith("nvidia:GPU-") and d.id == f"nvidia:{d.attributes['nvidia.com/uuid']}"
    assert d.memory_bytes == 40960 * MIB and d.compute_units == 108
    assert d.attributes["nvidia.com/migMode"] == "enabled"
    assert d.attributes["nvidia.com/cudaComputeCapability"] == "8.0"
    assert d.attributes["nvidia.com/architecture"] == "ampere"
    assert d.attributes["nvidia.com/pciBusID"] == "00000000:07:00.0"
    assert len({x.id for x in devices}) == 8


def test_a100_profile_table(inventory: Inv, a100_40_table: dict[str, tuple[int, int]]) -> None:
    profiles = inventory("dgx-a100").device("nvidia:0").profiles()
    got = {p.name: (p.max_count, p.memory_bytes // MIB) for p in profiles}
    assert got == a100_40_table
    assert [p.name for p in profiles] == list(a100_40_table)
    by = {p.name: p for p in profiles}
    assert [(pl.start, pl.size) for pl in by["3g.20gb"].placements] == [(0, 4), (4, 4)]
    assert [pl.start for pl in by["1g.10gb"].placements] == [0, 2, 4, 6]
    assert by["7g.40gb"].compute_units == 98 and by["7g.40gb"].placements[0].size == 8
    assert all(p.available == p.max_count for p in profiles)


@pytest.mark.parametrize(
    ("preset", "names"),
    [
        (
            "dgx-h100",
            ["1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"],
        ),
        (
            "hgx-h200",
            ["1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"],
        ),
    ],
)
def test_hopper_profile_tables(inventory: Inv, preset: str, names: list[str]) -> None:
    profiles = inventory(preset).device("nvidia:0").profiles()
    assert [p.name for p in profiles] == names
    assert [p.max_count for p in profiles] == [7, 1, 4, 3, 2, 1, 1]
    assert profiles[-1].compute_units == 132


def test_a100_80gb_table(inventory: Inv, fleet_file: Callable[..., str]) -> None:
    inv = inventory(fleet_file("A100-SXM4-80GB", mig=True))
    names = [p.name for p in inv.device("nvidia:0").profiles()]
    assert names == ["1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]


def test_naming_rule_rounds_half_up() -> None:
    h200_total = 143771 * MIB
    assert mig_memory_gb(71168, h200_total) == 71  # 70.5 GB, which round() makes 70
    assert mig_profile_name(3, 71168, h200_total) == "3g.71gb"
    assert mig_profile_name(1, 4864, 40960 * MIB, 7) == "1g.5gb+me"
    assert mig_profile_name(3, 19968, 40960 * MIB, 2, ci_slices=1) == "1c.3g.20gb"
    assert GIB == 1 << 30


def test_4g_then_3g_fill_the_gpu(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    four = dev.create_partition("4g.20gb")
    three = dev.create_partition("3g.20gb")
    assert (four.placement.start, three.placement.start) == (0, 4)  # type: ignore[union-attr]
    with pytest.raises(InsufficientCapacity) as e:
        dev.create_partition("1g.5gb")
    assert e.value.vendor_code == 23 and e.value.vendor_message == "Insufficient Resources"
    assert {p.profile for p in dev.partitions()} == {"4g.20gb", "3g.20gb"}


def test_three_2g_and_one_1g(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    for _ in range(3):
        dev.create_partition("2g.10gb")
    one = dev.create_partition("1g.5gb")
    assert one.placement == accelpool.Placement(6, 1)
    assert sum(p.available or 0 for p in dev.profiles()) == 0


def test_seven_1g_then_an_eighth_fails(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    parts = [dev.create_partition("1g.5gb") for _ in range(7)]
    assert sorted(p.placement.start for p in parts) == list(range(7))  # type: ignore[union-attr]
    assert all(p.id.startswith("nvidia:MIG-") for p in parts)
    with pytest.raises(InsufficientCapacity):
        dev.create_partition("1g.5gb")
    # The +me variant would need a slot too.
    with pytest.raises(InsufficientCapacity):
        dev.create_partition("1g.5gb+me")


def test_default_placement_keeps_big_profiles(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    first = dev.create_partition("1g.5gb")
    assert first.placement == accelpool.Placement(6, 1)
    dev.create_partition("4g.20gb")
    dev.create_partition("2g.10gb")
    assert sorted(p.profile for p in dev.partitions()) == ["1g.5gb", "2g.10gb", "4g.20gb"]


def test_default_1g_order_matches_the_driver(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    starts = [dev.create_partition("1g.5gb").placement.start for _ in range(7)]  # type: ignore[union-attr]
    assert starts == [6, 4, 5, 0, 1, 2, 3]  # the order nvidia-smi -cgi 19 shows


def test_second_1g_leaves_4g_and_3g_room(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    dev.create_partition("1g.5gb")
    second = dev.create_partition("1g.5gb")
    assert second.placement == accelpool.Placement(4, 1)
    avail = {p.name: p.available for p in dev.profiles()}
    assert avail["4g.20gb"] == 1 and avail["3g.20gb"] == 1


def test_placement_not_offered_is_invalid(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    with pytest.raises(InvalidRequest, match="placements are 0, 4"):
        dev.create_partition("3g.20gb", placement=2)
    with pytest.raises(InvalidRequest, match=r"1g\.5gb, 1g\.5gb\+me"):
        dev.create_partition("5g.25gb")
    assert dev.partitions() == []


def test_explicit_placement_and_overlap(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    part = dev.create_partition("3g.20gb", placement=4)
    assert part.placement == accelpool.Placement(4, 4)
    with pytest.raises(InsufficientCapacity, match="1 more fit elsewhere"):
        dev.create_partition("3g.20gb", placement=4)


def test_destroy_returns_capacity(inventory: Inv) -> None:
    dev = inventory("dgx-a100").device("nvidia:0")
    seven = dev.create_partition("7g.40gb")
    assert {p.name: p.available for p in dev.profiles()}["1g.5gb"] == 0
    seven.destroy()
    assert all(p.available == p.max_count for p in dev.profiles())
    assert dev.partitions() == []
    with pytest.raises(NotFound):
        seven.destroy()


def test_partition_in_use_cannot_be_destroyed(inventory: Inv) -> None:
    inv = inventory("dgx-a100")
    dev = inv.device("nvidia:0")
    part = dev.create_partition("2g.10gb")
    sim = dev.backend_instance.simulator  # type: ignore[attr-defined]
    pid = sim.add_process(part.info.native_id)
    with pytest.raises(InUse, match="processes are running") as e:
        part.destroy()
    assert e.value.vendor_code == 19 and e.value.vendor_message == "In use by another client"
    assert [p.id for p in dev.partitions()] == [part.id]
    sim.remove_process(pid)
    part.destroy()
    assert dev.partitions() == []


def test_partition_seen_by_another_inventory(inventory: Inv) -> None:
    made = inventory("dgx-a100").device("nvidia:3").create_partition("3g.20gb")
    other = inventory("dgx-a100")
    found = other.partition(made.id)
    assert found.profile == "3g.20gb" and found.device_id == made.device_id
    assert found.memory_bytes == 19968 * MIB and found.compute_units == 42
    found.destroy()
    assert inventory("dgx-a100").device("nvidia:3").partitions() == []


def test_mig_disabled_gpu_has_no_profiles(inventory: Inv, fleet_file: Callable[..., str]) -> None:
    inv = inventory(fleet_file("H100-80GB-HBM3", mig=False))
    dev = inv.device("nvidia:0")
    assert dev.attributes["nvidia.com/migMode"] == "disabled"
    assert dev.profiles() == []
    with pytest.raises(accelpool.UnsupportedOperation, match="accelpool nvidia mig enable"):
        dev.create_partition("1g.10gb")
