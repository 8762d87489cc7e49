"""Invariant 8: every capability declared supported is exercised, by the suite or by the
checks a backend ships through the ``accelpool.conformance`` entry point group."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from accelpool_conformance import run
from accelpool_conformance.broken import ToyFleet

from accelpool.testing import PluginSite

EXTRA = """
import pytest
from accelpool_conformance.invariants import check

@pytest.mark.exercises("toy.widgets")
def test_widgets_are_listed(backend, devices):
    check(devices, "toy widgets are listed", "no devices")
"""


def _fleet(tmp_path: Path) -> ToyFleet:
    return ToyFleet(str(tmp_path / "state.json"), redeclare=(("toy.widgets", True),))


def test_a_supported_capability_no_check_exercises_is_untested(tmp_path: Path) -> None:
    result = run("toy", inventory_factory=_fleet(tmp_path), certify=True)
    cert = result.report["certification"]
    assert result.exit_code == 1 and cert["certified"] is False
    assert cert["untested"] == ["toy.widgets"]
    assert any("toy.widgets" in r and "untested" in r for r in cert["reasons"]), cert
    assert result.report["summary"]["fail"] == 0  # nothing failed: it was never tried


def test_checks_a_plugin_ships_are_collected_and_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = PluginSite(tmp_path / "site")
    site.add(
        "toy-extras",
        {"accelpool.conformance": {"toy": "toy_extra_checks", "other": "toy_extra_checks"}},
        {"toy_extra_checks": EXTRA},
    )
    site.add(
        "broken-extras",
        {"accelpool.conformance": {"toy": "no_such_module_anywhere"}},
    )
    monkeypatch.syspath_prepend(str(site.root))
    importlib.invalidate_caches()
    result = run("toy", inventory_factory=_fleet(tmp_path), certify=True)
    extras = [t for t in result.report["tests"] if t["area"] == "extras"]
    assert [(t["id"], t["status"]) for t in extras] == [("extras::test_widgets_are_listed", "pass")]
    assert result.report["certification"]["untested"] == []
    assert result.exit_code == 0, result.report["certification"]
    # the plugin that cannot load is skipped with a note, never fatal
    assert any("no_such_module_anywhere" in n and "skipped" in n for n in result.report["notes"])


def test_a_failing_extra_check_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = PluginSite(tmp_path / "site")
    bad = EXTRA.replace("check(devices,", "check(not devices,")
    site.add(
        "toy-extras", {"accelpool.conformance": {"toy": "toy_bad_checks"}}, {"toy_bad_checks": bad}
    )
    monkeypatch.syspath_prepend(str(site.root))
    importlib.invalidate_caches()
    result = run("toy", inventory_factory=_fleet(tmp_path), certify=True)
    (fail,) = result.failures()
    assert fail["id"] == "extras::test_widgets_are_listed"
    assert "invariant 'toy widgets are listed' broken" in fail["message"]
    assert result.report["certification"]["untested"] == ["toy.widgets"]
