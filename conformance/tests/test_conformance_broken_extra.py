"""Variants beyond the obvious one of each invariant: each fails, naming its invariant."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelpool_conformance import invariants as inv
from accelpool_conformance import run
from accelpool_conformance.broken import ToyFleet
from accelpool_conformance.broken_extra import FLAWS
from accelpool_conformance.broken_more import InTreeFleet

import accelpool

#: A -k expression per toy flaw: only the checks that should catch it (short runs).
KEYWORDS = {
    "telemetry-used-exceeds-total": "telemetry",
    "telemetry-negative-power": "telemetry",
    "telemetry-utilization-150": "telemetry",
    "wrong-kind-partitions": "create_list_destroy",
    "wrong-compute-partitions": "create_list_destroy",
    "env-names-two": "names_it_and_no_other",
    "device-scope-invisible": "shared_across_processes or scope",
    "unprintable-vendor-error": "random",
    "midway-sticks": "midway",
    "lost-device-renumbers": "device_lost",
}
#: One whole GPU that runs models (MIG off) beside one cut into MIG partitions.
TWO_MODES = """
[[devices]]
backend = "nvidia"
model = "A100-SXM4-40GB"
[devices.options]
mig = false

[[devices]]
backend = "nvidia"
model = "A100-SXM4-40GB"
[devices.options]
mig = true
"""
IN_TREE = {"partition-cpu-fallback": ("nvidia", "two-modes", "providers_are_real")}


def _named(invariant: str) -> str:
    return f"invariant {invariant!r} broken"


@pytest.mark.parametrize("flaw", sorted(KEYWORDS))
def test_each_variant_fails_naming_its_invariant(flaw: str, tmp_path: Path) -> None:
    spec = FLAWS[flaw]
    result = run(
        "toy",
        inventory_factory=ToyFleet(str(tmp_path / "state.json"), flaw=flaw),
        areas=spec.areas,
        keyword=KEYWORDS[flaw],
    )
    messages = [t["message"] for t in result.failures()]
    assert result.exit_code == 1, result.report["tests"]
    assert any(_named(spec.invariant) in m for m in messages), messages
    assert all(m.startswith("invariant ") for m in messages), messages


def test_an_unprintable_vendor_error_is_still_named(tmp_path: Path) -> None:
    result = run(
        "toy",
        inventory_factory=ToyFleet(str(tmp_path / "s.json"), flaw="unprintable-vendor-error"),
        areas=["statemachine"],
    )
    (test,) = result.failures()
    assert "VendorError" in test["message"] and "AttributeError" in test["message"]
    assert test["message"].startswith(_named(inv.VENDOR)), test["message"]


@pytest.mark.parametrize("flaw", sorted(IN_TREE))
def test_each_in_tree_variant_fails_naming_its_invariant(flaw: str, tmp_path: Path) -> None:
    backend, sim, keyword = IN_TREE[flaw]
    if sim == "two-modes":
        (tmp_path / "fleet.toml").write_text(TWO_MODES)
        sim = str(tmp_path / "fleet.toml")
    with accelpool.discover(sim=sim, backends=[backend]) as found:
        (status,) = found.backends()
    if not status.available:
        pytest.skip(f"backend {backend} is not available: {status.reason}")
    result = run(
        backend,
        inventory_factory=InTreeFleet(backend, sim, flaw),
        state_dir=tmp_path / "state",
        areas=FLAWS[flaw].areas,
        keyword=keyword,
    )
    messages = [t["message"] for t in result.failures()]
    assert result.exit_code == 1, result.report["tests"]
    assert any(_named(FLAWS[flaw].invariant) in m for m in messages), messages
