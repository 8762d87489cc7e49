"""Statuses, capability gating, expectations files, certification and the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from accelpool_conformance import Expectations, run
from accelpool_conformance import invariants as inv
from accelpool_conformance.broken import ToyFleet

from accelpool.errors import InvalidRequest, NotFound


def _statuses(result: object) -> dict[str, str]:
    return {t["id"]: t["status"] for t in result.report["tests"]}  # type: ignore[attr-defined]


def test_capabilities_decide_unsupported_and_skip(tmp_path: Path) -> None:
    fleet = ToyFleet(
        str(tmp_path / "state.json"),
        redeclare=(("telemetry", False), ("session.onnx", None), ("visibility", None)),
    )
    result = run("toy", inventory_factory=fleet, areas=["discovery", "sessions"], certify=True)
    tests = {t["id"]: t for t in result.report["tests"]}
    telemetry = tests["discovery::test_telemetry_is_plausible"]
    assert telemetry["status"] == "unsupported"
    assert "telemetry" in telemetry["message"]
    onnx = tests["sessions::test_onnx_outputs_equal_the_numpy_reference"]
    assert onnx["status"] == "skip"
    assert onnx["message"] == "capability not declared: session.onnx"
    assert onnx["requires"] == ["session.onnx"]
    # Neither counts against certification: only supported capabilities are certified;
    # what refuses it is the narrowed run (two areas), and the report says so.
    cert = result.report["certification"]
    assert cert["certified"] is False and result.exit_code == 1
    assert cert["reasons"] == [
        "certification needs the full suite: run narrowed to areas discovery, sessions"
    ]
    assert cert["undeclared"] == ["session.onnx", "visibility"]


def test_declaring_unsupported_what_works_fails(tmp_path: Path) -> None:
    fleet = ToyFleet(str(tmp_path / "state.json"), redeclare=(("telemetry", False),))
    result = run("toy", inventory_factory=fleet, areas=["errors"])
    (failure,) = result.failures()
    assert failure["id"] == "errors::test_unsupported_operations_raise_unsupported_operation"
    assert f"invariant {inv.UNSUPPORTED_RAISES!r} broken" in failure["message"]
    assert result.exit_code == 1


def test_certify_fails_when_a_supported_capability_is_skipped(tmp_path: Path) -> None:
    # The one device holds a partition the suite did not make: partition checks cannot run.
    fleet = ToyFleet(str(tmp_path / "state.json"), devices=1)
    with fleet() as busy:
        busy.devices()[0].create_partition("8s")
    plain = run("toy", inventory_factory=fleet, areas=["partitions"])
    skipped = "partitions::test_partitions_of_one_device_leave_others_alone"
    assert _statuses(plain)[skipped] == "skip"
    assert plain.exit_code == 0
    certified = run("toy", inventory_factory=fleet, areas=["partitions"], certify=True)
    assert certified.exit_code == 1
    cert = certified.report["certification"]
    assert cert["requested"] is True and cert["certified"] is False
    assert any(skipped in r for r in cert["reasons"])


def test_expectations_turn_known_failures_into_xfail(tmp_path: Path) -> None:
    exp = tmp_path / "expectations.toml"
    exp.write_text(
        """
[[xfail]]
test = "errors::test_no_vendor_*"
reason = "the vendor library raises KeyError for unknown ids; fix in 2.1"

[[xfail]]
test = "errors::test_unknown_partition_gives_not_found"
reason = "same bug"

[[xfail]]
test = "errors::test_unknown_profile_gives_invalid_request"
reason = "stale entry: this passes"

[[xfail]]
test = "errors::test_that_does_not_exist"
reason = "a typo"
"""
    )
    fleet = ToyFleet(str(tmp_path / "state.json"), flaw="vendor-exception")
    report = tmp_path / "r" / "report.json"
    result = run("toy", inventory_factory=fleet, areas=["errors"], expectations=exp, report=report)
    tests = {t["id"]: t for t in result.report["tests"]}
    xfailed = tests["errors::test_no_vendor_exception_escapes"]
    assert xfailed["status"] == "xfail"
    assert "fix in 2.1" in xfailed["message"] and "KeyError" in xfailed["message"]
    assert tests["errors::test_unknown_partition_gives_not_found"]["status"] == "xfail"
    xpass = tests["errors::test_unknown_profile_gives_invalid_request"]
    assert xpass["status"] == "pass" and xpass["message"].startswith("XPASS")
    assert result.report["summary"]["xfail"] == 2 and result.report["summary"]["fail"] == 0
    assert result.report["expectations"]["unmatched"] == ["errors::test_that_does_not_exist"]
    assert result.exit_code == 0
    md = report.with_suffix(".md").read_text()
    assert "## Expected failures" in md and "errors::test_that_does_not_exist" in md
    assert "remove them from the expectations file" in md

    certified = run(
        "toy", inventory_factory=fleet, areas=["errors"], expectations=exp, certify=True
    )
    assert certified.exit_code == 1  # an xfail of a supported capability never certifies


def test_expectations_files_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "e.json"
    good.write_text(
        json.dumps(
            {"xfail": [{"test": "a::b", "reason": "r"}], "tolerances": {"rtol": 0.01, "atol": 0}}
        )
    )
    loaded = Expectations.load(good)
    assert loaded.xfail_reason("a::b") == "r" and (loaded.rtol, loaded.atol) == (0.01, 0.0)
    bad = tmp_path / "bad.toml"
    for text, problem in [
        ('[[xfail]]\ntest = "a::b"\n', "needs a 'reason'"),
        ('[[xfail]]\nreason = "r"\n', "needs a 'test'"),
        ("[tolerances]\nrtol = -1\n", "non-negative"),
        ("[skip]\n", "unknown keys"),
        ("xfail = [", "cannot be parsed"),
    ]:
        bad.write_text(text)
        with pytest.raises(InvalidRequest, match=problem):
            Expectations.load(bad)
    with pytest.raises(NotFound):
        Expectations.load(tmp_path / "missing.toml")


def test_an_unavailable_backend_fails_the_run(tmp_path: Path) -> None:
    result = run("no-such-backend", profile="core")
    tests = {t["id"]: t for t in result.report["tests"]}
    available = tests["discovery::test_backend_is_available"]
    assert available["status"] == "fail"
    assert "no such backend plugin is installed" in available["message"]
    others = [t for t in result.report["tests"] if t["id"] != available["id"]]
    assert others and all(t["status"] == "skip" for t in others)
    assert result.exit_code == 1


def test_unknown_profile_or_area_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="profile"):
        run("toy", profile="everything")
    with pytest.raises(InvalidRequest, match="areas"):
        run("toy", areas=["gpus"])


def test_the_docs_name_every_invariant() -> None:
    """docs/conformance.md lists each invariant by the name failures quote."""
    import re

    from accelpool_conformance import invariants as inv

    doc = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"
    text = " ".join(doc.read_text(encoding="utf-8").split())
    source = Path(inv.__file__).read_text(encoding="utf-8")
    names = [n for n in re.findall(r'^([A-Z_]+) = "', source, re.M) if n != "SESSION_KIND_PREFIX"]
    missing = [getattr(inv, n) for n in names if getattr(inv, n) not in text]
    assert not missing, missing
