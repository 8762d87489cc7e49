"""The simulator's control API (not NVML): injected faults, pretend processes, GPU resets.

:meth:`SimControl._fault` is the hook :class:`~accelpool_nvidia.sim_lib.NvmlLib` runs
before every NVML call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.sim_abi import _K_CI, _K_GI, _K_GPU, _K_MIG, _Fail, _ptr, _unpack
from accelpool_nvidia.sim_state import SimState


class SimError(Exception):
    """A simulator control call (not an NVML call) was refused."""


class SimControl(SimState):
    """Faults, processes and resets of a simulated fleet."""

    # -- control API (not NVML): faults, processes, resets ----------------------------
    def lose_gpu(self, index: int) -> None:
        """The GPU falls off the bus: every later call on it returns GPU_IS_LOST."""
        self._check_index(index)
        with self.mutate() as ns:
            self._gw(ns, index)["lost"] = True

    def fail_call(
        self,
        function: str | Sequence[str],
        nth: int = 1,
        code: int = rc.UNKNOWN,
        gpu: int | None = None,
        armed_by: Sequence[str] = (),
    ) -> None:
        """Make the ``nth`` use (from now) of an NVML C function return ``code`` once.

        ``gpu`` limits counting to calls on that GPU; ``armed_by`` (``"gi-create"``,
        ``"mdev-create"``) starts counting only after such a step succeeded on it.
        """
        names = [function] if isinstance(function, str) else list(function)
        if nth < 1:
            raise SimError(f"nth must be 1 or more, not {nth}")
        if gpu is not None:
            self._check_index(gpu)
        with self.mutate() as ns:
            ns.setdefault("faults", []).append(
                {
                    "functions": names,
                    "nth": nth,
                    "code": code,
                    "gpu": gpu,
                    "calls": 0,
                    "armed_by": list(armed_by),
                    "armed": not armed_by,
                }
            )

    def clear_faults(self) -> None:
        """Undo every injected fault: lost GPUs come back, armed call failures vanish."""
        with self.mutate() as ns:
            ns.pop("faults", None)
            for g in ns.get("gpus", {}).values():
                g.pop("lost", None)

    def add_process(self, target_uuid: str, pid: int | None = None) -> int:
        """Pretend a process runs on a GPU, MIG device or vGPU (``GPU-``/``MIG-``/mdev UUID)."""
        with self.mutate() as ns:
            procs = ns.setdefault("procs", {})
            if pid is None:
                pid = 4000 + self._next_serial(ns)
            procs[str(pid)] = target_uuid
        return pid

    def remove_process(self, pid: int) -> None:
        with self.mutate() as ns:
            ns.get("procs", {}).pop(str(pid), None)

    def reset_gpu(self, index: int) -> None:
        """``nvidia-smi -r``: apply a pending MIG mode; refused while processes run."""
        self._check_index(index)
        with self.mutate() as ns:
            if self._busy(ns, index):
                raise SimError(f"GPU {index} is in use by another client; stop its processes")
            g = self._gw(ns, index)
            pend = self.mig_mode(index, ns)[1]
            if pend != self.mig_mode(index, ns)[0]:
                g.pop("halves", None)  # a MIG mode change starts the id numbering afresh
            g["mig"] = [pend, pend]

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self.gpus):
            raise SimError(f"no simulated GPU {index} (fleet has {len(self.gpus)})")

    def _busy(self, ns: Mapping[str, Any], index: int, target: str | None = None) -> bool:
        procs: Mapping[str, str] = ns.get("procs", {})
        if not procs:
            return False
        if target is not None:
            return target in procs.values()
        gpu = self.gpus[index]
        owned = {gpu.uuid}
        g = self._g(ns, index)
        for gi in g.get("gis", {}).values():
            owned.update(ci["uuid"] for ci in gi.get("cis", {}).values())
        owned.update(v["mdev"] for v in g.get("vgpus", {}).values())
        return any(t in owned for t in procs.values())

    # -- fault hook, called by NvmlLib for every call ---------------------------------
    def _fault(self, name: str, args: tuple[Any, ...]) -> int | None:
        snap = self.snapshot()
        if name not in snap.fault_functions:
            return None
        gpu = self._gpu_of_args(args)
        with self.mutate() as ns:
            faults = ns.get("faults", [])
            for i, f in enumerate(faults):
                if name not in f["functions"] or not f.get("armed", True):
                    continue
                if f.get("gpu") is not None and f["gpu"] != gpu:
                    continue
                f["calls"] += 1
                if f["calls"] >= f["nth"]:
                    del faults[i]
                    return int(f["code"])
                return None
        return None

    def _arm(self, ns: dict[str, Any], step: str, gpu: int) -> None:
        for f in ns.get("faults", []):
            if step in f.get("armed_by", []) and f.get("gpu") in (None, gpu):
                f["armed"] = True

    def _gpu_of_args(self, args: tuple[Any, ...]) -> int | None:
        if not args:
            return None
        try:
            value = _ptr(args[0])
        except _Fail:
            return None
        if isinstance(args[0], int) and value < (1 << 56):
            vgpu = self._vgpu_gpu(value)
            return vgpu
        kind, gpu, _ = _unpack(value)
        return gpu if kind in (_K_GPU, _K_GI, _K_CI, _K_MIG) else None

    def _vgpu_gpu(self, instance: int) -> int | None:
        for k, g in self.snapshot().gpus.items():
            if str(instance) in g.get("vgpus", {}):
                return int(k)
        return None
