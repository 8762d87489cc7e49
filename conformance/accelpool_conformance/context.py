"""What one conformance run is about: the backend, its inventory, the chosen profile.

A :class:`SuiteContext` is built once per run (by the CLI, :func:`accelpool_conformance.run`
or the pytest plugin's options) and handed to every check through fixtures.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelpool.capabilities import Capabilities, Capability
from accelpool.errors import AccelPoolError, InvalidRequest
from accelpool.types import BackendStatus

if TYPE_CHECKING:
    from accelpool.inventory import Inventory
    from accelpool.spi import Backend
    from accelpool_conformance.expectations import Expectations
    from accelpool_conformance.report import TestResult

#: Areas of the suite, in report order; each is one module ``suite/checks_<area>.py``.
#: ``extras`` holds the checks backends ship through the ``accelpool.conformance`` entry
#: point group (see :mod:`accelpool_conformance.extras`).
AREAS = (
    "discovery",
    "errors",
    "partitions",
    "statemachine",
    "concurrency",
    "faults",
    "sessions",
    "extras",
)
#: Profiles: which areas each runs (the CTS "run lists", Level Zero "sections").
PROFILES: dict[str, tuple[str, ...]] = {
    "core": ("discovery", "errors"),
    "partition": ("discovery", "errors", "partitions", "statemachine", "concurrency", "faults"),
    "session": ("discovery", "errors", "sessions"),
    "full": AREAS,
}

InventoryFactory = Callable[[], "Inventory"]


@dataclass(frozen=True)
class WorkerSpec:
    """How a worker process builds the same inventory (pickled to it)."""

    backend: str
    sim: str | None = None
    factory: InventoryFactory | None = None

    def inventory(self) -> Inventory:
        if self.factory is not None:
            return self.factory()
        from accelpool.inventory import discover

        return discover(sim=self.sim, backends=[self.backend])


@dataclass(frozen=True)
class Tuning:
    """Bounds that keep one run short (hypothesis budget, fleet sizes, worker counts)."""

    max_examples: int = 25
    step_count: int = 20
    #: shrink a failing state-machine run to a minimal one (slow: many replays)
    shrink: bool = False
    processes: int = 3
    threads: int = 12
    worker_timeout: float = 120.0
    #: most partitions one exhaustion loop creates before giving up
    max_creates: int = 256


@dataclass
class SuiteContext:
    """Everything the checks need about the run."""

    backend_name: str
    profile: str = "full"
    sim: str | None = None
    inventory_factory: InventoryFactory | None = None
    expectations: Expectations | None = None
    certify: bool = False
    tuning: Tuning = field(default_factory=Tuning)
    report_path: Path | None = None
    markdown_path: Path | None = None
    junit_path: Path | None = None
    #: run only these areas (default: the profile's)
    only_areas: tuple[str, ...] | None = None
    # filled by open()
    inventory: Inventory | None = None
    status: BackendStatus | None = None
    error: str | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    # filled as checks run
    results: list[TestResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: called with one line as each area finishes (None: silent)
    progress: Callable[[str], None] | None = None
    #: why this run is narrower than the full suite (refuses certification)
    narrowed: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    #: files of the extra check modules backends ship (collected as the area ``extras``)
    extra_paths: set[Path] = field(default_factory=set)
    #: capabilities some passing check exercised (declared ones missing here: untested)
    exercised: set[str] = field(default_factory=set)
    #: capabilities the running check has exercised so far (reset before each check)
    touched: set[str] = field(default_factory=set)
    #: the pytest plugin built this context from its options, so it also closes it
    owned: bool = False
    #: run at close(), last first (restore the environment, remove temporary state)
    on_close: list[Callable[[], None]] = field(default_factory=list)
    #: the partition plan (fixtures.Plan), worked out once before collection
    plan_cache: Any = None
    _worker_spec: WorkerSpec | None = None
    _worker_problem: str | None = None

    def open(self) -> None:
        """Discover the backend; record why it is not available rather than raising."""
        if self.profile not in PROFILES:
            raise InvalidRequest(
                f"unknown conformance profile {self.profile!r}; choose one of "
                + ", ".join(PROFILES)
            )
        try:
            if self.inventory_factory is not None:
                self.inventory = self.inventory_factory()
            else:
                from accelpool.inventory import discover

                self.inventory = discover(sim=self.sim, backends=[self.backend_name])
        except AccelPoolError as e:
            self.error = f"discovery failed: {e}"
            return
        for s in self.inventory.backends():
            if s.name == self.backend_name:
                self.status = s
        if self.status is None:
            known = ", ".join(s.name for s in self.inventory.backends()) or "none"
            self.error = f"no backend named {self.backend_name!r} (backends: {known})"
            return
        if not self.status.available:
            self.error = f"backend {self.backend_name} is not available: {self.status.reason}"
            return
        try:
            self.capabilities = self.raw_backend().capabilities()
        except Exception as e:  # reported by the capability checks; gate nothing meanwhile
            self.notes.append(f"capabilities() failed: {type(e).__name__}: {e}")
            self.capabilities = Capabilities()

    def close(self) -> None:
        inventory, self.inventory = self.inventory, None
        try:
            if inventory is not None:
                inventory.close()
        finally:
            while self.on_close:
                self.on_close.pop()()

    @property
    def areas(self) -> tuple[str, ...]:
        return self.only_areas if self.only_areas is not None else PROFILES[self.profile]

    def raw_backend(self) -> Backend:
        """The live SPI instance under test (raises NotFound when unavailable)."""
        if self.inventory is None:
            raise RuntimeError("the suite context was not opened")
        return self.inventory.backend(self.backend_name)

    def worker_spec(self) -> tuple[WorkerSpec | None, str | None]:
        """How worker processes rebuild this inventory, or why they cannot."""
        if self._worker_spec is None and self._worker_problem is None:
            spec = WorkerSpec(self.backend_name, self.sim, self.inventory_factory)
            try:
                pickle.dumps(spec)
            except Exception as e:
                self._worker_problem = (
                    "the inventory factory cannot be pickled for worker processes "
                    f"({type(e).__name__}); pass a module-level callable"
                )
            else:
                self._worker_spec = spec
        return self._worker_spec, self._worker_problem

    def exercise(self, capability: Capability | str) -> None:
        """Record that the running check exercises ``capability`` (counted if it passes)."""
        self.touched.add(str(capability))

    def untested(self) -> list[str]:
        """Capabilities declared supported that no passing check exercised."""
        return sorted(
            c for c, ok in self.capabilities.declared.items() if ok and c not in self.exercised
        )

    def supports(self, capability: Capability | str) -> bool:
        return self.capabilities.supports(capability)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend_name,
            "sim": self.sim,
            "profile": self.profile,
            "version": self.status.version if self.status else None,
            "capabilities": self.capabilities.to_json(),
        }
