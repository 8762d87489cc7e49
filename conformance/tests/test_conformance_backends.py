"""Every in-tree backend keeps the contract: the full suite, as a vendor would run it.

One ``accelpool conformance`` process per backend and fleet, with a small
state-machine budget so the project's own test run stays short.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import accelpool
from accelpool.testing import run_cli

CASES = [
    ("opencl", None),  # the real PoCL CPU device
    ("nvidia", "dgx-a100"),
    ("nvidia", "hgx-h200"),
    ("ascend", "atlas-800-910b"),
    ("ascend", "atlas-300i-310p"),
    ("cambricon", "mlu370-x8"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "sim"), CASES, ids=[f"{b}-{s or 'real'}" for b, s in CASES])
def test_backend_passes_the_full_suite(backend: str, sim: str | None, tmp_path: Path) -> None:
    with accelpool.discover(sim=sim, backends=[backend]) as inv:
        (status,) = inv.backends()
    if not status.available and "no such backend plugin" in (status.reason or ""):
        pytest.skip(f"backend {backend} is not installed")
    report = tmp_path / "report.json"
    args = ["conformance", "--backend", backend, "--profile", "full", "--max-examples", "5"]
    args += ["--report", str(report)] + (["--sim", sim] if sim else [])
    result = run_cli(*args, timeout=300)
    doc = json.loads(report.read_text())
    failures = [f"{t['id']}: {t['message']}" for t in doc["tests"] if t["status"] == "fail"]
    assert result.code == 0, "\n".join(failures) or result.err
    assert doc["summary"]["pass"] > 0 and doc["summary"]["fail"] == 0
