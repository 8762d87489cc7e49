"""The Serve deployment on a real local Ray: replicas on their own partitions, over HTTP."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

serve = pytest.importorskip("ray.serve")

import accelpool  # noqa: E402
from accelpool import claims  # noqa: E402

# One Ray cluster at a time: both Ray modules run on one xdist worker, one after the other.
pytestmark = pytest.mark.xdist_group("ray")

PROFILE = "1g.5gb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http(cluster: Any) -> Iterator[str]:
    """Serve's HTTP proxy on a free local port, for the module."""
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def _post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_bad_app_fails_in_the_caller_not_in_every_replica(on_cluster: Any) -> None:
    # First in the module, so it carries the cluster's start-up (pytest books a module
    # fixture's set-up on the first test that uses it) and Serve's goes to the next.
    from accelpool_ray.serve import onnx_app

    with pytest.raises(accelpool.InvalidRequest, match="is not an ONNX model"):
        onnx_app(b"not a model", profile=PROFILE)
    with pytest.raises(accelpool.InvalidRequest, match="needs a request"):
        onnx_app(on_cluster.model)
    with pytest.raises(accelpool.NotFound, match=r"no accelpool resource serves profile 7g\.40gb"):
        onnx_app(on_cluster.model, profile="7g.40gb")
    assert serve.status().applications == {}  # nothing was deployed


def test_replicas_answer_on_their_own_partitions(http: str, on_cluster: Any) -> None:
    from accelpool_ray.serve import onnx_app

    app = onnx_app(on_cluster.model, profile=PROFILE, num_replicas=2, allow_fallback=True)
    # The app stays up until the module's Serve shuts down (the http fixture): a
    # serve.delete here would wait out each replica's graceful shutdown, seconds.
    serve.run(app, name="onnx", route_prefix="/onnx")
    seen: dict[int, str] = {}
    for i in range(12):
        x = np.arange(8, dtype=np.float32).reshape(2, 4) * (i + 1)
        status, r = _post(f"{http}/onnx", {"inputs": {"x": x.tolist()}})
        assert status == 200, r
        np.testing.assert_allclose(r["outputs"]["y"], x * on_cluster.weights)
        assert r["env"] == {"CUDA_VISIBLE_DEVICES": r["target"].split(":", 1)[1]}
        seen[r["pid"]] = r["target"]
    held = [c for c in claims.holders() if c.holder_alive()]
    assert len(held) == 2 and len({c.target for c in held}) == 2
    assert all(c.holder is not None and c.holder.startswith("ray:actor:") for c in held)
    assert set(seen.values()) <= {c.target for c in held}
    assert len(set(seen.values())) == len(seen)  # one partition per replica
    # A bad body is a 400 naming what to send, not a traceback.
    status, r = _post(f"{http}/onnx", {"inputs": {"z": [1]}})
    assert status == 400 and r["error"] == "send {\"inputs\": {'x': [...]}}"
