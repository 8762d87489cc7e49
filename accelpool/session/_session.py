"""Sessions: a claimed target, its visibility environment, and onnxruntime on it."""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from accelpool.errors import (
    AccelPoolError,
    InvalidRequest,
    UnsupportedOperation,
)
from accelpool.inventory import Device, Inventory, Partition, discover
from accelpool.session import _env
from accelpool.session import _worker as w
from accelpool.session._claims import Claim, ClaimKind, ClaimStore
from accelpool.session._models import LoadedModel, model_source
from accelpool.session._process import (
    WorkerDied,
    _Pinned,
    _reraise,
    _Resources,
    _WorkerProc,
    run_isolated,
)

__all__ = [
    "LoadedModel",
    "ProviderFallbackWarning",
    "Session",
    "WorkerDied",
    "open_session",
]


class ProviderFallbackWarning(UserWarning):
    """A requested execution provider is missing and the CPU is used instead."""


#: How long (seconds) an in-process run trusts that a model file it already loaded is
#: unchanged; after that, the next run looks at the file again and reloads an edit.
PATH_RECHECK_S = 1.0


class Session:
    """Work bound to one device or partition. Create with :func:`open_session`.

    ``env`` is the visibility environment the backend names for the target;
    ``providers`` the execution providers and options this session asks onnxruntime
    for (values as strings, as onnxruntime takes them). The claim is held until
    :meth:`close`, the end of a ``with`` block, or the end of the process.
    """

    def __init__(
        self,
        target: Device | Partition,
        *,
        isolate: bool,
        allow_fallback: bool,
        session_config: Mapping[str, str] | None,
        max_models: int,
        store: ClaimStore,
        inventory: Inventory | None,
        clean_env: bool | None = None,
        pass_env: Sequence[str] = (),
        claim: Claim | None = None,
    ) -> None:
        self.target = target
        #: whether the worker starts with a clean environment (see accelpool.session._env)
        self.clean_env = clean_env if clean_env is not None else _env.default_policy() == "clean"
        self._pass_env = tuple(pass_env)
        self.isolated = isolate
        self.allow_fallback = allow_fallback
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, _Resources.release, self._res)
        self._lock = threading.RLock()
        self._max_models = max(1, int(max_models))
        self._loaded: OrderedDict[Any, LoadedModel] = OrderedDict()
        self._bytes_keys: OrderedDict[int, tuple[bytes, Any]] = OrderedDict()
        self._path_keys: OrderedDict[Any, tuple[Any, float]] = OrderedDict()
        #: the path object last run, its loaded model and when its file was last checked
        self._hot_path: tuple[Any, LoadedModel, float] | None = None
        self._opencl: Any = None

        try:
            self.env: dict[str, str] = dict(target.visibility_env())
        except UnsupportedOperation:
            self.env = {}
        self._no_onnx: UnsupportedOperation | None = None
        self.providers: list[tuple[str, dict[str, str]]] = []
        self.intra_op_num_threads: int | None = None
        try:
            placement = target.onnx_placement()
        except UnsupportedOperation as e:
            self._no_onnx = e
        else:
            self.providers = [
                (p.name, {str(k): str(v) for k, v in p.options.items()})
                for p in placement.providers
            ]
            threads = placement.intra_op_num_threads
            if (
                threads is None
                and self.providers[:1]
                and self.providers[0][0] == ("CPUExecutionProvider")
            ):
                threads = target.compute_units or None
            self.intra_op_num_threads = threads
        self._config = {
            "providers": self.providers,
            "intra_op_num_threads": self.intra_op_num_threads,
            "session_config": dict(session_config or {}),
            "allow_fallback": allow_fallback,
            "target": target.id,
        }
        self._runtime: w.Runtime | None = None if isolate else w.Runtime(self._config)

        # Claim last: once held, every failure path releases it through the finalizer.
        if claim is not None:
            _check_given_claim(claim, target, store)
            # The caller's claim: held, never released, by this session.
            self._given_claim: Claim | None = claim
            self._res.inventory = inventory
            return
        self._given_claim = None
        kind: ClaimKind = "partition" if isinstance(target, Partition) else "device"
        device_id = target.device_id if isinstance(target, Partition) else target.id
        claim = store.acquire(target.id, device_id, kind)
        self._res.store = store
        self._res.claim = claim
        self._res.inventory = inventory

    # -- identity -------------------------------------------------------------
    @property
    def target_id(self) -> str:
        return self.target.id

    @property
    def claim(self) -> Claim | None:
        """The claim this session holds (``None`` once closed)."""
        if self._given_claim is not None:
            return self._given_claim if not self.closed else None
        return self._res.claim

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    @property
    def worker_pid(self) -> int | None:
        """The pid of the isolated worker, if one is running."""
        worker = self._res.worker
        return worker.pid if worker is not None and worker.alive else None

    def __repr__(self) -> str:
        mode = "isolated" if self.isolated else "in-process"
        state = "closed" if self.closed else "open"
        return f"<Session {self.target_id} {mode} {state}>"

    # -- lifecycle --------------------------------------------------------------
    def close(self) -> None:
        """Stop the worker, release the claim (idempotent)."""
        with self._lock:
            self._loaded.clear()
            self._bytes_keys.clear()
            self._hot_path = None
            self._opencl = None
            self._runtime = None
            self._finalizer()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise InvalidRequest(f"the session on {self.target_id} is closed; open a new one")

    def _worker(self) -> _WorkerProc:
        worker = self._res.worker
        if worker is not None and not worker.alive:
            self._res.worker = None
            self._loaded.clear()
            if not worker.reported:
                # It died between calls (killed, out of memory): say so once, as a
                # death during a call does; the next call starts a new worker.
                raise worker._died()
            worker.cleanup()
            worker = None
        if worker is None:
            self._loaded.clear()
            env = _env.worker_environment(
                os.environ, self.env, clean=self.clean_env, pass_env=self._pass_env
            )
            self._res.worker = None
            self._res.worker = worker = _WorkerProc(env, self._config, self.target_id)
        return worker

    # -- what the runtime sees ------------------------------------------------------
    def worker_env(self, names: Sequence[str] | None = None) -> dict[str, str]:
        """The environment the runtime runs under: the worker's own (isolated), else ours.

        ``names`` picks variables; by default the session's own (``env``) and every
        other visibility variable that is set.
        """
        with self._lock:
            self._check_open()
            if not self.isolated:
                env = dict(os.environ)
                if names is None:
                    return {k: v for k, v in env.items() if w.is_visibility_var(k) or k in self.env}
                return {k: env[k] for k in names if k in env}
            if names is None:
                result, _ = self._worker().request(("env", None))
                extra, _ = self._worker().request(("env", list(self.env)))
                return {**dict(result), **dict(extra)}
            result, _ = self._worker().request(("env", list(names)))
            return dict(result)

    def opencl(self) -> tuple[Any, Any]:
        """The target's ``(pyopencl.Context, pyopencl.CommandQueue)``, in this process.

        :class:`UnsupportedOperation` unless the target's backend offers OpenCL contexts.
        """
        with self._lock:
            self._check_open()
            backend = self.target.backend_instance
            make = getattr(backend, "context_and_queue", None)
            if make is None:
                raise UnsupportedOperation(
                    f"{self.target_id} is not an OpenCL target: backend {self.target.backend} "
                    "gives no pyopencl context"
                )
            if self._opencl is None:
                try:
                    self._opencl = make(self.target.info)
                except AccelPoolError:
                    raise
                except Exception as e:
                    raise AccelPoolError(
                        f"could not create an OpenCL context on {self.target_id}: {e}"
                    ) from e
                self._res.extras.append(self._opencl)
            ctx_queue: tuple[Any, Any] = self._opencl
            return ctx_queue

    def shared_array(self, shape: int | Sequence[int], dtype: Any = "float32") -> Any:
        """A zeroed numpy array in memory the isolated worker reads directly.

        Fill it (or decode straight into it) and pass it, or a C-contiguous slice of
        it, as an input: :meth:`run` then sends only where it is, with no copy. It
        lives as long as the session. In-process sessions return a plain array.
        """
        import numpy as np

        with self._lock:
            self._check_open()
            dt = np.dtype(dtype)
            shape_t = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
            if not self.isolated:
                return np.zeros(shape_t, dt)
            if dt.hasobject or dt.kind not in "biufc":
                raise InvalidRequest(f"shared arrays hold numbers, not {dt}")
            nbytes = max(1, int(np.prod(shape_t, dtype=np.int64)) * dt.itemsize)
            arena, fd = w.Arena.create(nbytes)
            array = np.ndarray(shape_t, dt, buffer=arena.mm)
            self._res.pinned.append(_Pinned(len(self._res.pinned), arena, fd, array))
            return array

    # -- models -------------------------------------------------------------------------
    def load(self, model: Any) -> LoadedModel:
        """Load ``model`` (a path, bytes, an ``onnx.ModelProto``) once; later loads reuse it.

        Models are keyed by identity: a file by path, size and modification time (so an
        edited file is reloaded; runs re-check a file at most every
        ``PATH_RECHECK_S`` seconds), bytes by content.
        """
        with self._lock:
            self._check_open()
            if self._no_onnx is not None:
                raise UnsupportedOperation(
                    f"{self.target_id} cannot run ONNX models: {self._no_onnx.message}"
                )
            if isinstance(model, LoadedModel):
                if model._owner is self and model.key in self._loaded:
                    self._loaded.move_to_end(model.key)
                    return model
                key, kind, source = model.key, model.kind, model.source
            else:
                key, kind, source = model_source(model, self._bytes_keys)
            hit = self._loaded.get(key)
            if hit is not None:
                self._loaded.move_to_end(key)
                return hit
            if self._runtime is not None:
                try:
                    info = self._runtime.load(key, kind, source)
                except w.RuntimeFailure as f:
                    _reraise(f)
                ort_session = self._runtime.models[key][0]
            else:
                info, _ = self._worker().request(("load", key, kind, source))
                ort_session = None
            for message in info.get("warnings", ()):
                warnings.warn(message, ProviderFallbackWarning, stacklevel=3)
            loaded = LoadedModel(
                key=key,
                kind=kind,
                source=source,
                inputs=list(info["inputs"]),
                outputs=list(info["outputs"]),
                providers=list(info.get("providers", ())),
                _owner=self,
                _ort=ort_session,
            )
            self._loaded[key] = loaded
            while len(self._loaded) > self._max_models:
                old, _ = self._loaded.popitem(last=False)
                self._unload(old)
            return loaded

    def _unload(self, key: Any) -> None:
        if self._runtime is not None:
            self._runtime.unload(key)
        elif self._res.worker is not None and self._res.worker.alive:
            self._res.worker.request(("unload", key))

    def run(
        self,
        model: Any,
        feeds: Mapping[str, Any],
        output_names: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Run ``model`` on the target; its outputs by name, in the model's order.

        ``model`` is a path, bytes, an ``onnx.ModelProto`` or a :class:`LoadedModel`
        (loaded once and kept warm); ``feeds`` maps input names to numpy arrays.
        """
        if output_names is None and type(feeds) is dict:
            # The hot paths, in as few steps as can be: a model this session loaded, or
            # the same path object as the last run with its file checked within
            # PATH_RECHECK_S (no hashing of the path, no look-ups), all its outputs.
            warm: LoadedModel | None = None
            if type(model) is LoadedModel:
                if model._owner is self:
                    warm = model
            else:
                hot = self._hot_path
                if (
                    hot is not None
                    and hot[0] is model
                    and time.monotonic() - hot[2] < PATH_RECHECK_S
                    and self._loaded.get(hot[1].key) is hot[1]
                ):
                    warm = hot[1]
            if warm is not None:
                ort = warm._ort
                if ort is not None and self._runtime is not None:  # close() clears _runtime
                    try:
                        outputs = ort.run(None, feeds)
                    except Exception as e:
                        _reraise(w.classify(e, f"run the model on {self.target_id}"))
                    return dict(zip(warm.outputs, outputs, strict=True))
                if self._runtime is None:
                    done = self._run_warm_isolated(warm, feeds)
                    if done is not None:
                        return done
        if type(feeds) is not dict and not isinstance(feeds, Mapping):
            raise InvalidRequest(
                f"feeds must map input names to arrays, not {type(feeds).__name__}"
            )
        loaded: LoadedModel | None = None
        kind = type(model)
        if kind is LoadedModel:
            if model._owner is self and model._ort is not None and self._runtime is not None:
                loaded = model
        elif kind is str or isinstance(model, os.PathLike):
            # A stat per call costs a few percent on a ~1 ms model, so a path's
            # identity is re-checked at most every PATH_RECHECK_S seconds.
            now = time.monotonic()
            seen = self._path_keys.get(model)
            if seen is not None and now - seen[1] < PATH_RECHECK_S:
                loaded = self._loaded.get(seen[0])
                if loaded is not None:
                    self._hot_path = (model, loaded, seen[1])
            else:
                try:
                    st = os.stat(model)
                except OSError:
                    pass  # load() says why
                else:
                    key = ("path", st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
                    loaded = self._loaded.get(key)
                    if loaded is not None:
                        self._path_keys[model] = (key, now)
                        self._hot_path = (model, loaded, now)
                        if len(self._path_keys) > 64:
                            self._path_keys.popitem(last=False)
        if loaded is None:
            loaded = self.load(model)
        names = list(output_names) if output_names is not None else loaded.outputs
        if self._runtime is not None:
            if not self._finalizer.alive:
                self._check_open()
            try:
                outputs = loaded._ort.run(output_names, feeds)
            except Exception as e:
                _reraise(w.classify(e, f"run the model on {self.target_id}"))
            return dict(zip(names, outputs, strict=True))
        with self._lock:
            self._check_open()
            return dict(zip(names, self._run_isolated(loaded, feeds, output_names), strict=True))

    def _run_warm_isolated(
        self, loaded: LoadedModel, feeds: dict[str, Any]
    ) -> dict[str, Any] | None:
        """All outputs of ``loaded`` run in the worker that holds it; None when no live
        worker holds it (closed, died, evicted): the caller takes the full path, which
        says why or starts a worker. A worker that died since the last call is found
        by the request itself, which raises WorkerDied as the full path would."""
        with self._lock:
            worker = self._res.worker
            if worker is None or worker.reported or loaded.key not in self._loaded:
                return None
            outputs = run_isolated(worker, self._res.pinned, loaded.key, feeds, None)
            return dict(zip(loaded.outputs, outputs, strict=True))

    def _run_isolated(
        self, loaded: LoadedModel, feeds: Mapping[str, Any], output_names: Sequence[str] | None
    ) -> list[Any]:
        worker = self._worker()
        if loaded.key not in self._loaded:
            self.load(loaded)
        return run_isolated(worker, self._res.pinned, loaded.key, feeds, output_names)


def _check_given_claim(claim: Claim, target: Device | Partition, store: ClaimStore) -> None:
    """Refuse a ``claim=`` that is not a live claim on ``target`` in ``store``."""
    if not isinstance(claim, Claim):
        raise InvalidRequest(
            f"claim= takes an accelpool Claim (from accelpool.claims.claim), "
            f"not {type(claim).__name__}"
        )
    if claim.target != target.id:
        raise InvalidRequest(
            f"claim= is a claim on {claim.target}, not on {target.id}; "
            "open the session on the claimed target"
        )
    held = store.holder(target.id)
    if held is None or held.token != claim.token:
        raise InvalidRequest(
            f"claim= on {target.id} is no longer held (released, expired or its process "
            "ended); claim the target again"
        )


def open_session(
    target: Device | Partition | str,
    isolate: bool = True,
    *,
    allow_fallback: bool = False,
    session_config: Mapping[str, str] | None = None,
    inventory: Inventory | None = None,
    max_models: int = 8,
    clean_env: bool | None = None,
    pass_env: Sequence[str] = (),
    claim: Claim | None = None,
) -> Session:
    """Claim ``target`` and open a session on it (also a context manager).

    ``target`` is a :class:`~accelpool.Device`, a :class:`~accelpool.Partition`, or an
    id resolved in ``inventory`` (default: a fresh :func:`~accelpool.discover`, kept
    until the session closes). With ``isolate=True`` models run in a worker process
    whose environment has the target's visibility variables in place before any
    runtime starts; ``isolate=False`` runs them in this process, whose environment
    is left alone. A provider missing from the installed onnxruntime raises
    :class:`UnsupportedOperation` unless ``allow_fallback=True`` (then the CPU is used,
    with a :class:`ProviderFallbackWarning`). ``session_config`` entries go to
    onnxruntime's ``SessionOptions.add_session_config_entry``.

    The worker inherits this process's environment (minus other visibility
    variables) unless ``clean_env=True`` (default: ``$ACCELPOOL_WORKER_ENV=clean``):
    then it gets only :data:`accelpool.session.CLEAN_ENV_ALLOW`, the names or
    patterns in ``pass_env``, and the target's visibility variables.

    Raises :class:`~accelpool.InUse` naming the holder's pid when another live session
    holds the target, its device, or one of its partitions.

    ``claim`` opens the session under a claim the caller already holds on ``target``
    (a named holder's, from :func:`accelpool.claims.claim`) instead of taking one for
    this process; it must be live and on this target (:class:`InvalidRequest`
    otherwise), and closing the session leaves it to its holder to release.
    """
    owned: Inventory | None = None
    if isinstance(target, str):
        if inventory is None:
            owned = inventory = discover()
        try:
            resolved: Device | Partition = inventory.target(target)
        except BaseException:
            if owned is not None:
                owned.close()
            raise
    elif isinstance(target, (Device, Partition)):
        resolved = target
    else:
        raise InvalidRequest(
            "a session target is a Device, a Partition or an id string, "
            f"not {type(target).__name__}"
        )
    if sys.platform == "win32" and isolate:
        if owned is not None:
            owned.close()
        raise UnsupportedOperation("isolated sessions need POSIX; pass isolate=False on Windows")
    try:
        return Session(
            resolved,
            isolate=isolate,
            allow_fallback=allow_fallback,
            session_config=session_config,
            max_models=max_models,
            store=ClaimStore(),
            inventory=owned,
            clean_env=clean_env,
            pass_env=pass_env,
            claim=claim,
        )
    except BaseException:
        if owned is not None:
            owned.close()
        raise
