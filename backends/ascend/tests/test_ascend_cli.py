"""The Ascend backend through the CLI: separate processes share one simulated host."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import accelpool
from accelpool.testing import CliResult

SIM = "atlas-800-910b"


def _available(cli: Callable[..., CliResult]) -> dict[str, int]:
    profiles = cli("profiles", "ascend:0", "--json", sim=SIM).json()
    return {p["name"]: p["available"] for p in profiles}


def test_profiles_json_lists_templates_with_ai_cores_and_memory(
    cli: Callable[..., CliResult],
) -> None:
    r = cli("profiles", "ascend:0", "--json", sim=SIM)
    assert r.code == 0, r.err
    by_name = {p["name"]: p for p in r.json()}
    assert set(by_name) == {"vir05_1c_16g", "vir10_3c_32g"}
    assert by_name["vir05_1c_16g"]["compute_units"] == 5
    assert by_name["vir05_1c_16g"]["memory_bytes"] == 16 << 30
    assert by_name["vir10_3c_32g"]["compute_units"] == 10
    assert by_name["vir10_3c_32g"]["memory_bytes"] == 32 << 30
    assert by_name["vir10_3c_32g"]["attributes"]["huawei.com/aiCpu"] == 3
    assert by_name["vir10_3c_32g"]["max_count"] == 2


def test_310p3_preset_lists_vir01_vir02_vir04(cli: Callable[..., CliResult]) -> None:
    r = cli("profiles", "ascend:0", "--json", sim="atlas-300i-310p")
    assert r.code == 0, r.err
    assert {"vir01", "vir02", "vir04"} <= {p["name"] for p in r.json()}


def test_vnpus_made_by_one_process_are_seen_and_destroyed_by_others(
    cli: Callable[..., CliResult],
) -> None:
    made = []
    for _ in range(2):
        r = cli("partition", "create", "ascend:0", "vir10_3c_32g", "--json", sim=SIM)
        assert r.code == 0, r.err
        made.append(r.json()["id"])
    r = cli("partition", "create", "ascend:0", "vir05_1c_16g", sim=SIM)
    assert r.code == 1
    assert "InsufficientCapacity" in r.err and "Traceback" not in r.err
    listing = cli("ls", "--json", sim=SIM).json()
    dev0 = next(d for d in listing["devices"] if d["id"].startswith("ascend:") and d["index"] == 0)
    assert sorted(p["id"] for p in dev0["partitions"]) == sorted(made)
    assert all(p["kind"] == "vnpu" and p["scope"] == "device" for p in dev0["partitions"])
    assert _available(cli) == {"vir05_1c_16g": 0, "vir10_3c_32g": 0}
    assert cli("partition", "destroy", made[0], sim=SIM).code == 0
    again = cli("partition", "destroy", made[0], sim=SIM)
    assert again.code == 1 and "NotFound" in again.err
    assert _available(cli) == {"vir05_1c_16g": 2, "vir10_3c_32g": 1}
    # ... and the library sees what the CLI made
    with accelpool.discover(sim=SIM, backends=["ascend"]) as inv:
        assert [p.id for p in inv.device("ascend:0").partitions()] == [made[1]]


def test_sim_reset_forgets_the_vnpus(cli: Callable[..., CliResult]) -> None:
    assert cli("partition", "create", "ascend:1", "vir05_1c_16g", sim=SIM).code == 0
    assert cli("sim", "reset", sim=SIM).code == 0
    listing = cli("ls", "--json", sim=SIM).json()
    assert all(d["partitions"] == [] for d in listing["devices"] if d["backend"] == "ascend")


def test_mixed_preset_lists_nvidia_ascend_and_cambricon_side_by_side(
    cli: Callable[..., CliResult],
) -> None:
    r = cli("ls", "--json", sim="mixed")
    assert r.code == 0, r.err
    doc = r.json()
    status = {b["name"]: b for b in doc["backends"]}
    by_backend: dict[str, list[str]] = {}
    for d in doc["devices"]:
        by_backend.setdefault(d["backend"], []).append(d["model"])
    assert by_backend["ascend"] == ["Ascend910B3"] * 2
    assert by_backend["cambricon"] == ["MLU370-X4"] * 2
    assert "nvidia" in status  # the NVIDIA plugin is part of the mixed fleet
    if status["nvidia"]["available"]:
        assert len(by_backend["nvidia"]) == 2
    table = cli("ls", sim="mixed")
    assert table.code == 0 and "Ascend910B3" in table.out and "MLU370-X4" in table.out


def test_without_a_fleet_the_missing_library_is_the_reason(
    cli: Callable[..., CliResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACCELPOOL_DCMI_LIBRARY", raising=False)
    with accelpool.discover(backends=["ascend"]) as inv:
        status = inv.backends()[0]
        assert inv.devices() == []
    assert not status.available
    assert status.reason is not None
    assert "Ascend DCMI library not found (libdcmi.so)" in status.reason
    r = cli("backends", "--json")
    ascend = next(b for b in r.json() if b["name"] == "ascend")
    assert ascend["available"] is False and "libdcmi.so" in ascend["reason"]


def test_a_named_library_that_does_not_exist_is_the_reason() -> None:
    from accelpool_ascend.backend import AscendBackend

    from accelpool.spi import BackendContext

    context = BackendContext("ascend", options={"library": "/nonexistent/libdcmi.so"})
    backend = AscendBackend(context)
    with pytest.raises(accelpool.BackendUnavailable, match=r"libdcmi\.so"):
        backend.probe()
