"""Injected faults on the simulated Ascend host: a lost chip, a create that fails half way."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import accelpool
from accelpool.testing import CliResult

SIM = "atlas-800-910b"


def test_a_lost_chip_raises_device_lost_everywhere_and_others_keep_working(
    discover: Callable[[str], accelpool.Inventory], cli: Callable[..., CliResult]
) -> None:
    inv = discover(SIM)
    backend = inv.backend("ascend")
    dev, other = inv.device("ascend:2"), inv.device("ascend:3")
    part = dev.create_partition("vir05_1c_16g")
    backend.inject_fault("device-lost", dev.info)
    for call in (
        dev.profiles,
        dev.partitions,
        dev.telemetry,
        dev.visibility_env,
        dev.onnx_placement,
        lambda: dev.create_partition("vir05_1c_16g"),
        part.destroy,
        part.visibility_env,
    ):
        with pytest.raises(accelpool.DeviceLost, match="npu-smi"):
            call()
    # the neighbour is fine
    assert other.create_partition("vir05_1c_16g").device_id == other.id
    # another process sees the fault too: discovery skips the lost chip, the rest list
    r = cli("ls", "--json", sim=SIM)
    assert r.code == 0, r.err
    listed = [d["id"] for d in r.json()["devices"]]
    assert len(listed) == 7 and dev.id not in listed and other.id in listed
    r = cli("profiles", "ascend:2", sim=SIM)
    assert r.code == 1 and "NotFound" in r.err
    backend.clear_faults()
    assert [p.id for p in dev.partitions()] == [part.id]
    part.destroy()
    assert dev.id in [d.id for d in discover(SIM).devices()]  # back, with the same id


def test_a_create_that_fails_half_way_leaves_nothing_behind(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    inv = discover(SIM)
    backend = inv.backend("ascend")
    dev = inv.device("ascend:0")
    before = {p.name: p.available for p in dev.profiles()}
    backend.inject_fault("create-fails-midway", dev.info)
    with pytest.raises(accelpool.AccelPoolError, match="destroyed again") as err:
        dev.create_partition("vir10_3c_32g")
    assert err.value.vendor_code == -8005
    assert dev.partitions() == []
    assert {p.name: p.available for p in dev.profiles()} == before
    # the fault fires once: the next create works
    part = dev.create_partition("vir10_3c_32g")
    assert [p.id for p in dev.partitions()] == [part.id]


def test_faults_need_a_known_fault_name(discover: Callable[[str], accelpool.Inventory]) -> None:
    inv = discover(SIM)
    with pytest.raises(accelpool.InvalidRequest, match="device-lost"):
        inv.backend("ascend").inject_fault("meteor-strike", inv.device("ascend:0").info)
