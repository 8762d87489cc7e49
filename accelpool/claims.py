"""Claims held by named, durable holders: a Kubernetes resource claim, a Ray actor lease.

A session claims its target for its own process; an orchestrator claims targets for
something that is no process at all. Both kinds live in the same claim store, obey
the same exclusivity (one holder per target; a device and its partitions exclude
each other) and show in the same ``accelpool claims`` listing. No session is needed:

>>> from accelpool import claims
>>> c = claims.claim(part, holder="k8s:9f1c…", owner="pod default/llm-0", expires=3600)
>>> claims.lookup(part)              # the live claim on it: this one
>>> claims.release("k8s:9f1c…")      # every claim of that holder; 1

A named claim survives its creator's process, ``kill -9`` and reboots; it ends when it
is released or, with ``expires``, when it expires. Claiming again what the same holder
holds renews it. Destroying a claimed partition, or changing a claimed device's mode,
raises :class:`~accelpool.errors.InUse` unless forced (see :func:`ensure_unclaimed`).
See docs/sessions.md for the rules.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from accelpool.errors import AccelPoolError, InUse, InvalidRequest
from accelpool.session import _claims
from accelpool.session._claims import OPERATION, Claim, ClaimKind, ClaimStore, ClaimStoreError

if TYPE_CHECKING:
    from accelpool.inventory import Device, Inventory, Partition

__all__ = [
    "Claim",
    "ClaimStore",
    "ClaimStoreError",
    "blockers",
    "claim",
    "ensure_unclaimed",
    "guard",
    "held_by",
    "holders",
    "lookup",
    "reap",
    "release",
]

log = logging.getLogger("accelpool.claims")


def _resolve(
    target: Device | Partition | str, device: str | None, inventory: Inventory | None
) -> tuple[str, str, ClaimKind]:
    """(target id, device id, kind) of a handle or an id string."""
    from accelpool.inventory import Device, Partition, discover

    if isinstance(target, Partition):
        return target.id, target.device_id, "partition"
    if isinstance(target, Device):
        return target.id, target.id, "device"
    if not isinstance(target, str) or ":" not in target:
        raise InvalidRequest(
            f"a claim target is a Device, a Partition or an id like 'nvidia:MIG-…', not {target!r}"
        )
    if device is not None:
        return target, device, "device" if device == target else "partition"
    if inventory is not None:
        return _resolve(inventory.target(target), None, None)
    with discover() as inv:
        return _resolve(inv.target(target), None, None)


def _expiry(expires: datetime | timedelta | float | None) -> float | None:
    if expires is None:
        return None
    if isinstance(expires, datetime):
        at = expires.timestamp()
    elif isinstance(expires, timedelta):
        at = time.time() + expires.total_seconds()
    elif isinstance(expires, (int, float)) and not isinstance(expires, bool):
        if not math.isfinite(expires) or expires <= 0:
            raise InvalidRequest(f"expires={expires!r}: give a positive number of seconds")
        at = time.time() + float(expires)
    else:
        raise InvalidRequest(
            f"expires must be a datetime, a timedelta or seconds, not {type(expires).__name__}"
        )
    if at <= time.time():
        raise InvalidRequest(f"expires={expires!r} is already past")
    return at


def _check_owner(owner: str) -> str:
    if not isinstance(owner, str) or len(owner) > 1024 or not owner.isprintable():
        raise InvalidRequest("a claim owner is one printable line of at most 1024 characters")
    return owner


def claim(
    target: Device | Partition | str,
    *,
    holder: str,
    owner: str = "",
    expires: datetime | timedelta | float | None = None,
    device: str | None = None,
    inventory: Inventory | None = None,
    store: ClaimStore | None = None,
    bound_to_process: bool = False,
) -> Claim:
    """Claim ``target`` for the named ``holder``; :class:`InUse` if someone else holds it.

    ``holder`` is an id without spaces (``"k8s:<claim uid>"``, ``"ray:<actor id>"``;
    ``pid:`` is reserved), ``owner`` a free description shown in listings and errors.
    ``expires`` ends the claim by itself: a ``datetime``, a ``timedelta`` or seconds from
    now; ``None`` keeps it until :func:`release`. ``target`` is a handle, or an id string
    resolved through ``inventory`` (or a fresh :func:`accelpool.discover`) unless
    ``device`` names its device id (equal to ``target`` for a whole device). Claiming a
    target the holder already holds renews the claim (owner and expiry replaced).
    ``bound_to_process=True`` also ends the claim when this process ends (a Ray
    worker's lease: killing the actor frees its target for the next opener).
    """
    target_id, device_id, kind = _resolve(target, device, inventory)
    return (store or ClaimStore()).acquire(
        target_id,
        device_id,
        kind,
        holder=holder,
        owner=_check_owner(owner),
        expires_at=_expiry(expires),
        bound_to_process=bound_to_process,
    )


def release(
    what: Claim | str, *, target: str | None = None, store: ClaimStore | None = None
) -> int:
    """Release a claim handle, or every claim of a named holder (on ``target`` only, if
    given); how many claims were dropped. Releasing what is gone is not an error."""
    store = store or ClaimStore()
    if isinstance(what, Claim):
        if target is not None:
            raise InvalidRequest("release(claim) takes no target: the claim names its own")
        return int(store.release(what))
    if not isinstance(what, str) or not what:
        raise InvalidRequest(f"release() takes a Claim or a holder id, not {what!r}")
    return len(store.release_holder(what, target))


def holders(*, store: ClaimStore | None = None) -> list[Claim]:
    """Every claim on this host, process and named, live and stale (``holder_alive()``)."""
    return (store or ClaimStore()).claims()


def held_by(holder: str, *, store: ClaimStore | None = None) -> list[Claim]:
    """The live claims of the named ``holder``."""
    return (store or ClaimStore()).held_by(holder)


def lookup(target: Device | Partition | str, *, store: ClaimStore | None = None) -> Claim | None:
    """The live claim on ``target`` itself (a handle or its full id), if any."""
    target_id = target if isinstance(target, str) else target.id
    return (store or ClaimStore()).holder(target_id)


def blockers(target: Device | Partition, *, store: ClaimStore | None = None) -> list[Claim]:
    """Live claims that stand in the way of changing ``target``: for a partition, its own
    claim and a whole-device claim on its device; for a device, every claim on it or on
    any of its partitions."""
    target_id, device_id, kind = _resolve(target, None, None)
    return (store or ClaimStore()).blockers(target_id, device_id, kind)


def ensure_unclaimed(
    target: Device | Partition,
    action: str,
    *,
    force: bool = False,
    store: ClaimStore | None = None,
) -> list[Claim]:
    """Raise :class:`InUse` naming the holder if a live claim stands in the way of ``action``
    (e.g. ``"destroy"``) on ``target``; a check only, see :func:`guard` for one that holds.

    With ``force=True`` nothing is raised: the claims are logged as overridden (a
    warning on the ``accelpool.claims`` logger) and returned, and they stay in place, so
    their holders still see them.
    """
    target_id, device_id, kind = _resolve(target, None, None)
    found = (store or ClaimStore()).blockers(target_id, device_id, kind)
    if found and not force:
        raise _blocked(action, target_id, found)
    _log_forced(action, target_id, found)
    return found


@contextlib.contextmanager
def guard(
    target: Device | Partition | str,
    action: str,
    *,
    force: bool = False,
    device: str | None = None,
    inventory: Inventory | None = None,
    store: ClaimStore | None = None,
) -> Iterator[list[Claim]]:
    """Hold ``target`` while ``action`` (``"destroy"``, ``"change MIG mode of"``) runs on it.

    A claim for this process is taken for the duration, so nobody opens a session on
    the target half way, and :class:`InUse` naming the holder is raised if a live claim
    stands in the way (for a partition: its own claim or a whole-device claim on its
    device; for a device: any claim on it or its partitions). With ``force=True`` no
    claim is taken and nothing is raised: the claims in the way are logged as
    overridden (a warning on the ``accelpool.claims`` logger) and yielded.
    Backends and integrations wrap operations that would pull a target from under its
    holder in this; ``target`` and ``device`` are taken as for :func:`claim`.
    """
    target_id, device_id, kind = _resolve(target, device, inventory)
    store = store or ClaimStore()
    if force:
        found = store.blockers(target_id, device_id, kind)
        _log_forced(action, target_id, found)
        yield found
        return
    held = _hold(store, target_id, device_id, kind, action)
    try:
        yield []
    finally:
        if held is not None:
            with contextlib.suppress(AccelPoolError):  # a stale row would not block anyone
                store.release(held)


def _hold(
    store: ClaimStore, target_id: str, device_id: str, kind: ClaimKind, action: str
) -> Claim | None:
    """Take the guard's claim; ``None`` where this process already runs an operation on it.

    Another process's operation (not a session, not a named holder) is short: wait for
    it, so that two racing destroys end in one success and one ``NotFound`` rather than
    an ``InUse``. Operations of this process (other threads, a nested call) do not wait
    for each other: the backend serialises them.
    """
    deadline = time.monotonic() + _claims.LOCK_TIMEOUT_S
    while True:
        try:
            return store.acquire(target_id, device_id, kind, owner=OPERATION + action)
        except InUse as e:
            found = store.blockers(target_id, device_id, kind) or [e.claim]  # type: ignore[attr-defined]
        holders = [c for c in found if c.operation is None]
        if holders:
            raise _blocked(action, target_id, holders) from None
        if all(c.pid == os.getpid() for c in found):
            return None
        if time.monotonic() > deadline:
            raise _blocked(action, target_id, found) from None
        time.sleep(0.02)


def _log_forced(action: str, target_id: str, found: list[Claim]) -> None:
    for c in found:
        log.warning("forced: %s %s although %s holds %s", action, target_id, c.describe(), c.target)


def _blocked(action: str, target_id: str, found: list[Claim]) -> InUse:
    c = found[0]
    more = f" (and {len(found) - 1} more claim(s))" if len(found) > 1 else ""
    where = "" if c.target == target_id else f" through {c.kind} {c.target}"
    err = InUse(
        f"cannot {action} {target_id}: it is claimed{where} by {_who(c)}{more}; "
        f"{_remedy(c)}, or pass force=True (CLI: --force) to override"
    )
    err.holder_pid = None if c.named else c.pid  # type: ignore[attr-defined]
    err.holder = c.holder if c.named else f"pid:{c.pid}"  # type: ignore[attr-defined]
    err.holder_target = c.target  # type: ignore[attr-defined]
    err.claim = c  # type: ignore[attr-defined]
    return err


def _who(c: Claim) -> str:
    if c.operation is not None:
        return f"a {c.operation} in progress in {c.describe()}"
    return f"holder {c.describe()}" if c.named else f"a session of {c.describe()}"


def _remedy(c: Claim) -> str:
    if c.operation is not None:
        return "retry when it is done"
    if c.named:
        return f"release it (accelpool claims --release {c.holder})"
    return f"close that session (or end pid {c.pid})"


def reap(*, store: ClaimStore | None = None) -> int:
    """Drop stale claims (ended or unprovable processes, expired names); how many."""
    return (store or ClaimStore()).reap()
