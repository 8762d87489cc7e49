"""A stateful NVML simulator that plugs in beneath pynvml as its ``nvmlLib``.

pynvml resolves every C function with ``getattr(pynvml.nvmlLib, name)`` and calls
it with raw ctypes arguments. :class:`NvmlLib` answers those calls the way
``libnvidia-ml.so.1`` does (same symbols, same out-parameters, same return
codes), so pynvml's own wrappers, and everything above them, run unchanged::

    sim = NvmlSimulator.for_fleet(accelpool.sim.load_fleet("dgx-a100"))
    sim.install()                      # pynvml.nvmlLib = sim.lib
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    gi = pynvml.nvmlDeviceCreateGpuInstance(h, 19)   # a 1g.5gb GPU instance

What it models: the A100-SXM4-40GB/80GB, H100 80GB HBM3 and H200 MIG tables,
placements on the 8 memory slices, per-profile instance limits, GPU and compute
instances (IN_USE when a GPU instance still has compute instances, or a compute
instance has processes), Ampere's pending MIG mode, host vGPU types with a
mediated-device sysfs tree kept consistent with NVML, and faults (a GPU falling
off the bus, a chosen call failing on its Nth use).

State lives in the fleet's :class:`~accelpool.sim.state.StateStore` under the key
``"nvidia"`` so separate processes see one fleet. Reads are cached per process
and re-read only when the state file changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelpool.safefs import SafeDir
from accelpool.sim.fleet import Fleet, FleetDevice
from accelpool.sim.state import StateStore
from accelpool.statedir import open_state_tree
from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.mdev import MdevDevice, MdevSysfs
from accelpool_nvidia.models import (
    CI_ENUM_BY_SLICES,
    CI_PROFILE_COUNT,
    GI_PROFILE_COUNT,
    GiProfileSpec,
    GpuModel,
    VgpuTypeSpec,
    find_model,
    mig_profile_name,
    model_keys,
)

__all__ = [
    "DRIVER_VERSION",
    "NvmlLib",
    "NvmlSimulator",
    "SimError",
    "SimGpu",
    "SimMdevSysfs",
]

DRIVER_VERSION = "550.54.15"
CUDA_DRIVER_VERSION = 12040  # CUDA 12.4, as nvmlSystemGetCudaDriverVersion reports it
NVML_VERSION = "12.550.54.15"

VIRT_NONE, VIRT_PASSTHROUGH, VIRT_VGPU, VIRT_HOST_VGPU, VIRT_HOST_VSGA = 0, 1, 2, 3, 4
_VIRT_OPTIONS = {
    "none": VIRT_NONE,
    "bare-metal": VIRT_NONE,
    "passthrough": VIRT_PASSTHROUGH,
    "vgpu": VIRT_VGPU,
    "guest-vgpu": VIRT_VGPU,
    "host-vgpu": VIRT_HOST_VGPU,
    "host-vsga": VIRT_HOST_VSGA,
}
_INVALID_GI_PROFILE_ID = 0xFFFFFFFF
_GI_INFO_V2 = 0x02000098
_CI_INFO_V2 = 0x02000088
_MEMORY_V2 = 0x02000028
# Handle kinds, packed into the opaque pointer value as kind<<56 | (gpu+1)<<36 | serial.
_K_GPU, _K_GI, _K_CI, _K_MIG = 1, 2, 3, 4
_NS = uuidlib.UUID("6f1c3a52-8a7e-4d0b-9d55-2b8a0c1e7f31")
_CArg = type(ctypes.byref(ctypes.c_int()))


class SimError(Exception):
    """A simulator control call (not an NVML call) was refused."""


class _Fail(Exception):
    """Raised inside an NVML implementation to return ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# -- ctypes helpers -----------------------------------------------------------------


def _val(x: Any) -> int:
    if isinstance(x, int):
        return x
    if isinstance(x, _CArg):
        x = x._obj  # type: ignore[attr-defined]
    value = getattr(x, "value", None)
    if isinstance(value, int):
        return value
    raise _Fail(rc.INVALID_ARGUMENT)


def _out(ref: Any) -> Any:
    """The ctypes object an out-parameter points at (``byref(x)`` or ``pointer(x)``)."""
    if ref is None:
        raise _Fail(rc.INVALID_ARGUMENT)
    if isinstance(ref, _CArg):
        return ref._obj  # type: ignore[attr-defined]
    if isinstance(ref, ctypes._Pointer):
        if not ref:
            raise _Fail(rc.INVALID_ARGUMENT)
        return ref.contents
    return ref


def _ptr(h: Any) -> int:
    if h is None:
        raise _Fail(rc.INVALID_ARGUMENT)
    if isinstance(h, int):
        return h
    try:
        # Reading the pointer's own bytes is cheaper than ctypes.cast.
        value = ctypes.c_void_p.from_buffer(h).value
    except (TypeError, ValueError):
        raise _Fail(rc.INVALID_ARGUMENT) from None
    if not value:
        raise _Fail(rc.INVALID_ARGUMENT)
    return value


def _set_ptr(ref: Any, value: int) -> None:
    target = _out(ref)
    ctypes.cast(ctypes.addressof(target), ctypes.POINTER(ctypes.c_void_p))[0] = value


def _set_str(buf: Any, length: Any, text: str) -> None:
    data = text.encode()
    if length is not None and len(data) + 1 > _val(length):
        raise _Fail(rc.INSUFFICIENT_SIZE)
    target = _out(buf)
    if len(data) + 1 > ctypes.sizeof(target):
        raise _Fail(rc.INSUFFICIENT_SIZE)
    target.value = data


def _set_field_ptr(struct: Any, field: str, value: int) -> None:
    ftype = dict(struct._fields_)[field]
    setattr(struct, field, ctypes.cast(ctypes.c_void_p(value), ftype))


def _handle(kind: int, gpu: int, serial: int = 0) -> int:
    return (kind << 56) | ((gpu + 1) << 36) | serial


def _unpack(value: int) -> tuple[int, int, int]:
    return value >> 56, ((value >> 36) & 0xFFFFF) - 1, value & ((1 << 36) - 1)


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


