"""ONNX's CPU node tests through accelpool's ONNX backend against ``onnxruntime.backend``.

Both run the same tests (every ``*_cpu`` node test minus the shared exclusions in
tests/onnx_node_exclusions.py) in this process; rounds alternate which goes first.
Prints each side's median time for the whole set and their ratio (accelpool / raw);
the issue's bound is 2.0. Generating the suite (ONNX computes reference outputs,
about 12 s) happens once and is not timed.

    .venv/bin/python benchmarks/bench_onnx_node_tests.py [--rounds 3] [--isolate]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import statistics
import tempfile
import time
import unittest
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _exclusions() -> ModuleType:
    path = ROOT / "tests" / "onnx_node_exclusions.py"
    spec = importlib.util.spec_from_file_location("onnx_node_exclusions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _suite(backend: Any, patterns: list[str]) -> tuple[type[unittest.TestCase], list[str]]:
    import onnx.backend.test

    runner = onnx.backend.test.BackendTest(backend, __name__)
    runner.include(r"^test_.*_cpu$")
    for p in patterns:
        runner.exclude(p)
    case = runner.test_cases["OnnxBackendNodeModelTest"]
    names = [n for n in unittest.defaultTestLoader.getTestCaseNames(case) if n.endswith("_cpu")]
    return case, names


def _run(case: type[unittest.TestCase], names: list[str]) -> tuple[float, int, int]:
    suite = unittest.TestSuite(case(n) for n in names)  # a suite drops its tests as it runs
    start = time.perf_counter()
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    elapsed = time.perf_counter() - start
    return elapsed, result.testsRun - len(result.skipped), len(result.failures + result.errors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--isolate", action="store_true", help="run the adapter's models in a worker"
    )
    args = parser.parse_args()

    import onnxruntime.backend

    from accelpool.onnx_backend import AccelPoolBackend
    from accelpool.testing import toy_inventory

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ACCELPOOL_STATE_DIR"] = tmp
        inv = toy_inventory(1)
        ours = AccelPoolBackend.using(
            cpu=inv.device("toy:0"), isolate=args.isolate, keep_sessions=True
        )
        patterns = _exclusions().patterns()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            suites = {
                "raw": _suite(onnxruntime.backend, patterns),
                "accelpool": _suite(ours, patterns),
            }
            print(f"generated the node tests in {time.perf_counter() - t0:.1f} s (not timed)")
            times: dict[str, list[float]] = {"raw": [], "accelpool": []}
            for r in range(args.rounds):
                order = ["raw", "accelpool"] if r % 2 == 0 else ["accelpool", "raw"]
                for side in order:
                    elapsed, ran, failed = _run(*suites[side])
                    times[side].append(elapsed)
                    print(
                        f"  round {r + 1} {side:<9} {elapsed:6.2f} s, {ran} tests, {failed} failed"
                    )
        ours.close()
        inv.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["accelpool"] / med["raw"]
    verdict = "ok" if ratio <= 2.0 else "OVER"
    print(
        f"node tests: accelpool {med['accelpool']:.2f} s   raw {med['raw']:.2f} s   "
        f"ratio {ratio:.3f}  (bound 2.00: {verdict})"
    )
    return 0 if ratio <= 2.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
