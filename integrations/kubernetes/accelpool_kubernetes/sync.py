"""Keeping the host's CDI specs and ResourceSlices current when partitions change.

Partitions change behind the driver's back (``accelpool partition create``, a layout
applied, a MIG device made by hand), and a spec that still names a destroyed MIG
device, or lacks a new one, breaks the container that asks for it. So the specs are
regenerated after every prepare and unprepare and, in the kubelet plugin and in
``accelpool k8s cdi --watch``, every few seconds: a file is rewritten (atomically) only
when its content differs, and the driver's spec files of backends that offer nothing
any more are removed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelpool_kubernetes.cdi import dump, host_specs, spec_file, write_atomic

log = logging.getLogger("accelpool.kubernetes")


def sync_specs(inv: Any, driver: str, directory: Path, fmt: str = "json") -> dict[Path, str]:
    """Bring the host specs of ``driver`` in ``directory`` up to date.

    Returns what changed: path -> ``"written"`` or ``"removed"``.
    """
    directory = Path(directory)
    wanted = {
        spec_file(directory, kind, fmt): dump(spec, fmt)
        for kind, spec in host_specs(inv, driver).items()
    }
    changed: dict[Path, str] = {}
    for path, text in wanted.items():
        try:
            same = path.read_text() == text
        except OSError:
            same = False
        if not same:
            write_atomic(path, text)
            changed[path] = "written"
    if directory.is_dir():
        # the host specs of this driver are <driver>-<backend>.json|yaml (claim specs
        # are k8s.<driver>-claim_<uid>.json, temporary files start with a dot)
        for path in directory.glob(f"{driver}-*"):
            if path.suffix in (".json", ".yaml") and path not in wanted:
                path.unlink(missing_ok=True)
                changed[path] = "removed"
    return changed


class Resync:
    """Regenerates the specs, then calls ``publish`` (the ResourceSlices), on demand
    (:meth:`once`) and every ``interval`` seconds in a thread (:meth:`start`)."""

    def __init__(
        self,
        inv: Any,
        *,
        driver: str,
        cdi_dir: Path,
        fmt: str = "json",
        publish: Callable[[], object] | None = None,
    ) -> None:
        self.inv, self.driver, self.cdi_dir, self.fmt = inv, driver, Path(cdi_dir), fmt
        self.publish = publish
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def once(self) -> dict[Path, str]:
        with self._lock:
            changed = sync_specs(self.inv, self.driver, self.cdi_dir, self.fmt)
            if self.publish is not None:
                self.publish()
            return changed

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                for path, what in self.once().items():
                    log.info("CDI spec %s %s", path, what)
            except Exception as e:  # keep serving; the next round tries again
                log.warning("regenerating CDI specs or ResourceSlices failed: %s", e)

    def start(self, interval: float) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="accelpool-k8s-resync", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
