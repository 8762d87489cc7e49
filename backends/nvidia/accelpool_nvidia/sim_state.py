"""The persisted state of the NVML simulator: the fleet's shared ``"nvidia"`` section.

Reads go through a cached :class:`_Snapshot`, re-read only when the state file
changes and pinned for one NVML call; writes go through :meth:`SimState.mutate`
(locked, saved on success) or one :meth:`SimState.batch` transaction.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from accelpool.sim.state import StateStore
from accelpool_nvidia.sim_fleet import SimGpu


class _Snapshot:
    """The ``"nvidia"`` part of the state, with indexes built once per change."""

    def __init__(self, ns: Mapping[str, Any]) -> None:
        self.ns = ns
        self.gpus: Mapping[str, Any] = ns.get("gpus", {})
        self.faults: list[dict[str, Any]] = list(ns.get("faults", []))
        self.fault_functions = {f for x in self.faults for f in x["functions"]}
        self.lost = {int(k) for k, g in self.gpus.items() if g.get("lost")}
        #: MIG UUID -> (gpu index, gi id, ci id)
        self.mig: dict[str, tuple[int, int, int]] = {}
        for k, g in self.gpus.items():
            for gi_id, gi in g.get("gis", {}).items():
                for ci_id, ci in gi.get("cis", {}).items():
                    self.mig[ci["uuid"]] = (int(k), int(gi_id), int(ci_id))


class SimState:
    """The shared state of one simulated fleet, cached per process."""

    # Set by NvmlSimulator.__init__; declared here for the methods of every layer.
    fleet: str
    gpus: list[SimGpu]
    store: StateStore
    root: Path
    _by_uuid: dict[str, int]
    _by_pci: dict[str, int]
    _vgpu_gpus: list[SimGpu]
    _snap_key: tuple[int, int, int] | None
    _snap: _Snapshot
    _init_count: int
    _pinned: _Snapshot | None
    _rendered: _Snapshot | None
    _batch: dict[str, Any] | None
    _batch_snap: _Snapshot | None
    calls: Counter[str]

    # -- state ---------------------------------------------------------------------
    def snapshot(self) -> _Snapshot:
        """The current shared state, re-read only when the state file changed.

        One NVML call sees one snapshot (it is pinned for the call), and a batch sees
        its own uncommitted state.
        """
        if self._pinned is not None:
            return self._pinned
        if self._batch is not None:
            if self._batch_snap is None:
                self._batch_snap = _Snapshot(self._batch)
            return self._batch_snap
        key = self.store.stat_key()  # refuses a state file that is a link
        if key != self._snap_key or (key is None and self._snap.ns):
            # Snapshots are never mutated, so the store's checked document is used as
            # it is, without the defensive deep copy of read().
            ns = self.store.peek().get("nvidia", {})
            if not isinstance(ns, dict):
                raise self.store.corrupt("holds no object under 'nvidia'")
            self._snap = _Snapshot(ns)
            self._snap_key = key
        return self._snap

    @contextlib.contextmanager
    def pinned(self) -> Iterator[_Snapshot]:
        """Read the state once for a whole NVML call."""
        if self._pinned is not None:
            yield self._pinned
            return
        self._pinned = self.snapshot()
        try:
            yield self._pinned
        finally:
            self._pinned = None

    @contextlib.contextmanager
    def mutate(self) -> Iterator[dict[str, Any]]:
        """The ``"nvidia"`` state, locked, saved when the block finishes without error."""
        if self._batch is not None:
            try:
                yield self._batch
            finally:
                self._batch_snap = None
                self._pinned = None
            return
        try:
            with self.store.transaction() as state:
                yield state.setdefault("nvidia", {})
        finally:
            self._snap_key = None  # our own write: re-read next time
            self._pinned = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Run every NVML call of the block in one transaction under the state lock.

        Other processes see all of the block's changes or none of them; bulk set-up
        (thousands of creates) no longer rewrites the state file once per call.
        """
        if self._batch is not None:
            yield
            return
        with self.mutate() as ns:
            self._batch, self._batch_snap = ns, None
            try:
                yield
            finally:
                self._batch = self._batch_snap = None

    def _g(self, ns: Mapping[str, Any], index: int) -> Mapping[str, Any]:
        gpus: Mapping[str, Any] = ns.get("gpus", {})
        result: Mapping[str, Any] = gpus.get(str(index), {})
        return result

    @staticmethod
    def _gw(ns: dict[str, Any], index: int) -> dict[str, Any]:
        gpus: dict[str, Any] = ns.setdefault("gpus", {})
        g: dict[str, Any] = gpus.setdefault(str(index), {})
        return g

    def mig_mode(self, index: int, ns: Mapping[str, Any] | None = None) -> tuple[int, int]:
        """(current, pending) MIG mode of a GPU."""
        g = self._g(self.snapshot().ns if ns is None else ns, index)
        default = int(self.gpus[index].mig_default)
        mode = g.get("mig", [default, default])
        return int(mode[0]), int(mode[1])

    @staticmethod
    def _next_serial(ns: dict[str, Any]) -> int:
        serial = int(ns.get("serial", 0)) + 1
        ns["serial"] = serial
        return serial
