"""The public handles: :class:`Inventory`, :class:`Device`, :class:`Partition`.

They wrap the SPI's frozen values with the backend that produced them, so a user
writes ``inv.device("nvidia:0").create_partition("3g.20gb")`` and never touches a
backend directly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from accelpool.capabilities import Capabilities
from accelpool.errors import AccelPoolError, CorruptState, DeviceLost, InvalidRequest, NotFound
from accelpool.registry import LoadedBackend, load_backends, safe_call_error
from accelpool.spi import Backend, Target
from accelpool.types import (
    AttributeValue,
    BackendStatus,
    DeviceInfo,
    OnnxPlacement,
    PartitionInfo,
    PartitionProfile,
    Placement,
    Scope,
    Telemetry,
)

if TYPE_CHECKING:
    from accelpool.sim.fleet import Fleet

T = TypeVar("T")


def _guard(backend: Backend, fn: Callable[[], T]) -> T:
    """Run a backend call; anything outside accelpool's hierarchy is wrapped in it."""
    try:
        return fn()
    except AccelPoolError:
        raise
    except Exception as e:
        raise safe_call_error(e, backend.name) from e


class _Target:
    """What a device and a partition share: identity, size, and what runs on them."""

    info: DeviceInfo | PartitionInfo

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @property
    def id(self) -> str:
        return f"{self._backend.name}:{self.info.native_id}"

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def memory_bytes(self) -> int:
        return self.info.memory_bytes

    @property
    def compute_units(self) -> int:
        return self.info.compute_units

    @property
    def attributes(self) -> dict[str, AttributeValue]:
        return dict(self.info.attributes)

    @property
    def backend_instance(self) -> Backend:
        """The backend object behind this target (for plugin-specific operations)."""
        return self._backend

    def _check_reachable(self) -> None:
        """Raise DeviceLost when this target's device was lost at discovery."""

    def visibility_env(self) -> dict[str, str]:
        """Environment variables that make exactly this target visible to a runtime."""
        self._check_reachable()
        return _guard(self._backend, lambda: self._backend.visibility_env([self.info]))

    def onnx_placement(self) -> OnnxPlacement:
        """The onnxruntime providers and options that run a model here."""
        self._check_reachable()
        return _guard(self._backend, lambda: self._backend.onnx_placement(self.info))


class Device(_Target):
    """One accelerator. ``id`` is ``"<backend>:<native id>"``; also ``"<backend>:<index>"``."""

    info: DeviceInfo

    def __init__(self, backend: Backend, info: DeviceInfo) -> None:
        super().__init__(backend)
        self.info = info

    @property
    def index(self) -> int:
        return self.info.index

    @property
    def lost(self) -> bool:
        """True when the device stopped answering; every operation raises DeviceLost."""
        return self.info.lost

    def _check_reachable(self) -> None:
        if self.info.lost:
            raise DeviceLost(
                f"device {self.backend}:{self.index} ({self.id}) is lost: it stopped "
                "answering (fell off the bus or its driver reset); check the kernel log, "
                "then reset the device or reboot"
            )

    @property
    def vendor(self) -> str:
        return self.info.vendor

    @property
    def model(self) -> str:
        return self.info.model

    @property
    def capabilities(self) -> Capabilities:
        return _guard(self._backend, self._backend.capabilities)

    def profiles(self) -> list[PartitionProfile]:
        """Partition shapes this device offers, with how many more fit now."""
        self._check_reachable()
        return list(_guard(self._backend, lambda: self._backend.profiles(self.info)))

    def profile(self, name: str) -> PartitionProfile:
        """One profile by name; :class:`NotFound` lists the valid names."""
        profiles = self.profiles()
        for p in profiles:
            if p.name == name:
                return p
        names = ", ".join(p.name for p in profiles) or "none: this device cannot be partitioned"
        raise NotFound(f"device {self.id} has no profile {name!r} (profiles: {names})")

    def partitions(self) -> list[Partition]:
        """Live partitions of this device."""
        self._check_reachable()
        infos = _guard(self._backend, lambda: self._backend.partitions(self.info))
        return [Partition(self._backend, self, p) for p in infos]

    def create_partition(self, profile: str, placement: int | None = None) -> Partition:
        """Create a partition of ``profile`` (at ``placement``, or where it hurts least)."""
        if not isinstance(profile, str) or not profile:
            raise InvalidRequest("profile must be a non-empty string such as '1g.5gb'")
        if placement is not None and (not isinstance(placement, int) or placement < 0):
            raise InvalidRequest(f"placement must be a non-negative integer, not {placement!r}")
        self._check_reachable()
        from accelpool.vfio import refuse_if_passed_through

        refuse_if_passed_through(self, "create a partition on")
        info = _guard(
            self._backend, lambda: self._backend.create_partition(self.info, profile, placement)
        )
        return Partition(self._backend, self, info)

    def telemetry(self) -> Telemetry:
        """Memory used, utilisation, temperature and power, where the vendor reports them."""
        self._check_reachable()
        return _guard(self._backend, lambda: self._backend.telemetry(self.info))

    def to_json(self, with_partitions: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "backend": self.backend,
            "index": self.index,
            "vendor": self.vendor,
            "model": self.model,
            "memory_bytes": self.memory_bytes,
            "compute_units": self.compute_units,
            "attributes": self.attributes,
            "lost": self.lost,
        }
        if with_partitions:
            doc["partitions"] = [] if self.lost else [p.to_json() for p in self.partitions()]
        return doc

    def __repr__(self) -> str:
        return f"<Device {self.id} {self.model!r}>"


