"""Fixtures for the core's tests: throwaway plugin distributions and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from accelpool.testing import CliResult, PluginSite, run_cli


@pytest.fixture
def plugin_site(tmp_path: Path) -> PluginSite:
    return PluginSite(tmp_path / "site")


@pytest.fixture
def cli(plugin_site: PluginSite) -> Callable[..., CliResult]:
    """Run ``python -m accelpool ARGS`` in a fresh process with the plugin site visible."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
        return run_cli(*args, env=plugin_site.env(**(env or {})), timeout=timeout)

    return run


#: A plugin module whose backend is the reference ToyBackend (2 devices, in memory).
TOY_PLUGIN = """
from accelpool.testing import ToyBackend as B
"""


@pytest.fixture
def toy_plugin() -> str:
    return TOY_PLUGIN


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of tests/test_onnx_backend_node.py, as ONNX's backend test runner has them."""
    group = parser.getgroup("onnx-node", "ONNX backend node tests (test_onnx_backend_node.py)")
    group.addoption(
        "--onnx-include",
        action="append",
        default=[],
        metavar="REGEX",
        help="run only the node tests matching REGEX (repeatable)",
    )
    group.addoption(
        "--onnx-exclude",
        action="append",
        default=[],
        metavar="REGEX",
        help="skip the node tests matching REGEX (repeatable)",
    )
    group.addoption(
        "--onnx-xfail",
        action="append",
        default=[],
        metavar="REGEX",
        help="node tests expected to fail through accelpool (strict: a pass fails the run)",
    )
    group.addoption(
        "--onnx-report",
        default=None,
        metavar="FILE",
        help="write a JSON report of the node tests' outcomes (counts, per cause, per test)",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the docs blocks tests/test_docs.py skipped, each with its marker's reason."""
    reasons = sorted(
        {
            value
            for key in ("passed", "failed")
            for report in terminalreporter.stats.get(key, [])
            for name, value in getattr(report, "user_properties", ())
            if name == "docs-skip"
        }
    )
    if reasons:
        terminalreporter.section("docs blocks skipped (docs-test: skip)")
        for reason in reasons:
            terminalreporter.line(reason)
