"""The public handles over the reference ToyBackend: ids, resolution, lifecycle, errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

import accelpool
from accelpool.sim.state import StateStore
from accelpool.spi import Backend
from accelpool.testing import ToyBackend, inventory_of, toy_backend, toy_inventory
from accelpool.types import DeviceInfo, PartitionProfile


def test_device_ids_and_backend_index_resolve_to_the_same_device() -> None:
    inv = toy_inventory(devices=3)
    ids = [d.id for d in inv.devices()]
    assert ids == ["toy:toy-0", "toy:toy-1", "toy:toy-2"]
    assert inv.device("toy:1").id == "toy:toy-1"
    assert inv.device("toy:toy-2").index == 2
    assert [d.id for d in toy_inventory(devices=3).devices()] == ids  # stable across discoveries


@pytest.mark.parametrize(
    ("ref", "error", "text"),
    [
        ("toy:9", accelpool.NotFound, "run 'accelpool ls'"),
        ("nope", accelpool.InvalidRequest, "BACKEND:ID or BACKEND:INDEX"),
        (":0", accelpool.InvalidRequest, "BACKEND:ID"),
        ("other:0", accelpool.NotFound, "no backend named 'other'"),
    ],
)
def test_bad_device_references_say_what_to_do(ref: str, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        toy_inventory().device(ref)


def test_partition_lifecycle_returns_capacity() -> None:
    dev = toy_inventory().device("toy:0")
    before = {p.name: p.available for p in dev.profiles()}
    part = dev.create_partition("4s")
    assert part.id.startswith("toy:") and part.device_id == "toy:toy-0"
    assert part.placement is not None and part.placement.size == 4
    during = {p.name: p.available for p in dev.profiles()}
    assert during["4s"] == before["4s"] - 1 and during["8s"] == 0
    assert [p.id for p in dev.partitions()] == [part.id]
    part.destroy()
    assert {p.name: p.available for p in dev.profiles()} == before
    with pytest.raises(accelpool.NotFound):
        part.destroy()


def test_exhaustion_and_bad_requests_map_to_the_hierarchy() -> None:
    dev = toy_inventory().device("toy:0")
    dev.create_partition("8s")
    with pytest.raises(accelpool.InsufficientCapacity):
        dev.create_partition("1s")
    with pytest.raises(accelpool.InvalidRequest, match="choose one of"):
        dev.create_partition("3s")
    with pytest.raises(accelpool.InvalidRequest, match="placement"):
        dev.create_partition("1s", placement=-1)
    with pytest.raises(accelpool.NotFound, match="profiles: 1s, 2s, 4s, 8s"):
        dev.profile("16s")


def test_partitions_persist_across_inventories_sharing_a_state(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    first = toy_inventory(state=store)
    part = first.device("toy:1").create_partition("2s", placement=2)
    second = toy_inventory(state=StateStore(tmp_path / "state.json"))
    found = second.partition(part.id)
    assert found.placement == part.placement and found.profile == "2s"
    assert second.target(part.id).id == part.id
    found.destroy()
    assert first.device("toy:1").partitions() == []


class _Leaky(ToyBackend):
    """Lets a vendor exception escape, as a careless backend would."""

    def profiles(self, device: DeviceInfo) -> Sequence[PartitionProfile]:
        raise KeyError("vendor table missing")


def test_vendor_exceptions_escaping_a_backend_are_wrapped() -> None:
    leaky: Backend = _Leaky(toy_backend().context)
    dev = inventory_of(leaky).device("toy:0")
    with pytest.raises(accelpool.AccelPoolError, match="backend toy failed: KeyError"):
        dev.profiles()


def test_errors_keep_vendor_code_and_text() -> None:
    err = accelpool.InsufficientCapacity(
        "no room", vendor_code=23, vendor_message="Insufficient Resources"
    )
    assert str(err) == "no room [vendor: 23, Insufficient Resources]"
    assert isinstance(err, accelpool.AccelPoolError)


def test_capabilities_are_tri_state() -> None:
    caps = toy_backend().capabilities()
    assert caps.support(accelpool.Capability.PARTITION) is accelpool.Support.SUPPORTED
    assert caps.support(accelpool.Capability.PARTITION_VGPU) is accelpool.Support.UNSUPPORTED
    assert caps.support("something.else") is accelpool.Support.NOT_DECLARED
    with pytest.raises(ValueError, match="both"):
        accelpool.Capabilities.of(["a"], ["a"])
