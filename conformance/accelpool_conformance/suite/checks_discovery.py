"""Discovery: the backend is honest about itself and its devices."""

from __future__ import annotations

import math

import pytest

from accelpool.capabilities import Capability
from accelpool.inventory import Inventory
from accelpool.types import DeviceInfo
from accelpool_conformance import invariants as inv
from accelpool_conformance import truth
from accelpool_conformance.context import SuiteContext, WorkerSpec
from accelpool_conformance.invariants import CheckedBackend, check
from accelpool_conformance.workers import run_workers

PARTITION_KINDS = {
    "mig": Capability.PARTITION_MIG,
    "vgpu": Capability.PARTITION_VGPU,
    "vnpu": Capability.PARTITION_VNPU,
    "mim": Capability.PARTITION_MIM,
    "smlu": Capability.PARTITION_SMLU,
    "subdevice": Capability.PARTITION_SUBDEVICE,
    "slice": Capability.PARTITION_SLICE,
}


@pytest.mark.always_run
def test_backend_is_available(suite: SuiteContext) -> None:
    check(suite.error is None, inv.AVAILABLE, lambda: str(suite.error))


def test_backend_status_is_honest(suite: SuiteContext, inventory: Inventory) -> None:
    mine = [s for s in inventory.backends() if s.name == suite.backend_name]
    check(len(mine) == 1, inv.STATUS_HONEST, f"{len(mine)} statuses name {suite.backend_name}")
    status = mine[0]
    check(
        status.available and not status.reason,
        inv.STATUS_HONEST,
        f"a usable backend reports available={status.available} reason={status.reason!r}",
    )
    check(
        status.version is None or isinstance(status.version, str),
        inv.STATUS_HONEST,
        f"version is {status.version!r}, not a string or None",
    )
    for s in inventory.backends():
        check(
            s.available or bool(s.reason),
            inv.STATUS_HONEST,
            f"backend {s.name} is unavailable without saying why",
        )


def test_backend_reports_devices(devices: list[DeviceInfo]) -> None:
    check(devices, inv.HAS_DEVICES, "devices() returned no device")


def test_device_ids_are_unique(
    suite: SuiteContext, devices: list[DeviceInfo], inventory: Inventory
) -> None:
    natives = [d.native_id for d in devices]
    check(
        all(isinstance(n, str) and n and ":" not in n for n in natives),
        inv.IDS_UNIQUE,
        f"native ids must be non-empty strings without ':': {natives}",
    )
    dupes = sorted({n for n in natives if natives.count(n) > 1})
    check(not dupes, inv.IDS_UNIQUE, f"native ids repeat: {dupes}")
    indexes = [d.index for d in devices]
    check(
        len(set(indexes)) == len(indexes) and all(i >= 0 for i in indexes),
        inv.IDS_UNIQUE,
        f"indexes must be distinct and non-negative: {indexes}",
    )
    public = [d.id for d in inventory.devices(suite.backend_name)]
    check(len(set(public)) == len(public), inv.IDS_UNIQUE, f"public ids repeat: {public}")


def test_devices_are_listed_in_index_order(backend: CheckedBackend) -> None:
    indexes = [d.index for d in backend.devices()]
    check(indexes == sorted(indexes), inv.ORDERED, f"devices() lists indexes {indexes}")


def test_device_ids_are_stable_across_calls(
    backend: CheckedBackend, devices: list[DeviceInfo]
) -> None:
    first = [d.native_id for d in devices]
    for _ in range(3):
        again = sorted(backend.devices(), key=lambda d: d.index)
        check(
            [d.native_id for d in again] == first,
            inv.IDS_STABLE_CALLS,
            f"devices() gave {first} then {[d.native_id for d in again]}",
        )
        truth.check_same_facts(devices, again, "a second devices() call")


def test_device_ids_are_stable_across_processes(
    devices: list[DeviceInfo], worker_spec: WorkerSpec, suite: SuiteContext
) -> None:
    here = [[d.native_id, d.index] for d in devices]
    (there,) = run_workers(worker_spec, [{"action": "devices"}], suite.tuning.worker_timeout)
    there = sorted(there, key=lambda x: x[1])
    check(
        there == here,
        inv.IDS_STABLE_PROCESSES,
        f"this process sees {here}; another process sees {there}",
    )


def test_backend_index_resolves(
    suite: SuiteContext, devices: list[DeviceInfo], inventory: Inventory
) -> None:
    for d in devices:
        for ref in (f"{suite.backend_name}:{d.index}", f"{suite.backend_name}:{d.native_id}"):
            got = inventory.device(ref)
            check(
                got.info.native_id == d.native_id,
                inv.INDEX_RESOLVES,
                f"{ref} resolves to {got.id}, not {suite.backend_name}:{d.native_id}",
            )


