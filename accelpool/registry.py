"""Finds backend plugins through entry points and probes each one in isolation.

As in keyring, a plugin that fails to import, raises in its probe, hangs past
the probe bound, or lacks its vendor library becomes a :class:`BackendStatus`
with ``available=False`` and a reason; it is logged and never breaks
``import accelpool`` or the other backends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from accelpool.entrypoints import group
from accelpool.entrypoints import version as dist_version
from accelpool.envconfig import probe_timeout, selected_backends
from accelpool.errors import AccelPoolError, BackendUnavailable, CorruptState
from accelpool.spi import Backend, BackendContext, SimContext
from accelpool.types import BackendStatus

if TYPE_CHECKING:
    from accelpool.sim.fleet import Fleet

log = logging.getLogger("accelpool.registry")

GROUP = "accelpool.backends"
#: Optional cheap checks, by backend name, run before the backend is imported.
PRESENCE_GROUP = "accelpool.presence"


@dataclass
class LoadedBackend:
    """A backend plugin after loading and probing: its status and, if usable, the instance."""

    status: BackendStatus
    backend: Backend | None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class _Probe:
    """Loads, instantiates and probes one plugin (in a :class:`_Prober` thread)."""

    def __init__(self, ep: Any, fleet: Fleet | None, presence: Any = None) -> None:
        self.ep = ep
        self.fleet = fleet
        #: the plugin's ``accelpool.presence`` entry point, if it has one
        self.presence = presence
        self.result: LoadedBackend | None = None
        #: A damaged state file met in the probe: the caller's to repair, so re-raised
        #: in the caller's thread instead of marking the backend unavailable.
        self.corrupt: CorruptState | None = None

    def _unavailable(self, reason: str) -> LoadedBackend:
        return LoadedBackend(
            BackendStatus(self.ep.name, False, reason, dist_version(self.ep)), None
        )

    def _absent(self) -> BackendUnavailable | None:
        """What the plugin's presence check says is missing here, before it is imported
        (``load_backends`` gives none for a simulated fleet)."""
        if self.presence is None:
            return None
        try:
            self.presence.load()(BackendContext(name=self.ep.name))
        except BackendUnavailable as e:
            return e
        except Exception:  # a broken check proves nothing: the full probe decides
            log.debug("backend %s presence check failed", self.ep.name, exc_info=True)
        return None

    def run(self) -> None:
        name = self.ep.name
        absent = self._absent()
        if absent is not None:
            log.info("backend %s unavailable: %s", name, absent)
            self.result = self._unavailable(str(absent))
            return
        try:
            cls = self.ep.load()
        except Exception as err:  # an import error, a missing attribute, a broken wheel
            log.warning("backend %s failed to load: %s", name, err)
            log.debug("backend %s load failure", name, exc_info=err)
            self.result = self._unavailable(f"plugin failed to load: {_one_line(err)}")
            return
        version = dist_version(self.ep)
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            self.result = self._unavailable(
                f"plugin entry point {self.ep.value} is not an accelpool.spi.Backend subclass"
            )
            return
        sim = None
        if self.fleet is not None:
            devices = self.fleet.for_backend(name)
            if not devices:
                self.result = self._unavailable(f"not part of simulated fleet {self.fleet.name!r}")
                return
            try:
                sim = SimContext(
                    self.fleet.name, devices, self.fleet.state(), self.fleet.state_root() / name
                )
            except AccelPoolError as e:  # e.g. the state directory changed under us
                self.result = self._unavailable(str(e))
                return
        backend: Backend | None = None
        try:
            backend = cls(BackendContext(name=name, sim=sim))
            lib_version = backend.probe()
        except CorruptState as e:
            self.corrupt = e
            self.result = self._unavailable(str(e))
            self._close(backend)
            return
        except BackendUnavailable as e:
            log.info("backend %s unavailable: %s", name, e)
            self.result = self._unavailable(str(e))
            self._close(backend)
            return
        except Exception as e:
            log.warning("backend %s probe failed: %s", name, e)
            log.debug("backend %s probe failure", name, exc_info=True)
            self.result = self._unavailable(f"probe failed: {_one_line(e)}")
            self._close(backend)
            return
        del lib_version  # the plugin's own version is what BackendStatus reports
        self.result = LoadedBackend(BackendStatus(name, True, None, version), backend)

    @staticmethod
    def _close(backend: Backend | None) -> None:
        if backend is None:
            return
        try:
            backend.close()
        except Exception:  # a backend that cannot even close is already unavailable
            log.debug("closing unavailable backend failed", exc_info=True)


def entry_points() -> list[Any]:
    """Installed ``accelpool.backends`` entry points, one per name, sorted."""
    seen: dict[str, Any] = {}
    for ep in group(GROUP):
        seen.setdefault(ep.name, ep)
    return [seen[n] for n in sorted(seen)]


class _Prober(threading.Thread):
    """Probes plugins one after another; a daemon so a hang cannot block exit.

    The caller sleeps until every probe is done, waking early only when the probe
    under way has run past the bound: then it gives up on this thread (which stops
    after that probe, if it ever returns) and probes the rest in a new one. One thread
    for the lot, not one per plugin, saves a thread start and a wake-up per plugin,
    which a loaded machine makes cost milliseconds each.
    """

    def __init__(
        self,
        eps: Sequence[Any],
        fleet: Fleet | None,
        cond: threading.Condition,
        presence: Mapping[str, Any],
    ) -> None:
        super().__init__(name=f"accelpool-probe-{eps[0].name}", daemon=True)
        self.eps = eps
        self.fleet = fleet
        self.presence = presence
        self.cond = cond
        self.done: list[_Probe] = []  # finished probes, in order
        self.started = time.monotonic()  # when the probe under way started
        self.finished = False
        self.abandoned = False

    def run(self) -> None:
        for ep in self.eps:
            probe = _Probe(ep, self.fleet, self.presence.get(ep.name))
            try:
                probe.run()
            except BaseException:  # a plugin's SystemExit, say: no answer, as a hang
                log.debug("backend %s probe ended abnormally", ep.name, exc_info=True)
            with self.cond:
                if self.abandoned:
                    _Probe._close(probe.result.backend if probe.result else None)
                    return
                self.done.append(probe)
                self.started = time.monotonic()
                if probe.corrupt is not None:
                    break
        with self.cond:
            self.finished = True
            self.cond.notify_all()


def _presence_checks(eps: Sequence[Any]) -> dict[str, Any]:
    """The presence checks of ``eps``, by name: only one the backend's own distribution
    declares counts (another package cannot mark a backend unavailable)."""
    by_name = {ep.name: ep for ep in eps}
    checks: dict[str, Any] = {}
    for check in group(PRESENCE_GROUP):
        backend = by_name.get(check.name)
        if backend is None or check.name in checks:
            continue
        ours, theirs = getattr(backend, "dist", None), getattr(check, "dist", None)
        if ours is not None and ours is theirs:
            checks[check.name] = check
    return checks


def load_backends(
    fleet: Fleet | None = None, names: Sequence[str] | None = None
) -> list[LoadedBackend]:
    """Load and probe every selected backend plugin, each bounded in time."""
    wanted = set(names) if names is not None else selected_backends()
    eps = [ep for ep in entry_points() if wanted is None or ep.name in wanted]
    # One plugin at a time, off this thread so each is bounded by the timeout: probes
    # are mostly imports, which hold the GIL, so running them side by side is slower
    # than in turn; the thread is there for the bound, not for parallelism.
    timeout = probe_timeout()
    if fleet is not None:
        # A state directory that cannot be used is the caller's problem, not a
        # backend's: say so here, once, instead of in every probe thread.
        fleet.open_state()
    presence = {} if fleet is not None else _presence_checks(eps)
    results: list[LoadedBackend] = []
    cond = threading.Condition()
    pending = list(eps)
    while pending:
        prober = _Prober(pending, fleet, cond, presence)
        prober.start()
        with cond:
            while not prober.finished:
                left = prober.started + timeout - time.monotonic()
                if left <= 0:
                    prober.abandoned = True
                    break
                cond.wait(left)
            done = list(prober.done)
        for probe in done:
            if probe.corrupt is not None:
                for loaded in results:
                    _Probe._close(loaded.backend)
                raise probe.corrupt
            results.append(probe.result or _no_answer(probe, timeout))
        pending = pending[len(done) :]
        if prober.abandoned:
            results.append(_no_answer(_Probe(pending[0], fleet), timeout))
            pending = pending[1:]
    if wanted:
        found = {ep.name for ep in eps}
        for missing in sorted(wanted - found):
            results.append(
                LoadedBackend(
                    BackendStatus(missing, False, "no such backend plugin is installed"), None
                )
            )
    return results


def _no_answer(probe: _Probe, timeout: float) -> LoadedBackend:
    log.warning("backend %s probe did not answer within %.1fs", probe.ep.name, timeout)
    return probe._unavailable(
        f"probe did not answer within {timeout:g}s "
        "(raise ACCELPOOL_PROBE_TIMEOUT if the driver is slow)"
    )


def safe_call_error(exc: BaseException, backend: str) -> AccelPoolError:
    """Wrap an exception a backend let escape, so callers see one hierarchy."""
    if isinstance(exc, AccelPoolError):
        return exc
    return AccelPoolError(f"backend {backend} failed: {_one_line(exc)}")
