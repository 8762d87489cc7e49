"""The isolated worker as the session sees it: the process, its channel, its arenas.

:class:`_WorkerProc` starts ``_worker.py`` with the session's environment and speaks
its protocol; :func:`run_isolated` sends one run (inputs through shared memory, shared
arrays by where they lie) and reads the outputs back; :class:`_Resources` is what a
session must give back, kept apart so a finalizer can release it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from accelpool.errors import AccelPoolError, InvalidRequest, UnsupportedOperation
from accelpool.session import _worker as w

if TYPE_CHECKING:
    from accelpool.inventory import Inventory
    from accelpool.session._claims import Claim, ClaimStore

WORKER_FILE = Path(w.__file__).resolve()
_ERRORS: dict[str, type[AccelPoolError]] = {
    "InvalidRequest": InvalidRequest,
    "UnsupportedOperation": UnsupportedOperation,
    "AccelPoolError": AccelPoolError,
}


class WorkerDied(AccelPoolError):
    """The isolated worker of a session ended while it was needed.

    The session keeps its claim; its next call starts a new worker.
    """


def _raise(kind: str, message: str, code: str | None, vendor: str | None) -> NoReturn:
    raise _ERRORS.get(kind, AccelPoolError)(message, vendor_code=code, vendor_message=vendor)


def _reraise(failure: w.RuntimeFailure) -> NoReturn:
    _raise(*failure.as_tuple())


class _WorkerProc:
    """One worker process, its channel and the two arenas."""

    def __init__(self, env: dict[str, str], config: dict[str, Any], label: str) -> None:
        self.label = label
        self.inbox: w.Arena | None = None
        self.outbox: w.Arena | None = None
        self.pinned: set[int] = set()  # shared arrays this worker has mapped
        self.reported = False  # whether a WorkerDied has told the caller it ended
        #: the last run whose inputs all lay in shared arrays: its model key, each input
        #: as (name, array, shape, dtype) and the request's bytes, sent again as they are
        #: when the next run passes the very same arrays (the worker then skips parsing)
        self.last_run: tuple[Any, list[tuple[str, Any, Any, Any]], bytes] | None = None
        if not sys.executable:
            raise UnsupportedOperation(
                "isolated sessions need a Python executable to start a worker; "
                "pass isolate=False in this embedded interpreter"
            )
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER_FILE), str(child.fileno()), str(os.getpid())],
                env=env,
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                # Terminal signals (Ctrl-C) go to the parent; the worker follows the channel.
                start_new_session=True,
            )
        except OSError as e:
            parent.close()
            raise AccelPoolError(f"could not start the session worker for {label}: {e}") from e
        finally:
            child.close()
        self.channel = w.Channel(parent)
        self.pid = self.proc.pid
        try:
            self.request(("init", config))
        except BaseException:
            self.kill()
            raise

    def request(
        self, msg: tuple[Any, ...] | bytes, fds: Sequence[int] = ()
    ) -> tuple[Any, list[int]]:
        """Send ``msg`` (or the bytes of one already pickled) and return the answer."""
        try:
            if type(msg) is bytes:
                self.channel.send_payload(msg, fds)
            else:
                self.channel.send(msg, fds)
            reply, rfds = self.channel.recv()
        except (EOFError, OSError) as e:
            raise self._died() from e
        except BaseException:
            # Interrupted half way (Ctrl-C): the worker is out of step with us; end it.
            # The interruption is the caller's news, not a worker death to report.
            self.reported = True
            self.kill()
            raise
        if reply[0] == "err":
            for fd in rfds:
                os.close(fd)
            _raise(*reply[1:])
        return reply[1], rfds

    def _died(self) -> WorkerDied:
        self.reported = True
        try:
            rc = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.returncode
        self.cleanup()
        if rc is not None and rc < 0:
            try:
                how = f"killed by signal {signal.Signals(-rc).name}"
            except ValueError:
                how = f"killed by signal {-rc}"
        else:
            how = f"exit code {rc}"
        return WorkerDied(
            f"session worker for {self.label} died ({how}); the session keeps its claim "
            "and its next call starts a new worker"
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.close()
        for arena in (self.inbox, self.outbox):
            if arena is not None:
                arena.close()
        self.inbox = self.outbox = None

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.cleanup()

    def stop(self) -> None:
        """Ask the worker to exit; kill it if it does not within a few seconds."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.channel.send(("exit",))
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        self.kill()


class _Pinned:
    """A shared array's arena: kept (with its fd) so every new worker can map it."""

    def __init__(self, ident: int, arena: w.Arena, fd: int, array: Any) -> None:
        self.ident = ident
        self.arena = arena
        self.fd: int | None = fd
        self.base: int = array.__array_interface__["data"][0]
        self.end = self.base + arena.size
        #: the array Session.shared_array returned: passed whole, it needs no arithmetic
        self.whole = weakref.ref(array)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.arena.close()  # stays mapped while the caller's arrays use it


