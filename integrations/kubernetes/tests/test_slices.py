"""ResourceSlices of simulated fleets: real schemas, the client's models, our limits, counters."""

from __future__ import annotations

import json
import subprocess
import sys

import kubernetes_validate
import pytest
from accelpool_kubernetes.catalog import fits, host_catalog, physical_device
from accelpool_kubernetes.limits import slice_problems
from accelpool_kubernetes.slices import host_slices, to_dict
from kubernetes import client as k8s

import accelpool
from accelpool.errors import AccelPoolError

FLEETS = ["dgx-a100", "hgx-h200", "atlas-800-910b", "mlu370-x8", "mixed"]


def load(data: dict) -> k8s.V1ResourceSlice:
    return k8s.ApiClient().deserialize(json.dumps(data), "V1ResourceSlice", "application/json")


@pytest.mark.parametrize("version", ["1.34", "1.35"])
@pytest.mark.parametrize("fleet", FLEETS)
def test_slices_validate_load_and_keep_limits(fleet: str, version: str) -> None:
    with accelpool.discover(sim=fleet) as inv:
        slices = [to_dict(s) for s in host_slices(inv, node="node-a", version=version)]
        backends = {d.backend for d in inv.devices()}
    assert slices
    assert {s["spec"]["pool"]["name"] for s in slices} == {f"node-a/{b}" for b in backends}
    for s in slices:
        kubernetes_validate.validate(s, f"{version}.0", strict=True)
        model = load(s)
        assert model.spec.driver == "accelpool.dev" and model.spec.node_name == "node-a"
        if version == "1.35":
            assert not (s["spec"].get("sharedCounters") and s["spec"].get("devices"))
    assert slice_problems(slices, version) == []


def test_limits_catch_what_the_schema_allows() -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        ok = [to_dict(s) for s in host_slices(inv, node="n", version="1.34")]
    # the 1.34 layout (counters beside devices) is refused by 1.35's rules
    assert any("only one of sharedCounters or devices" in p for p in slice_problems(ok, "1.35"))
    bad = json.loads(json.dumps(ok))
    bad[0]["spec"]["devices"][0]["name"] = "Not.A.Label"
    bad[1]["spec"]["pool"]["generation"] = 7
    problems = slice_problems(bad, "1.34")
    assert any("not a DNS label" in p for p in problems)
    assert any("disagree on the generation" in p for p in problems)


def _create(dev: accelpool.Device, ld):  # type: ignore[no-untyped-def]
    return dev.create_partition(
        ld.profile.name, placement=ld.placement.start if ld.placement else None
    )


@pytest.mark.parametrize(
    "fleet", ["dgx-a100", "hgx-h200", "atlas-800-910b", "atlas-300i-310p", "mlu370-x8"]
)
def test_counters_allow_a_pair_exactly_when_the_backend_can_create_both(fleet: str) -> None:
    """Both fit under the counters exactly when the backend can hold both at once (a
    whole device excludes everything else)."""
    with accelpool.discover(sim=fleet) as inv:
        dev = inv.devices()[0]
        pd = physical_device(dev)
        assert pd is not None and pd.counters
        wrong = []
        for i, a in enumerate(pd.devices):
            first = _create(dev, a) if a.profile is not None else None
            for b in pd.devices[i + 1 :]:
                both = False
                if first is not None and b.profile is not None:
                    try:
                        _create(dev, b).destroy()
                        both = True
                    except AccelPoolError:
                        pass
                if fits([a.consumes, b.consumes], pd.counters) != both:
                    wrong.append((a.name, b.name))
            if first is not None:
                first.destroy()
        assert wrong == []


def test_live_partitions_are_published_and_take_their_share() -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        dev = inv.device("nvidia:0")
        part = dev.create_partition("3g.20gb", placement=4)  # made before the driver runs
        pd = physical_device(dev)
        assert pd is not None
        live = [ld for ld in pd.devices if ld.partition is not None]
        assert [(ld.name, ld.partition.id) for ld in live] == [("nvidia-0-mig-3g20gb-4", part.id)]
        names = {ld.name for ld in pd.devices}
        assert "nvidia-0-mig-7g40gb-0" not in names and "nvidia-0-mig-1g5gb-4" not in names
        assert "nvidia-0-mig-4g20gb-0" in names
        assert pd.counters["unit-4"] == 0
        slices = [to_dict(s) for s in host_slices(inv, node="n", version="1.35")]
        assert slice_problems(slices, "1.35") == []


def test_cli_prints_yaml_and_json_and_refuses_bad_input() -> None:
    run = [
        sys.executable,
        "-m",
        "accelpool",
        "--sim",
        "atlas-800-910b",
        "k8s",
        "slices",
        "--node",
        "n1",
    ]
    out = subprocess.run(
        [*run, "--format", "json", "--kubernetes-version", "1.34"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    assert all(i["kind"] == "ResourceSlice" for i in items)
    bad = subprocess.run(
        [*run, "--kubernetes-version", "1.20"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and "1.34 or 1.35" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_catalog_covers_every_backend_of_the_mixed_fleet() -> None:
    with accelpool.discover(sim="mixed") as inv:
        assert set(host_catalog(inv)) == {"nvidia", "ascend", "cambricon"}
