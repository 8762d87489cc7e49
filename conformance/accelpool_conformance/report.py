"""Results of a conformance run: per-test outcomes, the summary, certification, reports.

Statuses: ``pass``, ``fail``, ``unsupported`` (the backend declares the capability
unsupported), ``skip`` (not applicable here, or the capability is not declared)
and ``xfail`` (a failure the vendor's expectations file names).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATUSES = ("pass", "fail", "unsupported", "skip", "xfail")

#: Skip reasons starting with this become status ``unsupported``.
UNSUPPORTED_PREFIX = "unsupported: "
#: Skip reasons starting with this name capabilities the backend did not declare.
UNDECLARED_PREFIX = "capability not declared: "


@dataclass
class TestResult:
    """One test's outcome."""

    id: str
    area: str
    status: str
    message: str = ""
    duration: float = 0.0
    requires: tuple[str, ...] = ()
    #: all the test's required capabilities are declared supported (or it needs none)
    supported: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "area": self.area,
            "status": self.status,
            "message": self.message,
            "duration": round(self.duration, 4),
            "requires": list(self.requires),
        }


def summarize(results: Sequence[TestResult]) -> dict[str, int]:
    summary = {s: 0 for s in STATUSES}
    for r in results:
        summary[r.status] += 1
    summary["total"] = len(results)
    return summary


@dataclass
class Certification:
    """Whether a run certifies the backend: no failure, and no skip or xfail of a test
    whose capabilities the backend declares supported."""

    certified: bool
    reasons: list[str] = field(default_factory=list)
    #: capabilities tests needed that the backend did not declare (not certified for them)
    undeclared: list[str] = field(default_factory=list)
    #: capabilities declared supported that no passing check exercised
    untested: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "certified": self.certified,
            "reasons": self.reasons,
            "undeclared": self.undeclared,
            "untested": self.untested,
        }


def certify(
    results: Sequence[TestResult], narrowed: Sequence[str] = (), untested: Sequence[str] = ()
) -> Certification:
    reasons = [f"certification needs the full suite: run {why}" for why in narrowed]
    if not any(r.status == "pass" for r in results):
        reasons.append("no check ran and passed (zero checks executed)")
    for cap in () if narrowed else untested:  # a narrowed run is refused already
        reasons.append(
            f"capability {cap} is declared supported but no passing check exercised it "
            "(untested): ship a check for it through the accelpool.conformance entry point "
            "group, or declare it unsupported"
        )
    undeclared: set[str] = set()
    for r in results:
        if r.status == "fail":
            reasons.append(f"{r.id} failed")
        elif r.status in ("skip", "xfail") and r.supported:
            reasons.append(f"{r.id} is {r.status} although its capabilities are supported")
        if r.status == "skip" and r.message.startswith(UNDECLARED_PREFIX):
            undeclared.update(
                c.strip() for c in r.message[len(UNDECLARED_PREFIX) :].split(",") if c.strip()
            )
    return Certification(not reasons, reasons, sorted(undeclared), list(untested))


def build_report(
    context: dict[str, Any],
    results: Sequence[TestResult],
    *,
    certify_requested: bool,
    expectations: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
    narrowed: Sequence[str] = (),
    untested: Sequence[str] = (),
) -> dict[str, Any]:
    """The JSON report document."""
    from accelpool_conformance import __version__

    cert = certify(results, narrowed, untested)
    return {
        "suite": "accelpool-conformance",
        "suite_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **context,
        "summary": summarize(results),
        "certification": {"requested": certify_requested, **cert.to_json()},
        "expectations": expectations,
        "notes": list(notes),
        "tests": [r.to_json() for r in results],
    }


def passed(report: dict[str, Any]) -> bool:
    """The run's verdict: no failure, and certified when certification was asked for."""
    if report["summary"]["fail"]:
        return False
    cert = report["certification"]
    return not (cert["requested"] and not cert["certified"])


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _cell(text: str) -> str:
    first = (text.strip().splitlines() or [""])[0]
    return first.replace("|", "\\|")


def markdown(report: dict[str, Any]) -> str:
    """A human summary: verdict, counts, then failures, xfails, skips, unsupported."""
    s = report["summary"]
    cert = report["certification"]
    verdict = "PASSED" if passed(report) else "FAILED"
    lines = [
        f"# accelpool conformance: {report['backend']} — {verdict}",
        "",
        f"- backend: `{report['backend']}` (plugin version {report.get('version') or '-'})",
        f"- simulated fleet: `{report['sim']}`"
        if report.get("sim")
        else "- devices: as discovered (no simulated fleet named)",
        f"- profile: `{report['profile']}`; suite {report['suite_version']}",
    ]
    if cert["requested"]:
        lines.append(f"- certification: {'certified' if cert['certified'] else 'NOT certified'}")
    lines += [
        "",
        "| pass | fail | unsupported | skip | xfail | total |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        "| " + " | ".join(str(s[k]) for k in (*STATUSES, "total")) + " |",
    ]
    tests = report["tests"]
    for status, title in (
        ("fail", "Failures"),
        ("xfail", "Expected failures"),
        ("skip", "Skipped"),
        ("unsupported", "Unsupported"),
    ):
        rows = [t for t in tests if t["status"] == status]
        if not rows:
            continue
        lines += ["", f"## {title}", "", "| test | message |", "| --- | --- |"]
        lines += [f"| `{t['id']}` | {_cell(t['message'])} |" for t in rows]
    if cert["requested"] and cert["reasons"]:
        lines += ["", "## Why not certified", ""]
        lines += [f"- {r}" for r in cert["reasons"]]
    if cert["undeclared"]:
        lines += [
            "",
            "Capabilities not declared (not tested, not certified): "
            + ", ".join(f"`{c}`" for c in cert["undeclared"]),
        ]
    if cert.get("untested"):
        lines += [
            "",
            "Capabilities declared supported that no check exercised (untested): "
            + ", ".join(f"`{c}`" for c in cert["untested"]),
        ]
    exp = report.get("expectations")
    if exp and exp.get("unmatched"):
        lines += [
            "",
            "Expectations that matched no test (stale or misspelt): "
            + ", ".join(f"`{t}`" for t in exp["unmatched"]),
        ]
    passing_xfails = [t for t in tests if t["status"] == "pass" and "XPASS" in t["message"]]
    if passing_xfails:
        lines += [
            "",
            "Expected failures that now pass (remove them from the expectations file): "
            + ", ".join(f"`{t['id']}`" for t in passing_xfails),
        ]
    for note in report.get("notes") or []:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"
