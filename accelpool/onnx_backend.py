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
(``"nvidia:MIG-…"``, ``"opencl:0"``). Each target gets one session per backend class,
opened on first use and kept (with its claim) until :meth:`AccelPoolBackend.close` or
the end of the process: ONNX's test suite prepares thousands of models, and a session
(claim, worker) per model would cost more than the models. Sessions are in-process by
default (``isolate=False``), for the same reason; ``using(isolate=True)`` changes that.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Mapping, Sequence
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
    """A model prepared in an accelpool session; :meth:`run` it on inputs."""

    def __init__(self, session: Session, model: LoadedModel) -> None:
        self.session = session
        self.model = model

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Outputs in the model's order; ``inputs`` a list (by position), a dict, or one array."""
        import numpy as np

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

    _sessions: ClassVar[dict[str, Session]] = {}
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
    ) -> type[AccelPoolBackend]:
        """A backend class bound to these targets and settings (pass it to ``BackendTest``).

        ``cpu``/``cuda`` pin what ``"CPU"``/``"CUDA"`` mean; ``targets`` maps any other
        device strings.
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
            "_sessions": {},
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
        """This class's session on ``device``'s target (opened, and claimed, on first use)."""
        from accelpool.session import open_session

        target = cls.target(device)
        with cls._lock:
            s = cls._sessions.get(target.id)
            if s is None or s.closed:
                s = open_session(target, isolate=cls.isolate, allow_fallback=cls.allow_fallback)
                cls._sessions[target.id] = s
            return s

    @classmethod
    def close(cls) -> None:
        """Close this class's sessions (releasing their claims) and its own inventory."""
        with cls._lock:
            sessions = list(cls._sessions.values())
            cls._sessions.clear()
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

        ``kwargs`` are accepted for API compatibility and ignored: the target's backend
        decides providers and threads.
        """
        if isinstance(model, ModelProto):
            super().prepare(model, device, **kwargs)  # onnx.checker.check_model
        session = cls.session(device)
        return AccelPoolBackendRep(session, session.load(model))

    @classmethod
    def run_model(
        cls, model: ModelProto | bytes | str, inputs: Any, device: str = "CPU", **kwargs: Any
    ) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

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
        return cls.prepare(model, device).run(arrays)


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
