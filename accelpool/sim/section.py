"""One backend's section of a simulated fleet's shared :class:`StateStore`.

A simulator keeps its state (partitions, injected faults) in the fleet's state file
under its backend's name, so every process simulating the fleet sees one host and
backends sharing a fleet never see each other's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from accelpool.sim.state import StateStore

__all__ = ["StateSection"]


class StateSection:
    """The dict stored under ``key`` in ``store``: read it, or change it atomically."""

    def __init__(self, store: StateStore, key: str) -> None:
        self.store = store
        self.key = key

    def read(self) -> dict[str, Any]:
        """A snapshot of the section (empty when nothing was written yet)."""
        state = self.store.read().get(self.key, {})
        if not isinstance(state, dict):
            raise self.store.corrupt(f"holds no object under {self.key!r}")
        return state

    @contextmanager
    def write(self) -> Iterator[dict[str, Any]]:
        """Yield the section for changing; saved when the block ends, dropped if it raises."""
        with self.store.transaction() as doc:
            section = doc.setdefault(self.key, {})
            if not isinstance(section, dict):
                raise self.store.corrupt(f"holds no object under {self.key!r}")
            yield section
