"""The simulator's MIG engine: handles of GPUs, GPU and compute instances, and MIG geometry.

The profile tables come from :mod:`accelpool_nvidia.models`; placements, remaining
capacity, compute instance shapes, GPU instance ids and MIG UUIDs follow the driver.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import Counter
from collections.abc import Mapping
from typing import Any

from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.models import CI_ENUM_BY_SLICES, GiProfileSpec, mig_profile_name
from accelpool_nvidia.sim_abi import _K_CI, _K_GI, _K_GPU, _K_MIG, _Fail, _ptr, _unpack
from accelpool_nvidia.sim_control import SimControl
from accelpool_nvidia.sim_fleet import _NS
from accelpool_nvidia.sim_state import _Snapshot


def _gi_id(size: int, start: int, swapped: bool) -> int:
    """A GPU instance id as the driver numbers it: a node of a binary tree over 8 memory slices.

    Ids 0 (whole), 1-2 (halves), 3-6 (quarters), 7-14 (eighths). Which physical half
    is "1" depends on the GPU's history, not on the placement alone (``swapped``): a
    real A100-80GB shows 3g.40gb at 4 as id 2 on one GPU and id 1 on the next, with
    2g.20gb at 0 as id 3 or 5 (NVIDIA/DCGM#138), and seven 1g.5gb creates on a fresh
    A100 give ids 9, 7, 8, 11, 12, 13, 14 (rapidsai/dask-cuda#583).
    """
    if swapped and size < 8:
        start = (start + 4) % 8
    return {8: 0, 4: 1 + start // 4, 2: 3 + start // 2, 1: 7 + start}[size]


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


class SimMig(SimControl):
    """Handle resolution and MIG geometry of the simulated GPUs."""

    # -- handle resolution -------------------------------------------------------------
    def _gpu(self, h: Any, snap: _Snapshot | None = None, allow_mig: bool = False) -> int:
        kind, gpu, _ = _unpack(_ptr(h))
        if kind != _K_GPU and not (allow_mig and kind == _K_MIG):
            raise _Fail(rc.INVALID_ARGUMENT)
        if not 0 <= gpu < len(self.gpus):
            raise _Fail(rc.INVALID_ARGUMENT)
        snap = snap or self.snapshot()
        if gpu in snap.lost:
            raise _Fail(rc.GPU_IS_LOST)
        return gpu

    def _find_gi(
        self, ns: Mapping[str, Any], gpu: int, serial: int
    ) -> tuple[int, Mapping[str, Any]]:
        for gi_id, gi in self._g(ns, gpu).get("gis", {}).items():
            if gi["serial"] == serial:
                return int(gi_id), gi
        raise _Fail(rc.INVALID_ARGUMENT)

    def _gi(self, h: Any, ns: Mapping[str, Any] | None = None) -> tuple[int, int, Any]:
        kind, gpu, serial = _unpack(_ptr(h))
        if kind != _K_GI or not 0 <= gpu < len(self.gpus):
            raise _Fail(rc.INVALID_ARGUMENT)
        snap = self.snapshot()
        if gpu in snap.lost:
            raise _Fail(rc.GPU_IS_LOST)
        gi_id, gi = self._find_gi(snap.ns if ns is None else ns, gpu, serial)
        return gpu, gi_id, gi

    def _ci(self, h: Any, kind_expected: int = _K_CI) -> tuple[int, int, Any, int, Any]:
        kind, gpu, serial = _unpack(_ptr(h))
        if kind != kind_expected or not 0 <= gpu < len(self.gpus):
            raise _Fail(rc.INVALID_ARGUMENT)
        snap = self.snapshot()
        if gpu in snap.lost:
            raise _Fail(rc.GPU_IS_LOST)
        for gi_id, gi in self._g(snap.ns, gpu).get("gis", {}).items():
            for ci_id, ci in gi.get("cis", {}).items():
                if ci["serial"] == serial:
                    return gpu, int(gi_id), gi, int(ci_id), ci
        raise _Fail(rc.INVALID_ARGUMENT)

    # -- MIG geometry --------------------------------------------------------------------
    def _profile(self, gpu: int, profile_id: int) -> GiProfileSpec:
        for p in self.gpus[gpu].model.mig_profiles:
            if p.id == profile_id:
                return p
        raise _Fail(rc.INVALID_ARGUMENT)

    def _require_mig(self, gpu: int, ns: Mapping[str, Any]) -> None:
        if not self.gpus[gpu].mig_capable or self.mig_mode(gpu, ns)[0] != 1:
            raise _Fail(rc.NOT_SUPPORTED)

    @staticmethod
    def _occupied(g: Mapping[str, Any]) -> list[tuple[int, int]]:
        return [(gi["start"], gi["size"]) for gi in g.get("gis", {}).values()]

    def _remaining(self, g: Mapping[str, Any], p: GiProfileSpec) -> int:
        used = sum(1 for gi in g.get("gis", {}).values() if gi["profile"] == p.id)
        occupied = self._occupied(g)
        fits = 0
        for s in p.starts():
            slot = (s, p.mem_slices)
            if not any(_overlaps(slot, o) for o in occupied):
                occupied.append(slot)
                fits += 1
        return max(0, min(p.instances - used, fits))

    def _driver_placement(self, gpu: int, p: GiProfileSpec, g: Mapping[str, Any]) -> int | None:
        """Where the driver puts a GPU instance created without a placement.

        The rule that keeps the most of the larger profiles creatable reproduces every
        public transcript: seven 1g creates land on 6, 4, 5, 0, 1, 2, 3 (MIG user
        guide), and all-balanced applied biggest first ends with 3g at 4, 2g at 0 and
        the 1g instances at 2 and 3 (NVIDIA/DCGM#138).
        """
        from accelpool_nvidia.placement import Geometry, choose_placement

        def geo(q: GiProfileSpec) -> Geometry:
            return Geometry(q.id, q.mem_slices, q.starts(), q.instances)

        gis = g.get("gis", {}).values()
        counts = Counter(gi["profile"] for gi in gis)
        profiles = [geo(q) for q in self.gpus[gpu].model.mig_profiles]
        return choose_placement(geo(p), profiles, self._occupied(g), counts)

    @staticmethod
    def _ci_specs(gi_prof: GiProfileSpec, one_slice_sms: int) -> dict[int, dict[str, int]]:
        """CI profiles a GI offers: enum -> slices, instances, SMs (go-nvlib's validity rule)."""
        g = gi_prof.slices
        specs = {}
        for c, enum in CI_ENUM_BY_SLICES.items():
            if c > g or (c < g and 2 * c > g + 1):
                continue
            sms = gi_prof.sms if c == g else min(gi_prof.sms, c * one_slice_sms)
            specs[enum] = {"slices": c, "instances": 1 if c == g else g // c, "sms": sms}
        return specs

    def _ci_spec(self, gpu: int, gi: Mapping[str, Any], enum: int) -> dict[str, int]:
        prof = self._profile(gpu, gi["profile"])
        one = min(p.sms for p in self.gpus[gpu].model.mig_profiles)
        specs = self._ci_specs(prof, one)
        if enum not in specs:
            raise _Fail(rc.NOT_SUPPORTED)
        return specs[enum]

    @staticmethod
    def _ci_starts(c: int, g: int) -> list[int]:
        if c == g:
            return [0]
        step = 1 << (c - 1).bit_length()
        return [s for s in range(0, g, step) if s + c <= g]

    def mig_uuid(self, ns: dict[str, Any], gpu: int, gi_serial: int, ci_serial: int) -> str:
        """A fresh MIG UUID: serials restart with the state, so each state has its own
        random epoch, and a fleet started afresh never repeats an old UUID."""
        epoch = ns.setdefault("epoch", uuidlib.uuid4().hex)
        name = f"{self.gpus[gpu].uuid}/{epoch}/{gi_serial}/{ci_serial}"
        return f"MIG-{uuidlib.uuid5(_NS, name)}"

    def _mig_devices(self, g: Mapping[str, Any]) -> list[tuple[int, int, Any, Any]]:
        devs = []
        for gi_id, gi in g.get("gis", {}).items():
            for ci_id, ci in gi.get("cis", {}).items():
                devs.append((int(gi_id), int(ci_id), gi, ci))
        devs.sort(key=lambda d: (d[0], d[1]))
        return devs

    def _mig_name(self, gpu: int, gi: Mapping[str, Any], ci: Mapping[str, Any]) -> str:
        model = self.gpus[gpu].model
        prof = self._profile(gpu, gi["profile"])
        spec = self._ci_spec(gpu, gi, ci["profile"])
        return mig_profile_name(
            prof.slices, prof.memory_mb, model.memory_bytes, prof.enum, spec["slices"]
        )
