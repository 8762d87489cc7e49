"""accelpool_ray on a real local Ray: one cluster for the module, a simulated dgx-a100.

The fleet is shared with the Ray workers the way it is on a real node: through the
environment (``ACCELPOOL_SIM``) and the state directory (``ACCELPOOL_STATE_DIR``)
that the raylet, and so every worker, inherits from this process.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

ray = pytest.importorskip("ray")

import accelpool  # noqa: E402
import accelpool_ray  # noqa: E402
from accelpool import claims  # noqa: E402

PROFILE = "1g.5gb"
FAMILY = "accelpool/nvidia/mig-1g.5gb"


def _model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, -2.0, 0.5, 3.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)


class Cluster:
    def __init__(self, state: Path, partitions: list[str]) -> None:
        self.state = state
        self.partitions = partitions  # target ids of the seven 1g.5gb partitions


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("ray-accelpool-state")
    saved = {k: os.environ.get(k) for k in ("ACCELPOOL_STATE_DIR", "ACCELPOOL_SIM")}
    os.environ.update(
        ACCELPOOL_STATE_DIR=str(state),
        ACCELPOOL_SIM="dgx-a100",
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",  # workers use this interpreter, not 'uv run'
    )
    try:
        with accelpool.discover() as inv:
            gpu = inv.device("nvidia:0")
            parts = [gpu.create_partition(PROFILE).id for _ in range(7)]
            resources = accelpool_ray.node_resources(inv)
        ray.init(
            num_cpus=2,
            resources=resources,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        try:
            yield Cluster(state, parts)
        finally:
            ray.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(autouse=True)
def _cluster_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # The root conftest gives each test a state directory of its own; these tests share
    # the cluster's, as every process on a node would.
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(cluster.state))
    monkeypatch.setenv("ACCELPOOL_SIM", "dgx-a100")


def test_the_node_publishes_its_partitions_as_ray_resources(cluster: Cluster) -> None:
    assert accelpool_ray.node_resources() == {FAMILY: 7.0}
    assert ray.cluster_resources()[FAMILY] == 7.0
    opts = accelpool_ray.options(profile=PROFILE, num_cpus=0)
    assert opts == {"resources": {FAMILY: 1.0}, "num_cpus": 0}
    assert accelpool_ray.options(min_memory_gib=4)["resources"] == {FAMILY: 1.0}
    with_gpus = accelpool_ray.options(PROFILE, num_gpus=1)
    env_vars = with_gpus["runtime_env"]["env_vars"]
    assert env_vars["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"] == "1"
    with pytest.raises(accelpool.NotFound, match="no accelpool resource serves profile 7g.40gb"):
        accelpool_ray.options(profile="7g.40gb")


@ray.remote(num_cpus=0)
def _bound_task(x: np.ndarray, model: bytes) -> dict[str, Any]:
    with accelpool_ray.acquire(allow_fallback=True) as b:
        start = time.time()
        held = claims.lookup(b.target)
        out = b.run(model, {"x": x})["y"]
        time.sleep(0.4)  # long enough for the tasks to overlap
        return {
            "target": b.target.id,
            "visible": os.environ["CUDA_VISIBLE_DEVICES"],
            "holder": held.holder if held else None,
            "y": out,
            "start": start,
            "end": time.time(),
        }


def test_fourteen_tasks_share_seven_partitions_never_the_same_one(cluster: Cluster) -> None:
    model = ray.put(_model())
    xs = [np.full((2, 4), i, dtype=np.float32) for i in range(14)]
    task = _bound_task.options(**accelpool_ray.options(profile=PROFILE, num_cpus=0))
    results = ray.get([task.remote(x, model) for x in xs], timeout=60)
    for x, r in zip(xs, results, strict=True):
        assert r["target"] in cluster.partitions
        assert r["visible"] == "MIG-" + r["target"].split(":MIG-", 1)[1]
        assert r["holder"].startswith("ray:task:")
        np.testing.assert_allclose(r["y"], x * WEIGHTS)
    # Never more than seven at once, and no partition held by two running tasks.
    events = sorted([(r["start"], 1) for r in results] + [(r["end"], -1) for r in results])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert 1 < peak <= 7
    for i, a in enumerate(results):
        for b in results[i + 1 :]:
            if a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["target"] != b["target"], "two running tasks held one partition"
    # Every claim was released when its task ended.
    assert [c for c in claims.holders() if c.holder_alive()] == []


@ray.remote(num_cpus=0, resources={FAMILY: 1})
class _Holder:
    def __init__(self) -> None:
        self.binding = accelpool_ray.acquire(PROFILE, timeout=5).open()

    def where(self) -> tuple[str, str, int]:
        return self.binding.target.id, os.environ["CUDA_VISIBLE_DEVICES"], os.getpid()


@ray.remote(num_cpus=0, resources={FAMILY: 1})
def _try_acquire(timeout: float) -> str:
    try:
        with accelpool_ray.acquire(timeout=timeout) as b:
            return "got " + b.target.id
    except accelpool.AccelPoolError as e:
        return f"{type(e).__name__}: {e}"


def test_a_killed_actor_frees_its_partition_for_the_next(cluster: Cluster) -> None:
    # Six partitions are someone else's (a pool outside Ray): one is left for the actors.
    for i, part in enumerate(cluster.partitions[1:]):
        claims.claim(part, holder=f"test:outside-{i}", device=part.rsplit(":", 1)[0])
    try:
        first = _Holder.remote()
        target, visible, pid = ray.get(first.where.remote(), timeout=30)
        assert target == cluster.partitions[0] and visible.startswith("MIG-")
        held = claims.lookup(target)
        assert held is not None and held.holder.startswith("ray:actor:") and held.pid == pid
        # While it lives, nobody else gets that partition: a clear error, no CPU run.
        msg = ray.get(_try_acquire.remote(0.3), timeout=30)
        assert msg.startswith("InsufficientCapacity: no free target of " + FAMILY), msg
        assert "ray:actor:" in msg
        ray.kill(first)
        second = _Holder.remote()
        target2, _, pid2 = ray.get(second.where.remote(), timeout=30)
        assert (target2, pid2 != pid) == (target, True)
        assert claims.lookup(target).pid == pid2  # type: ignore[union-attr]
        ray.kill(second)
    finally:
        for i in range(6):
            claims.release(f"test:outside-{i}")


@ray.remote(num_cpus=0)
def _unscheduled_acquire() -> str:
    try:
        accelpool_ray.acquire(PROFILE).open()
    except accelpool.InvalidRequest as e:
        return str(e)
    return "acquired"


def test_a_task_without_the_resource_is_told_how_to_ask(cluster: Cluster) -> None:
    msg = ray.get(_unscheduled_acquire.remote(), timeout=30)
    assert "not scheduled with a resource serving profile 1g.5gb" in msg
    assert "accelpool_ray.options" in msg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_serve_replicas_answer_on_their_own_partitions(cluster: Cluster) -> None:
    serve = pytest.importorskip("ray.serve")
    from accelpool_ray.serve import onnx_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        app = onnx_app(_model(), profile=PROFILE, num_replicas=2, allow_fallback=True)
        serve.run(app, name="onnx", route_prefix="/onnx")
        seen = {}
        for i in range(12):
            x = np.arange(8, dtype=np.float32).reshape(2, 4) * (i + 1)
            r = _post(f"http://127.0.0.1:{port}/onnx", {"inputs": {"x": x.tolist()}})
            np.testing.assert_allclose(r["outputs"]["y"], x * WEIGHTS)
            assert r["env"] == {"CUDA_VISIBLE_DEVICES": r["target"].split(":", 1)[1]}
            seen[r["pid"]] = r["target"]
        held = [c for c in claims.holders() if c.holder_alive()]
        assert len(held) == 2 and len({c.target for c in held}) == 2
        assert set(seen.values()) <= {c.target for c in held}
        assert len(set(seen.values())) == len(seen)  # one partition per replica
    finally:
        serve.shutdown()
