"""The invariants beyond the first seven: each deliberate flaw fails the suite, naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelpool_conformance import invariants as inv
from accelpool_conformance import run
from accelpool_conformance.broken import ToyFleet
from accelpool_conformance.broken_more import FLAWS, InTreeFleet

import accelpool

#: A -k expression per flaw: only the checks that should catch it (keeps each run short).
KEYWORDS = {
    "indexes-from-one": "vendors_numbering",
    "compute-as-cores": "vendors_numbering",
    "memory-is-free": "device_facts",
    "unstable-memory": "stable_across_calls",
    "half-memory-partitions": "create_list_destroy",
    "placement-ignored": "placement",
    "telemetry-all-none": "telemetry",
    "telemetry-kelvin-milliwatts": "telemetry",
    "sibling-environment": "names_it_and_no_other",
    "made-up-provider": "providers_are_real",
    "partitions-no-targets": "every_partition_kind",
    "scope-leaks": "scope",
    "dies-with-creator": "scope_is_honest",
}
#: Flaws that show only on a vendor's own numbering: run over an in-tree backend.
IN_TREE = {
    "indexes-reversed": ("ascend", "atlas-300i-310p", "vendors_numbering"),
    "ordinal-shift": ("ascend", "atlas-300i-310p", "ordinals"),
    "parent-ordinal": ("ascend", "atlas-300i-310p", "names_it_and_no_other"),
}


def _named(invariant: str) -> str:
    return f"invariant {invariant!r} broken"


def _messages(result: object) -> list[str]:
    return [t["message"] for t in result.failures()]  # type: ignore[attr-defined]


@pytest.mark.parametrize("flaw", sorted(KEYWORDS))
def test_each_toy_flaw_fails_naming_its_invariant(flaw: str, tmp_path: Path) -> None:
    spec = FLAWS[flaw]
    result = run(
        "toy",
        inventory_factory=ToyFleet(str(tmp_path / "state.json"), flaw=flaw),
        areas=spec.areas,
        keyword=KEYWORDS[flaw],
    )
    messages = _messages(result)
    assert result.exit_code == 1, result.report["tests"]
    assert any(_named(spec.invariant) in m for m in messages), messages


def _in_tree_available(backend: str) -> None:
    with accelpool.discover(sim=IN_TREE["indexes-reversed"][1], backends=[backend]) as found:
        (status,) = found.backends()
    if not status.available:
        pytest.skip(f"backend {backend} is not available: {status.reason}")


@pytest.mark.parametrize("flaw", sorted(IN_TREE))
def test_each_in_tree_flaw_fails_naming_its_invariant(flaw: str, tmp_path: Path) -> None:
    backend, sim, keyword = IN_TREE[flaw]
    _in_tree_available(backend)
    spec = FLAWS[flaw]
    result = run(
        backend,
        inventory_factory=InTreeFleet(backend, sim, flaw),
        state_dir=tmp_path / "state",
        areas=spec.areas,
        keyword=keyword,
    )
    messages = _messages(result)
    assert result.exit_code == 1, result.report["tests"]
    assert any(_named(spec.invariant) in m for m in messages), messages


def test_an_ignored_placement_is_not_blamed_on_occupied_placements(tmp_path: Path) -> None:
    result = run(
        "toy",
        inventory_factory=ToyFleet(str(tmp_path / "state.json"), flaw="placement-ignored"),
        areas=["partitions"],
        keyword="occupied_placement",
    )
    messages = _messages(result)
    assert messages  # one per profile that offers placements
    for m in messages:
        assert _named(inv.PLACEMENT_HONOURED) in m and "was ignored" in m, m
        assert inv.OCCUPIED_REFUSED not in m


def test_an_unstable_memory_figure_says_which_figure_moved(tmp_path: Path) -> None:
    result = run(
        "toy",
        inventory_factory=ToyFleet(str(tmp_path / "state.json"), flaw="unstable-memory"),
        areas=["discovery"],
        keyword="stable_across_calls",
    )
    (test,) = result.failures()
    assert _named(inv.DEVICE_FACTS) in test["message"]
    assert "memory_bytes 8589934592 then 8589930496" in test["message"]


def test_the_good_in_tree_backend_passes_the_same_checks(tmp_path: Path) -> None:
    """No false alarm: the wrapped backend without the flaw passes what catches the flaws."""
    backend, sim, _ = IN_TREE["ordinal-shift"]
    _in_tree_available(backend)
    result = run(
        backend,
        sim=sim,
        state_dir=tmp_path / "state",
        areas=["discovery", "sessions"],
        keyword="vendors_numbering or ordinals or names_it_and_no_other",
    )
    assert result.exit_code == 0, _messages(result)
    assert result.report["summary"]["pass"] == 3
