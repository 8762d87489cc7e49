"""Fixtures of the Cambricon backend's tests: simulated fleets and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import accelpool
from accelpool.testing import CliResult, run_cli_with_sim, sim_discovery, write_fleet


@pytest.fixture
def discover() -> Iterator[Callable[[str], accelpool.Inventory]]:
    """Discover a simulated fleet with only the Cambricon backend; closed after the test."""
    with sim_discovery("cambricon") as make:
        yield make


@pytest.fixture
def mlu_fleet(tmp_path: Path) -> Callable[..., str]:
    """Write a Cambricon fleet file of ``(model, count, mode)`` entries; returns its path."""

    def make(*entries: tuple[str, int, str | None], name: str = "mlu-test") -> str:
        fleet = [
            (model, count, {} if mode is None else {"mode": mode}) for model, count, mode in entries
        ]
        return write_fleet(tmp_path, name, "cambricon", fleet)

    return make


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """``python -m accelpool ARGS`` in a fresh process, in this test's state directory."""
    return run_cli_with_sim