class Partition(_Target):
    """A live slice of a device. ``id`` is ``"<backend>:<native id>"``."""

    info: PartitionInfo

    def __init__(self, backend: Backend, device: Device, info: PartitionInfo) -> None:
        super().__init__(backend)
        self.device = device
        self.info = info

    @property
    def device_id(self) -> str:
        return self.device.id

    @property
    def profile(self) -> str:
        return self.info.profile

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def placement(self) -> Placement | None:
        return self.info.placement

    @property
    def scope(self) -> Scope:
        return self.info.scope

    @property
    def complete(self) -> bool:
        """False for a half-made partition (see ``accelpool partition gc``)."""
        return self.info.complete

    def _check_reachable(self) -> None:
        self.device._check_reachable()

    def telemetry(self) -> Telemetry:
        """Live readings of this partition (at least its memory total)."""
        self._check_reachable()
        return _guard(self._backend, lambda: self._backend.partition_telemetry(self.info))

    def destroy(self, *, force: bool = False) -> None:
        """Destroy this partition; :class:`NotFound` if it is already gone.

        :class:`InUse` naming the holder if a session or a named holder claims the
        partition, or its whole device. ``force=True`` destroys it anyway (for operators;
        logged as a warning on the ``accelpool.claims`` logger).
        """
        from accelpool.claims import guard  # claims pull in the session package

        self._check_reachable()
        with guard(self, "destroy", force=force):
            _guard(self._backend, lambda: self._backend.destroy_partition(self.info))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device_id": self.device_id,
            "profile": self.profile,
            "kind": self.kind,
            "memory_bytes": self.memory_bytes,
            "compute_units": self.compute_units,
            "placement": self.placement.to_json() if self.placement else None,
            "scope": self.scope,
            "complete": self.complete,
            "attributes": self.attributes,
        }

    def __repr__(self) -> str:
        return f"<Partition {self.id} {self.profile!r} on {self.device_id}>"


