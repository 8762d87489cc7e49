"""ONNX's backend API (``onnx.backend.base.Backend``) over accelpool sessions.

So ONNX's own backend test suite, and any tool written against that API, runs on an
accelpool device or partition::

    from accelpool.onnx_backend import AccelPoolBackend
    outputs = AccelPoolBackend.run_model(model, [x], device="CPU")

    backend = AccelPoolBackend.using(cpu=inv.device("opencl:0"))   # pin the targets
    rep = backend.prepare(model, "nvidia:MIG-…")                   # or name one by id

Device strings: ``"CPU"`` (or ``"CPU:N"``) is the N-th target whose placement puts
``CPUExecutionProvider`` first, ``"CUDA"``/``"CUDA:N"`` the N-th whose placement puts
``CUDAExecutionProvider`` first (devices, then partitions, in inventory order), unless
:meth:`AccelPoolBackend.using` pins them; any other string is an accelpool target id
(``"nvidia:MIG-…"``, ``"opencl:0"``). The prepared models of one class on one target
share one session (one claim, one worker): it opens with the first :meth:`prepare` and
closes, releasing its claim, when the last of its prepared models is closed or
garbage-collected; a :meth:`prepare` that fails leaves no claim behind.
``using(keep_sessions=True)`` keeps each session (and its claim) until
:meth:`AccelPoolBackend.close` or the end of the process instead, for runners such as
ONNX's test suite that prepare thousands of models one after another. Sessions are
in-process by default (``isolate=False``); ``using(isolate=True)`` changes that.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from onnx import ModelProto, NodeProto, helper
from onnx.backend.base import Backend, BackendRep

from accelpool.errors import AccelPoolError, InvalidRequest, NotFound, UnsupportedOperation

if TYPE_CHECKING:
    from accelpool.inventory import Device, Inventory, Partition
    from accelpool.session import LoadedModel, Session

__all__ = ["AccelPoolBackend", "AccelPoolBackendRep"]

#: onnx's device types and the execution provider each one means.
_DEVICE_TYPES = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider"}


class AccelPoolBackendRep(BackendRep):
    """A model prepared in an accelpool session; :meth:`run` it on inputs.

    It holds its share of the session: :meth:`close` it (or use it as a context
    manager, or drop it) and the session's claim goes with the last share.
    """

    def __init__(
        self, session: Session, model: LoadedModel, release: Callable[[], None] | None = None
    ) -> None:
        self.session = session
        self.model = model
        # Called once: by close(), or when the rep is garbage-collected, or at exit.
        self._release = weakref.finalize(self, release) if release is not None else None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Give back this model's share of the session (idempotent)."""
        self._closed = True
        if self._release is not None:
            self._release()

    def __enter__(self) -> AccelPoolBackendRep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Outputs in the model's order; ``inputs`` a list (by position), a dict, or one array."""
        import numpy as np

        if self._closed:
            raise InvalidRequest("this prepared model was closed; prepare it again to run it")

        names = self.model.inputs
        if isinstance(inputs, Mapping):
            feeds = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) < len(names):
                raise InvalidRequest(
                    f"the model takes {len(names)} inputs ({', '.join(names)}), got {len(inputs)}"
                )
            feeds = {name: inputs[i] for i, name in enumerate(names)}
        else:
            if len(names) != 1:
                raise InvalidRequest(f"the model takes {len(names)} inputs; pass a list")
            feeds = {names[0]: inputs}
        for k, v in feeds.items():
            if isinstance(v, np.generic):  # numpy scalars: onnxruntime wants arrays
                feeds[k] = np.asarray(v)
        return tuple(self.session.run(self.model, feeds).values())