def test_memory_and_compute_are_positive(devices: list[DeviceInfo]) -> None:
    for d in devices:
        for name in ("memory_bytes", "compute_units", "index"):
            value = getattr(d, name)
            check(
                isinstance(value, int) and not isinstance(value, bool),
                inv.SPI_TYPES,
                f"device {d.native_id}: {name} is {value!r}, not an int",
            )
        check(
            d.memory_bytes > 0 and d.compute_units > 0,
            inv.POSITIVE,
            f"device {d.native_id} has memory_bytes={d.memory_bytes} "
            f"compute_units={d.compute_units}",
        )
        check(
            isinstance(d.vendor, str) and d.vendor and isinstance(d.model, str) and d.model,
            inv.SPI_TYPES,
            f"device {d.native_id}: vendor {d.vendor!r} and model {d.model!r} must be named",
        )


def test_attribute_names_are_vendor_qualified(devices: list[DeviceInfo]) -> None:
    for d in devices:
        for key, value in d.attributes.items():
            domain, _, name = str(key).partition("/")
            check(
                "." in domain and name,
                inv.ATTRIBUTE_NAMES,
                f"device {d.native_id} attribute {key!r} is not named 'vendor.domain/name'",
            )
            check(
                isinstance(value, str | int | float | bool),
                inv.SPI_TYPES,
                f"device {d.native_id} attribute {key!r} is {type(value).__name__}",
            )


def test_capability_declarations_are_consistent(backend: CheckedBackend) -> None:
    caps = backend.capabilities()
    check(
        caps.supports(Capability.DISCOVERY),
        inv.CAPS_CONSISTENT,
        "an available backend must declare 'discovery' supported",
    )
    needs_partition = [
        c
        for c in (Capability.PARTITION_DEVICE_SCOPE, *PARTITION_KINDS.values())
        if caps.supports(c)
    ]
    check(
        not needs_partition or caps.supports(Capability.PARTITION),
        inv.CAPS_CONSISTENT,
        f"declares {', '.join(needs_partition)} supported but not 'partition'",
    )
    if caps.supports(Capability.PARTITION):
        kinds = [k for k, c in PARTITION_KINDS.items() if caps.supports(c)]
        check(
            kinds,
            inv.CAPS_CONSISTENT,
            "declares 'partition' supported but no partition kind (partition.mig, ...)",
        )


@pytest.mark.requires(Capability.PARTITION)
def test_profiles_are_consistent_with_their_device(
    backend: CheckedBackend, devices: list[DeviceInfo]
) -> None:
    caps = backend.capabilities()
    for d in devices:
        profiles = backend.profiles(d)
        empty = not backend.partitions(d)
        names = [p.name for p in profiles]
        check(
            len(set(names)) == len(names),
            inv.PROFILES_CONSISTENT,
            f"device {d.native_id} lists profile names twice: {names}",
        )
        for p in profiles:
            where = f"device {d.native_id} profile {p.name!r}"
            check(
                isinstance(p.name, str) and p.name,
                inv.PROFILES_CONSISTENT,
                f"{where}: the name must be a non-empty string",
            )
            check(
                p.kind in inv.KINDS,
                inv.PROFILES_CONSISTENT,
                f"{where}: kind {p.kind!r} is not one of {sorted(inv.KINDS)}",
            )
            cap = PARTITION_KINDS.get(p.kind)
            check(
                cap is None or caps.supports(cap),
                inv.PROFILES_CONSISTENT,
                f"{where}: kind {p.kind} but capability {cap} is not declared supported",
            )
            check(
                0 < p.memory_bytes <= d.memory_bytes,
                inv.PROFILES_CONSISTENT,
                f"{where}: {p.memory_bytes} bytes; the device has {d.memory_bytes}",
            )
            check(
                0 <= p.compute_units <= d.compute_units,
                inv.PROFILES_CONSISTENT,
                f"{where}: {p.compute_units} compute units; the device has {d.compute_units}",
            )
            check(
                isinstance(p.max_count, int) and p.max_count >= 1,
                inv.PROFILES_CONSISTENT,
                f"{where}: max_count {p.max_count!r} must be at least 1",
            )
            if p.kind not in inv.MEMORY_SHARING_KINDS:
                check(
                    p.max_count * p.memory_bytes <= d.memory_bytes,
                    inv.PROFILES_CONSISTENT,
                    f"{where}: max_count {p.max_count} x {p.memory_bytes} bytes exceeds "
                    f"the device's {d.memory_bytes}",
                )
            if p.kind not in inv.COMPUTE_SHARING_KINDS:
                check(
                    p.max_count * p.compute_units <= d.compute_units,
                    inv.PROFILES_CONSISTENT,
                    f"{where}: max_count {p.max_count} x {p.compute_units} compute units "
                    f"exceeds the device's {d.compute_units}",
                )
            if p.available is not None:
                check(
                    0 <= p.available <= p.max_count,
                    inv.PROFILES_CONSISTENT,
                    f"{where}: available {p.available} is outside 0..{p.max_count}",
                )
                if empty:
                    check(
                        p.available == p.max_count,
                        inv.PROFILES_CONSISTENT,
                        f"{where}: on an empty device available is {p.available}, "
                        f"max_count {p.max_count}",
                    )
            starts = [pl.start for pl in p.placements]
            check(
                len(set(starts)) == len(starts),
                inv.PROFILES_CONSISTENT,
                f"{where}: placements repeat a start: {starts}",
            )
            for pl in p.placements:
                check(
                    pl.start >= 0 and pl.size >= 1,
                    inv.PROFILES_CONSISTENT,
                    f"{where}: placement {pl} must have start >= 0 and size >= 1",
                )
            if p.placements:
                check(
                    len(p.placements) >= p.max_count,
                    inv.PROFILES_CONSISTENT,
                    f"{where}: {len(p.placements)} placements cannot hold max_count "
                    f"{p.max_count} partitions",
                )


