"""Bind a Ray task or actor to one concrete device or partition of its node.

Ray counts custom resources but never says *which* unit a task got. :func:`acquire`
closes that gap on the node itself: it picks a free target of the family the task was
scheduled with, takes an accelpool claim for it under a holder named after the task or
actor (``ray:task:<id>``, ``ray:actor:<id>``) and bound to the worker process, sets the
target's visibility variables in ``os.environ`` and opens an accelpool session on it.
Leaving releases all of it. A worker that dies (``ray.kill``, a crash, OOM) leaves a
claim whose process has ended: the next :func:`acquire` on the node takes it over.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from accelpool import claims
from accelpool.errors import AccelPoolError, InsufficientCapacity, InUse, InvalidRequest
from accelpool.inventory import Device, Inventory, Partition, discover
from accelpool.session import Claim, Session, open_session
from accelpool_ray.resources import PREFIX, Family, Request, as_request, families

F = TypeVar("F", bound=Callable[..., Any])

#: How long :func:`acquire` waits by default for a target of its family to come free
#: (a killed worker's process may still be ending when Ray schedules the next task).
DEFAULT_TIMEOUT_S = 10.0

_WORKER_MODE = 1  # ray._private.worker.WORKER_MODE: a task or actor process
_local = threading.local()
_bound_lock = threading.Lock()
_bound_here: set[str] = set()  # target ids bound by this process (one holder may bind several)


def _ray_context() -> Any | None:
    """Ray's runtime context when this runs in a Ray worker or driver, else ``None``."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        return None
    if not ray.is_initialized():
        return None
    return ray.get_runtime_context()


def _holder(ctx: Any | None) -> tuple[str, str]:
    """(holder id, owner text) for the current task or actor."""
    pid = os.getpid()
    if ctx is None:
        return f"ray:process:{pid}", f"process {pid} outside Ray"
    node = (ctx.get_node_id() or "")[:12]
    actor = ctx.get_actor_id()
    if actor:
        name = ctx.get_actor_name() or ""
        label = f"ray actor {name} ".replace("  ", " ") if name else "ray actor "
        return f"ray:actor:{actor}", f"{label}{actor[:12]} on node {node} (pid {pid})"
    task = ctx.get_task_id()
    if task:
        name = ctx.get_task_name() or "task"
        return f"ray:task:{task}", f"ray task {name} {task[:16]} on node {node} (pid {pid})"
    return f"ray:driver:{ctx.get_job_id()}:{pid}", f"ray driver of job {ctx.get_job_id()}"


def _assigned(ctx: Any | None) -> dict[str, float] | None:
    """The accelpool resources Ray gave this task or actor (``None`` outside a worker)."""
    if ctx is None or ctx.worker.mode != _WORKER_MODE:  # the driver holds no resources
        return None
    res = ctx.get_assigned_resources()
    return {k: float(v) for k, v in res.items() if k.startswith(PREFIX)}


def _pick_family(
    req: Request | None, found: list[Family], assigned: dict[str, float] | None
) -> Family:
    if req is None:
        if not assigned:
            raise InvalidRequest(
                "acquire() without a request needs a task scheduled with an accelpool "
                "resource: run it with accelpool_ray.options(profile=...) or pass a request"
            )
        if len(assigned) > 1:
            raise InvalidRequest(
                f"this task holds several accelpool resources ({', '.join(sorted(assigned))}); "
                "say which to bind: acquire('<resource name>')"
            )
        req = Request(family=next(iter(assigned)))
    chosen = req.choose(found)
    if assigned is not None:
        chosen = [f for f in chosen if f.name in assigned]
        if not chosen:
            held = ", ".join(sorted(assigned)) or "none"
            raise InvalidRequest(
                f"this task was not scheduled with a resource serving {req.describe()} "
                f"(it holds: {held}); add accelpool_ray.options(...) for that request to "
                "its .options(), so Ray never runs more of them than there are targets"
            )
    if not chosen:
        known = ", ".join(f.name for f in found) or "none"
        raise InsufficientCapacity(
            f"no target on this node serves {req.describe()} (it has: {known}); "
            "create partitions of that profile here, or schedule the task where they are"
        )
    fam = chosen[0]
    if assigned is not None and assigned.get(fam.name, 0.0) < 1.0:
        raise InvalidRequest(
            f"this task holds {assigned[fam.name]:g} of {fam.name}: a fraction shares a "
            "target, which accelpool never does; request 1 (accelpool_ray.options does)"
        )
    return fam


