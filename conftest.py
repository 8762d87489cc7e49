"""Shared pytest set-up: every test gets its own state directory and no ambient fleet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_accelpool_env(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("accelpool-state")
    if request.config.getoption("accelpool_backend", None):
        # A conformance suite run (--accelpool-backend): the suite owns the state
        # directory and the environment its worker processes see; leave both alone.
        yield state
        return
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(state))
    for var in ("ACCELPOOL_SIM", "ACCELPOOL_BACKENDS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    yield state
