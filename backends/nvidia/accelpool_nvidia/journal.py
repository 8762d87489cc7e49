"""MIG creates and destroys in progress, so what a killed process left half-made is cleaned up.

A MIG partition is made in two NVML steps: a GPU instance, then a compute instance
inside it. A creator killed between them (``kill -9``) leaves a bare GPU instance
that holds capacity but is no CUDA device. Before its first step a creator writes
an entry here (its pid and start time, the GPU, the profile), adds the GPU instance
id once NVML returned it, and removes the entry when the partition is whole or
rolled back. An entry whose process is gone marks a create that never finished.

The record lives in the fleet's state store when simulating, else in a file of its
own under the state directory, and is changed only under that store's lock.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from accelpool.sim.section import StateSection
from accelpool.sim.state import StateStore, state_dir

__all__ = ["CreateJournal", "Entry", "process_alive"]

_KEY = "nvidia-creates"


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, start: int | None) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    if start is None:
        return True
    now = _start_time(pid)
    return now is None or now == start


@dataclass(frozen=True)
class Entry:
    """One create in progress."""

    token: str
    pid: int
    start: int | None
    gpu: str  # the GPU's UUID
    profile: int  # the GPU instance profile id
    gi: int | None  # the GPU instance id, once NVML returned it

    @classmethod
    def from_json(cls, token: str, doc: Mapping[str, Any]) -> Entry | None:
        try:
            gi = doc.get("gi")
            start = doc.get("start")
            return cls(
                token,
                int(doc["pid"]),
                None if start is None else int(start),
                str(doc["gpu"]),
                int(doc["profile"]),
                None if gi is None else int(gi),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None  # a damaged entry: treated as finished

    def alive(self) -> bool:
        return process_alive(self.pid, self.start)


class CreateJournal:
    """Creates in progress, shared by every process using this GPU host (or fleet)."""

    def __init__(self, store: StateStore | None = None) -> None:
        # In a simulated fleet the record sits beside the simulated hardware's state,
        # so 'accelpool sim reset' forgets both together.
        self._section = StateSection(
            store if store is not None else StateStore(state_dir() / "nvidia" / "creates.json"),
            _KEY,
        )

    def entries(self) -> list[Entry]:
        found = []
        for token, doc in self._section.read().items():
            entry = Entry.from_json(token, doc) if isinstance(doc, dict) else None
            if entry is not None:
                found.append(entry)
        return found

    def has_abandoned(self) -> bool:
        """Cheap check, without the lock: is any recorded creator gone?"""
        return any(not e.alive() for e in self.entries())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the record's lock: no creator records a new step meanwhile."""
        with self._section.store.lock():
            yield

    def begin(self, gpu: str, profile: int, gi: int | None = None) -> str:
        """Record a step in progress; ``gi`` when the GPU instance is known already (a
        destroy records the instance it is taking apart)."""
        token = uuid.uuid4().hex
        pid = os.getpid()
        with self._section.write() as doc:
            doc[token] = {
                "pid": pid,
                "start": _start_time(pid),
                "gpu": gpu,
                "profile": profile,
                "gi": gi,
                "since": time.time(),
            }
        return token

    def set_gpu_instance(self, token: str, gi: int) -> None:
        with self._section.write() as doc:
            if token in doc:
                doc[token]["gi"] = gi

    def finish(self, token: str) -> None:
        with self._section.write() as doc:
            doc.pop(token, None)

    def forget(self, tokens: set[str]) -> None:
        if not tokens:
            return
        with self._section.write() as doc:
            for t in tokens:
                doc.pop(t, None)
