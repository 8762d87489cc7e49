"""Fixtures of the Ascend backend's tests: simulated fleets and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import accelpool
from accelpool.testing import CliResult, run_cli_with_sim, sim_discovery, write_fleet


@pytest.fixture
def discover() -> Iterator[Callable[[str], accelpool.Inventory]]:
    """Discover a simulated fleet with only the Ascend backend; closed after the test."""
    with sim_discovery("ascend") as make:
        yield make


@pytest.fixture
def ascend_fleet(tmp_path: Path) -> Callable[..., str]:
    """Write an Ascend fleet file with one entry per ``{model: count}`` item; returns its path."""

    def make(counts: dict[str, int], name: str = "ascend-test") -> str:
        entries = [(model, count, {}) for model, count in counts.items()]
        return write_fleet(tmp_path, name, "ascend", entries)

    return make


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """``python -m accelpool ARGS`` in a fresh process, in this test's state directory."""
    return run_cli_with_sim