def _truthy(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on", "enabled", "enable"}
    return bool(value)


# -- static fleet description -------------------------------------------------------


@dataclass(frozen=True)
class SimGpu:
    """One simulated GPU: the facts that never change."""

    index: int
    model: GpuModel
    uuid: str
    pci_bus_id: str  # NVML form, 00000000:07:00.0
    serial: str
    mig_default: bool
    virtualization: int
    privileged: bool

    @property
    def sysfs_pci(self) -> str:
        """The PCI address as sysfs spells it: 0000:07:00.0."""
        domain, rest = self.pci_bus_id.split(":", 1)
        return f"{int(domain, 16):04x}:{rest.lower()}"

    @property
    def mig_capable(self) -> bool:
        return bool(self.model.mig_profiles)


#: PCI buses of the eight GPUs of a DGX A100; larger fleets continue on further domains
_DGX_BUSES = (0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD)


def _pci_location(index: int) -> tuple[int, int]:
    if index < len(_DGX_BUSES):
        return 0, _DGX_BUSES[index]
    domain, slot = divmod(index - len(_DGX_BUSES), 240)
    return domain + 1, 0x10 + slot


def _build_gpus(fleet: str, devices: Sequence[FleetDevice]) -> list[SimGpu]:
    gpus: list[SimGpu] = []
    for entry in devices:
        model = find_model(entry.model)
        if model is None:
            raise ValueError(
                f"unknown NVIDIA model {entry.model!r} (known: {', '.join(model_keys())})"
            )
        opts = entry.options
        virt_raw = str(opts.get("virtualization", "none")).strip().lower()
        if virt_raw not in _VIRT_OPTIONS:
            raise ValueError(
                f"unknown virtualization {virt_raw!r} for {entry.model} "
                f"(choose from {', '.join(sorted(_VIRT_OPTIONS))})"
            )
        mig = _truthy(opts.get("mig"), False)
        privileged = _truthy(opts.get("privileged"), True)
        for _ in range(entry.count):
            i = len(gpus)
            u = uuidlib.uuid5(_NS, f"{fleet}/{i}/{model.key}")
            domain, bus = _pci_location(i)
            gpus.append(
                SimGpu(
                    index=i,
                    model=model,
                    uuid=f"GPU-{u}",
                    pci_bus_id=f"{domain:08X}:{bus:02X}:00.0",
                    serial=f"{1564720000000 + i}",
                    mig_default=mig,
                    virtualization=_VIRT_OPTIONS[virt_raw],
                    privileged=privileged,
                )
            )
    return gpus


# -- a cached, read-only view of the shared state -----------------------------------


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


class NvmlSimulator:
    """The simulated driver of one fleet: its GPUs, shared state and NVML entry points."""

    def __init__(
        self,
        fleet: str,
        devices: Sequence[FleetDevice],
        store: StateStore,
        root: Path | None = None,
    ) -> None:
        self.fleet = fleet
        self.gpus = _build_gpus(fleet, devices)
        self.store = store
        self.root = Path(root) if root is not None else store.path.parent / "nvidia"
        self._by_uuid = {g.uuid: g.index for g in self.gpus}
        self._by_pci = {g.pci_bus_id: g.index for g in self.gpus}
        self._vgpu_gpus = [g for g in self.gpus if g.virtualization == VIRT_HOST_VGPU]
        self._snap_key: tuple[int, int, int] | None = None
        self._snap = _Snapshot({})
        self._init_count = 0
        self._pinned: _Snapshot | None = None
        self._rendered: _Snapshot | None = None  # the state the sysfs tree last showed
        self._batch: dict[str, Any] | None = None
        self._batch_snap: _Snapshot | None = None
        #: NVML calls made through this simulator in this process, by C symbol
        self.calls: Counter[str] = Counter()
        self.lib = NvmlLib(self)

    # -- construction helpers ------------------------------------------------------
    @classmethod
    def for_fleet(cls, fleet: Fleet) -> NvmlSimulator:
        """The simulator of a loaded fleet (its NVIDIA devices)."""
        return cls(
            fleet.name, fleet.for_backend("nvidia"), fleet.state(), fleet.state_root() / "nvidia"
        )

    def install(self) -> Any:
        """Make pynvml call this simulator; returns the ``nvmlLib`` it replaced."""
        import pynvml

        with pynvml.libLoadLock:
            previous = pynvml.nvmlLib
            pynvml.nvmlLib = self.lib
            pynvml._nvmlGetFunctionPointer_cache.clear()
        return previous

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

    # -- vGPU ------------------------------------------------------------------------------
    def _vgpu_types(self, gpu: int, ns: Mapping[str, Any]) -> list[VgpuTypeSpec]:
        sim_gpu = self.gpus[gpu]
        if sim_gpu.virtualization != VIRT_HOST_VGPU:
            raise _Fail(rc.NOT_SUPPORTED)
        mig_on = self.mig_mode(gpu, ns)[0] == 1
        return [t for t in sim_gpu.model.vgpu_types if (t.gi_profile_id is not None) == mig_on]

    def _vgpu_type(self, type_id: int) -> VgpuTypeSpec:
        for g in self.gpus:
            for t in g.model.vgpu_types:
                if t.id == type_id:
                    return t
        raise _Fail(rc.INVALID_ARGUMENT)

    def free_gis(self, ns: Mapping[str, Any], gpu: int, profile_id: int) -> list[int]:
        """GPU instances of a profile that can host a MIG-backed vGPU, lowest id first.

        A MIG-backed vGPU takes a whole GPU instance that has no compute instances (its
        VM makes those) and no vGPU yet.
        """
        g = self._g(ns, gpu)
        hosting = {v.get("gi") for v in g.get("vgpus", {}).values()}
        return sorted(
            int(k)
            for k, gi in g.get("gis", {}).items()
            if gi["profile"] == profile_id and not gi.get("cis") and int(k) not in hosting
        )

    def _available(self, gpu: int, ns: Mapping[str, Any], t: VgpuTypeSpec) -> int:
        """What the mdev type's ``available_instances`` shows."""
        if t.id not in {c.id for c in self._creatable(gpu, ns)}:
            return 0
        active = sum(1 for v in self._g(ns, gpu).get("vgpus", {}).values() if v["type"] == t.id)
        left = t.max_instances - active
        if t.gi_profile_id is not None:
            left = min(left, len(self.free_gis(ns, gpu, t.gi_profile_id)))
        return max(0, left)

    def _creatable(self, gpu: int, ns: Mapping[str, Any]) -> list[VgpuTypeSpec]:
        types = self._vgpu_types(gpu, ns)
        active = Counter(v["type"] for v in self._g(ns, gpu).get("vgpus", {}).values())
        if any(t.gi_profile_id is not None for t in types):
            # MIG-backed: each type needs a free GPU instance of its profile.
            return [
                t
                for t in types
                if t.gi_profile_id is not None
                and active[t.id] < t.max_instances
                and self.free_gis(ns, gpu, t.gi_profile_id)
            ]
        if active:
            # Homogeneous time-sliced mode: only the type already running, while it fits.
            (running,) = active
            return [t for t in types if t.id == running and active[running] < t.max_instances]
        return types

    # -- sysfs tree of the simulated hypervisor ------------------------------------------
    @property
    def sysfs_root(self) -> Path:
        """The folder that plays ``/sys`` for the mediated-device interface."""
        return self.root / "sys"

    def vgpu_gpus(self) -> list[SimGpu]:
        return list(self._vgpu_gpus)

    def sync_sysfs(self) -> None:
        """Apply writes made to the tree by other means, then rewrite it from the state."""
        if not self._vgpu_gpus:
            return
        marker = self.sysfs_root / ".accelpool-sim"
        # Cheap checks first: most calls find nothing to do and take no lock.
        if marker.exists() and not self._pending_writes() and self.snapshot() is self._rendered:
            return
        with self.store.lock():
            pending = self._pending_writes() if marker.exists() else []
            if pending:
                for path, text in pending:
                    with contextlib.suppress(OSError):
                        self.sysfs_write(path, text)
                return
            snap = self.snapshot()
            if snap is not self._rendered or not marker.exists():
                self._render_sysfs(snap.ns)
                self._rendered = snap

    def _type_dir(self, gpu: SimGpu, type_id: int) -> Path:
        return (
            self.sysfs_root
            / "class"
            / "mdev_bus"
            / gpu.sysfs_pci
            / "mdev_supported_types"
            / f"nvidia-{type_id}"
        )

    def _pending_writes(self) -> list[tuple[Path, str]]:
        """Files of the tree someone wrote to (the simulator leaves them empty)."""
        candidates = [
            self._type_dir(gpu, t.id) / "create"
            for gpu in self._vgpu_gpus
            for t in gpu.model.vgpu_types
        ]
        devices = self.sysfs_root / "bus" / "mdev" / "devices"
        with contextlib.suppress(OSError):
            candidates += [d / "remove" for d in devices.iterdir()]
        found = []
        for path in candidates:
            with contextlib.suppress(OSError):
                if path.stat().st_size:
                    text = path.read_text()
                    if text.strip():
                        found.append((path, text))
        return found

    def _sysfs_tree(self) -> SafeDir:
        # The tree is opened from the state directory down without following links;
        # anything foreign found in it (a planted link, say) is replaced, never followed.
        top = open_state_tree(self.root)
        assert top is not None  # made when missing
        with top:
            return top.makedirs("sys", replace=True)

    def _render_sysfs(self, ns: Mapping[str, Any]) -> None:
        with self._sysfs_tree() as root, root.makedirs("bus/mdev/devices", replace=True) as devs:
            live: dict[str, tuple[SimGpu, int]] = {}
            for gpu in self.vgpu_gpus():
                try:
                    types = self._vgpu_types(gpu.index, ns)
                    creatable = {t.id for t in self._creatable(gpu.index, ns)}
                except _Fail:
                    types, creatable = [], set()
                wanted = {f"nvidia-{t.id}" for t in types}
                vgpus = self._g(ns, gpu.index).get("vgpus", {})
                rel = f"class/mdev_bus/{gpu.sysfs_pci}/mdev_supported_types"
                with root.makedirs(rel, replace=True) as base:
                    for stale in base.listdir():
                        if stale not in wanted:
                            base.remove(stale)
                    for t in types:
                        avail = self._available(gpu.index, ns, t) if t.id in creatable else 0
                        files = {
                            "name": f"{t.name}\n",
                            "available_instances": f"{avail}\n",
                            "device_api": "vfio-pci\n",
                            # the kernel module's wording, sizes in M (vgpuConfig.xml 510.47.03)
                            "description": (
                                f"num_heads=1, frl_config=60, "
                                f"framebuffer={t.framebuffer_mb}M, max_resolution="
                                f"4096x2160, max_instance={t.max_instances}\n"
                            ),
                            "create": "",
                        }
                        with base.makedirs(f"nvidia-{t.id}", replace=True) as d:
                            d.makedirs("devices", replace=True).close()
                            for fname, text in files.items():
                                d.write_if_changed(fname, text.encode())
                for v in vgpus.values():
                    live[v["mdev"]] = (gpu, v["type"])
            for name in devs.listdir():
                if name not in live:
                    devs.remove(name)
            for mdev, (gpu, type_id) in live.items():
                with devs.makedirs(mdev, replace=True) as d:
                    d.write_if_changed("remove", b"")
                    d.symlink(self._type_dir(gpu, type_id), "mdev_type")
            root.write_bytes(".accelpool-sim", f"{self.fleet}\n".encode())

    def sysfs_write(self, path: Path, text: str) -> None:
        """The simulated kernel's answer to ``write(path, text)`` in the mdev tree.

        Raises ``OSError`` with the errno the kernel would give: ENOSPC when the type
        has no instance left, EEXIST for a UUID in use, EINVAL for a malformed one,
        EBUSY when removing a vGPU still in use, ENOENT for a path that is not there.
        """
        path = Path(path)
        with self.mutate() as ns:
            try:
                self._kernel_write(ns, path, text)
            finally:
                # Keep the tree consistent whatever happened (clears the written file).
                self._render_sysfs(ns)

    def _kernel_write(self, ns: dict[str, Any], path: Path, text: str) -> None:
        try:
            rel = path.relative_to(self.sysfs_root) if path.is_absolute() else path
        except ValueError:
            raise OSError(errno.ENOENT, "not in the simulated sysfs tree", str(path)) from None
        parts = rel.parts
        if parts[:3] == ("bus", "mdev", "devices") and len(parts) == 5 and parts[4] == "remove":
            if text.strip() != "1":
                raise OSError(errno.EINVAL, "write 1 to remove", str(path))
            for k, g in ns.get("gpus", {}).items():
                for inst, v in list(g.get("vgpus", {}).items()):
                    if v["mdev"] == parts[3]:
                        if g.get("lost"):
                            raise OSError(errno.EIO, "GPU is lost", str(path))
                        if self._busy(ns, int(k), v["mdev"]):
                            raise OSError(errno.EBUSY, "vGPU is in use by a VM", str(path))
                        del g["vgpus"][inst]
                        return
            raise OSError(errno.ENOENT, "no such mediated device", str(path))
        if (
            len(parts) == 6
            and parts[:2] == ("class", "mdev_bus")
            and parts[3] == "mdev_supported_types"
            and parts[5] == "create"
            and parts[4].startswith("nvidia-")
        ):
            gpu = next((g for g in self.vgpu_gpus() if g.sysfs_pci == parts[2]), None)
            if gpu is None:
                raise OSError(errno.ENOENT, "no such mdev parent", str(path))
            if self._g(ns, gpu.index).get("lost"):
                raise OSError(errno.EIO, "GPU is lost", str(path))
            try:
                mdev = str(uuidlib.UUID(text.strip()))
            except ValueError:
                raise OSError(errno.EINVAL, "not a UUID", str(path)) from None
            if any(
                v["mdev"] == mdev
                for g in ns.get("gpus", {}).values()
                for v in g.get("vgpus", {}).values()
            ):
                raise OSError(errno.EEXIST, "mediated device exists", str(path))
            type_id = int(parts[4].split("-", 1)[1])
            try:
                creatable = {t.id for t in self._creatable(gpu.index, ns)}
            except _Fail:
                creatable = set()
            if type_id not in creatable:
                raise OSError(errno.ENOSPC, "no vGPU instance of this type available", str(path))
            inst = 1000 + self._next_serial(ns)
            vgpu: dict[str, Any] = {"type": type_id, "mdev": mdev}
            spec = self._vgpu_type(type_id)
            if spec.gi_profile_id is not None:
                vgpu["gi"] = self.free_gis(ns, gpu.index, spec.gi_profile_id)[0]
            self._gw(ns, gpu.index).setdefault("vgpus", {})[str(inst)] = vgpu
            self._arm(ns, "mdev-create", gpu.index)
            return
        raise OSError(errno.EACCES, "not writable", str(path))


# -- the C ABI -------------------------------------------------------------------------


class NvmlLib:
    """What pynvml sees as ``nvmlLib``: one attribute per NVML C function.

    Unknown symbols raise ``AttributeError`` (pynvml turns that into
    FUNCTION_NOT_FOUND, as with an older driver). Every call is counted in
    ``simulator.calls`` and goes through the fault hook.
    """

    _ALWAYS = frozenset(
        {"nvmlInit", "nvmlInit_v2", "nvmlInitWithFlags", "nvmlErrorString", "nvmlShutdown"}
    )

    def __init__(self, sim: NvmlSimulator) -> None:
        self._sim = sim
        self._impl = _Impl(sim)

        # pynvml sets ``restype`` on this one: it must be a plain function, not a method.
        def nvmlErrorString(code: Any) -> bytes:
            sim.calls["nvmlErrorString"] += 1
            return rc.text(_val(code)).encode()

        self.nvmlErrorString = nvmlErrorString

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        impl = getattr(self._impl, name, None)
        if impl is None or not name.startswith("nvml"):
            raise AttributeError(name)
        sim = self._sim
        always = name in self._ALWAYS

        def call(*args: Any) -> int:
            sim.calls[name] += 1
            if not always and sim._init_count <= 0:
                return rc.UNINITIALIZED
            outer = sim._pinned is None
            if outer:
                sim._pinned = sim.snapshot()  # one read of the state per call
            try:
                code = sim._fault(name, args)
                if code is not None:
                    return code
                result: int = impl(*args)
                return result
            except _Fail as e:
                return e.code
            finally:
                if outer:
                    sim._pinned = None

        call.__name__ = name
        setattr(self, name, call)  # resolve once per name
        return call


class _Impl:
    """The NVML C functions; each returns an nvmlReturn_t or raises :class:`_Fail`."""

    def __init__(self, sim: NvmlSimulator) -> None:
        self.s = sim

    # -- init ----------------------------------------------------------------------------
    def nvmlInitWithFlags(self, flags: Any) -> int:
        self.s._init_count += 1
        return rc.SUCCESS

    def nvmlInit_v2(self) -> int:
        return self.nvmlInitWithFlags(0)

    nvmlInit = nvmlInit_v2

    def nvmlShutdown(self) -> int:
        # NVML tolerates more shutdowns than inits, for backward compatibility.
        self.s._init_count = max(0, self.s._init_count - 1)
        return rc.SUCCESS

    # -- system --------------------------------------------------------------------------
    def nvmlSystemGetDriverVersion(self, buf: Any, length: Any) -> int:
        _set_str(buf, length, DRIVER_VERSION)
        return rc.SUCCESS

    def nvmlSystemGetNVMLVersion(self, buf: Any, length: Any) -> int:
        _set_str(buf, length, NVML_VERSION)
        return rc.SUCCESS

    def nvmlSystemGetCudaDriverVersion(self, ref: Any) -> int:
        _out(ref).value = CUDA_DRIVER_VERSION
        return rc.SUCCESS

    nvmlSystemGetCudaDriverVersion_v2 = nvmlSystemGetCudaDriverVersion

    # -- devices -------------------------------------------------------------------------
    def nvmlDeviceGetCount_v2(self, ref: Any) -> int:
        _out(ref).value = len(self.s.gpus)
        return rc.SUCCESS

    def nvmlDeviceGetHandleByIndex_v2(self, index: Any, ref: Any) -> int:
        i = _val(index)
        if not 0 <= i < len(self.s.gpus):
            raise _Fail(rc.INVALID_ARGUMENT)
        if i in self.s.snapshot().lost:
            raise _Fail(rc.GPU_IS_LOST)
        _set_ptr(ref, _handle(_K_GPU, i))
        return rc.SUCCESS

    def nvmlDeviceGetHandleByUUID(self, text: Any, ref: Any) -> int:
        raw = text.value if isinstance(text, ctypes.c_char_p) else text
        if not isinstance(raw, bytes | str):
            raise _Fail(rc.INVALID_ARGUMENT)
        key = raw.decode() if isinstance(raw, bytes) else raw
        snap = self.s.snapshot()
        if key in self.s._by_uuid:
            i = self.s._by_uuid[key]
            if i in snap.lost:
                raise _Fail(rc.GPU_IS_LOST)
            _set_ptr(ref, _handle(_K_GPU, i))
            return rc.SUCCESS
        if key in snap.mig:
            gpu, gi_id, ci_id = snap.mig[key]
            if gpu in snap.lost:
                raise _Fail(rc.GPU_IS_LOST)
            ci = snap.gpus[str(gpu)]["gis"][str(gi_id)]["cis"][str(ci_id)]
            _set_ptr(ref, _handle(_K_MIG, gpu, ci["serial"]))
            return rc.SUCCESS
        legacy = self._legacy_mig(key, snap)
        if legacy is not None:
            _set_ptr(ref, _handle(_K_MIG, *legacy))
            return rc.SUCCESS
        raise _Fail(rc.NOT_FOUND)

    def _legacy_mig(self, key: str, snap: Any) -> tuple[int, int] | None:
        """(gpu, CI serial) of a pre-R470 ``MIG-GPU-<gpu uuid>/<gi>/<ci>`` name.

        NVML still accepts that form (R535 release notes) alongside ``MIG-<uuid>``.
        """
        if not key.startswith("MIG-GPU-"):
            return None
        gpu_uuid, _, rest = key.removeprefix("MIG-").partition("/")
        gi_text, _, ci_text = rest.partition("/")
        gpu = self.s._by_uuid.get(gpu_uuid)
        if gpu is None or not gi_text.isdigit() or not ci_text.isdigit():
            return None
        if gpu in snap.lost:
            raise _Fail(rc.GPU_IS_LOST)
        gi = snap.gpus.get(str(gpu), {}).get("gis", {}).get(str(int(gi_text)))
        ci = (gi or {}).get("cis", {}).get(str(int(ci_text)))
        return None if ci is None else (gpu, ci["serial"])

    def nvmlDeviceGetHandleByPciBusId_v2(self, text: Any, ref: Any) -> int:
        raw = text.value if isinstance(text, ctypes.c_char_p) else text
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        i = self.s._by_pci.get(key.upper())
        if i is None:
            raise _Fail(rc.NOT_FOUND)
        if i in self.s.snapshot().lost:
            raise _Fail(rc.GPU_IS_LOST)
        _set_ptr(ref, _handle(_K_GPU, i))
        return rc.SUCCESS

    def _mig_handle(self, h: Any) -> tuple[int, int, Any, int, Any] | None:
        kind = _unpack(_ptr(h))[0]
        if kind == _K_MIG:
            return self.s._ci(h, _K_MIG)
        return None

    def nvmlDeviceGetIndex(self, h: Any, ref: Any) -> int:
        _out(ref).value = self.s._gpu(h)
        return rc.SUCCESS

    def nvmlDeviceGetMinorNumber(self, h: Any, ref: Any) -> int:
        _out(ref).value = self.s._gpu(h)
        return rc.SUCCESS

    def nvmlDeviceGetName(self, h: Any, buf: Any, length: Any) -> int:
        mig = self._mig_handle(h)
        if mig is not None:
            gpu, _, gi, _, ci = mig
            name = f"{self.s.gpus[gpu].model.name} MIG {self.s._mig_name(gpu, gi, ci)}"
        else:
            name = self.s.gpus[self.s._gpu(h)].model.name
        _set_str(buf, length, name)
        return rc.SUCCESS

    def nvmlDeviceGetUUID(self, h: Any, buf: Any, length: Any) -> int:
        mig = self._mig_handle(h)
        text = mig[4]["uuid"] if mig is not None else self.s.gpus[self.s._gpu(h)].uuid
        _set_str(buf, length, text)
        return rc.SUCCESS

    def nvmlDeviceGetSerial(self, h: Any, buf: Any, length: Any) -> int:
        _set_str(buf, length, self.s.gpus[self.s._gpu(h)].serial)
        return rc.SUCCESS

    def _memory(self, h: Any) -> tuple[int, int]:
        mig = self._mig_handle(h)
        if mig is not None:
            gpu, _, gi, _, _ = mig
            total = self.s._profile(gpu, gi["profile"]).memory_mb << 20
            return total, 13 << 20 if total else 0
        gpu = self.s._gpu(h)
        model = self.s.gpus[gpu].model
        g = self.s._g(self.s.snapshot().ns, gpu)
        # The driver reserves a little; each MIG GPU instance reserves a bit more.
        used = (model.memory_mib // 160 + 13 * len(g.get("gis", {}))) << 20
        return model.memory_bytes, used

    def nvmlDeviceGetMemoryInfo(self, h: Any, ref: Any) -> int:
        total, used = self._memory(h)
        m = _out(ref)
        m.total, m.used, m.free = total, used, total - used
        return rc.SUCCESS

    def nvmlDeviceGetMemoryInfo_v2(self, h: Any, ref: Any) -> int:
        m = _out(ref)
        if m.version != _MEMORY_V2:
            raise _Fail(rc.ARGUMENT_VERSION_MISMATCH)
        total, used = self._memory(h)
        reserved = min(used, total // 200)
        m.total, m.reserved, m.used, m.free = total, reserved, used - reserved, total - used
        return rc.SUCCESS

    def nvmlDeviceGetPciInfo_v3(self, h: Any, ref: Any) -> int:
        gpu = self.s.gpus[self.s._gpu(h)]
        p = _out(ref)
        domain, bus, rest = gpu.pci_bus_id.split(":")
        p.busId = gpu.pci_bus_id.encode()
        p.busIdLegacy = gpu.pci_bus_id[4:].encode()
        p.domain, p.bus, p.device = int(domain, 16), int(bus, 16), int(rest.split(".")[0], 16)
        p.pciDeviceId = gpu.model.pci_device_id
        p.pciSubSystemId = 0x145F10DE
        return rc.SUCCESS

    def nvmlDeviceGetCudaComputeCapability(self, h: Any, major: Any, minor: Any) -> int:
        gpu = self.s.gpus[self.s._gpu(h, allow_mig=True)]
        _out(major).value, _out(minor).value = gpu.model.compute_capability
        return rc.SUCCESS

    def nvmlDeviceGetArchitecture(self, h: Any, ref: Any) -> int:
        _out(ref).value = self.s.gpus[self.s._gpu(h)].model.arch
        return rc.SUCCESS

    def nvmlDeviceGetNumGpuCores(self, h: Any, ref: Any) -> int:
        # NOT_SUPPORTED on MIG devices and on MIG-enabled GPUs (nvml.h).
        if self._mig_handle(h) is not None:
            raise _Fail(rc.NOT_SUPPORTED)
        gpu = self.s._gpu(h)
        if self.s.mig_mode(gpu)[0] == 1:
            raise _Fail(rc.NOT_SUPPORTED)
        _out(ref).value = self.s.gpus[gpu].model.cores
        return rc.SUCCESS

    def nvmlDeviceGetVirtualizationMode(self, h: Any, ref: Any) -> int:
        _out(ref).value = self.s.gpus[self.s._gpu(h)].virtualization
        return rc.SUCCESS

    def nvmlDeviceGetTemperature(self, h: Any, sensor: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        if _val(sensor) != 0:
            raise _Fail(rc.INVALID_ARGUMENT)
        _out(ref).value = 31 + (gpu * 7) % 9
        return rc.SUCCESS

    def nvmlDeviceGetPowerUsage(self, h: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        busy = self.s._busy(self.s.snapshot().ns, gpu)
        _out(ref).value = (62_000 + 1_000 * (gpu % 5)) + (180_000 if busy else 0)
        return rc.SUCCESS

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Any, ref: Any) -> int:
        _out(ref).value = self.s.gpus[self.s._gpu(h)].model.power_limit_w * 1000
        return rc.SUCCESS

    def nvmlDeviceGetUtilizationRates(self, h: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        if self.s.mig_mode(gpu)[0] == 1:
            raise _Fail(rc.NOT_SUPPORTED)  # as on real MIG-enabled GPUs
        u = _out(ref)
        busy = self.s._busy(self.s.snapshot().ns, gpu)
        u.gpu, u.memory = (87, 41) if busy else (0, 0)
        return rc.SUCCESS

    # -- MIG mode --------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, h: Any, cur: Any, pend: Any) -> int:
        gpu = self.s._gpu(h)
        if not self.s.gpus[gpu].mig_capable:
            raise _Fail(rc.NOT_SUPPORTED)
        _out(cur).value, _out(pend).value = self.s.mig_mode(gpu)
        return rc.SUCCESS

    def nvmlDeviceSetMigMode(self, h: Any, mode: Any, status: Any) -> int:
        gpu = self.s._gpu(h)
        m = _val(mode)
        sim_gpu = self.s.gpus[gpu]
        if not sim_gpu.mig_capable:
            raise _Fail(rc.NOT_SUPPORTED)
        if m not in (0, 1):
            raise _Fail(rc.INVALID_ARGUMENT)
        if not sim_gpu.privileged:
            raise _Fail(rc.NO_PERMISSION)
        out = _out(status)
        with self.s.mutate() as ns:
            g = self.s._gw(ns, gpu)
            if m == 0 and g.get("gis"):
                raise _Fail(rc.IN_USE)  # GPU instances still exist
            if g.get("vgpus"):
                raise _Fail(rc.IN_USE)
            cur, _ = self.s.mig_mode(gpu, ns)
            busy = self.s._busy(ns, gpu)
            if busy and cur != m and not sim_gpu.model.is_ampere:
                # Hopper applies at once or not at all; the refusal comes back in
                # activationStatus, the call itself succeeds (nvml.h: "if device unbind
                # fails because the device isn't idle, NVML_ERROR_IN_USE would be
                # returned" there, and the caller is to idle the device and retry).
                out.value = rc.IN_USE
            elif busy and cur != m:
                # Ampere: the change waits for a GPU reset the driver cannot do now.
                g["mig"] = [cur, m]
                out.value = rc.IN_USE
            else:
                if cur != m:
                    g.pop("halves", None)  # a MIG mode change starts the id numbering afresh
                g["mig"] = [m, m]
                out.value = rc.SUCCESS
        return rc.SUCCESS

    # -- GPU instances ---------------------------------------------------------------------
    def _fill_gi_info(self, info: Any, gpu: int, p: GiProfileSpec) -> None:
        if hasattr(info, "version"):
            if info.version != _GI_INFO_V2:
                raise _Fail(rc.ARGUMENT_VERSION_MISMATCH)
            model = self.s.gpus[gpu].model
            name = mig_profile_name(p.slices, p.memory_mb, model.memory_bytes, p.enum)
            info.name = f"MIG {name}".encode()
        info.id = p.id
        info.isP2pSupported = 0
        info.sliceCount = p.slices
        info.instanceCount = p.instances
        info.multiprocessorCount = p.sms
        info.copyEngineCount = p.copy_engines
        info.decoderCount = p.decoders
        info.encoderCount = p.encoders
        info.jpegCount = p.jpegs
        info.ofaCount = p.ofas
        info.memorySizeMB = p.memory_mb

    def nvmlDeviceGetGpuInstanceProfileInfoV(self, h: Any, profile: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        enum = _val(profile)
        if not 0 <= enum < GI_PROFILE_COUNT:
            raise _Fail(rc.INVALID_ARGUMENT)
        self.s._require_mig(gpu, self.s.snapshot().ns)
        spec = next((p for p in self.s.gpus[gpu].model.mig_profiles if p.enum == enum), None)
        if spec is None:
            raise _Fail(rc.NOT_SUPPORTED)
        self._fill_gi_info(_out(ref), gpu, spec)
        return rc.SUCCESS

    nvmlDeviceGetGpuInstanceProfileInfo = nvmlDeviceGetGpuInstanceProfileInfoV

    def nvmlDeviceGetGpuInstanceProfileInfoByIdV(self, h: Any, profile_id: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        self.s._require_mig(gpu, self.s.snapshot().ns)
        self._fill_gi_info(_out(ref), gpu, self.s._profile(gpu, _val(profile_id)))
        return rc.SUCCESS

    def nvmlDeviceGetGpuInstanceRemainingCapacity(self, h: Any, profile_id: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        ns = self.s.snapshot().ns
        self.s._require_mig(gpu, ns)
        p = self.s._profile(gpu, _val(profile_id))
        _out(ref).value = self.s._remaining(self.s._g(ns, gpu), p)
        return rc.SUCCESS

    def nvmlDeviceGetGpuInstancePossiblePlacements_v2(
        self, h: Any, profile_id: Any, arr: Any, count: Any
    ) -> int:
        gpu = self.s._gpu(h)
        if not self.s.gpus[gpu].mig_capable:
            raise _Fail(rc.NOT_SUPPORTED)
        # Offered whether or not MIG is enabled (NVML header).
        p = self.s._profile(gpu, _val(profile_id))
        return _fill_placements(arr, count, [(s, p.mem_slices) for s in p.starts()])

    def _create_gi(self, h: Any, profile_id: Any, placement: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        pid = _val(profile_id)
        if not self.s.gpus[gpu].privileged:
            raise _Fail(rc.NO_PERMISSION)
        with self.s.mutate() as ns:
            self.s._require_mig(gpu, ns)
            p = self.s._profile(gpu, pid)
            g = self.s._gw(ns, gpu)
            gis = g.setdefault("gis", {})
            occupied = self.s._occupied(g)
            if placement is not None:
                start, size = placement
                if start not in p.starts() or size != p.mem_slices:
                    raise _Fail(rc.INVALID_ARGUMENT)
            else:
                start = self.s._driver_placement(gpu, p, g)
                if start is None:
                    raise _Fail(rc.INSUFFICIENT_RESOURCES)
            if sum(1 for gi in gis.values() if gi["profile"] == pid) >= p.instances:
                raise _Fail(rc.INSUFFICIENT_RESOURCES)
            if any(_overlaps((start, p.mem_slices), o) for o in occupied):
                raise _Fail(rc.INSUFFICIENT_RESOURCES)
            serial = self.s._next_serial(ns)
            if "halves" not in g:
                # The first instance since MIG was enabled fixes which half is which.
                g["halves"] = int(start >= 4 and p.mem_slices < 8)
            gi_id = _gi_id(p.mem_slices, start, bool(g["halves"]))
            gis[str(gi_id)] = {
                "profile": pid,
                "start": start,
                "size": p.mem_slices,
                "serial": serial,
                "cis": {},
            }
            self.s._arm(ns, "gi-create", gpu)
        _set_ptr(ref, _handle(_K_GI, gpu, serial))
        return rc.SUCCESS

    def nvmlDeviceCreateGpuInstance(self, h: Any, profile_id: Any, ref: Any) -> int:
        return self._create_gi(h, profile_id, None, ref)

    def nvmlDeviceCreateGpuInstanceWithPlacement(
        self, h: Any, profile_id: Any, placement: Any, ref: Any
    ) -> int:
        if not isinstance(placement, _CArg | ctypes._Pointer):
            # A struct passed by value is a pointer-sized garbage value to the C library.
            raise _Fail(rc.INVALID_ARGUMENT)
        pl = _out(placement)
        return self._create_gi(h, profile_id, (int(pl.start), int(pl.size)), ref)

    def nvmlDeviceGetGpuInstances(self, h: Any, profile_id: Any, arr: Any, count: Any) -> int:
        gpu = self.s._gpu(h)
        ns = self.s.snapshot().ns
        self.s._require_mig(gpu, ns)
        pid = _val(profile_id)
        self.s._profile(gpu, pid)
        if arr is None or count is None:
            raise _Fail(rc.INVALID_ARGUMENT)
        target = _out(arr) if isinstance(arr, _CArg) else arr
        gis = sorted(
            (int(k), gi)
            for k, gi in self.s._g(ns, gpu).get("gis", {}).items()
            if gi["profile"] == pid
        )
        if len(gis) > len(target):
            _out(count).value = len(gis)
            raise _Fail(rc.INSUFFICIENT_SIZE)
        for i, (_, gi) in enumerate(gis):
            target[i] = ctypes.cast(
                ctypes.c_void_p(_handle(_K_GI, gpu, gi["serial"])), target._type_
            )
        _out(count).value = len(gis)
        return rc.SUCCESS

    def nvmlDeviceGetGpuInstanceById(self, h: Any, gi_id: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        ns = self.s.snapshot().ns
        self.s._require_mig(gpu, ns)
        gi = self.s._g(ns, gpu).get("gis", {}).get(str(_val(gi_id)))
        if gi is None:
            raise _Fail(rc.NOT_FOUND)
        _set_ptr(ref, _handle(_K_GI, gpu, gi["serial"]))
        return rc.SUCCESS

    def nvmlGpuInstanceGetInfo(self, h: Any, ref: Any) -> int:
        gpu, gi_id, gi = self.s._gi(h)
        info = _out(ref)
        _set_field_ptr(info, "device", _handle(_K_GPU, gpu))
        info.id = gi_id
        info.profileId = gi["profile"]
        info.placement.start = gi["start"]
        info.placement.size = gi["size"]
        return rc.SUCCESS

    def nvmlGpuInstanceDestroy(self, h: Any) -> int:
        gpu, _, _ = self.s._gi(h)
        if not self.s.gpus[gpu].privileged:
            raise _Fail(rc.NO_PERMISSION)
        with self.s.mutate() as ns:
            gi_id, gi = self.s._gi(h, ns)[1:]
            if gi.get("cis"):
                raise _Fail(rc.IN_USE)  # compute instances still exist
            if any(v.get("gi") == gi_id for v in self.s._g(ns, gpu).get("vgpus", {}).values()):
                raise _Fail(rc.IN_USE)  # a MIG-backed vGPU runs on it
            del self.s._gw(ns, gpu)["gis"][str(gi_id)]
        return rc.SUCCESS

    # -- compute instances -----------------------------------------------------------------
    def nvmlGpuInstanceGetComputeInstanceProfileInfoV(
        self, h: Any, profile: Any, eng: Any, ref: Any
    ) -> int:
        gpu, _, gi = self.s._gi(h)
        enum = _val(profile)
        if not 0 <= enum < CI_PROFILE_COUNT or _val(eng) != 0:
            raise _Fail(rc.INVALID_ARGUMENT)
        spec = self.s._ci_spec(gpu, gi, enum)
        gp = self.s._profile(gpu, gi["profile"])
        info = _out(ref)
        if hasattr(info, "version"):
            if info.version != _CI_INFO_V2:
                raise _Fail(rc.ARGUMENT_VERSION_MISMATCH)
            model = self.s.gpus[gpu].model
            info.name = (
                "MIG "
                + mig_profile_name(
                    gp.slices, gp.memory_mb, model.memory_bytes, gp.enum, spec["slices"]
                )
            ).encode()
        info.id = enum
        info.sliceCount = spec["slices"]
        info.instanceCount = spec["instances"]
        info.multiprocessorCount = spec["sms"]
        info.sharedCopyEngineCount = gp.copy_engines
        info.sharedDecoderCount = gp.decoders
        info.sharedEncoderCount = gp.encoders
        info.sharedJpegCount = gp.jpegs
        info.sharedOfaCount = gp.ofas
        return rc.SUCCESS

    nvmlGpuInstanceGetComputeInstanceProfileInfo = nvmlGpuInstanceGetComputeInstanceProfileInfoV

    def _ci_free(
        self, gpu: int, gi: Mapping[str, Any], enum: int
    ) -> tuple[dict[str, int], list[int]]:
        spec = self.s._ci_spec(gpu, gi, enum)
        g_slices = self.s._profile(gpu, gi["profile"]).slices
        used = [(c["start"], c["size"]) for c in gi.get("cis", {}).values()]
        free = [
            s
            for s in self.s._ci_starts(spec["slices"], g_slices)
            if not any(_overlaps((s, spec["slices"]), u) for u in used)
        ]
        return spec, free

    def nvmlGpuInstanceGetComputeInstanceRemainingCapacity(
        self, h: Any, profile: Any, ref: Any
    ) -> int:
        gpu, _, gi = self.s._gi(h)
        enum = _val(profile)
        spec, free = self._ci_free(gpu, gi, enum)
        count = sum(1 for c in gi.get("cis", {}).values() if c["profile"] == enum)
        fits, taken = 0, [(c["start"], c["size"]) for c in gi.get("cis", {}).values()]
        for s in free:
            if not any(_overlaps((s, spec["slices"]), t) for t in taken):
                taken.append((s, spec["slices"]))
                fits += 1
        _out(ref).value = max(0, min(spec["instances"] - count, fits))
        return rc.SUCCESS

    def nvmlGpuInstanceGetComputeInstancePossiblePlacements(
        self, h: Any, profile: Any, arr: Any, count: Any
    ) -> int:
        gpu, _, gi = self.s._gi(h)
        spec = self.s._ci_spec(gpu, gi, _val(profile))
        g_slices = self.s._profile(gpu, gi["profile"]).slices
        starts = self.s._ci_starts(spec["slices"], g_slices)
        return _fill_placements(arr, count, [(s, spec["slices"]) for s in starts])

    def _create_ci(self, h: Any, profile: Any, placement: tuple[int, int] | None, ref: Any) -> int:
        gpu, _, _ = self.s._gi(h)
        if not self.s.gpus[gpu].privileged:
            raise _Fail(rc.NO_PERMISSION)
        enum = _val(profile)
        with self.s.mutate() as ns:
            gi_id, gi = self.s._gi(h, ns)[1:]
            gi = self.s._gw(ns, gpu)["gis"][str(gi_id)]
            if any(v.get("gi") == gi_id for v in self.s._g(ns, gpu).get("vgpus", {}).values()):
                raise _Fail(rc.IN_USE)  # given to a MIG-backed vGPU: its VM makes the CIs
            spec, free = self._ci_free(gpu, gi, enum)
            cis = gi.setdefault("cis", {})
            if sum(1 for c in cis.values() if c["profile"] == enum) >= spec["instances"]:
                raise _Fail(rc.INSUFFICIENT_RESOURCES)
            g_slices = self.s._profile(gpu, gi["profile"]).slices
            if placement is not None:
                start, size = placement
                if start not in self.s._ci_starts(spec["slices"], g_slices) or (
                    size != spec["slices"]
                ):
                    raise _Fail(rc.INVALID_ARGUMENT)
                if start not in free:
                    raise _Fail(rc.INSUFFICIENT_RESOURCES)
            elif not free:
                raise _Fail(rc.INSUFFICIENT_RESOURCES)
            else:
                start = free[0]
            ci_id = next(i for i in itertools.count() if str(i) not in cis)
            serial = self.s._next_serial(ns)
            cis[str(ci_id)] = {
                "profile": enum,
                "start": start,
                "size": spec["slices"],
                "serial": serial,
                "uuid": self.s.mig_uuid(ns, gpu, gi["serial"], serial),
            }
        _set_ptr(ref, _handle(_K_CI, gpu, serial))
        return rc.SUCCESS

    def nvmlGpuInstanceCreateComputeInstance(self, h: Any, profile: Any, ref: Any) -> int:
        return self._create_ci(h, profile, None, ref)

    def nvmlGpuInstanceCreateComputeInstanceWithPlacement(
        self, h: Any, profile: Any, placement: Any, ref: Any
    ) -> int:
        if not isinstance(placement, _CArg | ctypes._Pointer):
            raise _Fail(rc.INVALID_ARGUMENT)
        pl = _out(placement)
        return self._create_ci(h, profile, (int(pl.start), int(pl.size)), ref)

    def nvmlGpuInstanceGetComputeInstances(self, h: Any, profile: Any, arr: Any, count: Any) -> int:
        gpu, _, gi = self.s._gi(h)
        enum = _val(profile)
        self.s._ci_spec(gpu, gi, enum)
        if arr is None or count is None:
            raise _Fail(rc.INVALID_ARGUMENT)
        target = _out(arr) if isinstance(arr, _CArg) else arr
        cis = sorted((int(k), c) for k, c in gi.get("cis", {}).items() if c["profile"] == enum)
        if len(cis) > len(target):
            _out(count).value = len(cis)
            raise _Fail(rc.INSUFFICIENT_SIZE)
        for i, (_, c) in enumerate(cis):
            target[i] = ctypes.cast(
                ctypes.c_void_p(_handle(_K_CI, gpu, c["serial"])), target._type_
            )
        _out(count).value = len(cis)
        return rc.SUCCESS

    def nvmlGpuInstanceGetComputeInstanceById(self, h: Any, ci_id: Any, ref: Any) -> int:
        gpu, _, gi = self.s._gi(h)
        ci = gi.get("cis", {}).get(str(_val(ci_id)))
        if ci is None:
            raise _Fail(rc.NOT_FOUND)
        _set_ptr(ref, _handle(_K_CI, gpu, ci["serial"]))
        return rc.SUCCESS

    def nvmlComputeInstanceGetInfo_v2(self, h: Any, ref: Any) -> int:
        gpu, _, gi, ci_id, ci = self.s._ci(h)
        info = _out(ref)
        _set_field_ptr(info, "device", _handle(_K_GPU, gpu))
        _set_field_ptr(info, "gpuInstance", _handle(_K_GI, gpu, gi["serial"]))
        info.id = ci_id
        info.profileId = ci["profile"]
        info.placement.start = ci["start"]
        info.placement.size = ci["size"]
        return rc.SUCCESS

    def nvmlComputeInstanceDestroy(self, h: Any) -> int:
        gpu, _, _, _, ci = self.s._ci(h)
        if not self.s.gpus[gpu].privileged:
            raise _Fail(rc.NO_PERMISSION)
        with self.s.mutate() as ns:
            for gi in self.s._gw(ns, gpu).get("gis", {}).values():
                for ci_id, c in list(gi.get("cis", {}).items()):
                    if c["serial"] == ci["serial"]:
                        if self.s._busy(ns, gpu, c["uuid"]):
                            raise _Fail(rc.IN_USE)  # processes still run on it
                        del gi["cis"][ci_id]
                        return rc.SUCCESS
        raise _Fail(rc.INVALID_ARGUMENT)

    # -- MIG devices -----------------------------------------------------------------------
    def nvmlDeviceIsMigDeviceHandle(self, h: Any, ref: Any) -> int:
        kind = _unpack(_ptr(h))[0]
        if kind == _K_MIG:
            self.s._ci(h, _K_MIG)
            _out(ref).value = 1
        else:
            self.s._gpu(h)
            _out(ref).value = 0
        return rc.SUCCESS

    def nvmlDeviceGetGpuInstanceId(self, h: Any, ref: Any) -> int:
        mig = self._mig_handle(h)
        if mig is None:
            self.s._gpu(h)
            raise _Fail(rc.NOT_SUPPORTED)
        _out(ref).value = mig[1]
        return rc.SUCCESS

    def nvmlDeviceGetComputeInstanceId(self, h: Any, ref: Any) -> int:
        mig = self._mig_handle(h)
        if mig is None:
            self.s._gpu(h)
            raise _Fail(rc.NOT_SUPPORTED)
        _out(ref).value = mig[3]
        return rc.SUCCESS

    def nvmlDeviceGetMaxMigDeviceCount(self, h: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        on = self.s.gpus[gpu].mig_capable and self.s.mig_mode(gpu)[0] == 1
        _out(ref).value = 7 if on else 0
        return rc.SUCCESS

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: Any, index: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        ns = self.s.snapshot().ns
        self.s._require_mig(gpu, ns)
        i = _val(index)
        if not 0 <= i < 7:
            raise _Fail(rc.INVALID_ARGUMENT)
        devs = self.s._mig_devices(self.s._g(ns, gpu))
        if i >= len(devs):
            raise _Fail(rc.NOT_FOUND)
        _set_ptr(ref, _handle(_K_MIG, gpu, devs[i][3]["serial"]))
        return rc.SUCCESS

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h: Any, ref: Any) -> int:
        mig = self._mig_handle(h)
        if mig is None:
            self.s._gpu(h)
            raise _Fail(rc.INVALID_ARGUMENT)
        _set_ptr(ref, _handle(_K_GPU, mig[0]))
        return rc.SUCCESS

    def nvmlDeviceGetAttributes_v2(self, h: Any, ref: Any) -> int:
        mig = self._mig_handle(h)
        if mig is None:
            self.s._gpu(h)
            raise _Fail(rc.NOT_SUPPORTED)  # only MIG device handles are supported
        gpu, _, gi, _, ci = mig
        gp = self.s._profile(gpu, gi["profile"])
        spec = self.s._ci_spec(gpu, gi, ci["profile"])
        a = _out(ref)
        a.multiprocessorCount = spec["sms"]
        a.sharedCopyEngineCount = gp.copy_engines
        a.sharedDecoderCount = gp.decoders
        a.sharedEncoderCount = gp.encoders
        a.sharedJpegCount = gp.jpegs
        a.sharedOfaCount = gp.ofas
        a.gpuInstanceSliceCount = gp.slices
        a.computeInstanceSliceCount = spec["slices"]
        a.memorySizeMB = gp.memory_mb
        return rc.SUCCESS

    # -- vGPU ------------------------------------------------------------------------------
    def _id_list(self, ids: list[int], count: Any, arr: Any) -> int:
        c = _out(count)
        if arr is None or c.value < len(ids):
            c.value = len(ids)
            return rc.INSUFFICIENT_SIZE if ids else rc.SUCCESS
        target = _out(arr) if isinstance(arr, _CArg) else arr
        for i, v in enumerate(ids):
            target[i] = v
        c.value = len(ids)
        return rc.SUCCESS

    def nvmlDeviceGetSupportedVgpus(self, h: Any, count: Any, arr: Any) -> int:
        gpu = self.s._gpu(h)
        self.s.sync_sysfs()
        types = self.s._vgpu_types(gpu, self.s.snapshot().ns)
        return self._id_list([t.id for t in types], count, arr)

    def nvmlDeviceGetCreatableVgpus(self, h: Any, count: Any, arr: Any) -> int:
        gpu = self.s._gpu(h)
        self.s.sync_sysfs()
        types = self.s._creatable(gpu, self.s.snapshot().ns)
        return self._id_list([t.id for t in types], count, arr)

    def nvmlDeviceGetActiveVgpus(self, h: Any, count: Any, arr: Any) -> int:
        gpu = self.s._gpu(h)
        self.s.sync_sysfs()
        ns = self.s.snapshot().ns
        self.s._vgpu_types(gpu, ns)
        ids = sorted(int(k) for k in self.s._g(ns, gpu).get("vgpus", {}))
        return self._id_list(ids, count, arr)

    def nvmlDeviceGetComputeRunningProcesses_v3(self, h: Any, count: Any, arr: Any) -> int:
        """Processes (``add_process``) on the GPU or its MIG devices and vGPUs."""
        gpu, ns = self.s._gpu(h), self.s.snapshot().ns
        procs = ns.get("procs", {}).items()
        pids = sorted(int(p) for p, t in procs if self.s._busy({**ns, "procs": {p: t}}, gpu))
        c = _out(count)
        if arr is None or c.value < len(pids):
            c.value = len(pids)
            return rc.INSUFFICIENT_SIZE if pids else rc.SUCCESS
        target = _out(arr) if isinstance(arr, _CArg) else arr
        for i, pid in enumerate(pids):
            target[i].pid, target[i].usedGpuMemory = pid, 0
            target[i].gpuInstanceId = target[i].computeInstanceId = 0xFFFFFFFF
        c.value = len(pids)
        return rc.SUCCESS

    def nvmlVgpuTypeGetName(self, type_id: Any, buf: Any, size: Any) -> int:
        t = self.s._vgpu_type(_val(type_id))
        _set_str(buf, _val(size), t.name)
        return rc.SUCCESS

    def nvmlVgpuTypeGetClass(self, type_id: Any, buf: Any, size: Any) -> int:
        t = self.s._vgpu_type(_val(type_id))
        _set_str(buf, _val(size), t.vgpu_class)
        return rc.SUCCESS

    def nvmlVgpuTypeGetFramebufferSize(self, type_id: Any, ref: Any) -> int:
        _out(ref).value = self.s._vgpu_type(_val(type_id)).framebuffer_mb << 20
        return rc.SUCCESS

    def nvmlVgpuTypeGetMaxInstances(self, h: Any, type_id: Any, ref: Any) -> int:
        gpu = self.s._gpu(h)
        t = self.s._vgpu_type(_val(type_id))
        if t not in self.s.gpus[gpu].model.vgpu_types:
            raise _Fail(rc.INVALID_ARGUMENT)
        _out(ref).value = t.max_instances
        return rc.SUCCESS

    def nvmlVgpuTypeGetGpuInstanceProfileId(self, type_id: Any, ref: Any) -> int:
        t = self.s._vgpu_type(_val(type_id))
        _out(ref).value = (
            t.gi_profile_id if t.gi_profile_id is not None else (_INVALID_GI_PROFILE_ID)
        )
        return rc.SUCCESS

    def _vgpu(self, inst: Any) -> tuple[int, Mapping[str, Any]]:
        key = str(_val(inst))
        snap = self.s.snapshot()
        for k, g in snap.gpus.items():
            v = g.get("vgpus", {}).get(key)
            if v is not None:
                if int(k) in snap.lost:
                    raise _Fail(rc.GPU_IS_LOST)
                return int(k), v
        raise _Fail(rc.INVALID_ARGUMENT)

    def nvmlVgpuInstanceGetType(self, inst: Any, ref: Any) -> int:
        _out(ref).value = self._vgpu(inst)[1]["type"]
        return rc.SUCCESS

    def nvmlVgpuInstanceGetMdevUUID(self, inst: Any, buf: Any, size: Any) -> int:
        _set_str(buf, size, self._vgpu(inst)[1]["mdev"])
        return rc.SUCCESS

    def nvmlVgpuInstanceGetUUID(self, inst: Any, buf: Any, size: Any) -> int:
        _, v = self._vgpu(inst)
        _set_str(buf, size, str(uuidlib.uuid5(_NS, "vgpu/" + v["mdev"])))
        return rc.SUCCESS

    def nvmlVgpuInstanceGetGpuInstanceId(self, inst: Any, ref: Any) -> int:
        # INVALID_GPU_INSTANCE_ID for a time-sliced vGPU (nvml.h)
        _out(ref).value = self._vgpu(inst)[1].get("gi", _INVALID_GI_PROFILE_ID)
        return rc.SUCCESS

    def nvmlVgpuInstanceGetFbUsage(self, inst: Any, ref: Any) -> int:
        self._vgpu(inst)
        _out(ref).value = 0
        return rc.SUCCESS


def _fill_placements(arr: Any, count: Any, placements: list[tuple[int, int]]) -> int:
    c = _out(count)
    if arr is None:
        c.value = len(placements)
        return rc.SUCCESS
    target = _out(arr) if isinstance(arr, _CArg) else arr
    if c.value < len(placements) or len(target) < len(placements):
        c.value = len(placements)
        raise _Fail(rc.INSUFFICIENT_SIZE)
    for i, (start, size) in enumerate(placements):
        target[i].start = start
        target[i].size = size
    c.value = len(placements)
    return rc.SUCCESS


class SimMdevSysfs(MdevSysfs):
    """The mdev tree of a simulated hypervisor: writes take effect at once, as in the kernel."""

    def __init__(self, sim: NvmlSimulator) -> None:
        super().__init__(sim.sysfs_root)
        self.sim = sim

    def devices(self) -> list[MdevDevice]:
        self.sim.sync_sysfs()
        return super().devices()

    def available_instances(self, pci: str, type_id: int) -> int | None:
        self.sim.sync_sysfs()
        return super().available_instances(pci, type_id)

    def _write(self, path: Path, text: str) -> None:
        self.sim.sync_sysfs()
        self.sim.sysfs_write(path, text)
