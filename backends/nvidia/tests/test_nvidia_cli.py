"""The CLI over simulated fleets, in-process and across processes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from accelpool.cli.app import main
from accelpool.testing import run_cli

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("ACCELPOOL_BACKENDS", "nvidia")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_ls_and_profiles_json(
    cli: Run, monkeypatch: pytest.MonkeyPatch, a100_40_table: dict[str, tuple[int, int]]
) -> None:
    monkeypatch.setenv("ACCELPOOL_SIM", "dgx-a100")
    code, out, _ = cli("ls", "--json")
    doc = json.loads(out)
    assert code == 0 and len(doc["devices"]) == 8
    assert {d["model"] for d in doc["devices"]} == {"NVIDIA A100-SXM4-40GB"}
    code, out, _ = cli("profiles", "nvidia:0", "--json")
    table = {p["name"]: (p["max_count"], p["memory_bytes"] >> 20) for p in json.loads(out)}
    assert table == a100_40_table


def test_cli_capacity_scenarios(cli: Run) -> None:
    sim = ("--sim", "dgx-a100")
    assert cli(*sim, "partition", "create", "nvidia:0", "4g.20gb")[0] == 0
    assert cli(*sim, "partition", "create", "nvidia:0", "3g.20gb")[0] == 0
    code, _, err = cli(*sim, "partition", "create", "nvidia:0", "1g.5gb")
    assert code == 1 and err.startswith("accelpool: InsufficientCapacity:")
    assert "Insufficient Resources" in err and "Traceback" not in err
    code, _, err = cli(*sim, "partition", "create", "nvidia:1", "3g.20gb", "--placement", "2")
    assert code == 1 and "InvalidRequest" in err and "0, 4" in err
    code, out, _ = cli(*sim, "partition", "create", "nvidia:1", "1g.5gb", "--json")
    made = json.loads(out)
    assert code == 0 and made["placement"] == {"start": 6, "size": 1}
    for profile in ("4g.20gb", "2g.10gb"):
        assert cli(*sim, "partition", "create", "nvidia:1", profile)[0] == 0
    code, out, _ = cli(*sim, "partition", "destroy", made["id"], "--json")
    assert code == 0 and json.loads(out) == {"destroyed": made["id"]}
    code, out, _ = cli(*sim, "profiles", "nvidia:1", "--json")
    assert {p["name"]: p["available"] for p in json.loads(out)}["1g.5gb"] == 1


def test_cli_mig_mode(cli: Run, fleet_file: Callable[..., str]) -> None:
    fleet = fleet_file("A100-SXM4-40GB", count=2, mig=False)
    code, out, _ = cli("--sim", fleet, "nvidia", "mig", "enable", "nvidia:0")
    assert code == 0 and "MIG mode enabled" in out
    code, out, _ = cli("--sim", fleet, "nvidia", "mig", "enable", "nvidia:0", "--json")
    assert json.loads(out)["status"] == "unchanged"
    assert cli("--sim", fleet, "partition", "create", "nvidia:0", "7g.40gb")[0] == 0
    code, _, err = cli("--sim", fleet, "nvidia", "mig", "disable", "nvidia:0")
    assert code == 1 and "InUse" in err and "destroy its 1 MIG partition" in err
    code, _, err = cli("--sim", fleet, "nvidia", "mig", "enable", "nvidia:9")
    assert code == 1 and "NotFound" in err


def test_cli_reports_pending_mig_mode(cli: Run, fleet_file: Callable[..., str]) -> None:
    import accelpool

    fleet = fleet_file("A100-SXM4-40GB", mig=False)
    with accelpool.discover(sim=fleet, backends=["nvidia"]) as inv:
        dev = inv.device("nvidia:0")
        dev.backend_instance.simulator.add_process(dev.info.native_id)  # type: ignore[attr-defined]
    code, out, _ = cli("--sim", fleet, "nvidia", "mig", "enable", "nvidia:0", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "pending"
    assert (doc["current"], doc["pending"]) == ("disabled", "enabled")
    assert "In use by another client" in doc["reason"] and "reset" in doc["reason"]


def test_partition_is_shared_across_processes() -> None:
    env = dict(os.environ, ACCELPOOL_SIM="dgx-a100", ACCELPOOL_BACKENDS="nvidia")
    made = run_cli("partition", "create", "nvidia:2", "2g.10gb", "--json", env=env)
    assert made.code == 0, made.err
    part = made.json()
    listed = run_cli("ls", "--json", env=env)
    assert listed.code == 0, listed.err
    devices = listed.json()["devices"]
    assert [p["id"] for p in devices[2]["partitions"]] == [part["id"]]
    assert devices[2]["partitions"][0]["profile"] == "2g.10gb"
