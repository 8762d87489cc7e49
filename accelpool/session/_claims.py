"""Durable, cross-process claims on devices and partitions.

One SQLite database per state directory (``<state dir>/claims/claims.sqlite3``) holds a
row per held target: its id, its device, its holder and the host name. A holder is a
process (its pid, its start time and the boot it ran in) or a *named* holder that is
no process at all (a Kubernetes resource claim, a Ray actor lease): a holder id, an
owner description and an optional expiry. ``BEGIN IMMEDIATE`` makes check-and-claim
atomic across processes.

Rules:

* one holder per target: a second opener gets :class:`~accelpool.errors.InUse` naming
  the holder;
* a device and its partitions exclude each other: a whole-device claim conflicts with
  a claim on any of its partitions and vice versa; two partitions of one device do not;
  a named holder never conflicts with itself;
* a process claim is live only while its holder can be proven alive: the pid runs, is
  no zombie, started at the recorded time, in the recorded boot. Anything else (no
  such pid, a reused pid, an unknown start time) is stale and is reclaimed by the next
  opener; a named claim is live until it is released or expires;
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
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from accelpool.errors import AccelPoolError, InUse, InvalidRequest
from accelpool.sim.state import state_dir
from accelpool.statedir import open_state_tree

ClaimKind = Literal["device", "partition"]

#: How long an operation waits for another process's claims transaction (seconds).
LOCK_TIMEOUT_S = 5.0
#: The schema this code reads and writes (``PRAGMA user_version``); 0 is the first one.
SCHEMA_VERSION = 2

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
    holder TEXT,
    owner TEXT,
    expires_at REAL,
    boot_id TEXT,
    PRIMARY KEY (host, target)
)
"""
_V0_COLUMNS = ("host", "target", "device", "kind", "pid", "start_time", "opened_at", "token")
_ADDED_COLUMNS = (
    ("holder", "TEXT"),
    ("owner", "TEXT"),
    ("expires_at", "REAL"),
    ("boot_id", "TEXT"),
)
_COLUMNS = (
    "target, device, kind, pid, start_time, host, opened_at, token, "
    "holder, owner, expires_at, boot_id"
)


#: ``owner`` of a process claim that holds a target only while an operation on it runs.
OPERATION = "operation: "


class ClaimStoreError(AccelPoolError):
    """The claims database cannot be used (corrupt, of another schema, locked, unwritable)."""


@dataclass(frozen=True)
class Claim:
    """One held target and who holds it.

    A process claim has ``holder is None`` and names its process by ``pid`` and
    ``start_time``; a named claim has a ``holder`` id, an ``owner`` description and
    ``pid == 0``. ``expires_at`` (seconds since the epoch) ends a named claim by itself.
    A named claim bound to a process (a Ray worker's, say) records that process's
    ``pid`` and ``start_time`` too, and also ends when the process does.
    """

    target: str
    device: str
    kind: ClaimKind
    pid: int
    start_time: int | None
    host: str
    opened_at: float
    token: str
    holder: str | None = None
    owner: str | None = None
    expires_at: float | None = None
    boot_id: str | None = None

    @property
    def named(self) -> bool:
        """Whether the holder is named (not a process)."""
        return self.holder is not None

    @property
    def operation(self) -> str | None:
        """The operation (``"destroy"``) a process claim holds its target for, if any."""
        if self.holder is None and self.owner and self.owner.startswith(OPERATION):
            return self.owner[len(OPERATION) :]
        return None

    def holder_alive(self) -> bool:
        """Whether the claim still holds: a live holding process, or an unexpired name."""
        if self.holder is not None:
            if self.expires_at is not None and self.expires_at <= time.time():
                return False
            if self.pid <= 0:
                return True
        boot = boot_id()
        if self.boot_id is not None and boot is not None and self.boot_id != boot:
            return False  # made before a reboot: whatever runs under that pid now is another
        return holder_alive(self.pid, self.start_time)

    def describe(self) -> str:
        """Who holds it, for messages: ``pid 123 (python serve.py)`` or ``k8s:uid (owner)``."""
        if self.holder is not None:
            return f"{self.holder} ({self.owner})" if self.owner else self.holder
        command = process_command(self.pid)
        return f"pid {self.pid} ({command})" if command else f"pid {self.pid}"

    def to_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "device": self.device,
            "kind": self.kind,
            "holder": self.holder if self.holder is not None else f"pid:{self.pid}",
            "owner": self.owner,
            "pid": self.pid if self.pid > 0 else None,
            "host": self.host,
            "opened_at": self.opened_at,
            "expires_at": self.expires_at,
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


