"""The NVIDIA backend's own conformance checks (entry point ``accelpool.conformance``).

The suite collects this module as its ``extras`` area when it runs against ``nvidia``.
They prove what only this backend declares: ``mig.mode`` (switching MIG on and off
through :meth:`NvidiaBackend.set_mig_mode`), and that each partition kind follows the
GPU's mode (MIG profiles only while MIG is on, vGPU types only in host vGPU mode), so
``partition.mig`` and ``partition.vgpu`` are exercised on fleets that cannot create both.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from accelpool_conformance.invariants import (
    CheckedBackend,
    InvariantBroken,
    broken,
    check,
    describe,
    expect_error,
)

from accelpool.capabilities import Capability
from accelpool.errors import AccelPoolError, InUse, InvalidRequest, PermissionDenied
from accelpool.types import DeviceInfo

MIG_MODE = "MIG mode changes are reported as they happen"
KINDS_FOLLOW_MODE = "partition kinds follow the GPU's mode"
ATTR_MODE = "nvidia.com/migMode"
ATTR_VIRT = "nvidia.com/virtualizationMode"


def _empty_mig_capable(backend: CheckedBackend) -> DeviceInfo:
    for d in sorted(backend.devices(), key=lambda d: d.index):
        if d.attributes.get("nvidia.com/migCapable") is True and not backend.partitions(d):
            return d
    raise InvariantBroken(
        MIG_MODE, "mig.mode is declared supported but no MIG-capable GPU is empty"
    )


def _fresh(backend: CheckedBackend, device: DeviceInfo) -> DeviceInfo:
    for d in backend.devices():
        if d.native_id == device.native_id:
            return d
    raise InvariantBroken(MIG_MODE, f"{device.native_id} is no longer listed after a MIG change")


def _set(backend: CheckedBackend, device: DeviceInfo, enabled: bool) -> Any:
    try:
        raw: Any = backend.raw  # an NvidiaBackend: set_mig_mode is its own, not the SPI's
        return raw.set_mig_mode(device, enabled)
    except (InUse, PermissionDenied):
        raise
    except AccelPoolError as e:
        broken(MIG_MODE, f"set_mig_mode({device.native_id}, {enabled}) raised {describe(e)}")
    except Exception as e:
        broken(MIG_MODE, f"set_mig_mode({device.native_id}, {enabled}) raised {describe(e)}")


@pytest.mark.requires(Capability.MIG_MODE)
def test_mig_mode_round_trip(backend: CheckedBackend, ledger: Any) -> None:
    """Setting the current mode changes nothing; a change is applied, pending or refused
    (InUse, PermissionDenied) as the GPU then reports; switching back restores it."""
    dev = _empty_mig_capable(backend)
    was = dev.attributes.get(ATTR_MODE) == "enabled"
    profiles = [p.name for p in backend.profiles(dev)]
    same = _set(backend, dev, was)
    check(
        (same.status, same.current, same.pending) == ("unchanged", was, was),
        MIG_MODE,
        f"setting {dev.native_id} to its current MIG mode ({was}) gave {same}",
    )
    try:
        change = _set(backend, dev, not was)
    except (InUse, PermissionDenied) as e:
        after = _fresh(backend, dev)
        check(
            after.attributes.get(ATTR_MODE) == dev.attributes.get(ATTR_MODE),
            MIG_MODE,
            f"a refused MIG mode change ({describe(e)}) left {dev.native_id} "
            f"{after.attributes.get(ATTR_MODE)}",
        )
        change = None
    if change is not None:
        check(
            change.status in ("applied", "pending"),
            MIG_MODE,
            f"switching MIG {'off' if was else 'on'} on {dev.native_id} gave {change}",
        )
        after = _fresh(backend, dev)
        now = after.attributes.get(ATTR_MODE) == "enabled"
        check(
            now == change.current and (change.status == "pending") == (now == was),
            MIG_MODE,
            f"set_mig_mode reported {change}; the GPU now reports MIG mode "
            f"{after.attributes.get(ATTR_MODE)}",
        )
        if now:
            _create_smallest_mig(backend, ledger, after)
        back = _set(backend, after, was)
        final = _fresh(backend, dev)
        check(
            (final.attributes.get(ATTR_MODE) == "enabled") == was
            and [p.name for p in backend.profiles(final)] == profiles,
            MIG_MODE,
            f"switching MIG back gave {back}; {dev.native_id} now reports "
            f"{final.attributes.get(ATTR_MODE)} with profiles "
            f"{[p.name for p in backend.profiles(final)]}, at first {profiles}",
        )
    if was:
        _create_smallest_mig(backend, ledger, _fresh(backend, dev))


def _create_smallest_mig(backend: CheckedBackend, ledger: Any, dev: DeviceInfo) -> None:
    mig = [p for p in backend.profiles(dev) if p.kind == "mig"]
    check(mig, KINDS_FOLLOW_MODE, f"{dev.native_id} has MIG on and offers no MIG profile")
    prof = min(mig, key=lambda p: (p.memory_bytes, p.name))
    part = ledger.create(dev, prof.name)
    check(
        part.kind == "mig" and part.profile == prof.name,
        KINDS_FOLLOW_MODE,
        f"creating {prof.name} on {dev.native_id} gave {part.kind} partition {part.profile}",
    )
    ledger.destroy(part)


@pytest.mark.requires(Capability.PARTITION)
@pytest.mark.exercises(Capability.PARTITION_MIG, Capability.PARTITION_VGPU)
def test_partition_kinds_follow_the_gpu_mode(backend: CheckedBackend) -> None:
    """MIG profiles only while MIG is on, vGPU types only in host vGPU mode; a kind the
    mode does not offer is refused with InvalidRequest, naming the valid profiles."""
    from accelpool_nvidia.models import find_model

    for dev in backend.devices():
        kinds = {p.kind for p in backend.profiles(dev)}
        mig_on = dev.attributes.get(ATTR_MODE) == "enabled"
        vgpu_host = dev.attributes.get(ATTR_VIRT) == "host-vgpu"
        check(
            ("mig" in kinds) <= mig_on,
            KINDS_FOLLOW_MODE,
            f"{dev.native_id} (MIG {dev.attributes.get(ATTR_MODE)}) offers kinds {kinds}",
        )
        check(
            ("vgpu" in kinds) <= vgpu_host,
            KINDS_FOLLOW_MODE,
            f"{dev.native_id} ({dev.attributes.get(ATTR_VIRT)}) offers vGPU types",
        )
        model = find_model(dev.model)
        if model is None or vgpu_host or not model.vgpu_types:
            continue
        name = model.vgpu_types[0].name
        expect_error(
            KINDS_FOLLOW_MODE,
            InvalidRequest,
            f"creating vGPU type {name} on {dev.native_id}, not in host vGPU mode",
            partial(backend.create_partition, dev, name),
        )
