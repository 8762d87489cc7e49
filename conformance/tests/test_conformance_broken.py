"""The suite catches broken backends: each deliberate flaw fails it, naming the invariant."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelpool_conformance import invariants as inv
from accelpool_conformance import run
from accelpool_conformance.broken import FLAWS, ToyFleet


def _named(invariant: str) -> str:
    # InvariantBroken's own wording, quotes included
    return f"invariant {invariant!r} broken"


@pytest.mark.parametrize("flaw", sorted(FLAWS))
def test_each_broken_backend_fails_naming_its_invariant(flaw: str, tmp_path: Path) -> None:
    spec = FLAWS[flaw]
    result = run(
        "toy",
        inventory_factory=ToyFleet(str(tmp_path / "state.json"), flaw=flaw),
        areas=spec.areas,
    )
    assert result.exit_code == 1
    messages = [t["message"] for t in result.failures()]
    assert any(_named(spec.invariant) in m for m in messages), messages
    # and every failure names some invariant: a vendor always learns which promise broke
    assert all(m.startswith("invariant ") or " invariant " in m for m in messages), messages


@pytest.mark.parametrize(
    ("flaw", "invariant"),
    [
        ("overlapping-partitions", inv.NO_OVERLAP),
        ("stale-partitions", inv.GONE_AFTER_DESTROY),
        ("capacity-not-returned", inv.CAPACITY_RETURNS),
        ("memory-exceeds-device", inv.WITHIN_DEVICE),
    ],
)
def test_the_state_machine_alone_catches_partition_flaws(
    flaw: str, invariant: str, tmp_path: Path
) -> None:
    result = run(
        "toy",
        inventory_factory=ToyFleet(str(tmp_path / "state.json"), flaw=flaw),
        areas=["statemachine"],
    )
    (test,) = result.report["tests"]
    assert test["status"] == "fail"
    assert _named(invariant) in test["message"]
    if flaw == "overlapping-partitions":
        # a failure found within one run carries the sequence of calls that found it
        assert "create_partition(" in test["message"]


def test_a_broken_backend_fails_the_cli_exit_status(tmp_path: Path) -> None:
    """The verdict a CI job reads: non-zero on any failure."""
    good = run("toy", inventory_factory=ToyFleet(str(tmp_path / "a.json")), areas=["errors"])
    bad = run(
        "toy",
        inventory_factory=ToyFleet(str(tmp_path / "b.json"), flaw="vendor-exception"),
        areas=["errors"],
    )
    assert (good.exit_code, bad.exit_code) == (0, 1)
    assert bad.report["summary"]["fail"] >= 1
    assert "KeyError" in bad.failures()[0]["message"]
