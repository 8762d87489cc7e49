"""The Cambricon backend on its simulator: devices, MIM profiles and SMLU shares."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from accelpool_cambricon import models

import accelpool

GIB = 1 << 30
MIB = 1 << 20
SIM = "mlu370-x8"
MIM_DEV, SMLU_DEV = "cambricon:0", "cambricon:4"


def test_mlu370_x8_is_eight_chips_on_four_cards(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    devices = discover(SIM).devices()
    assert len(devices) == 8
    assert [d.index for d in devices] == list(range(8))
    for d in devices:
        assert (d.vendor, d.model) == ("Cambricon", "MLU370-X8")
        assert d.memory_bytes == 24 * GIB  # 48 GB per card, two chips
        assert d.compute_units == d.attributes["cambricon.com/mluCores"] == 24
        assert d.attributes["cambricon.com/chip"] == "MLU370"
        native = d.id.split(":", 1)[1]
        assert native == f"MLU-{d.attributes['cambricon.com/uuid']}"
        assert len(native) == len("MLU-") + 36
    # the two chips of one card share its serial number; cards differ
    sns = [d.attributes["cambricon.com/cardSN"] for d in devices]
    assert sns[0] == sns[1] != sns[2] == sns[3]
    assert [d.attributes["cambricon.com/mode"] for d in devices] == ["mim"] * 4 + ["smlu"] * 4
    assert [d.id for d in discover(SIM).devices()] == [d.id for d in devices]


def test_mim_profiles_of_an_mlu370_chip(discover: Callable[[str], accelpool.Inventory]) -> None:
    profiles = {p.name: p for p in discover(SIM).device(MIM_DEV).profiles()}
    assert {"1m.4gb", "2m.8gb", "3m.12gb", "6m.24gb", "1m.8gb", "2m.4gb"} <= set(profiles)
    two = profiles["2m.8gb"]
    assert (two.kind, two.compute_units, two.memory_bytes) == ("mim", 8, 8 * GIB)
    assert [(p.start, p.size) for p in two.placements] == [(0, 2), (2, 2), (4, 2)]
    assert (two.max_count, two.available) == (3, 3)
    assert profiles["1m.8gb"].max_count == 3  # one cluster but two memory slices each


@pytest.mark.parametrize("profile", [p.name for p in models.MODELS["MLU370-X8"].mim_profiles()])
def test_every_mim_profile_fills_to_max_count_without_overlap(
    discover: Callable[[str], accelpool.Inventory], profile: str
) -> None:
    dev = discover(SIM).device(MIM_DEV)
    expected = dev.profile(profile).max_count
    made = [dev.create_partition(profile) for _ in range(expected)]
    with pytest.raises(accelpool.InsufficientCapacity):
        dev.create_partition(profile)
    spans = sorted((p.placement.start, p.placement.size) for p in made if p.placement)
    assert len(spans) == len(made)
    for (a, n), (b, _) in itertools.pairwise(spans):
        assert a + n <= b  # never overlap
    assert all(s in [(pl.start, pl.size) for pl in dev.profile(profile).placements] for s in spans)
    assert sum(p.memory_bytes for p in made) <= dev.memory_bytes
    assert sum(p.compute_units for p in made) <= dev.compute_units
    assert dev.profile(profile).available == 0


def test_a_requested_placement_is_honoured_and_occupied_ones_refused(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    dev = discover(SIM).device(MIM_DEV)
    part = dev.create_partition("2m.8gb", placement=2)
    assert part.placement is not None and (part.placement.start, part.placement.size) == (2, 2)
    with pytest.raises(accelpool.InsufficientCapacity, match="cluster 2"):
        dev.create_partition("2m.8gb", placement=2)
    with pytest.raises(accelpool.InsufficientCapacity):
        dev.create_partition("1m.4gb", placement=3)  # inside the 2m.8gb
    with pytest.raises(accelpool.InvalidRequest, match="0, 2, 4"):
        dev.create_partition("2m.8gb", placement=1)
    assert dev.create_partition("1m.4gb", placement=1).placement is not None
    assert dev.profile("3m.12gb").available == 0  # [0,3) and [3,6) are both cut
    assert dev.profile("2m.8gb").available == 1


def test_memory_slices_bound_mim_as_well_as_clusters(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    dev = discover(SIM).device(MIM_DEV)
    for _ in range(3):
        dev.create_partition("1m.8gb")  # 3 clusters, all 6 memory slices
    assert dev.profile("1m.4gb").available == 0
    with pytest.raises(accelpool.InsufficientCapacity, match="memory"):
        dev.create_partition("1m.4gb")


def test_mim_destroy_gives_capacity_back_and_twice_is_not_found(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    dev = discover(SIM).device(MIM_DEV)
    part = dev.create_partition("6m.24gb")
    assert part.id.startswith(f"{dev.id}-mim-")
    assert dev.profile("1m.4gb").available == 0
    part.destroy()
    assert dev.partitions() == [] and dev.profile("1m.4gb").available == 6
    with pytest.raises(accelpool.NotFound, match="no longer exists"):
        part.destroy()


def test_mim_destroy_survives_a_racing_destroy_shifting_the_indexes(
    discover: Callable[[str], accelpool.Inventory], monkeypatch: pytest.MonkeyPatch
) -> None:
    # CNDev reaches MIM instances by index; another process destroying a lower-indexed
    # instance mid-walk shifts our target below the walk's index. It must still be found.
    inv = discover(SIM)
    dev = inv.device(MIM_DEV)
    first, target, third = (dev.create_partition("1m.4gb") for _ in range(3))
    driver = dev.backend_instance.driver  # type: ignore[attr-defined]
    walk = driver.mim_instance_by_index
    raced: list[bool] = []

    def racing(device: int, index: int) -> int:
        if index == 1 and not raced:  # index 0 (first) was walked; target now slides to 0
            raced.append(True)
            discover(SIM).partition(first.id).destroy()
        return walk(device, index)

    monkeypatch.setattr(driver, "mim_instance_by_index", racing)
    target.destroy()
    assert raced and [p.id for p in dev.partitions()] == [third.id]


def test_unknown_mim_profile_is_invalid(discover: Callable[[str], accelpool.Inventory]) -> None:
    dev = discover(SIM).device(MIM_DEV)
    with pytest.raises(accelpool.InvalidRequest, match=r"2m\.8gb"):
        dev.create_partition("7m.28gb")
    with pytest.raises(accelpool.InvalidRequest):
        dev.create_partition("smlu-25-6gb")  # a share, but this chip is in MIM mode


def test_smlu_shares_listed_and_filled(discover: Callable[[str], accelpool.Inventory]) -> None:
    dev = discover(SIM).device(SMLU_DEV)
    profiles = {p.name: p for p in dev.profiles()}
    assert set(profiles) == {"smlu-10-2304mb", "smlu-25-6gb", "smlu-50-12gb", "smlu-100-24gb"}
    quarter = profiles["smlu-25-6gb"]
    assert (quarter.kind, quarter.compute_units, quarter.memory_bytes) == ("smlu", 6, 6 * GIB)
    assert (quarter.max_count, quarter.available) == (4, 4)
    assert quarter.placements == ()
    made = [dev.create_partition("smlu-25-6gb") for _ in range(4)]
    with pytest.raises(accelpool.InsufficientCapacity, match="0% of compute"):
        dev.create_partition("smlu-10-2304mb")
    assert sum(int(p.attributes["cambricon.com/mluQuota"]) for p in made) == 100
    assert sum(p.memory_bytes for p in made) == 24 * GIB
    assert all(p.available == 0 for p in dev.profiles())


def test_any_smlu_share_can_be_asked_for(discover: Callable[[str], accelpool.Inventory]) -> None:
    dev = discover(SIM).device(SMLU_DEV)
    a = dev.create_partition("smlu-60-4gb")
    b = dev.create_partition("smlu-30-1280mb")
    assert (a.profile, a.memory_bytes, a.compute_units) == ("smlu-60-4gb", 4 * GIB, 14)
    assert b.profile == "smlu-30-1280mb" and b.memory_bytes == 1280 * MIB
    with pytest.raises(accelpool.InsufficientCapacity):
        dev.create_partition("smlu-20-1gb")  # 10% of compute left
    assert dev.create_partition("smlu-10-1gb").profile == "smlu-10-1gb"
    assert {p.id for p in dev.partitions()} >= {a.id, b.id}


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("smlu-0-1gb", "1 to 100"),
        ("smlu-101-1gb", "1 to 100"),
        ("smlu-10-1000mb", "multiple of 256"),
        ("smlu-10-25gb", "at most"),
        ("half", "smlu-<percent>-<memory>"),
    ],
)
def test_bad_smlu_shares_are_invalid(
    discover: Callable[[str], accelpool.Inventory], name: str, match: str
) -> None:
    dev = discover(SIM).device(SMLU_DEV)
    with pytest.raises(accelpool.InvalidRequest, match=match):
        dev.create_partition(name)
    with pytest.raises(accelpool.InvalidRequest, match="placement"):
        dev.create_partition("smlu-10-1gb", placement=0)
    assert dev.partitions() == []


def test_smlu_destroy_removes_its_profile_and_twice_is_not_found(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    inv = discover(SIM)
    dev = inv.device(SMLU_DEV)
    driver = inv.backend("cambricon").driver  # type: ignore[attr-defined]
    part = dev.create_partition("smlu-50-12gb")
    assert len(driver.smlu_profile_ids(dev.index)) == 1
    part.destroy()
    assert dev.partitions() == []
    assert driver.smlu_profile_ids(dev.index) == []
    with pytest.raises(accelpool.NotFound):
        part.destroy()


def test_a_chip_in_default_mode_cannot_be_partitioned(
    discover: Callable[[str], accelpool.Inventory], mlu_fleet: Callable[..., str]
) -> None:
    inv = discover(mlu_fleet(("MLU370-X4", 1, "default")))
    dev = inv.device("cambricon:0")
    assert dev.profiles() == []
    with pytest.raises(accelpool.UnsupportedOperation, match="neither MIM nor SMLU"):
        dev.create_partition("2m.8gb")
    caps = dev.capabilities
    assert caps.support(accelpool.Capability.PARTITION) is accelpool.Support.UNSUPPORTED
    assert caps.support(accelpool.Capability.PARTITION_MIM) is accelpool.Support.UNSUPPORTED


def test_mlu590_has_the_mock_profiles(
    discover: Callable[[str], accelpool.Inventory], mlu_fleet: Callable[..., str]
) -> None:
    dev = discover(mlu_fleet(("MLU590", 2, None))).device("cambricon:1")
    assert (dev.model, dev.memory_bytes) == ("MLU590", 80 * GIB)
    profiles = {p.name: p for p in dev.profiles()}
    assert {"2m.16gb", "4m.32gb"} <= set(profiles)
    assert profiles["4m.32gb"].max_count == 2


def test_capabilities_follow_the_chip_modes(discover: Callable[[str], accelpool.Inventory]) -> None:
    caps = discover(SIM).device(MIM_DEV).capabilities
    for c in (
        accelpool.Capability.PARTITION,
        accelpool.Capability.PARTITION_MIM,
        accelpool.Capability.PARTITION_SMLU,
        accelpool.Capability.PARTITION_DEVICE_SCOPE,
        accelpool.Capability.VISIBILITY,
        accelpool.Capability.TELEMETRY,
        accelpool.Capability.FAULT_INJECTION,
    ):
        assert caps.supports(c), c
    assert caps.support(accelpool.Capability.SESSION_ONNX) is accelpool.Support.UNSUPPORTED


def test_telemetry(discover: Callable[[str], accelpool.Inventory]) -> None:
    t = discover(SIM).device(MIM_DEV).telemetry()
    assert (t.memory_total_bytes, t.memory_used_bytes) == (24 * GIB, 0)
    assert t.utilization_percent == 0.0 and t.temperature_c is not None and t.power_w is None


def test_unknown_model_or_mode_makes_the_backend_unavailable(
    mlu_fleet: Callable[..., str],
) -> None:
    for entry, word in ((("MLU999", 1, None), "MLU999"), (("MLU370-X4", 1, "sriov"), "sriov")):
        with accelpool.discover(sim=mlu_fleet(entry), backends=["cambricon"]) as inv:
            status = inv.backends()[0]
        assert not status.available and word in (status.reason or "")
