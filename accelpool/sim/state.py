"""A JSON state file under a cross-process lock.

Simulated fleets keep their state (partitions, MIG mode, ...) here so separate
processes and CLI calls see one fleet, as they would see one piece of hardware.
Writes are atomic (temporary file + rename) and happen only when a transaction
finishes without error, so a failure half way leaves the previous state intact.
They go through :mod:`accelpool.safefs`: no link in the state tree is followed, and
the file gets the state directory's permissions (``0600``, or ``0660`` when shared).

The file carries a checksum of its content: one that was damaged or edited by
hand is refused with :class:`~accelpool.errors.CorruptState` (naming the file and
how to start afresh) instead of being half understood by a simulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelpool.errors import CorruptState, PermissionDenied
from accelpool.safefs import SafeDir
from accelpool.statedir import open_state_tree, state_dir, state_policy

if TYPE_CHECKING:
    from filelock import FileLock

__all__ = ["StateStore", "state_dir"]


class StateStore:
    """One JSON document on disk, shared by processes.

    ``read()`` returns a snapshot (cached while the file is unchanged);
    ``transaction()`` yields a mutable copy under the lock and saves it on success.
    """

    #: The key holding the checksum of the rest of the document.
    CHECKSUM = "_sha256"

    def __init__(self, path: Path, reset_hint: str | None = None) -> None:
        self.path = Path(path)
        self._path_s = str(self.path)  # stat_key runs on every simulated call: no pathlib
        #: What the user runs to start afresh when the file is damaged.
        self.reset_hint = reset_hint or f"delete {self.path}"
        self._lock_obj: FileLock | None = None
        self._cache_key: tuple[int, int, int] | None = None
        self._cache: dict[str, Any] = {}

    @property
    def _lock(self) -> FileLock:
        # filelock is imported on first use: discovery without a fleet never needs it
        if self._lock_obj is None:
            from filelock import FileLock

            # filelock opens with O_NOFOLLOW; the folder above was checked by _tree().
            mode = state_policy().file_mode
            self._lock_obj = FileLock(str(self.path) + ".lock", mode=mode)
        return self._lock_obj

    def _tree(self) -> SafeDir:
        """The store's folder, made if missing and checked (see accelpool.statedir)."""
        tree = open_state_tree(self.path.parent)
        assert tree is not None  # made when missing
        try:
            tree.refuse_unless_regular(self.path.name + ".lock", missing_ok=True)
        except BaseException:
            tree.close()
            raise
        return tree

    def stat_key(self) -> tuple[int, int, int] | None:
        """(mtime, size, inode) of the state file, ``None`` if missing; a link is refused."""
        try:
            st = os.lstat(self._path_s)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise PermissionDenied(
                f"state file {self.path} is a symbolic link; accelpool never follows links "
                "in its state directory: remove it (or run 'accelpool sim reset')"
            )
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def corrupt(self, problem: str) -> CorruptState:
        """The error for this file being damaged: names it, the problem and the fix."""
        return CorruptState(
            f"state file {self.path} {problem}; to start afresh (forgetting what it "
            f"recorded) run: {self.reset_hint}"
        )

    @classmethod
    def _digest(cls, state: dict[str, Any]) -> str:
        body = {k: v for k, v in state.items() if k != cls.CHECKSUM}
        data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        import hashlib  # not at import: listing devices without a simulator never needs it

        return hashlib.sha256(data).hexdigest()

    def _load(self) -> dict[str, Any]:
        key = self.stat_key()
        if key is None:
            self._cache_key, self._cache = None, {}
            return {}
        if key != self._cache_key:
            try:
                with self.path.open("rb") as f:
                    data = json.loads(f.read().decode("utf-8"))
            except UnicodeDecodeError:
                raise self.corrupt("is not UTF-8 text") from None
            except ValueError as e:  # json.JSONDecodeError, or a number too large
                raise self.corrupt(f"is not valid JSON ({str(e).splitlines()[0]})") from None
            except RecursionError:
                raise self.corrupt("is nested too deeply to be accelpool's") from None
            if not isinstance(data, dict):
                raise self.corrupt("does not hold a JSON object")
            if data.get(self.CHECKSUM) != self._digest(data):
                raise self.corrupt(
                    "was changed outside accelpool (its checksum does not match its content)"
                )
            data.pop(self.CHECKSUM)
            self._cache_key, self._cache = key, data
        return self._cache

    def peek(self) -> dict[str, Any]:
        """The current state without a copy: for readers that never change it."""
        return self._load()

    def read(self) -> dict[str, Any]:
        """A deep copy of the current state (empty when no state was saved)."""
        return json.loads(json.dumps(self._load()))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Lock, yield a mutable copy, and save it atomically unless the block raised."""
        self._tree().close()
        with self._lock:
            state = self.read()
            yield state
            self._save(state)

    def _save(self, state: dict[str, Any]) -> None:
        doc = {**state, self.CHECKSUM: self._digest(state)}
        data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        with self._tree() as tree:
            tree.write_bytes(self.path.name, data)
        self._cache_key = None

    def lock(self) -> FileLock:
        """The cross-process lock (re-entrant within a process); for multi-file updates."""
        self._tree().close()
        return self._lock
