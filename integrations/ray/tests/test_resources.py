"""Resource names, requests and binding without a Ray cluster (a plain process)."""

from __future__ import annotations

import json
import os

import accelpool_ray
import pytest

import accelpool
from accelpool import claims
from accelpool.testing import run_cli_with_sim


def test_names_follow_models_and_profiles_across_backends() -> None:
    with accelpool.discover(sim="mixed") as inv:
        assert accelpool_ray.node_resources(inv) == {
            "accelpool/ascend/Ascend910B3": 2.0,
            "accelpool/cambricon/MLU370-X4": 2.0,
        }
        npu = inv.device("ascend:0")
        npu.create_partition("vir05_1c_16g")
        npu.create_partition("vir05_1c_16g")
        found = {f.name: f for f in accelpool_ray.families(inv)}
    # A device with partitions is offered as its partitions, never whole as well.
    assert {n: f.count for n, f in found.items()} == {
        "accelpool/ascend/Ascend910B3": 1,
        "accelpool/ascend/vnpu-vir05_1c_16g": 2,
        "accelpool/cambricon/MLU370-X4": 2,
    }
    fam = found["accelpool/ascend/vnpu-vir05_1c_16g"]
    assert (fam.backend, fam.kind, fam.label, fam.memory_bytes) == (
        "ascend",
        "vnpu",
        "vir05_1c_16g",
        16 * 1024**3,
    )


def test_a_gpu_in_mig_mode_is_only_offered_as_its_partitions() -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        assert accelpool_ray.node_resources(inv) == {}
        gpu = inv.device("nvidia:0")
        gpu.create_partition("1g.5gb")
        gpu.create_partition("3g.20gb")
        assert accelpool_ray.node_resources(inv) == {
            "accelpool/nvidia/mig-1g.5gb": 1.0,
            "accelpool/nvidia/mig-3g.20gb": 1.0,
        }
        # "At least N GiB" takes the smallest family that has it.
        assert accelpool_ray.options(min_memory_gib=6, inventory=inv) == {
            "resources": {"accelpool/nvidia/mig-3g.20gb": 1.0}
        }
        assert accelpool_ray.options("1g.5gb", inventory=inv)["resources"] == {
            "accelpool/nvidia/mig-1g.5gb": 1.0
        }
        with pytest.raises(accelpool.NotFound, match="this host has: accelpool/nvidia/mig-1g"):
            accelpool_ray.options(min_memory_gib=100, inventory=inv)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs a request"),
        ({"profile": "1g.5gb", "model": "A100"}, "exactly one of"),
        ({"request": "1g.5gb", "min_memory_gib": 1}, "exactly one of"),
        ({"min_memory_gib": -1}, "positive number of GiB"),
        ({"request": 7}, "a request is a resource name"),
    ],
)
def test_a_bad_request_is_one_line_naming_the_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(accelpool.InvalidRequest, match=message) as info:
        accelpool_ray.options(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_acquire_binds_distinct_targets_and_restores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACCELPOOL_SIM", "dgx-a100")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with accelpool.discover() as inv:
        gpu = inv.device("nvidia:0")
        parts = {gpu.create_partition("1g.5gb").id for _ in range(2)}
    with accelpool_ray.acquire("1g.5gb") as a, accelpool_ray.acquire("1g.5gb") as b:
        assert {a.target.id, b.target.id} == parts  # type: ignore[union-attr]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == b.target.id.split(":", 1)[1]  # type: ignore[union-attr]
        assert accelpool_ray.current() is b
        held = {c.target: c for c in claims.holders()}
        assert held.keys() == parts
        assert all(c.holder == f"ray:process:{os.getpid()}" for c in held.values())
        with pytest.raises(accelpool.InsufficientCapacity, match="no free target of accelpool/"):
            accelpool_ray.acquire("1g.5gb", timeout=0).open()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0" and claims.holders() == []
    with pytest.raises(
        accelpool.InsufficientCapacity, match=r"no target on this node serves profile 2g\.10gb"
    ):
        accelpool_ray.acquire(profile="2g.10gb").open()


def test_the_decorator_binds_each_call_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELPOOL_SIM", "atlas-800-910b")

    @accelpool_ray.acquire(model="Ascend910B3")
    def where() -> tuple[str, str]:
        b = accelpool_ray.current()
        return b.target.id, os.environ["ASCEND_RT_VISIBLE_DEVICES"]  # type: ignore[union-attr]

    first, second = where(), where()
    assert first == second and first[0].startswith("ascend:")  # released, then taken again
    assert claims.holders() == []
    with pytest.raises(accelpool.InvalidRequest, match="no accelpool_ray binding is open"):
        accelpool_ray.current()


def test_cli_prints_the_json_ray_start_takes() -> None:
    r = run_cli_with_sim("ray", "resources", sim="atlas-800-910b")
    assert r.code == 0, r.err
    assert json.loads(r.out) == {"accelpool/ascend/Ascend910B3": 8}
    table = run_cli_with_sim("ray", "resources", "--table", sim="atlas-800-910b")
    assert "accelpool/ascend/Ascend910B3" in table.out and "64.0 GiB" in table.out
