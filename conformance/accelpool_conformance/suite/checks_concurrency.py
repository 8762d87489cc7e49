"""Concurrency: creates racing in threads and in processes never over-grant."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from accelpool.capabilities import Capability
from accelpool.errors import AccelPoolError, InsufficientCapacity, InUse, NotFound
from accelpool.types import DeviceInfo, PartitionInfo, PartitionProfile, Placement
from accelpool_conformance import invariants as inv
from accelpool_conformance.context import SuiteContext, WorkerSpec
from accelpool_conformance.fixtures import Ledger
from accelpool_conformance.helpers import availability, check_listing
from accelpool_conformance.invariants import CheckedBackend, broken, check, describe
from accelpool_conformance.workers import run_workers

pytestmark = pytest.mark.requires(Capability.PARTITION)

#: What a racing create may legitimately answer besides success.
REFUSALS = (InsufficientCapacity, InUse)


def _smallest(backend: CheckedBackend, dev: DeviceInfo) -> PartitionProfile:
    return min(backend.profiles(dev), key=lambda p: (p.memory_bytes, p.compute_units, p.name))


def _race(n: int, fn: Callable[[int], Any], timeout: float) -> list[tuple[str, Any]]:
    """Run ``fn(i)`` in ``n`` threads released together; ``("ok", value)`` or ``("err", e)``."""
    barrier = threading.Barrier(n)
    out: list[tuple[str, Any]] = [("err", TimeoutError("thread did not finish"))] * n

    def body(i: int) -> None:
        try:
            barrier.wait(timeout)
            out[i] = ("ok", fn(i))
        except BaseException as e:
            out[i] = ("err", e)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return out


def _check_grants(
    dev: DeviceInfo, granted: Sequence[tuple[str, Placement | None]], capacity: int, how: str
) -> None:
    natives = [g[0] for g in granted]
    twice = sorted({n for n in natives if natives.count(n) > 1})
    check(
        not twice,
        inv.DOUBLE_GRANT,
        f"{how}: partition ids {twice} were granted to more than one create",
    )
    placed = [(n, p) for n, p in granted if p is not None]
    for i, (a, pa) in enumerate(placed):
        for b, pb in placed[i + 1 :]:
            check(
                not pa.overlaps(pb),
                inv.DOUBLE_GRANT,
                f"{how}: {a} at {pa} and {b} at {pb} were granted the same slots of "
                f"{dev.native_id}",
            )
    check(
        len(granted) <= capacity,
        inv.CONCURRENT_CAPACITY,
        f"{how}: {len(granted)} creates succeeded; only {capacity} fit",
    )


def test_threads_never_exceed_capacity(
    backend: CheckedBackend, partition_device: DeviceInfo, ledger: Ledger, suite: SuiteContext
) -> None:
    dev = partition_device
    prof = _smallest(backend, dev)
    capacity = prof.available if prof.available is not None else prof.max_count
    n = max(2, min(capacity + 2, suite.tuning.threads))
    before = availability(backend, dev)
    timeout = suite.tuning.worker_timeout
    results = _race(n, lambda _i: backend.raw.create_partition(dev, prof.name, None), timeout)
    made: list[PartitionInfo] = []
    for kind, value in results:
        if kind == "ok":
            check(
                isinstance(value, PartitionInfo),
                inv.SPI_TYPES,
                f"a racing create returned {value!r}",
            )
            made.append(value)
            ledger.adopt(value)
    for kind, value in results:
        if kind == "err" and not isinstance(value, REFUSALS):
            if isinstance(value, AccelPoolError):
                broken(
                    inv.CONCURRENT_CAPACITY,
                    f"a create racing {n - 1} others raised {describe(value)}; expected "
                    "success or InsufficientCapacity",
                )
            broken(inv.VENDOR, f"a create racing {n - 1} others raised {describe(value)}")
    how = f"{n} threads creating {prof.name} on {dev.native_id} at once"
    _check_grants(dev, [(p.native_id, p.placement) for p in made], capacity, how)
    check(made, inv.CONCURRENT_CAPACITY, f"{how}: none succeeded although {capacity} fit")
    check_listing(backend, dev, made, how)

    # Destroys race too: each partition once, and one of them twice.
    victims = made + made[:1]
    outcomes = _race(len(victims), lambda i: backend.raw.destroy_partition(victims[i]), timeout)
    for part in made:
        ledger.forget(part)
    wins = [i for i, (kind, _) in enumerate(outcomes) if kind == "ok"]
    for kind, value in outcomes:
        if kind == "err" and not isinstance(value, NotFound):
            invariant = inv.DESTROYED_ONCE if isinstance(value, AccelPoolError) else inv.VENDOR
            broken(invariant, f"a racing destroy raised {describe(value)}")
    check(
        len(wins) == len(made),
        inv.DESTROYED_ONCE,
        f"{len(victims)} racing destroys of {len(made)} partitions (one named twice) "
        f"succeeded {len(wins)} times",
    )
    check_listing(backend, dev, [], "after the racing destroys")
    check(
        availability(backend, dev) == before,
        inv.CAPACITY_RETURNS,
        f"availability before the race {before}, after {availability(backend, dev)}",
    )


@pytest.mark.requires(Capability.PARTITION_DEVICE_SCOPE)
def test_processes_never_exceed_capacity(
    backend: CheckedBackend,
    partition_device: DeviceInfo,
    ledger: Ledger,
    worker_spec: WorkerSpec,
    suite: SuiteContext,
) -> None:
    dev = partition_device
    prof = _smallest(backend, dev)
    capacity = prof.available if prof.available is not None else prof.max_count
    k = suite.tuning.processes
    each = max(1, math.ceil((capacity + 2) / k))
    before = availability(backend, dev)
    job = {"action": "create", "device": dev.native_id, "profile": prof.name, "count": each}
    try:
        results = run_workers(worker_spec, [job] * k, suite.tuning.worker_timeout)
    finally:
        for p in backend.partitions(dev):  # whatever the workers made, the ledger removes
            ledger.adopt(p)
    granted: list[tuple[str, Placement | None]] = []
    for r in results:
        check(isinstance(r, dict) and "created" in r, inv.WORKER, f"a worker answered {r}")
        for c in r["created"]:
            pl = Placement(*c["placement"]) if c["placement"] else None
            granted.append((c["id"], pl))
        for e in r["errors"]:
            check(
                e["type"] in {c.__name__ for c in REFUSALS},
                inv.CONCURRENT_CAPACITY,
                f"a create racing in another process raised {e['type']}: {e['message']}",
            )
    how = f"{k} processes creating up to {each} x {prof.name} on {dev.native_id} at once"
    _check_grants(dev, granted, capacity, how)
    listed = backend.partitions(dev)
    check(
        sorted(p.native_id for p in listed) == sorted(g[0] for g in granted),
        inv.DOUBLE_GRANT,
        f"{how}: the workers were granted {sorted(g[0] for g in granted)} but the device "
        f"lists {inv.ids(listed)}",
    )
    inv.check_no_overlap(listed, how)
    inv.check_within_device(dev, listed, how)
    for p in listed:
        ledger.destroy(p)
    check(
        availability(backend, dev) == before,
        inv.CAPACITY_RETURNS,
        f"availability before {before}, after destroying the workers' partitions "
        f"{availability(backend, dev)}",
    )