@pytest.mark.requires(Capability.PARTITION)
def test_partitions_report_their_own_device(
    backend: CheckedBackend, devices: list[DeviceInfo]
) -> None:
    for d in devices:
        for p in backend.partitions(d):
            check(
                p.device_native_id == d.native_id,
                inv.PARTITIONS_OWN_DEVICE,
                f"partitions({d.native_id}) lists {p.native_id} of device {p.device_native_id}",
            )
            check(
                p.scope in ("device", "process"),
                inv.SPI_TYPES,
                f"partition {p.native_id} has scope {p.scope!r}",
            )


def test_backend_index_follows_the_vendors_numbering(
    suite: SuiteContext, devices: list[DeviceInfo]
) -> None:
    """Vendor index attributes agree with ``index``; a simulated fleet's devices are
    reported exactly, in its order, with its models' memory and compute."""
    truth.check_vendor_index(devices)
    known = truth.fleet_entries(suite)
    if known is not None:
        entries, source = known
        truth.check_fleet_truth(devices, entries, source)


TELEMETRY_FIELDS = (
    "memory_used_bytes",
    "memory_total_bytes",
    "utilization_percent",
    "temperature_c",
    "power_w",
)


@pytest.mark.requires(Capability.TELEMETRY)
def test_telemetry_is_plausible(backend: CheckedBackend, devices: list[DeviceInfo]) -> None:
    """Memory in bytes (total and used required), utilisation in percent, temperature in
    degrees Celsius, power in watts per device, each within physical bounds."""
    for d in devices:
        t = backend.telemetry(d)
        where = f"telemetry({d.native_id})"
        for name in TELEMETRY_FIELDS:
            v = getattr(t, name)
            check(
                v is None
                or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)),
                inv.TELEMETRY_PLAUSIBLE,
                f"{where}: {name} is {v!r}, not a finite number or None",
            )
        total, used = t.memory_total_bytes, t.memory_used_bytes
        check(
            total is not None and used is not None,
            inv.TELEMETRY_PLAUSIBLE,
            f"{where}: telemetry is supported, so memory total and used are required; "
            f"got total {total!r}, used {used!r}",
        )
        assert total is not None and used is not None  # for mypy
        check(
            0 <= used <= total and total > 0,
            inv.TELEMETRY_PLAUSIBLE,
            f"{where}: {used} bytes used of {total}; need 0 <= used <= total",
        )
        check(
            total == d.memory_bytes,
            inv.DEVICE_FACTS,
            f"{where}: total memory {total} bytes; the device reports memory_bytes "
            f"{d.memory_bytes} (both are bytes)",
        )
        for name, (low, high) in inv.TELEMETRY_BOUNDS.items():
            v = getattr(t, name)
            check(
                v is None or low <= v <= high,
                inv.TELEMETRY_PLAUSIBLE,
                f"{where}: {name} is {v!r}, outside [{low:g}, {high:g}]",
            )