def process_command(pid: int) -> str | None:
    """``pid``'s command line, shortened and made printable, if it can be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    args = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    if not args:
        return None
    args[0] = os.path.basename(args[0]) or args[0]  # "python3", not the interpreter's path
    text = "".join(ch if ch.isprintable() else "?" for ch in " ".join(args))
    return text if len(text) <= 120 else text[:117] + "..."


_BOOT_ID: list[str | None] = []


def boot_id() -> str | None:
    """This boot's id (Linux ``/proc/sys/kernel/random/boot_id``), ``None`` elsewhere."""
    if not _BOOT_ID:
        try:
            _BOOT_ID.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None)
        except OSError:
            _BOOT_ID.append(None)
    return _BOOT_ID[0]


def holder_alive(pid: int, start_time: int | None) -> bool:
    """True only if ``pid`` is provably the process that made the claim.

    Where /proc exists, that needs the recorded start time to match the process's: a
    claim without one (or of a pid whose /proc entry cannot be read) proves nothing and
    is stale. Without /proc (not Linux) only the pid's existence can be checked.
    """
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
        # No /proc (not Linux): the pid exists, which is all that can be known here.
        return not os.path.isdir("/proc/self")
    state, started = stat
    if state in ("Z", "X"):
        return False  # killed, not yet reaped: it holds nothing any more
    return start_time is not None and started == start_time


def _sqlite_error(path: Path, e: sqlite3.Error) -> ClaimStoreError:
    """One line naming the database, what is wrong with it and what to do."""
    text = str(e)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return ClaimStoreError(
            f"claims database {path} stayed locked by another process for more than "
            f"{LOCK_TIMEOUT_S:g} s; retry, or find the process holding it (fuser {path})"
        )
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return ClaimStoreError(
            f"claims database {path} is corrupt ({text}); move it aside or delete it "
            "when no session runs (its claims are lost; open sessions keep running)"
        )
    if "readonly" in low or "unable to open" in low or "disk i/o" in low:
        return ClaimStoreError(
            f"claims database {path} cannot be written ({text}); check that this user owns "
            "it and its directory, or set ACCELPOOL_STATE_DIR to a directory of your own"
        )
    return ClaimStoreError(
        f"claims database {path} cannot be used ({text}); move it aside or delete it "
        "when no session runs"
    )


