"""The reference ToyBackend keeps the contract: it passes the whole suite."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from accelpool_conformance import AREAS, run
from accelpool_conformance.broken import ToyFleet


def test_toy_backend_passes_the_full_suite(tmp_path: Path) -> None:
    report = tmp_path / "out" / "report.json"
    result = run(
        "toy",
        inventory_factory=ToyFleet(str(tmp_path / "state.json")),
        profile="full",
        certify=True,
        report=report,
    )
    bad = [t for t in result.report["tests"] if t["status"] != "pass"]
    assert bad == []
    assert result.exit_code == 0
    assert result.report["certification"]["certified"] is True

    # The JSON report: every test with its status, and a summary that adds up.
    doc = json.loads(report.read_text())
    assert doc["backend"] == "toy" and doc["profile"] == "full"
    summary = doc["summary"]
    assert summary["total"] == len(doc["tests"]) == summary["pass"]
    assert {t["area"] for t in doc["tests"]} == set(AREAS) - {"extras"}  # toy ships none
    for t in doc["tests"]:
        assert set(t) >= {"id", "status", "message", "duration"}
        assert t["id"].startswith(t["area"] + "::")
    ids = [t["id"] for t in doc["tests"]]
    assert len(set(ids)) == len(ids)
    assert "partitions::test_exhaustion_gives_insufficient_capacity[1s]" in ids
    assert doc["capabilities"]["partition"] == "supported"

    # Markdown and JUnit XML beside it.
    md = report.with_suffix(".md").read_text()
    assert md.startswith("# accelpool conformance: toy — PASSED")
    assert f"| {summary['pass']} | 0 | 0 | 0 | 0 | {summary['total']} |" in md
    suite = ET.parse(report.with_suffix(".xml")).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", "0")) == summary["total"]
    assert suite.get("failures") == "0" and suite.get("skipped") == "0"


def test_profiles_choose_the_areas(tmp_path: Path) -> None:
    result = run("toy", inventory_factory=ToyFleet(str(tmp_path / "state.json")), profile="core")
    assert {t["area"] for t in result.report["tests"]} == {"discovery", "errors"}
    assert result.exit_code == 0
