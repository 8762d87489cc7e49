"""One pass over an inventory: every reading a scrape reports, taken once.

A scrape must never fail because one backend or one device does: each backend is
read on its own, a device that raises is recorded as unhealthy and skipped, and a
backend whose listing fails is reported down while the others carry on.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from accelpool.errors import AccelPoolError, DeviceLost
from accelpool.types import Telemetry

log = logging.getLogger("accelpool.exporter")


@dataclass(frozen=True)
class PartitionReading:
    """A live partition and what is known of it now."""

    id: str
    profile: str
    kind: str
    memory_bytes: int
    attributes: dict[str, Any]
    telemetry: Telemetry


@dataclass(frozen=True)
class DeviceReading:
    """A device, its readings, its partitions and the profiles that still fit."""

    id: str
    backend: str
    index: int
    vendor: str
    model: str
    memory_bytes: int
    attributes: dict[str, Any]
    healthy: bool
    telemetry: Telemetry
    partitions: list[PartitionReading] = field(default_factory=list)
    available: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimReading:
    """Who holds which target."""

    target: str
    holder: str


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reports."""

    hostname: str
    backends: dict[str, bool]
    devices: list[DeviceReading]
    claims: list[ClaimReading]


class _Errors:
    """Counts the failed readings of one device, other than its being lost."""

    def __init__(self) -> None:
        self.count = 0

    def call(self, what: str, fn: Any, default: Any) -> Any:
        """Call ``fn``; a failure is logged, counted and ``default`` returned."""
        try:
            return fn()
        except DeviceLost:
            raise
        except Exception as e:  # a reading must never break the scrape
            self.count += 1
            level = logging.DEBUG if isinstance(e, AccelPoolError) else logging.WARNING
            log.log(level, "%s: %s", what, e)
            return default


def _device(dev: Any) -> tuple[DeviceReading, bool]:
    """The readings of ``dev`` and whether they came without an unexpected error."""
    errors = _Errors()
    base = (dev.id, dev.backend, dev.index, dev.vendor, dev.model, dev.memory_bytes)
    size_only = Telemetry(memory_total_bytes=dev.memory_bytes)

    def sized(p: Any) -> Telemetry:
        return Telemetry(memory_total_bytes=p.memory_bytes)

    try:
        telemetry = errors.call(f"telemetry of {dev.id}", dev.telemetry, size_only)
        parts = [
            PartitionReading(
                p.id,
                p.profile,
                p.kind,
                p.memory_bytes,
                dict(p.attributes),
                errors.call(f"telemetry of {p.id}", p.telemetry, sized(p)),
            )
            for p in errors.call(f"partitions of {dev.id}", dev.partitions, [])
        ]
        available = {
            pr.name: int(pr.available)
            for pr in errors.call(f"profiles of {dev.id}", dev.profiles, [])
            if pr.available is not None
        }
    except DeviceLost as e:
        # A lost device is reported unhealthy; it says nothing about the backend's health.
        log.info("%s is lost: %s", dev.id, e)
        return DeviceReading(*base, dict(dev.attributes), False, size_only), True
    reading = DeviceReading(*base, dict(dev.attributes), True, telemetry, parts, available)
    return reading, errors.count == 0


def _holder(claim: dict[str, Any]) -> str:
    """A claim's holder as one label value: a named holder, else ``pid N``."""
    for key in ("holder", "name", "holder_id"):
        value = claim.get(key)
        if isinstance(value, str) and value:
            return value
    return f"pid {claim.get('pid')}"


def read_claims(store: Any | None = None) -> list[ClaimReading]:
    """The live claims of this host (none if the claim store cannot be read)."""
    try:
        from accelpool.session import ClaimStore

        rows: Iterable[Any] = (store or ClaimStore()).claims()
        out = []
        for c in rows:
            data = c.to_json()
            if data.get("alive", True):
                out.append(ClaimReading(str(data["target"]), _holder(data)))
        return out
    except Exception as e:  # an unreadable claim store must not break the scrape
        log.warning("reading claims: %s", e)
        return []


def take_snapshot(inventory: Any, claims: Any | None = None) -> Snapshot:
    """Read every backend, device, partition and claim of ``inventory`` once.

    A backend counts as up when it is available and, if it has devices, at least one
    of them was read without an unexpected error. Under a simulated fleet, backends
    the fleet does not include are not reported.
    """
    fleet = getattr(inventory, "fleet", None)
    backends = {
        s.name: bool(s.available)
        for s in inventory.backends()
        # Under a simulated fleet, a backend the fleet does not include is no problem
        # (as in `accelpool ls`): it is left out rather than reported down.
        if fleet is None or s.available or fleet.for_backend(s.name)
    }
    devices: list[DeviceReading] = []
    for name, up in sorted(backends.items()):
        if not up:
            continue
        try:
            results = [_device(d) for d in inventory.devices(name)]
        except Exception as e:  # this backend is down for this scrape, the rest still report
            log.warning("backend %s: %s", name, e)
            backends[name] = False
            continue
        backends[name] = not results or any(ok for _, ok in results)
        devices.extend(r for r, _ in results)
    return Snapshot(socket.gethostname(), backends, devices, read_claims(claims))
