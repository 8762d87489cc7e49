"""Fixtures of the Cambricon backend's tests: simulated fleets and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import accelpool
from accelpool.testing import CliResult, run_cli_with_sim, sim_discovery


@pytest.fixture
def discover() -> Iterator[Callable[[str], accelpool.Inventory]]:
    """Discover a simulated fleet with only the Cambricon backend; closed after the test."""
    with sim_discovery("cambricon") as make:
        yield make


@pytest.fixture
def mlu_fleet(tmp_path: Path) -> Callable[..., str]:
    """Write a Cambricon fleet file of ``(model, count, mode)`` entries; returns its path."""

    def make(*entries: tuple[str, int, str | None], name: str = "mlu-test") -> str:
        lines = [f'name = "{name}"']
        for model, count, mode in entries:
            lines += ["[[devices]]", 'backend = "cambricon"', f'model = "{model}"']
            lines.append(f"count = {count}")
            if mode is not None:
                lines += ["[devices.options]", f'mode = "{mode}"']
        path = tmp_path / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    return make


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """``python -m accelpool ARGS`` in a fresh process, in this test's state directory."""
    return run_cli_with_sim
