"""Fixtures of the Cambricon backend's tests: simulated fleets and a CLI runner."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import accelpool
from accelpool.testing import CliResult, run_cli


@pytest.fixture
def discover() -> Iterator[Callable[[str], accelpool.Inventory]]:
    """Discover a simulated fleet with only the Cambricon backend; closed after the test."""
    opened: list[accelpool.Inventory] = []

    def make(sim: str) -> accelpool.Inventory:
        inv = accelpool.discover(sim=sim, backends=["cambricon"])
        opened.append(inv)
        status = inv.backends()[0]
        assert status.available, status.reason
        return inv

    yield make
    for inv in opened:
        inv.close()


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

    def run(*args: str, sim: str | None = None) -> CliResult:
        env = dict(os.environ)
        if sim is not None:
            env["ACCELPOOL_SIM"] = sim
        return run_cli(*args, env=env)

    return run
