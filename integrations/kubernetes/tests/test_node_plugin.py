"""Prepare/unprepare as a library, and the kubelet plugin over its unix sockets."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import grpc
from accelpool_kubernetes.cdi import spec_problems
from accelpool_kubernetes.node import Node
from accelpool_kubernetes.plugin import DirClaimSource, DraService, KubeletPlugin
from accelpool_kubernetes.proto import dra_pb2, dra_pb2_grpc, pluginregistration_pb2
from accelpool_kubernetes.proto import pluginregistration_pb2_grpc as reg_grpc

import accelpool
from accelpool import claims


def test_prepare_is_idempotent_and_unprepare_destroys_only_its_own(tmp_path: Path) -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        foreign = inv.device("nvidia:0").create_partition("1g.5gb", placement=6)
        node = Node(inv, cdi_dir=tmp_path / "cdi")
        names = ["nvidia-0-mig-3g20gb-0", "nvidia-0-mig-1g5gb-6"]
        ids = node.prepare("u-1", names)
        before = sorted(p.id for p in inv.device("nvidia:0").partitions())
        assert node.prepare("u-1", names) == ids
        assert sorted(p.id for p in inv.device("nvidia:0").partitions()) == before
        spec = json.loads(node.spec_path("u-1").read_text())
        assert spec_problems(spec) == []
        mig = spec["devices"][0]["containerEdits"]
        assert len(mig["deviceNodes"]) == 3 and mig["env"][0].startswith(
            "CUDA_VISIBLE_DEVICES=MIG-"
        )
        assert claims.lookup(foreign).holder == "k8s:u-1"
        assert node.unprepare("u-1")
        assert [p.id for p in inv.device("nvidia:0").partitions()] == [foreign.id]
        assert claims.lookup(foreign) is None and not node.spec_path("u-1").exists()


def test_unsatisfiable_prepare_changes_nothing(tmp_path: Path) -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        node = Node(inv, cdi_dir=tmp_path / "cdi")
        try:
            node.prepare("u-2", ["nvidia-0-mig-3g20gb-0", "nvidia-0-mig-no-such-0"])
        except accelpool.NotFound:
            pass
        else:
            raise AssertionError("prepare of an unknown device succeeded")
        assert inv.device("nvidia:0").partitions() == []
        assert node.records() == [] and not node.spec_path("u-2").exists()


def test_kubelet_plugin_over_unix_sockets(tmp_path: Path) -> None:
    sockets = Path(tempfile.mkdtemp(prefix="k8s"))  # unix socket paths must stay short
    claims_dir = tmp_path / "claims"
    claims_dir.mkdir()
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "default", "uid": "u-3"},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {
                            "request": "r",
                            "driver": "accelpool.dev",
                            "pool": "n1/cambricon",
                            "device": "cambricon-0-mim-2m8gb-2",
                        }
                    ]
                }
            }
        },
    }
    (claims_dir / "u-3.json").write_text(json.dumps(claim))
    with accelpool.discover(sim="mlu370-x8") as inv:
        node = Node(inv, cdi_dir=tmp_path / "cdi")
        plugin = KubeletPlugin(
            DraService(node, DirClaimSource(claims_dir, "accelpool.dev", "n1")),
            driver="accelpool.dev",
            plugin_socket=sockets / "dra.sock",
            registrar_socket=sockets / "reg.sock",
        )
        plugin.start()
        try:
            with grpc.insecure_channel(f"unix://{sockets / 'reg.sock'}") as ch:
                info = reg_grpc.RegistrationStub(ch).GetInfo(pluginregistration_pb2.InfoRequest())
            assert (info.type, info.name) == ("DRAPlugin", "accelpool.dev")
            assert "v1.DRAPlugin" in info.supported_versions
            with grpc.insecure_channel(f"unix://{info.endpoint}") as ch:
                stub = dra_pb2_grpc.DRAPluginStub(ch)
                req = [dra_pb2.Claim(namespace="default", name="c", uid="u-3")]
                resp = stub.NodePrepareResources(
                    dra_pb2.NodePrepareResourcesRequest(claims=req), timeout=30
                )
                got = resp.claims["u-3"]
                assert got.error == ""
                assert list(got.devices[0].cdi_device_ids) == [
                    "k8s.accelpool.dev/claim=u-3-cambricon-0-mim-2m8gb-2"
                ]
                assert [p.profile for p in inv.device("cambricon:0").partitions()] == ["2m.8gb"]
                un = stub.NodeUnprepareResources(
                    dra_pb2.NodeUnprepareResourcesRequest(claims=req), timeout=30
                )
                assert un.claims["u-3"].error == ""
                assert inv.device("cambricon:0").partitions() == []
        finally:
            plugin.stop()
