"""accelpool.sim.section (a backend's part of the fleet state) and the fleet-file helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelpool.sim.fleet import load_fleet
from accelpool.sim.section import StateSection
from accelpool.sim.state import StateStore
from accelpool.testing import write_fleet


def test_sections_of_one_store_are_kept_apart_and_seen_by_a_second_store(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    a, b = StateSection(store, "ascend"), StateSection(store, "cambricon")
    assert a.read() == {}
    with a.write() as state:
        state["vdevs"] = {"0": {"100": "vir02"}}
    with b.write() as state:
        state["faults"] = {"lost": [1]}
    again = StateSection(StateStore(tmp_path / "state.json"), "ascend")
    assert again.read() == {"vdevs": {"0": {"100": "vir02"}}}
    assert b.read() == {"faults": {"lost": [1]}}


def test_a_write_that_raises_changes_nothing(tmp_path: Path) -> None:
    section = StateSection(StateStore(tmp_path / "state.json"), "toy")
    with section.write() as state:
        state["n"] = 1
    with pytest.raises(RuntimeError), section.write() as state:
        state["n"] = 2
        raise RuntimeError("midway")
    assert section.read() == {"n": 1}


def test_write_fleet_writes_a_fleet_file_that_loads_back(tmp_path: Path) -> None:
    path = write_fleet(
        tmp_path, "two", "toy", [("Toy-8S", 2, {}), ("Toy-8S", 1, {"mode": "mim", "n": 3})]
    )
    assert path == str(tmp_path / "two.toml")
    fleet = load_fleet(path)
    assert fleet.name == "two"
    assert [(d.backend, d.model, d.count, dict(d.options)) for d in fleet.devices] == [
        ("toy", "Toy-8S", 2, {}),
        ("toy", "Toy-8S", 1, {"mode": "mim", "n": 3}),
    ]
