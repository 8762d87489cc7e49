"""accelpool_ray tasks and actors on a real local Ray (the ``cluster`` of conftest.py)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import accelpool_ray  # noqa: E402

import accelpool  # noqa: E402
from accelpool import claims  # noqa: E402

# One Ray cluster at a time: both Ray modules run on one xdist worker, one after the other.
pytestmark = pytest.mark.xdist_group("ray")

PROFILE = "1g.5gb"
FAMILY = "accelpool/nvidia/mig-1g.5gb"


@pytest.fixture(autouse=True)
def _env(on_cluster: Any) -> None:
    """Every test here runs against the module's cluster and its fleet."""


def test_the_node_publishes_its_partitions_as_ray_resources(cluster: Any) -> None:
    assert accelpool_ray.node_resources() == {FAMILY: 7.0}
    assert ray.cluster_resources()[FAMILY] == 7.0
    opts = accelpool_ray.options(profile=PROFILE, num_cpus=0)
    assert opts == {"resources": {FAMILY: 1.0}, "num_cpus": 0}
    assert accelpool_ray.options(min_memory_gib=4)["resources"] == {FAMILY: 1.0}
    with_gpus = accelpool_ray.options(PROFILE, num_gpus=1)
    env_vars = with_gpus["runtime_env"]["env_vars"]
    assert env_vars["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"] == "1"
    with pytest.raises(accelpool.NotFound, match=r"no accelpool resource serves profile 7g\.40gb"):
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


def test_fourteen_tasks_share_seven_partitions_never_the_same_one(cluster: Any) -> None:
    model = ray.put(cluster.model)
    xs = [np.full((2, 4), i, dtype=np.float32) for i in range(14)]
    task = _bound_task.options(**accelpool_ray.options(profile=PROFILE, num_cpus=0))
    results = ray.get([task.remote(x, model) for x in xs], timeout=60)
    for x, r in zip(xs, results, strict=True):
        assert r["target"] in cluster.partitions
        assert r["visible"] == "MIG-" + r["target"].split(":MIG-", 1)[1]
        assert r["holder"].startswith("ray:task:")
        np.testing.assert_allclose(r["y"], x * cluster.weights)
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


def test_a_killed_actor_frees_its_partition_for_the_next(cluster: Any) -> None:
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
def _visibility(noset: bool) -> dict[str, str | None]:
    """CUDA_VISIBLE_DEVICES as Ray left it, then as acquire() set it."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    with accelpool_ray.acquire(PROFILE) as b:
        inside = os.environ.get("CUDA_VISIBLE_DEVICES")
        target = b.target.id  # type: ignore[union-attr]
    return {
        "before": before,
        "inside": inside,
        "target": target,
        "noset": os.environ.get("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"),
    }


def test_with_num_gpus_too_ray_keeps_its_hands_off_the_visibility(cluster: Any) -> None:
    # Ray's own GPU resource, as a task that also asks num_gpus=1 gets it: Ray itself
    # sets CUDA_VISIBLE_DEVICES to the GPU index it picked ...
    plain = {"resources": {FAMILY: 1.0}, "num_cpus": 0, "num_gpus": 1}
    seen = ray.get(_visibility.options(**plain).remote(False), timeout=60)
    assert seen["before"] == "0" and seen["noset"] is None
    # ... which options() stops with RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES, so the
    # only visibility the task sees is the partition acquire() bound.
    opts = accelpool_ray.options(PROFILE, num_cpus=0, num_gpus=1)
    assert opts["runtime_env"]["env_vars"] == accelpool_ray.NOSET_ENV
    seen = ray.get(_visibility.options(**opts).remote(True), timeout=60)
    assert seen["noset"] == "1" and seen["before"] in (None, "")
    assert seen["inside"] == "MIG-" + seen["target"].split(":MIG-", 1)[1]  # type: ignore[union-attr]


@ray.remote(num_cpus=0)
def _unscheduled_acquire() -> str:
    try:
        accelpool_ray.acquire(PROFILE).open()
    except accelpool.InvalidRequest as e:
        return str(e)
    return "acquired"


@ray.remote(num_cpus=0, resources={FAMILY: 1})
def _run_without_fallback(model: bytes) -> str:
    with accelpool_ray.acquire() as b:
        try:
            b.run(model, {"x": np.ones((1, 4), dtype=np.float32)})
        except accelpool.AccelPoolError as e:
            return f"{type(e).__name__}: {e}"
    return "ran"


def test_a_request_that_cannot_be_served_is_a_clear_error_never_a_cpu_run(cluster: Any) -> None:
    msg = ray.get(_unscheduled_acquire.remote(), timeout=30)
    assert "not scheduled with a resource serving profile 1g.5gb" in msg
    assert "accelpool_ray.options" in msg
    # The simulated MIG partition has no CUDA provider in this onnxruntime: without
    # allow_fallback the task is told so, rather than quietly running on the CPU.
    msg = ray.get(_run_without_fallback.remote(cluster.model), timeout=30)
    assert msg.startswith("UnsupportedOperation: nvidia:MIG-"), msg
    assert "CUDAExecutionProvider" in msg and "allow_fallback=True" in msg
