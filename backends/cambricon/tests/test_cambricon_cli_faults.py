"""The Cambricon backend across processes, its visibility, no ONNX, and injected faults."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import accelpool
from accelpool.testing import CliResult

SIM = "mlu370-x8"


def test_instances_made_by_one_process_are_seen_and_destroyed_by_others(
    cli: Callable[..., CliResult],
) -> None:
    mim = cli(
        "partition", "create", "cambricon:1", "3m.12gb", "--placement", "3", "--json", sim=SIM
    )
    assert mim.code == 0, mim.err
    assert mim.json()["placement"] == {"start": 3, "size": 3}
    smlu = cli("partition", "create", "cambricon:5", "smlu-50-12gb", "--json", sim=SIM)
    assert smlu.code == 0, smlu.err
    full = cli("partition", "create", "cambricon:1", "6m.24gb", sim=SIM)
    assert full.code == 1 and "InsufficientCapacity" in full.err and "Traceback" not in full.err
    listing = {d["index"]: d for d in cli("ls", "--json", sim=SIM).json()["devices"]}
    assert [p["id"] for p in listing[1]["partitions"]] == [mim.json()["id"]]
    assert [p["id"] for p in listing[5]["partitions"]] == [smlu.json()["id"]]
    profiles = cli("profiles", "cambricon:5", "--json", sim=SIM).json()
    assert {p["name"]: p["available"] for p in profiles}["smlu-50-12gb"] == 1
    for pid in (mim.json()["id"], smlu.json()["id"]):
        assert cli("partition", "destroy", pid, sim=SIM).code == 0
        again = cli("partition", "destroy", pid, sim=SIM)
        assert again.code == 1 and "NotFound" in again.err


def test_without_a_fleet_the_missing_library_is_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ACCELPOOL_CNDEV_LIBRARY", raising=False)
    with accelpool.discover(backends=["cambricon"]) as inv:
        status = inv.backends()[0]
    assert not status.available
    assert "Cambricon CNDev library not found (libcndev.so)" in (status.reason or "")


def test_whole_devices_are_made_visible_by_index(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    inv = discover(SIM)
    backend = inv.backend("cambricon")
    assert inv.device("cambricon:2").visibility_env() == {"MLU_VISIBLE_DEVICES": "2"}
    devs = [inv.device("cambricon:6").info, inv.device("cambricon:1").info]
    assert backend.visibility_env(devs) == {"MLU_VISIBLE_DEVICES": "1,6"}


def test_instances_are_made_visible_through_their_device_nodes(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    inv = discover(SIM)
    backend = inv.backend("cambricon")
    mim = inv.device("cambricon:0").create_partition("2m.8gb")
    smlu = inv.device("cambricon:4").create_partition("smlu-25-6gb")
    env = mim.visibility_env()
    node = mim.attributes["cambricon.com/devNode"]
    assert node == f"/dev/cambricon-caps/cap_dev0_mi{mim.attributes['cambricon.com/instanceID']}"
    assert env == {
        "VIRTUAL_DEVICES": f"/dev/cambricon_dev0,/dev/cambricon_ipcm0,{node}",
        "MLU_VISIBLE_DEVICES": "0",
    }
    both = backend.visibility_env([mim.info, smlu.info])
    assert both["MLU_VISIBLE_DEVICES"] == "0,1"
    assert both["VIRTUAL_DEVICES"].count(";") == 1
    with pytest.raises(accelpool.InvalidRequest, match="together"):
        backend.visibility_env([mim.info, inv.device("cambricon:1").info])
    with pytest.raises(accelpool.InvalidRequest, match="twice"):
        backend.visibility_env([mim.info, mim.info])
    mim.destroy()
    with pytest.raises(accelpool.NotFound):
        mim.visibility_env()


def test_onnx_sessions_are_declared_unsupported_with_the_reason(
    discover: Callable[[str], accelpool.Inventory],
) -> None:
    dev = discover(SIM).device("cambricon:0")
    assert dev.capabilities.support(accelpool.Capability.SESSION_ONNX) is (
        accelpool.Support.UNSUPPORTED
    )
    with pytest.raises(accelpool.UnsupportedOperation, match=r"no Cambricon.*execution provider"):
        dev.onnx_placement()
    part = dev.create_partition("1m.4gb")
    with pytest.raises(accelpool.UnsupportedOperation, match="onnxruntime"):
        part.onnx_placement()


def test_a_lost_chip_raises_device_lost_and_others_keep_working(
    discover: Callable[[str], accelpool.Inventory], cli: Callable[..., CliResult]
) -> None:
    inv = discover(SIM)
    backend = inv.backend("cambricon")
    dev = inv.device("cambricon:0")
    part = dev.create_partition("2m.8gb")
    backend.inject_fault("device-lost", dev.info)
    for call in (
        dev.profiles,
        dev.partitions,
        dev.telemetry,
        dev.visibility_env,
        lambda: dev.create_partition("1m.4gb"),
        part.destroy,
    ):
        with pytest.raises(accelpool.DeviceLost, match="cnmon"):
            call()
    assert inv.device("cambricon:1").create_partition("1m.4gb").kind == "mim"
    # another process: discovery skips the lost chip and lists the others
    r = cli("ls", "--json", sim=SIM)
    assert r.code == 0, r.err
    listed = [d["id"] for d in r.json()["devices"]]
    assert len(listed) == 7 and dev.id not in listed
    backend.clear_faults()
    assert [p.id for p in dev.partitions()] == [part.id]
    assert dev.id in [d.id for d in discover(SIM).devices()]  # back, with the same id


@pytest.mark.parametrize(
    ("device", "profile"), [("cambricon:0", "2m.8gb"), ("cambricon:4", "smlu-25-6gb")]
)
def test_a_create_that_fails_half_way_leaves_nothing_behind(
    discover: Callable[[str], accelpool.Inventory], device: str, profile: str
) -> None:
    inv = discover(SIM)
    backend = inv.backend("cambricon")
    dev = inv.device(device)
    before = {p.name: p.available for p in dev.profiles()}
    backend.inject_fault("create-fails-midway", dev.info)
    with pytest.raises(accelpool.AccelPoolError) as err:
        dev.create_partition(profile)
    assert err.value.vendor_code == 7  # CNDEV_ERROR_UNKNOWN
    assert dev.partitions() == []
    assert {p.name: p.available for p in dev.profiles()} == before
    if profile.startswith("smlu"):
        assert backend.driver.smlu_profile_ids(dev.index) == []  # type: ignore[attr-defined]
    assert dev.create_partition(profile).profile == profile  # the fault fired once
