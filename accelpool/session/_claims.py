"""Durable, cross-process claims on devices and partitions.

One SQLite database per state directory (``<state dir>/claims/claims.sqlite3``) holds a
row per held target: its id, its device, the holder's pid and process start time and
the host name. ``BEGIN IMMEDIATE`` makes check-and-claim atomic across processes.

Rules:

* one holder per target: a second opener gets :class:`~accelpool.errors.InUse` naming
  the holder's pid;
* a device and its partitions exclude each other: a whole-device claim conflicts with
  a claim on any of its partitions and vice versa; two partitions of one device do not;
* a claim whose holder is dead (no such pid, a zombie, or the pid now belongs to a
  process that started at another time) is reclaimed by the next opener; a live
  holder's claim never is;
* rows are per host, so a state directory shared between hosts never mixes them up.

The database and its folder are made and checked through :mod:`accelpool.statedir`
(private ``0600``/``0700``, or the ``ACCELPOOL_STATE_GROUP`` group's ``0660``/``2770``);
SQLite gives its journal the database file's mode, so a shared group can write both.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from accelpool.errors import InUse, PermissionDenied
from accelpool.sim.state import state_dir
from accelpool.statedir import open_state_tree

ClaimKind = Literal["device", "partition"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    host TEXT NOT NULL,
    target TEXT NOT NULL,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    pid INTEGER NOT NULL,
    start_time INTEGER,
    opened_at REAL NOT NULL,
    token TEXT NOT NULL,
    PRIMARY KEY (host, target)
)
"""
_COLUMNS = "target, device, kind, pid, start_time, host, opened_at, token"


@dataclass(frozen=True)
class Claim:
    """One held target and who holds it."""

    target: str
    device: str
    kind: ClaimKind
    pid: int
    start_time: int | None
    host: str
    opened_at: float
    token: str

    def holder_alive(self) -> bool:
        """Whether the holding process still runs (the same process, not a reused pid)."""
        return holder_alive(self.pid, self.start_time)

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "device": self.device,
            "kind": self.kind,
            "pid": self.pid,
            "host": self.host,
            "opened_at": self.opened_at,
            "alive": self.holder_alive(),
        }


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from /proc, if readable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started (an opaque number; ``None`` where /proc is not available)."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def holder_alive(pid: int, start_time: int | None) -> bool:
    """True unless ``pid`` is certainly not the process that made the claim."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    stat = _proc_stat(pid)
    if stat is None:
        # No /proc (not Linux) or not readable: the pid exists, so assume it is the holder.
        return not os.path.isdir("/proc/self")
    state, started = stat
    if state in ("Z", "X"):
        return False  # killed, not yet reaped: it holds nothing any more
    return start_time is None or started == start_time


class ClaimStore:
    """The claims of one host, kept under the state directory."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else state_dir() / "claims" / "claims.sqlite3"
        self.host = socket.gethostname()

    def _prepare(self, *, create: bool) -> bool:
        """Make (or, without ``create``, look for) the database; whether it exists.

        A claims folder that is a file or a link, or a database that is not a regular
        file, is refused with one clear line instead of being followed or ignored.
        """
        tree = open_state_tree(self.path.parent, create=create)
        if tree is None:
            return False
        with tree:
            name = self.path.name
            if create:
                tree.ensure_file(name)
            else:
                tree.refuse_unless_regular(name, missing_ok=True)
            for sidecar in ("-journal", "-wal", "-shm"):
                tree.refuse_unless_regular(name + sidecar, missing_ok=True)
            return tree.lstat(name) is not None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._prepare(create=True)
        with _unwritable_db(self.path):
            yield from self._tx_body()

    def _tx_body(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute(_SCHEMA)
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def _rows(self, con: sqlite3.Connection, where: str, args: tuple[object, ...]) -> list[Claim]:
        cur = con.execute(f"SELECT {_COLUMNS} FROM claims WHERE host = ? AND ({where})", args)
        return [Claim(*row) for row in cur.fetchall()]

    def acquire(self, target: str, device: str, kind: ClaimKind) -> Claim:
        """Claim ``target`` for this process; :class:`InUse` if a live holder has it."""
        pid = os.getpid()
        with self._tx() as con:
            if kind == "device":
                conflicts = self._rows(con, "device = ?", (self.host, device))
            else:
                conflicts = self._rows(con, "target = ? OR target = ?", (self.host, target, device))
            for c in conflicts:
                if c.holder_alive():
                    raise _in_use(target, c)
                con.execute(
                    "DELETE FROM claims WHERE host = ? AND target = ? AND token = ?",
                    (self.host, c.target, c.token),
                )
            claim = Claim(
                target=target,
                device=device,
                kind=kind,
                pid=pid,
                start_time=process_start_time(pid),
                host=self.host,
                opened_at=time.time(),
                token=uuid.uuid4().hex,
            )
            con.execute(
                f"INSERT INTO claims ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    claim.target,
                    claim.device,
                    claim.kind,
                    claim.pid,
                    claim.start_time,
                    claim.host,
                    claim.opened_at,
                    claim.token,
                ),
            )
        return claim

    def release(self, claim: Claim) -> bool:
        """Drop ``claim`` (only that one: a later holder's claim is left alone)."""
        if not self._prepare(create=False):
            return False
        with self._tx() as con:
            cur = con.execute(
                "DELETE FROM claims WHERE host = ? AND target = ? AND token = ?",
                (claim.host, claim.target, claim.token),
            )
            return cur.rowcount > 0

    def claims(self) -> list[Claim]:
        """Every claim recorded on this host, live holders and dead ones."""
        if not self._prepare(create=False):
            return []
        with self._tx() as con:
            return self._rows(con, "1 = 1", (self.host,))

    def holder(self, target: str) -> Claim | None:
        """The live claim on ``target`` itself, if any."""
        for c in self.claims():
            if c.target == target and c.holder_alive():
                return c
        return None

    def reap(self) -> int:
        """Delete claims of dead holders; how many were deleted."""
        if not self._prepare(create=False):
            return 0
        n = 0
        with self._tx() as con:
            for c in self._rows(con, "1 = 1", (self.host,)):
                if not c.holder_alive():
                    con.execute(
                        "DELETE FROM claims WHERE host = ? AND target = ? AND token = ?",
                        (self.host, c.target, c.token),
                    )
                    n += 1
        return n


@contextlib.contextmanager
def _unwritable_db(path: Path) -> Iterator[None]:
    """Turn SQLite's "readonly database" and "unable to open" into one clear error."""
    try:
        yield
    except sqlite3.OperationalError as e:
        text = str(e)
        if "readonly" not in text and "unable to open" not in text:
            raise
        raise PermissionDenied(
            f"claims database {path} cannot be written ({text}); check the permissions of "
            f"{path.parent}, or share it with a group through ACCELPOOL_STATE_GROUP"
        ) from None


def _in_use(target: str, holder: Claim) -> InUse:
    who = "this process" if holder.pid == os.getpid() else "process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.opened_at))
    if holder.target == target:
        what = f"{target} is held by a session of {who} pid {holder.pid}"
    elif holder.kind == "device":
        what = (
            f"{target} is on device {holder.target}, which a session of {who} "
            f"pid {holder.pid} holds whole"
        )
    else:
        what = (
            f"{target} has a partition {holder.target} held by a session of {who} pid {holder.pid}"
        )
    err = InUse(f"{what} (since {since}); close that session or wait for it to end")
    err.holder_pid = holder.pid  # type: ignore[attr-defined]
    err.holder_target = holder.target  # type: ignore[attr-defined]
    return err