class AccelPoolBackend(Backend):
    """ONNX backend whose device strings are accelpool targets (see the module doc)."""

    #: device string -> target (Device, Partition or id); see :meth:`using`
    targets: ClassVar[Mapping[str, Any]] = {}
    #: run models in an isolated worker (one per target) instead of in-process
    isolate: ClassVar[bool] = False
    #: run on the CPU when the target's execution provider is missing (with a warning)
    allow_fallback: ClassVar[bool] = False
    #: where device strings are resolved (default: one discover() for the process)
    inventory: ClassVar[Inventory | None] = None
    #: keep each session (and its claim) until close() even when no prepared model uses it
    keep_sessions: ClassVar[bool] = False

    _sessions: ClassVar[dict[str, Session]] = {}
    _shares: ClassVar[dict[str, int]] = {}  # target id -> live prepared models
    _pinned: ClassVar[set[str]] = set()  # target ids whose session was asked for by session()
    _lock: ClassVar[threading.RLock] = threading.RLock()
    _own_inventory: ClassVar[Inventory | None] = None

    @classmethod
    def using(
        cls,
        cpu: Any = None,
        cuda: Any = None,
        *,
        isolate: bool = False,
        allow_fallback: bool = False,
        inventory: Inventory | None = None,
        targets: Mapping[str, Any] | None = None,
        keep_sessions: bool = False,
    ) -> type[AccelPoolBackend]:
        """A backend class bound to these targets and settings (pass it to ``BackendTest``).

        ``cpu``/``cuda`` pin what ``"CPU"``/``"CUDA"`` mean; ``targets`` maps any other
        device strings; ``keep_sessions`` keeps sessions and claims until :meth:`close`.
        """
        pinned: dict[str, Any] = dict(targets or {})
        if cpu is not None:
            pinned["CPU"] = cpu
        if cuda is not None:
            pinned["CUDA"] = cuda
        attrs = {
            "targets": pinned,
            "isolate": isolate,
            "allow_fallback": allow_fallback,
            "inventory": inventory,
            "keep_sessions": keep_sessions,
            "_sessions": {},
            "_shares": {},
            "_pinned": set(),
            "_lock": threading.RLock(),
            "_own_inventory": None,
        }
        return type(f"{cls.__name__}Bound", (cls,), attrs)

    # -- resolving device strings ---------------------------------------------------
    @classmethod
    def _inventory(cls) -> Inventory:
        if cls.inventory is not None:
            return cls.inventory
        if cls._own_inventory is None:
            from accelpool.inventory import discover

            cls._own_inventory = discover()
        return cls._own_inventory

    @classmethod
    def _auto(cls, kind: str, index: int) -> Device | Partition:
        provider = _DEVICE_TYPES[kind]
        inv = cls._inventory()
        found: list[Device | Partition] = []
        for device in inv.devices():
            candidates: list[Device | Partition] = [device]
            with contextlib.suppress(AccelPoolError):
                candidates += device.partitions()
            for t in candidates:
                try:
                    placement = t.onnx_placement()
                except AccelPoolError:
                    continue  # this target runs no ONNX models (or not whole)
                if placement.providers and placement.providers[0].name == provider:
                    found.append(t)
        if index >= len(found):
            raise NotFound(
                f"no {kind} target #{index}: {len(found)} target(s) run on {provider} here; "
                f"pin one with AccelPoolBackend.using({kind.lower()}=...)"
            )
        return found[index]

    @classmethod
    def target(cls, device: str = "CPU") -> Device | Partition:
        """The accelpool target a device string means."""
        from accelpool.inventory import Device, Partition

        if not isinstance(device, str) or not device:
            raise InvalidRequest(f"device must be a string such as 'CPU', not {device!r}")
        kind, _, index = device.partition(":")
        pinned = cls.targets.get(device)
        if pinned is None and kind in _DEVICE_TYPES and index in ("", "0"):
            pinned = cls.targets.get(kind)
        if pinned is not None:
            if isinstance(pinned, (Device, Partition)):
                return pinned
            return cls._inventory().target(str(pinned))
        if kind in _DEVICE_TYPES:
            if index and not index.isdigit():
                raise InvalidRequest(f"device {device!r}: the index must be a number")
            return cls._auto(kind, int(index or 0))
        return cls._inventory().target(device)

    @classmethod
    def session(cls, device: str = "CPU") -> Session:
        """This class's session on ``device``'s target, opened (and claimed) on first use.

        A session asked for here stays open until :meth:`close`.
        """
        target = cls.target(device)
        with cls._lock:
            session = cls._open(target)
            cls._pinned.add(target.id)
            return session

    @classmethod
    def _open(cls, target: Device | Partition) -> Session:
        from accelpool.session import open_session

        s = cls._sessions.get(target.id)
        if s is None or s.closed:
            s = open_session(target, isolate=cls.isolate, allow_fallback=cls.allow_fallback)
            cls._sessions[target.id] = s
            cls._shares[target.id] = 0
            cls._pinned.discard(target.id)
        return s

    @classmethod
    def _share(cls, device: str) -> tuple[str, Session]:
        """Open (or reuse) the session on ``device``'s target and count one more user."""
        target = cls.target(device)
        with cls._lock:
            session = cls._open(target)
            cls._shares[target.id] = cls._shares.get(target.id, 0) + 1
            return target.id, session

    @classmethod
    def _unshare(cls, key: str, session: Session, failed: bool = False) -> None:
        """One user fewer; the last one closes the session (and releases its claim)."""
        with cls._lock:
            if cls._sessions.get(key) is not session:
                return  # already closed by close(), or replaced
            left = cls._shares.get(key, 1) - 1
            cls._shares[key] = left
            if left > 0 or key in cls._pinned or (cls.keep_sessions and not failed):
                return
            del cls._sessions[key]
            cls._shares.pop(key, None)
        session.close()

    @classmethod
    def close(cls) -> None:
        """Close this class's sessions (releasing their claims) and its own inventory."""
        with cls._lock:
            sessions = list(cls._sessions.values())
            cls._sessions.clear()
            cls._shares.clear()
            cls._pinned.clear()
            for s in sessions:
                s.close()
            if cls._own_inventory is not None:
                cls._own_inventory.close()
                cls._own_inventory = None

    # -- onnx.backend.base.Backend ------------------------------------------------------
    @classmethod
    def supports_device(cls, device: str) -> bool:
        """Whether ``device`` names a target this onnxruntime can run models on."""
        try:
            target = cls.target(device)
            placement = target.onnx_placement()
        except AccelPoolError:
            return False
        if cls.allow_fallback:
            return True
        import onnxruntime

        available = set(onnxruntime.get_available_providers())
        return bool(placement.providers) and all(p.name in available for p in placement.providers)

    @classmethod
    def prepare(
        cls, model: ModelProto | bytes | str, device: str = "CPU", **kwargs: Any
    ) -> AccelPoolBackendRep:
        """Check ``model`` (as ONNX's base backend does) and load it on ``device``'s target.

        The rep shares the class's session on the target (opened and claimed now if
        none is open); closing or dropping the last rep of a session closes it. When
        loading fails, the claim taken for it is released before the error is raised.
        ``kwargs`` are accepted for API compatibility and ignored: the target's backend
        decides providers and threads.
        """
        if isinstance(model, ModelProto):
            super().prepare(model, device, **kwargs)  # onnx.checker.check_model
        key, session = cls._share(device)
        try:
            loaded = session.load(model)
        except BaseException:
            cls._unshare(key, session, failed=True)
            raise
        return AccelPoolBackendRep(session, loaded, functools.partial(cls._unshare, key, session))

    @classmethod
    def run_model(
        cls, model: ModelProto | bytes | str, inputs: Any, device: str = "CPU", **kwargs: Any
    ) -> tuple[Any, ...]:
        with cls.prepare(model, device, **kwargs) as rep:
            return rep.run(inputs)

    @classmethod
    def run_node(
        cls,
        node: NodeProto,
        inputs: Any,
        device: str = "CPU",
        outputs_info: Sequence[tuple[Any, tuple[int, ...]]] | None = None,
        **kwargs: Any,
    ) -> tuple[Any, ...]:
        """Run one operator on ``inputs`` (numpy arrays, in ``node.input`` order)."""
        import numpy as np
        import onnx
        from onnx import TensorProto

        super().run_node(node, inputs, device, outputs_info, **kwargs)  # onnx.checker
        arrays = [np.asarray(v) for v in inputs]
        names = [n for n in node.input if n]
        if len(arrays) != len(names):
            raise InvalidRequest(
                f"node {node.op_type} takes {len(names)} inputs, got {len(arrays)}"
            )
        graph_inputs = [
            helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)
            )
            for n, a in zip(names, arrays, strict=True)
        ]
        if outputs_info is not None:
            graph_outputs = [
                helper.make_tensor_value_info(
                    n, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), list(shape)
                )
                for n, (dt, shape) in zip(node.output, outputs_info, strict=True)
            ]
        else:
            graph_outputs = [
                helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in node.output
            ]
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        imports = [helper.make_opsetid("", opset)]
        if node.domain and node.domain != "ai.onnx":
            imports.append(helper.make_opsetid(node.domain, 1))
        graph = helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs, graph_outputs)
        model = helper.make_model(graph, opset_imports=imports)
        if outputs_info is None:
            # Let ONNX type the outputs: onnxruntime wants typed graph outputs.
            inferred = onnx.shape_inference.infer_shapes(model)
            types = {v.name: v for v in inferred.graph.value_info}
            types.update({v.name: v for v in inferred.graph.output})
            del model.graph.output[:]
            for n in node.output:
                info = types.get(n)
                if info is None or not info.type.HasField("tensor_type"):
                    raise UnsupportedOperation(
                        f"cannot tell the type of output {n!r} of {node.op_type}; pass outputs_info"
                    )
                model.graph.output.append(info)
        with cls.prepare(model, device) as rep:
            return rep.run(arrays)


def _close_all() -> None:
    # Sessions close themselves at exit too; this also drops the discovered inventories.
    classes: list[type[AccelPoolBackend]] = [AccelPoolBackend, *_subclasses(AccelPoolBackend)]
    for klass in classes:
        with contextlib.suppress(Exception):
            klass.close()


def _subclasses(cls: type[AccelPoolBackend]) -> list[type[AccelPoolBackend]]:
    out: list[type[AccelPoolBackend]] = []
    sub: type[AccelPoolBackend]
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


atexit.register(_close_all)

# ONNX's module-level backend API, as onnxruntime.backend offers it.
is_compatible = AccelPoolBackend.is_compatible
prepare = AccelPoolBackend.prepare
run = AccelPoolBackend.run_model
run_model = AccelPoolBackend.run_model
run_node = AccelPoolBackend.run_node
supports_device = AccelPoolBackend.supports_device