class _Resources:
    """What a session must give back, kept apart so a finalizer can release it."""

    def __init__(self) -> None:
        self.owner_pid = os.getpid()
        self.store: ClaimStore | None = None
        self.claim: Claim | None = None
        self.inventory: Inventory | None = None
        self.worker: _WorkerProc | None = None
        self.extras: list[Any] = []
        self.pinned: list[_Pinned] = []

    def release(self) -> None:
        if os.getpid() != self.owner_pid:
            # A forked child: the claim, the worker and the inventory are the parent's.
            if self.worker is not None:
                with contextlib.suppress(OSError):
                    self.worker.channel.close()
            return
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()
        self.extras.clear()
        for pinned in self.pinned:
            pinned.close()
        self.pinned.clear()
        claim, self.claim = self.claim, None
        if claim is not None and self.store is not None:
            with contextlib.suppress(Exception):  # exiting must not fail over a claim row
                self.store.release(claim)
        inventory, self.inventory = self.inventory, None
        if inventory is not None:
            inventory.close()


def pinned_meta(
    pinned: Sequence[_Pinned], worker: _WorkerProc, value: Any
) -> tuple[Any, ...] | None:
    """Where ``value`` lies in a shared array (mapping it in the worker), else None."""
    if not pinned:
        return None
    for p in pinned:
        if p.whole() is value:  # the common case, told without building an interface dict
            whole: Any = value
            return _mapped(p, worker, (whole.dtype.str, whole.shape, 0, p.ident))
    if not getattr(value, "flags", None) or not w.shm_able(value):
        return None
    if not value.flags.c_contiguous:
        return None
    addr = value.__array_interface__["data"][0]
    for p in pinned:
        if p.base <= addr and addr + value.nbytes <= p.end:
            return _mapped(p, worker, (value.dtype.str, tuple(value.shape), addr - p.base, p.ident))
    return None


def _mapped(p: _Pinned, worker: _WorkerProc, where: tuple[Any, ...]) -> tuple[Any, ...]:
    """``where``, once ``worker`` has mapped ``p``'s arena."""
    if p.ident not in worker.pinned:
        assert p.fd is not None
        worker.request(("pin", p.ident), [p.fd])
        worker.pinned.add(p.ident)
    return where


def run_isolated(
    worker: _WorkerProc,
    shared: Sequence[_Pinned],
    key: Any,
    feeds: Mapping[str, Any],
    output_names: Sequence[str] | None,
) -> list[Any]:
    """Run loaded model ``key`` in ``worker``: inputs through the arenas, outputs back.

    An input inside one of the ``shared`` arrays is sent as where it lies (no copy);
    any other array is copied into the worker's inbox arena, grown when too small.
    """
    last = worker.last_run
    if (
        last is not None
        and output_names is None
        and last[0] == key
        and _same_inputs(last[1], feeds)
    ):
        return _outputs(worker, *worker.request(last[2]))
    items = list(feeds.items())
    pinned: dict[str, Any] = {}
    if shared:
        for name, v in items:
            where = pinned_meta(shared, worker, v)
            if where is not None:
                pinned[name] = where
        items = [(name, v) for name, v in items if name not in pinned]
    placed, needed = w.layout(items)
    fds: list[int] = []
    if needed and (worker.inbox is None or worker.inbox.size < needed):
        arena, fd = w.Arena.create(needed, worker.inbox)
        if worker.inbox is not None:
            worker.inbox.close()
        worker.inbox = arena
        fds = [fd]
    try:
        meta: dict[str, Any] = (
            w.write_arrays(worker.inbox, placed) if placed else {}  # type: ignore[arg-type]
        )
        inline = {name: v for name, v in items if name not in meta}
        meta.update(pinned)
        msg = ("run", key, list(output_names) if output_names else None, meta, inline)
        if pinned and len(pinned) == len(feeds) and not fds and output_names is None:
            payload = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
            inputs = [(name, v, v.shape, v.dtype) for name, v in feeds.items()]
            worker.last_run = (key, inputs, payload)
            result, rfds = worker.request(payload)
        else:
            result, rfds = worker.request(msg, fds)
    finally:
        for fd in fds:
            os.close(fd)
    return _outputs(worker, result, rfds)


def _same_inputs(inputs: Sequence[tuple[str, Any, Any, Any]], feeds: Mapping[str, Any]) -> bool:
    """Whether ``feeds`` are the very arrays of ``inputs``, with the same shapes and dtypes."""
    if len(inputs) != len(feeds):
        return False
    for name, array, shape, dtype in inputs:
        v = feeds.get(name)
        if v is not array or v.shape != shape or v.dtype != dtype:
            return False
    return True


def _outputs(worker: _WorkerProc, result: Any, rfds: list[int]) -> list[Any]:
    """The outputs of a run from the worker's answer (arena outputs copied out)."""
    if rfds:
        if worker.outbox is not None:
            worker.outbox.close()
        worker.outbox = w.Arena.attach(rfds[0])
        for fd in rfds[1:]:
            os.close(fd)
    outbox = worker.outbox
    return [
        w.unpacked(*value)
        if tag == "b"
        else w.view(outbox, *value).copy()  # type: ignore[arg-type]
        if tag == "a"
        else value
        for tag, value in result
    ]
