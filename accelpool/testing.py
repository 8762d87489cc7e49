"""A small, complete reference backend for tests and for plugin authors to copy.

:class:`ToyBackend` models devices of 8 equal slots; a profile ``Ns`` takes N aligned
slots (``1s``, ``2s``, ``4s``, ``8s``), like a miniature MIG. State lives in the
simulated fleet's :class:`~accelpool.sim.state.StateStore` when one is given
(so every process sees the same partitions, scope ``device``), else in memory.

``toy_inventory()`` builds an :class:`~accelpool.Inventory` over it without
installing an entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelpool.capabilities import Capabilities, Capability
from accelpool.errors import (
    BackendUnavailable,
    DeviceLost,
    InsufficientCapacity,
    InvalidRequest,
    NotFound,
)
from accelpool.inventory import Inventory, discover
from accelpool.registry import LoadedBackend
from accelpool.sim.fleet import FleetDevice
from accelpool.sim.state import StateStore
from accelpool.spi import Backend, BackendContext, SimContext, Target
from accelpool.types import (
    BackendStatus,
    DeviceInfo,
    ExecutionProvider,
    OnnxPlacement,
    PartitionInfo,
    PartitionProfile,
    Placement,
    Telemetry,
)

SLOTS = 8
SLOT_BYTES = 1 << 30
#: profile name -> (slots, allowed starts)
PROFILES: dict[str, tuple[int, tuple[int, ...]]] = {
    "1s": (1, tuple(range(8))),
    "2s": (2, (0, 2, 4, 6)),
    "4s": (4, (0, 4)),
    "8s": (8, (0,)),
}
VISIBLE_ENV = "TOY_VISIBLE_DEVICES"


class ToyBackend(Backend):
    """Reference backend: 8-slot devices with aligned, MIG-like profiles."""

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        self._memory: dict[str, Any] = {}
        self._mutex = threading.Lock()
        sim = context.sim
        self._count = sum(d.count for d in sim.devices) if sim else 2

    # -- state: the fleet's store when simulated, else this process's memory
    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        sim = self.context.sim
        if sim is None:
            with self._mutex:
                yield self._memory
            return
        with sim.state.transaction() as doc:
            yield doc.setdefault(self.name, {})

    def _read(self) -> dict[str, Any]:
        sim = self.context.sim
        if sim is None:
            with self._mutex:
                return {k: dict(v) if isinstance(v, dict) else v for k, v in self._memory.items()}
        return sim.state.read().get(self.name, {})

    def _check_alive(self, native_id: str, state: dict[str, Any]) -> None:
        if native_id in state.get("lost", []):
            raise DeviceLost(f"toy device {native_id} fell off the bus; reset the fleet")

    # -- SPI ---------------------------------------------------------------
    def probe(self) -> str:
        if self.context.options.get("fail_probe"):
            raise BackendUnavailable("toy library not found (asked to fail)")
        return "1.0"

    def capabilities(self) -> Capabilities:
        return Capabilities.of(
            [
                Capability.DISCOVERY,
                Capability.PARTITION,
                Capability.PARTITION_MIG,
                Capability.PARTITION_DEVICE_SCOPE,
                Capability.TELEMETRY,
                Capability.VISIBILITY,
                Capability.SESSION_ONNX,
                Capability.FAULT_INJECTION,
            ],
            unsupported=[Capability.PARTITION_VGPU, Capability.MIG_MODE],
        )

    def devices(self) -> Sequence[DeviceInfo]:
        return [
            DeviceInfo(
                native_id=f"toy-{i}",
                index=i,
                vendor="accelpool",
                model="Toy-8S",
                memory_bytes=SLOTS * SLOT_BYTES,
                compute_units=SLOTS,
                attributes={"accelpool.dev/slots": SLOTS},
            )
            for i in range(self._count)
        ]

    def _parts(self, state: dict[str, Any], device: str) -> dict[str, Any]:
        parts: dict[str, Any] = state.get("partitions", {}).get(device, {})
        return parts

    def _used(self, state: dict[str, Any], device: str) -> set[int]:
        used: set[int] = set()
        for p in self._parts(state, device).values():
            used.update(range(p["start"], p["start"] + p["size"]))
        return used

    @staticmethod
    def _free_starts(used: set[int], size: int, starts: tuple[int, ...]) -> list[int]:
        return [s for s in starts if not used & set(range(s, s + size))]

    def profiles(self, device: DeviceInfo) -> Sequence[PartitionProfile]:
        state = self._read()
        self._check_alive(device.native_id, state)
        used = self._used(state, device.native_id)
        out = []
        for name, (size, starts) in PROFILES.items():
            free = self._free_starts(used, size, starts)
            # aligned placements never straddle, so free aligned starts are disjoint
            out.append(
                PartitionProfile(
                    name=name,
                    kind="mig",
                    memory_bytes=size * SLOT_BYTES,
                    compute_units=size,
                    max_count=SLOTS // size,
                    placements=tuple(Placement(s, size) for s in starts),
                    available=len(free),
                )
            )
        return out

    def _info(self, device: str, pid: str, p: dict[str, Any]) -> PartitionInfo:
        return PartitionInfo(
            native_id=pid,
            device_native_id=device,
            profile=p["profile"],
            kind="mig",
            memory_bytes=p["size"] * SLOT_BYTES,
            compute_units=p["size"],
            placement=Placement(p["start"], p["size"]),
            scope="device",
        )

    def partitions(self, device: DeviceInfo) -> Sequence[PartitionInfo]:
        state = self._read()
        self._check_alive(device.native_id, state)
        parts = self._parts(state, device.native_id)
        return [self._info(device.native_id, pid, p) for pid, p in sorted(parts.items())]

    def create_partition(
        self, device: DeviceInfo, profile: str, placement: int | None = None
    ) -> PartitionInfo:
        if profile not in PROFILES:
            raise InvalidRequest(
                f"toy device has no profile {profile!r}; choose one of {', '.join(PROFILES)}"
            )
        size, starts = PROFILES[profile]
        if placement is not None and placement not in starts:
            raise InvalidRequest(
                f"profile {profile} cannot start at {placement}; "
                f"valid placements: {', '.join(map(str, starts))}"
            )
        with self._state() as state:
            injected = state.get("fail_next_create") == device.native_id
            if injected:
                del state["fail_next_create"]  # one-shot: saved, and nothing else changes
        if injected:
            raise InsufficientCapacity("injected fault: create failed half way, rolled back")
        with self._state() as state:
            self._check_alive(device.native_id, state)
            used = self._used(state, device.native_id)
            free = self._free_starts(used, size, starts)
            if placement is not None:
                free = [placement] if placement in free else []
            if not free:
                raise InsufficientCapacity(
                    f"no room for {profile} on {device.native_id}"
                    + ("" if placement is None else f" at placement {placement}")
                )
            start = free[-1]  # from the top, keeping low aligned blocks for larger profiles
            pid = f"{device.native_id}-p{start}"
            state.setdefault("partitions", {}).setdefault(device.native_id, {})[pid] = {
                "profile": profile,
                "start": start,
                "size": size,
            }
            return self._info(
                device.native_id, pid, {"profile": profile, "start": start, "size": size}
            )

    def destroy_partition(self, partition: PartitionInfo) -> None:
        with self._state() as state:
            self._check_alive(partition.device_native_id, state)
            parts = state.get("partitions", {}).get(partition.device_native_id, {})
            if partition.native_id not in parts:
                raise NotFound(f"no toy partition {partition.native_id}: already destroyed?")
            del parts[partition.native_id]

    def telemetry(self, device: DeviceInfo) -> Telemetry:
        state = self._read()
        self._check_alive(device.native_id, state)
        used = len(self._used(state, device.native_id))
        return Telemetry(memory_used_bytes=used * SLOT_BYTES, memory_total_bytes=SLOTS * SLOT_BYTES)

    def visibility_env(self, targets: Sequence[Target]) -> dict[str, str]:
        return {VISIBLE_ENV: ",".join(t.native_id for t in targets)}

    def onnx_placement(self, target: Target) -> OnnxPlacement:
        return OnnxPlacement((ExecutionProvider("CPUExecutionProvider"),), intra_op_num_threads=1)

    def inject_fault(self, fault: str, device: DeviceInfo) -> None:
        with self._state() as state:
            if fault == "device-lost":
                state.setdefault("lost", []).append(device.native_id)
            elif fault == "create-fails-midway":
                state["fail_next_create"] = device.native_id
            else:
                raise InvalidRequest(f"unknown fault {fault!r}")

    def clear_faults(self) -> None:
        with self._state() as state:
            state.pop("lost", None)
            state.pop("fail_next_create", None)


def toy_backend(devices: int = 2, state: StateStore | None = None, name: str = "toy") -> ToyBackend:
    """A probed ToyBackend; with ``state`` it behaves as a simulated, cross-process fleet."""
    sim = None
    if state is not None:
        sim = SimContext(
            "toy-fleet", (FleetDevice(name, "Toy-8S", devices),), state, state.path.parent / name
        )
    backend = ToyBackend(BackendContext(name=name, sim=sim))
    if sim is None:
        backend._count = devices
    backend.probe()
    return backend


def inventory_of(*backends: Backend, probe: bool = False) -> Inventory:
    """An Inventory over already-built backends (no entry points involved).

    With ``probe`` each backend's ``probe()`` is called first, as discovery calls it: one
    that raises :class:`BackendUnavailable` is listed unavailable with its reason. Without
    it the backends must be probed already (``toy_backend()`` is).
    """
    loaded = []
    for b in backends:
        status = BackendStatus(b.name, True, None, "test")
        if probe:
            try:
                b.probe()
            except BackendUnavailable as e:
                status = BackendStatus(b.name, False, str(e), "test")
        loaded.append(LoadedBackend(status, b if status.available else None))
    return Inventory(loaded)


def toy_inventory(devices: int = 2, state: StateStore | None = None) -> Inventory:
    """An Inventory holding one ToyBackend."""
    return inventory_of(toy_backend(devices, state))


@dataclass
class CliResult:
    """What one ``accelpool`` command did: exit code, stdout and stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
    """Run ``python -m accelpool ARGS`` in a fresh process (``env`` replaces os.environ)."""
    proc = subprocess.run(
        [sys.executable, "-m", "accelpool", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else dict(os.environ),
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def run_cli_with_sim(*args: str, sim: str | None = None) -> CliResult:
    """:func:`run_cli` in this process's environment, with ``ACCELPOOL_SIM=sim`` if given."""
    env = dict(os.environ)
    if sim is not None:
        env["ACCELPOOL_SIM"] = sim
    return run_cli(*args, env=env)


def write_fleet(
    folder: Path, name: str, backend: str, entries: Sequence[tuple[str, int, dict[str, Any]]]
) -> str:
    """Write fleet file ``folder/NAME.toml`` of ``(model, count, options)`` entries of
    ``backend``; returns its path."""
    lines = [f'name = "{name}"']
    for model, count, options in entries:
        lines += ["[[devices]]", f'backend = "{backend}"', f'model = "{model}"']
        lines.append(f"count = {count}")
        if options:
            lines.append("[devices.options]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@contextmanager
def sim_discovery(backend: str) -> Iterator[Callable[[str], Inventory]]:
    """Yield ``make(sim)``, which discovers a simulated fleet with only ``backend``.

    ``make`` fails (AssertionError) when the backend is unavailable, giving its reason;
    every inventory it made is closed when the block ends.
    """
    opened: list[Inventory] = []

    def make(sim: str) -> Inventory:
        inv = discover(sim=sim, backends=[backend])
        opened.append(inv)
        status = inv.backends()[0]
        if not status.available:
            raise AssertionError(status.reason)
        return inv

    try:
        yield make
    finally:
        for inv in opened:
            inv.close()


_DISCOVERY_SCRIPT = """
import json, sys
import accelpool
inv = accelpool.discover()
(status,) = [s for s in inv.backends() if s.name == sys.argv[1]]
print(json.dumps({"status": status.to_json(), "modules": sorted(sys.modules)}))
"""


def check_discovery_without_library(
    backend: str, library_env: str, missing: Path, heavy: Sequence[str], reason: str
) -> None:
    """Discover with only ``backend`` in a fresh process, ``library_env`` naming the
    ``missing`` library file, and check the backend is unavailable, its reason contains
    ``reason``, and neither its backend module (its presence check answered first) nor
    any module of ``heavy`` was imported."""
    env = dict(os.environ, ACCELPOOL_BACKENDS=backend)
    env.pop("ACCELPOOL_SIM", None)
    env[library_env] = str(missing)
    out = subprocess.run(
        [sys.executable, "-c", _DISCOVERY_SCRIPT, backend],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    status, modules = result["status"], set(result["modules"])
    assert status["available"] is False
    assert reason in status["reason"]
    assert [m for m in [f"accelpool_{backend}.backend", *heavy] if m in modules] == []


class FakeFunction:
    """What ``getattr(cdll, name)`` returns: callable, with settable argtypes/restype."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.argtypes: Any = None
        self.restype: Any = None

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


class FakeLib:
    """A ``ctypes.CDLL``-like object over ``impl``: attribute lookup gives a function.

    Each public attribute of ``impl`` is a C function (it fills what it is passed by
    pointer, as the C library does); a missing one raises AttributeError, as CDLL does
    for an unknown symbol. :attr:`lookups` lists the names looked up, in order.
    """

    def __init__(self, impl: Any) -> None:
        self._impl = impl
        self.lookups: list[str] = []

    def __getattr__(self, name: str) -> FakeFunction:
        if name.startswith("_"):
            raise AttributeError(name)
        fn = getattr(self._impl, name)  # AttributeError, as CDLL for an unknown symbol
        self.lookups.append(name)
        return FakeFunction(fn)


class PluginSite:
    """A folder of fake installed distributions, put on PYTHONPATH of subprocesses.

    ``importlib.metadata`` finds a ``*.dist-info`` folder on ``sys.path`` exactly as it
    finds one in site-packages, so each plugin here is, to accelpool, installed.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add(
        self,
        dist: str,
        entry_points: dict[str, dict[str, str]],
        modules: dict[str, str] | None = None,
    ) -> None:
        # dist-info folder names use underscores: a hyphen would end the name early
        info = self.root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = []
        for group, eps in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{k} = {v}" for k, v in eps.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        for name, source in (modules or {}).items():
            (self.root / f"{name}.py").write_text(textwrap.dedent(source))

    def backend(self, name: str, source: str) -> None:
        """A plugin distribution ``plugin-<name>`` whose module defines class ``B``."""
        module = f"fake_plugin_{name}"
        self.add(f"plugin-{name}", {"accelpool.backends": {name: f"{module}:B"}}, {module: source})

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        env.update(extra)
        return env
