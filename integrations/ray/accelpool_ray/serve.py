"""A Ray Serve deployment that serves an ONNX model, each replica on its own partition.

>>> from ray import serve
>>> from accelpool_ray.serve import onnx_app
>>> serve.run(onnx_app("model.onnx", profile="1g.5gb", num_replicas=2))

POST ``{"inputs": {"x": [[...]]}}`` (JSON arrays, cast to the model's input types) and
get ``{"outputs": {"y": [[...]]}, "target": "nvidia:MIG-...", "env": {...}}``. Each
replica binds one target with :func:`accelpool_ray.acquire` when it starts and holds it
until Serve stops it (or its worker dies, which frees the target for the next one).
Needs ``accelpool-ray[serve]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper
from ray import serve

from accelpool.errors import AccelPoolError, InvalidRequest
from accelpool_ray.binding import Binding, acquire
from accelpool_ray.resources import Request, as_request, options


def _input_types(model: bytes) -> dict[str, np.dtype[Any]]:
    try:
        graph = onnx.load_model_from_string(model).graph
    except Exception as e:  # protobuf's DecodeError, or any other parse failure
        raise InvalidRequest(f"the model is not an ONNX model ({e})") from None
    init = {i.name for i in graph.initializer}
    return {
        i.name: np.dtype(helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type))
        for i in graph.input
        if i.name not in init
    }


class OnnxServer:
    """One replica: a bound target, a loaded model, JSON in and out."""

    def __init__(
        self, model: bytes, request: Request | None, session_options: Mapping[str, Any]
    ) -> None:
        self.types = _input_types(model)
        self.binding: Binding | None = acquire(request, **dict(session_options)).open()
        self.loaded = self.binding.session.load(model)

    def infer(self, body: Any) -> dict[str, Any]:
        """Run one JSON request body; a bad body raises :class:`InvalidRequest`."""
        binding = self.binding
        if binding is None or binding.target is None:
            raise InvalidRequest("this replica has been shut down")
        inputs = body.get("inputs", body) if isinstance(body, dict) else None
        if not isinstance(inputs, dict) or set(inputs) != set(self.types):
            raise InvalidRequest(
                f'send {{"inputs": {{{", ".join(repr(n) for n in self.types)}: [...]}}}}'
            )
        try:
            feeds = {n: np.asarray(v, dtype=self.types[n]) for n, v in inputs.items()}
        except (TypeError, ValueError) as e:
            raise InvalidRequest(f"an input is not a numeric array: {e}") from None
        outputs = binding.run(self.loaded, feeds)
        return {
            "outputs": {k: np.asarray(v).tolist() for k, v in outputs.items()},
            "target": binding.target.id,
            "env": binding.env,
            "pid": os.getpid(),
        }

    async def __call__(self, http_request: Any) -> Any:
        from starlette.responses import JSONResponse

        try:
            body = await http_request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        try:
            return JSONResponse(self.infer(body))
        except InvalidRequest as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except AccelPoolError as e:
            return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=500)

    def close(self) -> None:
        binding, self.binding = self.binding, None
        if binding is not None:
            binding.close()

    def __del__(self) -> None:  # Serve calls it when it stops the replica
        self.close()


#: The deployment itself, for ``.options(...)`` of your own.
OnnxDeployment = serve.deployment(name="accelpool-onnx")(OnnxServer)


def onnx_app(
    model: str | os.PathLike[str] | bytes,
    request: Request | str | None = None,
    *,
    profile: str | None = None,
    model_name: str | None = None,
    min_memory_gib: float | None = None,
    backend: str | None = None,
    num_replicas: int = 1,
    num_cpus: float = 0,
    name: str = "accelpool-onnx",
    **session_options: Any,
) -> Any:
    """A Serve application serving ``model`` (a path or bytes), one target per replica.

    The request (as for :func:`accelpool_ray.options`) picks the resource family; every
    replica asks Ray for one unit of it and binds its own target. ``session_options``
    (``allow_fallback``, ``isolate``, ...) go to :func:`accelpool_ray.acquire`.
    """
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    req = as_request(
        request, profile=profile, model=model_name, min_memory_gib=min_memory_gib, backend=backend
    )
    if req is None:
        raise InvalidRequest("onnx_app() needs a request: profile=, model_name= or min_memory_gib=")
    _input_types(data)  # a bad model fails here, in the caller, not in every replica
    actor_options = options(req, num_cpus=num_cpus)
    return OnnxDeployment.options(
        name=name, num_replicas=num_replicas, ray_actor_options=actor_options
    ).bind(data, req, session_options)