class Inventory:
    """What :func:`discover` found: backend statuses and their devices.

    The device list is read once at discovery (ids are stable); partitions and
    profiles are read live on every call.
    """

    def __init__(self, loaded: Sequence[LoadedBackend], fleet: Fleet | None = None) -> None:
        self._loaded = list(loaded)
        self.fleet = fleet
        self._devices: list[Device] = []
        statuses: list[BackendStatus] = []
        for lb in self._loaded:
            if lb.backend is None:
                statuses.append(lb.status)
                continue
            backend = lb.backend
            try:
                infos = _guard(backend, backend.devices)
            except CorruptState:
                raise  # the user must repair the state: not a backend that cannot run
            except AccelPoolError as e:
                # Listing failed after a good probe: the backend is not usable after all.
                statuses.append(BackendStatus(lb.status.name, False, str(e), lb.status.version))
                lb.backend = None
                continue
            statuses.append(lb.status)
            self._devices.extend(Device(backend, i) for i in sorted(infos, key=lambda d: d.index))
        self._statuses = statuses

    def backends(self) -> list[BackendStatus]:
        """Every installed (or requested) backend plugin, available or not, with reasons."""
        return list(self._statuses)

    def backend(self, name: str) -> Backend:
        """The live backend instance by name; :class:`NotFound` if it is not available."""
        for lb in self._loaded:
            if lb.status.name == name and lb.backend is not None:
                return lb.backend
        for s in self._statuses:
            if s.name == name:
                raise NotFound(f"backend {name} is not available here: {s.reason}")
        known = ", ".join(s.name for s in self._statuses) or "none installed"
        raise NotFound(f"no backend named {name!r} (backends: {known})")

    def devices(self, backend: str | None = None) -> list[Device]:
        """All devices, or those of one backend, in backend then index order."""
        return [d for d in self._devices if backend is None or d.backend == backend]

    def device(self, ref: str) -> Device:
        """A device by ``"<backend>:<native id>"`` or ``"<backend>:<index>"``."""
        backend, _, native = _split_ref(ref, "device")
        candidates = [d for d in self._devices if d.backend == backend]
        for d in candidates:
            if d.info.native_id == native:
                return d
        if native.isascii() and native.isdigit():  # str.isdigit alone accepts '²' and '٣
            for d in candidates:
                if d.index == int(native):
                    return d
        if not candidates and backend not in {s.name for s in self._statuses if s.available}:
            self.backend(backend)  # raises NotFound naming why the backend is missing
        raise NotFound(
            f"no device {ref!r}: backend {backend} has "
            f"{len(candidates)} device(s); run 'accelpool ls' to see their ids"
        )

    def partition(self, ref: str) -> Partition:
        """A live partition by its id ``"<backend>:<native id>"``."""
        backend, _, native = _split_ref(ref, "partition")
        lost: list[Device] = []
        for d in self.devices(backend):
            if d.lost:
                lost.append(d)
                continue
            try:
                parts = d.partitions()
            except DeviceLost:
                lost.append(d)
                continue
            for p in parts:
                if p.info.native_id == native:
                    return p
        if backend not in {s.name for s in self._statuses if s.available}:
            self.backend(backend)
        if lost:
            names = ", ".join(f"{d.backend}:{d.index}" for d in lost)
            raise DeviceLost(
                f"no partition {ref!r} on the devices that answer; {names} "
                f"{'is' if len(lost) == 1 else 'are'} lost, and it may be there: "
                "check the kernel log, then reset the device or reboot"
            )
        raise NotFound(f"no partition {ref!r}; run 'accelpool ls' to see live partitions")

    def target(self, ref: str) -> Device | Partition:
        """A device or a partition by id (devices are tried first)."""
        try:
            return self.device(ref)
        except NotFound:
            pass
        try:
            return self.partition(ref)
        except NotFound:
            raise NotFound(
                f"no device or partition {ref!r}; run 'accelpool ls' to see ids"
            ) from None

    def collect_garbage(self) -> list[str]:
        """Let every available backend clean up after creators (or destroyers) killed half way.

        Returns one line per thing finished or removed (e.g. a bare NVIDIA GPU
        instance whose creator or destroyer was killed between its two steps).
        """
        done: list[str] = []
        for lb in self._loaded:
            if lb.backend is not None:
                backend = lb.backend
                done.extend(_guard(backend, backend.collect_garbage))
        return done

    def close(self) -> None:
        """Release every backend's vendor resources."""
        for lb in self._loaded:
            if lb.backend is not None:
                with contextlib.suppress(Exception):  # closing must not fail the caller
                    lb.backend.close()

    def __enter__(self) -> Inventory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split_ref(ref: str, what: str) -> tuple[str, str, str]:
    if not isinstance(ref, str) or ":" not in ref or ref.startswith(":") or ref.endswith(":"):
        raise InvalidRequest(
            f"{what} reference {ref!r} must look like BACKEND:ID or BACKEND:INDEX "
            "(for example nvidia:0)"
        )
    backend, sep, native = ref.partition(":")
    return backend, sep, native


def resolve_fleet(sim: str | Fleet | None) -> Fleet | None:
    """The fleet to simulate: the argument, else ``$ACCELPOOL_SIM``, else none."""
    spec = sim if sim is not None else os.environ.get("ACCELPOOL_SIM") or None
    if not spec:
        return None
    from accelpool.sim.fleet import Fleet, load_fleet  # only when simulating

    return spec if isinstance(spec, Fleet) else load_fleet(spec)


def discover(
    sim: str | Fleet | None = None,
    backends: Sequence[str] | None = None,
    *,
    collect_garbage: bool = False,
) -> Inventory:
    """Load every installed backend and list its devices.

    ``sim`` is a preset name or fleet file (default: ``$ACCELPOOL_SIM``); ``backends``
    restricts which plugins load (default: ``$ACCELPOOL_BACKENDS`` or all).
    ``collect_garbage=True`` first lets each backend finish or remove what creators
    killed half way left behind (see :meth:`Inventory.collect_garbage`).
    """
    fleet = resolve_fleet(sim)
    inv = Inventory(load_backends(fleet, backends), fleet)
    if collect_garbage:
        inv.collect_garbage()
    return inv


# Used in type annotations of sessions and the CLI.
AnyTarget = Device | Partition
__all__ = ["AnyTarget", "Device", "Inventory", "Partition", "Target", "discover"]