class Binding:
    """A target bound to this task or actor: its claim, visibility and session.

    Use it as a context manager (``with acquire(...) as b``), as a decorator
    (``@acquire(...)``: each call binds afresh; :func:`current` gives the binding),
    or hold it for an actor's lifetime with :meth:`open` and :meth:`close`.
    """

    def __init__(
        self,
        request: Request | None,
        *,
        isolate: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
        session_options: Mapping[str, Any] | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise InvalidRequest(f"timeout={timeout!r}: give seconds, 0 or more")
        self.request = request
        self.isolate = isolate
        self.timeout = float(timeout)
        self.session_options = dict(session_options or {})
        self._given_inventory = inventory
        self._inventory: Inventory | None = None
        self.family: Family | None = None
        self.target: Device | Partition | None = None
        self.claim: Claim | None = None
        self._session: Session | None = None
        self._saved_env: dict[str, str | None] = {}

    # -- what it holds --------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The visibility variables set for the target."""
        return {k: os.environ.get(k, "") for k in self._saved_env}

    @property
    def session(self) -> Session:
        """The accelpool session on the target (opened on first use)."""
        if self.target is None or self.claim is None:
            raise InvalidRequest("this binding is not open: use it in a with block or open() it")
        if self._session is None:
            self._session = open_session(
                self.target,
                isolate=self.isolate,
                inventory=self._inventory,
                claim=self.claim,
                **self.session_options,
            )
        return self._session

    def run(self, model: Any, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run an ONNX model on the bound target (``session.run``)."""
        return self.session.run(model, feeds)

    # -- lifecycle ------------------------------------------------------------
    def open(self) -> Binding:
        """Pick, claim and expose a target; returns this binding."""
        if self.target is not None:
            raise InvalidRequest("this binding is already open")
        ctx = _ray_context()
        holder, owner = _holder(ctx)
        assigned = _assigned(ctx)
        inv = self._given_inventory or discover()
        self._inventory = inv if self._given_inventory is None else None
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                fam = _pick_family(self.request, families(inv), assigned)
                got = self._claim_one(fam, holder, owner)
                if got is not None:
                    break
                if time.monotonic() >= deadline:
                    raise self._exhausted(fam)
                time.sleep(0.05)
            self.family = fam
            self.target, self.claim = got
            self._set_env(self.target)
            stack = getattr(_local, "stack", None)
            if stack is None:
                stack = _local.stack = []
            stack.append(self)
            return self
        except BaseException:
            self.close()
            raise

    def _claim_one(
        self, fam: Family, holder: str, owner: str
    ) -> tuple[Device | Partition, Claim] | None:
        for target in fam.targets:
            with _bound_lock:
                if target.id in _bound_here:
                    continue
                try:
                    c = claims.claim(target, holder=holder, owner=owner, bound_to_process=True)
                except InUse:
                    continue
                _bound_here.add(target.id)
            return target, c
        return None

    def _exhausted(self, fam: Family) -> InsufficientCapacity:
        held = []
        for t in fam.targets:
            c = claims.lookup(t)
            if c is not None:
                held.append(c.describe())
        who = f"; held by {', '.join(held[:3])}" + (" ..." if len(held) > 3 else "") if held else ""
        return InsufficientCapacity(
            f"no free target of {fam.name} on this node after {self.timeout:g} s "
            f"({fam.count} in all{who}); schedule with accelpool_ray.options(...) so Ray "
            "never runs more such tasks than the node has targets"
        )

    def _set_env(self, target: Device | Partition) -> None:
        env = target.visibility_env()
        for key, value in env.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value

    def close(self) -> None:
        """Close the session, release the claim, restore the environment (idempotent)."""
        errors: list[BaseException] = []
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except AccelPoolError as e:
                errors.append(e)
        claim, self.claim = self.claim, None
        target, self.target = self.target, None
        if claim is not None:
            try:
                claims.release(claim)
            finally:
                with _bound_lock:
                    _bound_here.discard(claim.target)
        for key, old in self._saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        self._saved_env = {}
        inv, self._inventory = self._inventory, None
        if inv is not None:
            inv.close()
        stack = getattr(_local, "stack", [])
        if self in stack:
            stack.remove(self)
        if target is not None and errors:
            raise errors[0]

    def __enter__(self) -> Binding:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, fn: F) -> F:
        """Decorator form: every call of ``fn`` runs inside a fresh binding."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def _fresh(self) -> Binding:
        return Binding(
            self.request,
            isolate=self.isolate,
            timeout=self.timeout,
            session_options=self.session_options,
            inventory=self._given_inventory,
        )

    def __repr__(self) -> str:
        where = self.target.id if self.target is not None else "not open"
        return f"<accelpool_ray.Binding {self.family.name if self.family else '-'} {where}>"


def acquire(
    request: Request | str | None = None,
    *,
    profile: str | None = None,
    model: str | None = None,
    min_memory_gib: float | None = None,
    backend: str | None = None,
    isolate: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
    inventory: Inventory | None = None,
    **session_options: Any,
) -> Binding:
    """Bind this task or actor to a free target of its node that serves the request.

    ``request`` is a resource name (``"accelpool/nvidia/mig-1g.5gb"``), a profile name,
    or a :class:`Request`; or use ``profile=``, ``model=``, ``min_memory_gib=``. With
    none, the family Ray scheduled the task with is bound. In a Ray worker the task
    must hold one unit of the family (see :func:`accelpool_ray.options`), else
    :class:`InvalidRequest`; no free target within ``timeout`` seconds raises
    :class:`InsufficientCapacity`. ``isolate`` and further keywords (``allow_fallback``,
    ``session_config``, ...) go to :func:`accelpool.open_session`.
    """
    req = as_request(
        request, profile=profile, model=model, min_memory_gib=min_memory_gib, backend=backend
    )
    return Binding(
        req, isolate=isolate, timeout=timeout, session_options=session_options, inventory=inventory
    )


def current() -> Binding:
    """The innermost open binding of this thread (inside ``@acquire(...)``, say)."""
    stack = getattr(_local, "stack", None)
    if not stack:
        raise InvalidRequest("no accelpool_ray binding is open in this thread")
    return stack[-1]