class ClaimStore:
    """The claims of one host, kept under the state directory."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else state_dir() / "claims" / "claims.sqlite3"
        self.host = socket.gethostname()

    def _present(self) -> bool:
        """Whether the database exists; a claims "directory" that is no directory is an error."""
        return self._prepare(create=False)

    def _prepare(self, *, create: bool) -> bool:
        """Make (with ``create``) or look for the database; whether it exists.

        Through :mod:`accelpool.statedir`: a claims folder that is a file or a link, or
        a database (or journal) that is not a regular file, is refused with one line,
        never followed or ignored.
        """
        parent = self.path.parent
        try:
            st: os.stat_result | None = os.lstat(parent)
        except OSError:
            st = None  # missing, or not reachable: opening the tree below says which
        if st is not None and not stat.S_ISDIR(st.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a file"
            raise ClaimStoreError(
                f"claims directory {parent} is {what}, not a directory; move it aside "
                "so accelpool can keep its claims there (it never follows links there)"
            )
        tree = open_state_tree(parent, create=create)
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
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        try:
            self._prepare(create=True)
        except OSError as e:
            raise ClaimStoreError(
                f"cannot create the claims directory {self.path.parent}: {e.strerror or e}; "
                "set ACCELPOOL_STATE_DIR to a directory this user can write"
            ) from e
        try:
            con = sqlite3.connect(str(self.path), timeout=LOCK_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise _sqlite_error(self.path, e) from e
        try:
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                if con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    if not write:  # upgrading the schema needs the write lock
                        con.execute("ROLLBACK")
                        con.execute("BEGIN IMMEDIATE")
                    self._migrate(con)
                yield con
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.Error as e:
            raise _sqlite_error(self.path, e) from e
        finally:
            con.close()

    def _migrate(self, con: sqlite3.Connection) -> None:
        """Create the table, or bring the first schema up to this one; refuse anything else."""
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return  # another process upgraded it meanwhile
        columns = [row[1] for row in con.execute("PRAGMA table_info(claims)")]
        if version == 0 and not columns:
            con.execute(_SCHEMA)
        elif version == 0 and tuple(columns) == _V0_COLUMNS:
            for name, sql_type in _ADDED_COLUMNS:
                con.execute(f"ALTER TABLE claims ADD COLUMN {name} {sql_type}")
        else:
            found = f"version {version}, columns {', '.join(columns) or 'none'}"
            raise ClaimStoreError(
                f"claims database {self.path} has a schema this accelpool does not know "
                f"({found}; it writes version {SCHEMA_VERSION}); use the accelpool that made "
                "it, or move the file aside when no session runs"
            )
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _rows(self, con: sqlite3.Connection, where: str, args: tuple[object, ...]) -> list[Claim]:
        cur = con.execute(f"SELECT {_COLUMNS} FROM claims WHERE host = ? AND ({where})", args)
        return [Claim(*row) for row in cur.fetchall()]

    def _conflicts(
        self, con: sqlite3.Connection, target: str, device: str, kind: ClaimKind
    ) -> list[Claim]:
        if kind == "device":
            return self._rows(con, "device = ?", (self.host, device))
        return self._rows(con, "target = ? OR target = ?", (self.host, target, device))

    def _delete(self, con: sqlite3.Connection, c: Claim) -> None:
        con.execute(
            "DELETE FROM claims WHERE host = ? AND target = ? AND token = ?",
            (self.host, c.target, c.token),
        )

    def acquire(
        self,
        target: str,
        device: str,
        kind: ClaimKind,
        *,
        holder: str | None = None,
        owner: str | None = None,
        expires_at: float | None = None,
        bound_to_process: bool = False,
    ) -> Claim:
        """Claim ``target``; :class:`InUse` if a live holder has it or a conflicting target.

        Without ``holder`` the claim is this process's. With one it is a named, durable
        claim; claiming again what the same holder already holds renews it (new owner
        text and expiry, same token) instead of failing. ``bound_to_process`` ties a
        named claim to this process as well: it is stale once the process has ended.
        """
        if holder is not None:
            check_holder(holder)
        process = holder is None or bound_to_process
        pid = os.getpid() if process else 0
        with self._tx() as con:
            for c in self._conflicts(con, target, device, kind):
                if holder is not None and c.holder == holder and c.holder_alive():
                    if c.target != target:
                        continue  # a holder never conflicts with itself
                    renewed = replace(c, owner=owner, expires_at=expires_at)
                    con.execute(
                        "UPDATE claims SET owner = ?, expires_at = ? "
                        "WHERE host = ? AND target = ? AND token = ?",
                        (owner, expires_at, self.host, c.target, c.token),
                    )
                    return renewed
                if c.holder_alive():
                    raise _in_use(target, c)
                self._delete(con, c)
            claim = Claim(
                target=target,
                device=device,
                kind=kind,
                pid=pid,
                start_time=process_start_time(pid) if process else None,
                host=self.host,
                opened_at=time.time(),
                token=os.urandom(16).hex(),  # as uuid4().hex, without importing uuid
                holder=holder,
                owner=owner,
                expires_at=expires_at,
                boot_id=boot_id() if process else None,
            )
            con.execute(
                f"INSERT INTO claims ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    claim.target,
                    claim.device,
                    claim.kind,
                    claim.pid,
                    claim.start_time,
                    claim.host,
                    claim.opened_at,
                    claim.token,
                    claim.holder,
                    claim.owner,
                    claim.expires_at,
                    claim.boot_id,
                ),
            )
        return claim

    def release(self, claim: Claim) -> bool:
        """Drop ``claim`` (only that one: a later holder's claim is left alone)."""
        if not self._present():
            return False
        with self._tx() as con:
            cur = con.execute(
                "DELETE FROM claims WHERE host = ? AND target = ? AND token = ?",
                (claim.host, claim.target, claim.token),
            )
            return cur.rowcount > 0

    def release_holder(self, holder: str, target: str | None = None) -> list[Claim]:
        """Drop the named ``holder``'s claims (on ``target`` only, if given); those dropped."""
        if not self._present():
            return []
        with self._tx() as con:
            where = "holder = ?"
            args: tuple[object, ...] = (self.host, holder)
            if target is not None:
                args = (self.host, holder, target)
                where = "holder = ? AND target = ?"
            dropped = self._rows(con, where, args)
            for c in dropped:
                self._delete(con, c)
        return dropped

    def claims(self) -> list[Claim]:
        """Every claim recorded on this host, live holders and dead ones."""
        if not self._present():
            return []
        with self._tx(write=False) as con:
            return self._rows(con, "1 = 1", (self.host,))

    def holder(self, target: str) -> Claim | None:
        """The live claim on ``target`` itself, if any."""
        for c in self.claims():
            if c.target == target and c.holder_alive():
                return c
        return None

    def held_by(self, holder: str) -> list[Claim]:
        """The live claims of the named ``holder``."""
        return [c for c in self.claims() if c.holder == holder and c.holder_alive()]

    def blockers(self, target: str, device: str, kind: ClaimKind) -> list[Claim]:
        """The live claims that a claim on ``target`` of ``device`` would conflict with.

        ``kind="device"`` asks about the whole device: every claim on it or any of its
        partitions; ``kind="partition"`` about the partition and its whole device.
        """
        if not self._present():
            return []
        with self._tx(write=False) as con:
            found = self._conflicts(con, target, device, kind)
        return [c for c in found if c.holder_alive()]

    def reap(self) -> int:
        """Delete stale claims (ended or unprovable processes, expired names); how many."""
        if not self._present():
            return 0
        n = 0
        with self._tx() as con:
            for c in self._rows(con, "1 = 1", (self.host,)):
                if not c.holder_alive():
                    self._delete(con, c)
                    n += 1
        return n


def check_holder(holder: str) -> None:
    """Refuse a holder id that is empty, too long, or not one printable word."""
    if not isinstance(holder, str) or not holder:
        raise InvalidRequest("a claim holder id must be a non-empty string, e.g. 'k8s:<uid>'")
    if len(holder) > 256 or not holder.isprintable() or any(ch.isspace() for ch in holder):
        raise InvalidRequest(
            f"claim holder id {holder[:40]!r} must be at most 256 printable characters "
            "without spaces, e.g. 'k8s:<uid>'"
        )
    if holder.startswith("pid:"):
        raise InvalidRequest(
            f"claim holder id {holder!r} is reserved: 'pid:' names process holders"
        )


def _in_use(target: str, holder: Claim) -> InUse:
    if holder.named:
        who = f"holder {holder.describe()}"
        end = f"release it (accelpool claims --release {holder.holder})"
        if holder.expires_at is not None:
            end += " or wait for it to expire"
    else:
        mine = "this process " if holder.pid == os.getpid() else ""
        who = f"a session of {mine}{holder.describe()}"
        end = "close that session or wait for it to end"
        if holder.operation is not None:
            who = f"a {holder.operation} in progress in {mine}{holder.describe()}"
            end = "retry when it is done"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.opened_at))
    if holder.target == target:
        what = f"{target} is held by {who}"
    elif holder.kind == "device":
        what = f"{target} is on device {holder.target}, which {who} holds whole"
    else:
        what = f"{target} has a partition {holder.target} held by {who}"
    err = InUse(f"{what} (since {since}); {end}")
    err.holder_pid = holder.pid if not holder.named else None  # type: ignore[attr-defined]
    err.holder = holder.holder if holder.named else f"pid:{holder.pid}"  # type: ignore[attr-defined]
    err.holder_target = holder.target  # type: ignore[attr-defined]
    err.claim = holder  # type: ignore[attr-defined]
    return err
