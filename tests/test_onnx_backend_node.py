"""ONNX's backend node tests through accelpool sessions, side by side with raw onnxruntime.

Every ``*_cpu`` node test of ONNX's suite is one pytest item that runs the test through
:class:`accelpool.onnx_backend.AccelPoolBackend` (on a CPU target) and through
``onnxruntime.backend`` (onnxruntime's own ONNX backend), with one exclusion list for
both (``onnx_node_exclusions.py``: what onnxruntime itself fails). Each item asserts
both pass, so the passing sets are identical: difference zero, test by test. An
excluded test runs on raw onnxruntime as a strict expected failure: one that starts
passing fails the run, asking for its entry to go. A final check asserts the whole run
covered the suite.

As ONNX's backend test runner: ``--onnx-include REGEX`` / ``--onnx-exclude REGEX``
choose tests, ``--onnx-xfail REGEX`` expects a failure through accelpool (strict), and
``--onnx-report FILE`` writes the outcomes as JSON.

Only node tests run: the suite's real/simple/PyTorch model tests download models.
"""

from __future__ import annotations

import importlib.util
import json
import re
import unittest
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import onnx.backend.test
import onnxruntime.backend
import pytest

from accelpool.onnx_backend import AccelPoolBackend
from accelpool.testing import toy_inventory

NODE_CASE = "OnnxBackendNodeModelTest"
CPU_NODE_TESTS = r"^test_.*_cpu$"


def _exclusions() -> ModuleType:
    # Test folders are not packages (pytest runs with --import-mode=importlib): load by path.
    path = Path(__file__).with_name("onnx_node_exclusions.py")
    spec = importlib.util.spec_from_file_location("accelpool_onnx_node_exclusions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXCLUSIONS = _exclusions()

# A CPU target: the toy backend's device runs CPUExecutionProvider, and needs no driver.
_INVENTORY = toy_inventory(1)
# keep_sessions: one session (and claim) for the whole run, not one per test.
Backend = AccelPoolBackend.using(cpu=_INVENTORY.device("toy:0"), keep_sessions=True)


def _node_case(backend: object) -> type[unittest.TestCase]:
    runner = onnx.backend.test.BackendTest(backend, __name__)
    runner.include(CPU_NODE_TESTS)
    return runner.test_cases[NODE_CASE]


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ONNX's reference outputs divide by zero on purpose
    # Not module attributes named like tests: pytest must not collect them on their own.
    _CASES = {"ours": _node_case(Backend), "raw": _node_case(onnxruntime.backend)}

NAMES = sorted(
    n for n in unittest.defaultTestLoader.getTestCaseNames(_CASES["ours"]) if n.endswith("_cpu")
)
REASONS = {name: cause for cause, names in EXCLUSIONS.EXCLUDED.items() for name in names}


def teardown_module() -> None:
    Backend.close()  # release the session's claim now rather than at exit


def _failure(case: type[unittest.TestCase], name: str) -> str | None:
    """Why ``name`` fails through ``case``'s backend (None: it passes)."""
    result = unittest.TestResult()
    case(name).run(result)
    problems = result.failures + result.errors
    if problems:
        return problems[0][1].strip().splitlines()[-1]
    assert not result.skipped, f"{name} was skipped: {result.skipped[0][1]}"
    return None


#: test name -> outcome (pass, fail, xfail, xpass, skip), for --onnx-report
OUTCOMES: dict[str, str] = {}


def _matches(patterns: list[str], name: str) -> bool:
    return any(re.search(p, name) for p in patterns)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.name != "test_node":
        return
    include = metafunc.config.getoption("onnx_include")
    exclude = metafunc.config.getoption("onnx_exclude")
    params = []
    for name in NAMES:
        if include and not _matches(include, name):
            continue
        marks = [pytest.mark.skip(reason="--onnx-exclude")] if _matches(exclude, name) else []
        params.append(pytest.param(name, marks=marks, id=name))
    metafunc.parametrize("name", params)


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    path = request.config.getoption("onnx_report")
    if not path:
        return
    counts = {k: list(OUTCOMES.values()).count(k) for k in ("pass", "fail", "xfail", "xpass")}
    causes = {
        cause: {k: sum(OUTCOMES.get(n) == k for n in names) for k in ("xfail", "xpass")}
        for cause, names in EXCLUSIONS.EXCLUDED.items()
    }
    doc = {"suite": len(NAMES), "run": len(OUTCOMES), **counts, "excluded_by_cause": causes}
    doc["tests"] = dict(sorted(OUTCOMES.items()))
    Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def _expected_failure(name: str, backend: str, reason: str) -> None:
    """Strict: the test must fail through ``backend``; a pass fails, naming the entry."""
    failure = _failure(_CASES[backend], name)
    if failure is None:
        OUTCOMES[name] = "xpass"
        pytest.fail(
            f"{name} is an expected failure ({reason}) but passes through "
            f"{'onnxruntime' if backend == 'raw' else 'accelpool'}: remove its entry"
        )
    OUTCOMES[name] = "xfail"
    pytest.xfail(f"{reason}: {failure}")


def test_node(name: str, request: pytest.FixtureRequest) -> None:
    OUTCOMES[name] = "fail"
    if name in REASONS:
        # onnxruntime's own failure: both backends exclude it, so it must still fail raw
        _expected_failure(name, "raw", f"excluded for both backends: {REASONS[name]}")
    raw = _failure(_CASES["raw"], name)
    assert raw is None, f"onnxruntime itself fails {name} (exclude it?): {raw}"
    if _matches(request.config.getoption("onnx_xfail"), name):
        _expected_failure(name, "ours", "--onnx-xfail")
    ours = _failure(_CASES["ours"], name)
    assert ours is None, f"{name} passes in onnxruntime but fails through accelpool: {ours}"
    OUTCOMES[name] = "pass"


def test_the_comparison_covers_the_suite() -> None:
    assert len(NAMES) > 1000
    assert set(_CASES["raw"].__dict__) >= set(NAMES)
    unknown = EXCLUSIONS.EXCLUDED_NAMES - set(NAMES)
    assert not unknown, f"exclusions name tests the suite does not have: {sorted(unknown)}"
    assert len(EXCLUSIONS.EXCLUDED_NAMES) < len(NAMES) / 4
