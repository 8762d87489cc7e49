"""Errors: only accelpool's hierarchy escapes, bad input is InvalidRequest."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

import pytest

from accelpool.capabilities import Capability, Support
from accelpool.errors import AccelPoolError, InvalidRequest, NotFound, UnsupportedOperation
from accelpool.types import DeviceInfo, PartitionInfo, Placement
from accelpool_conformance import invariants as inv
from accelpool_conformance.fixtures import Ledger
from accelpool_conformance.invariants import CheckedBackend, check, expect_error

GHOST_ID = "accelpool-conformance-no-such-thing"


def _ghost_device() -> DeviceInfo:
    return DeviceInfo(
        native_id=GHOST_ID,
        index=9999,
        vendor="none",
        model="none",
        memory_bytes=1,
        compute_units=1,
    )


def _ghost_partition(device: DeviceInfo) -> PartitionInfo:
    return PartitionInfo(
        native_id=GHOST_ID,
        device_native_id=device.native_id,
        profile="none",
        kind="mig",
        memory_bytes=1,
        compute_units=1,
        placement=Placement(0, 1),
        scope="device",
    )


def _tolerate_accelpool_errors(what: str, fn: Callable[[], object]) -> None:
    """Any accelpool error, or a value, is fine; CheckedBackend fails on anything else."""
    with contextlib.suppress(AccelPoolError):
        fn()


def test_no_vendor_exception_escapes(
    backend: CheckedBackend, devices: list[DeviceInfo], suite: object
) -> None:
    ghost = _ghost_device()
    real = devices[0] if devices else ghost
    calls: list[tuple[str, Callable[[], object]]] = [
        ("profiles of an unknown device", lambda: backend.profiles(ghost)),
        ("partitions of an unknown device", lambda: backend.partitions(ghost)),
        ("create on an unknown device", lambda: backend.create_partition(ghost, "x")),
        (
            "destroy of an unknown partition",
            lambda: backend.destroy_partition(_ghost_partition(ghost)),
        ),
        (
            "destroy of an unknown partition of a real device",
            lambda: backend.destroy_partition(_ghost_partition(real)),
        ),
        ("telemetry of an unknown device", lambda: backend.telemetry(ghost)),
        ("visibility of no target", lambda: backend.visibility_env([])),
        ("visibility of an unknown device", lambda: backend.visibility_env([ghost])),
        ("onnx placement of an unknown device", lambda: backend.onnx_placement(ghost)),
    ]
    for what, fn in calls:
        _tolerate_accelpool_errors(what, fn)


@pytest.mark.requires(Capability.PARTITION)
def test_unknown_profile_gives_invalid_request(
    backend: CheckedBackend, partition_device: DeviceInfo, ledger: Ledger
) -> None:
    before = inv.ids(backend.partitions(partition_device))
    for bad in ("accelpool-conformance-no-such-profile", ""):
        expect_error(
            inv.INVALID_REQUEST,
            InvalidRequest,
            f"create_partition with profile {bad!r}",
            partial(ledger.create, partition_device, bad),
        )
    after = inv.ids(backend.partitions(partition_device))
    check(
        after == before,
        inv.INVALID_REQUEST,
        f"a refused create left partitions behind: {sorted(set(after) - set(before))}",
    )


@pytest.mark.requires(Capability.PARTITION)
def test_wrong_types_give_invalid_request(
    backend: CheckedBackend, partition_device: DeviceInfo, ledger: Ledger
) -> None:
    profile = backend.profiles(partition_device)[0]
    cases: list[tuple[object, object]] = [
        (None, None),
        (42, None),
        (profile.name, "0"),
        (profile.name, 1.5),
    ]
    for prof, placement in cases:
        expect_error(
            inv.INVALID_REQUEST,
            InvalidRequest,
            f"create_partition(profile={prof!r}, placement={placement!r})",
            partial(ledger.create, partition_device, prof, placement),
        )


@pytest.mark.requires(Capability.PARTITION)
def test_bad_placement_gives_invalid_request(
    backend: CheckedBackend, partition_device: DeviceInfo, ledger: Ledger
) -> None:
    profiles = backend.profiles(partition_device)
    every_start = {pl.start for p in profiles for pl in p.placements}
    beyond = max(every_start, default=0) + 1_000_000
    for p in profiles:
        expect_error(
            inv.INVALID_REQUEST,
            InvalidRequest,
            f"create_partition({p.name}, placement=-1)",
            partial(ledger.create, partition_device, p.name, -1),
        )
        if p.placements:
            expect_error(
                inv.INVALID_REQUEST,
                InvalidRequest,
                f"create_partition({p.name}, placement={beyond}) (not a placement it offers)",
                partial(ledger.create, partition_device, p.name, beyond),
            )
            starts = {pl.start for pl in p.placements}
            odd = next(s for s in range(max(starts) + 2) if s not in starts)
            if odd < max(starts):
                expect_error(
                    inv.INVALID_REQUEST,
                    InvalidRequest,
                    f"create_partition({p.name}, placement={odd}) (offered: {sorted(starts)})",
                    partial(ledger.create, partition_device, p.name, odd),
                )


@pytest.mark.requires(Capability.PARTITION)
def test_unknown_partition_gives_not_found(
    backend: CheckedBackend, partition_device: DeviceInfo
) -> None:
    # A made-up id may also be malformed for the vendor: InvalidRequest is fine too.
    # (A well-formed, destroyed partition must give NotFound: see destroying twice.)
    expect_error(
        inv.UNKNOWN_NOT_FOUND,
        (NotFound, InvalidRequest),
        "destroy_partition of a partition that never existed",
        lambda: backend.destroy_partition(_ghost_partition(partition_device)),
    )


def test_unsupported_operations_raise_unsupported_operation(
    backend: CheckedBackend, devices: list[DeviceInfo]
) -> None:
    caps = backend.capabilities()
    if not devices:
        pytest.skip("no device to call operations on")
    d = devices[0]
    ops: dict[str, Callable[[], object]] = {
        Capability.PARTITION: lambda: backend.create_partition(d, "accelpool-conformance"),
        Capability.TELEMETRY: lambda: backend.telemetry(d),
        Capability.VISIBILITY: lambda: backend.visibility_env([d]),
        Capability.SESSION_ONNX: lambda: backend.onnx_placement(d),
    }
    for cap, op in ops.items():
        if caps.support(cap) is Support.UNSUPPORTED:
            expect_error(
                inv.UNSUPPORTED_RAISES,
                UnsupportedOperation,
                f"{cap} is declared unsupported, but calling it",
                op,
            )
    if caps.support(Capability.FAULT_INJECTION) is Support.UNSUPPORTED:
        try:
            expect_error(
                inv.UNSUPPORTED_RAISES,
                UnsupportedOperation,
                "fault-injection is declared unsupported, but inject_fault",
                lambda: backend.inject_fault("device-lost", d),
            )
        except AssertionError:
            # It did inject something: undo it; the failure above is what gets reported.
            with contextlib.suppress(Exception):
                backend.raw.clear_faults()
            raise
