"""Worker processes: the same backend driven from several processes at once.

The parent starts each worker (``python -m accelpool_conformance._worker``), sends it
a pickled :class:`~accelpool_conformance.context.WorkerSpec` and a job, waits until
every worker has built its inventory, then says "go" to all of them together so
their calls really overlap. Each answers one JSON line.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from accelpool_conformance.context import WorkerSpec
from accelpool_conformance.invariants import VENDOR, WORKER, broken

#: Protocol lines start with this, so anything a backend prints is ignored.
TAG = "ACCELPOOL-CONFORMANCE "


class _Worker:
    def __init__(self, spec: WorkerSpec, job: dict[str, Any]) -> None:
        env = dict(os.environ)
        # The factory's module must be importable in the child as it is here.
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        self.job = job
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "accelpool_conformance._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        payload = base64.b64encode(pickle.dumps((spec, job))).decode()
        self.send(payload)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(TAG):
                self.lines.put(line[len(TAG) :])
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker died; reading its answer reports why

    def read(self, deadline: float, stage: str) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.kill()
            broken(WORKER, f"a worker ({self.job['action']}) gave no answer ({stage}) in time")
        if line is None:
            self.proc.wait(timeout=10)
            tail = " | ".join(self.stderr[-3:]) or "no output"
            broken(
                WORKER,
                f"a worker ({self.job['action']}) exited with status {self.proc.returncode} "
                f"({stage}): {tail}",
            )
        assert line is not None  # for mypy: broken() does not return
        answer: dict[str, Any] = json.loads(line)
        return answer

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(timeout=10)


def run_workers(
    spec: WorkerSpec, jobs: Sequence[dict[str, Any]], timeout: float = 120.0
) -> list[Any]:
    """Run one job per worker process, all released at once; their results in order.

    A worker whose backend lets a non-accelpool exception escape fails the check
    naming :data:`~accelpool_conformance.invariants.VENDOR`.
    """
    deadline = time.monotonic() + timeout
    workers = [_Worker(spec, dict(job)) for job in jobs]
    try:
        for w in workers:
            ready = w.read(deadline, "starting")
            if not ready.get("ready"):
                broken(WORKER, f"a worker could not build the inventory: {ready.get('error')}")
        for w in workers:
            w.send("go")
        results = []
        for w in workers:
            answer = w.read(deadline, "running")
            if "escaped" in answer:
                broken(VENDOR, f"in a worker process, {answer['escaped']}")
            results.append(answer["result"])
        return results
    finally:
        for w in workers:
            w.close()
