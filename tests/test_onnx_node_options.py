"""The ONNX node-test runner's options: an expected failure that passes fails the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NODE = Path(__file__).with_name("test_onnx_backend_node.py")


def _pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(NODE), "-q", "-n0", "-p", "no:randomly", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_xfail_is_strict_and_the_report_counts(tmp_path: Path) -> None:
    report = tmp_path / "node.json"
    done = _pytest(
        "--onnx-include", r"^test_(abs|relu)_cpu$", "--onnx-xfail", "abs",
        "--onnx-report", str(report), "-k", "test_node", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-2000:]
    assert "passes through accelpool: remove its entry" in done.stdout
    doc = json.loads(report.read_text())
    assert doc["tests"] == {"test_abs_cpu": "xpass", "test_relu_cpu": "pass"}
    assert (doc["run"], doc["pass"], doc["xpass"]) == (2, 1, 1)


def test_an_excluded_test_still_fails_on_raw_onnxruntime(tmp_path: Path) -> None:
    done = _pytest("--onnx-include", r"^test_cast_FLOAT_to_BFLOAT16_cpu$", "-k", "test_node",
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 xfailed" in done.stdout
