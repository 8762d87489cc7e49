"""accelpool.sim.section: a backend's own part of the shared simulated-fleet state."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelpool.sim.section import StateSection
from accelpool.sim.state import StateStore


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
