"""The deployment manifests and the docs' manifests validate against Kubernetes' schemas,
and their CEL selectors name attributes and capacities we really publish."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from accelpool_kubernetes.slices import host_slices, to_dict

import accelpool

HERE = Path(__file__).resolve().parents[1]
DEPLOY = sorted((HERE / "deploy").glob("*.yaml"))
DOC = HERE.parents[1] / "docs" / "kubernetes.md"
REF = re.compile(r'device\.(attributes|capacity)\["accelpool\.dev"\]\.(\w+)')


def doc_manifests() -> list[dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return [d for b in blocks for d in yaml.safe_load_all(b) if d]


def manifests() -> list[dict]:
    return [d for f in DEPLOY for d in yaml.safe_load_all(f.read_text()) if d]


def test_there_is_something_to_check() -> None:
    kinds = {d["kind"] for d in manifests()}
    assert {"DaemonSet", "ClusterRole", "DeviceClass", "ResourceClaim"} <= kinds
    assert {d["kind"] for d in doc_manifests()} >= {"DeviceClass", "ResourceClaim"}


@pytest.mark.parametrize("version", ["1.34.0", "1.35.0"])
def test_manifests_validate(version: str) -> None:
    for doc in manifests() + doc_manifests():
        kubernetes_validate.validate(doc, version, strict=True)


def test_cel_selectors_name_what_we_publish() -> None:
    with accelpool.discover(sim="dgx-a100") as inv:
        slices = [to_dict(s) for s in host_slices(inv, node="n", version="1.35")]
    devices = [d for s in slices for d in s["spec"].get("devices") or []]
    published = {
        "attributes": {k for d in devices for k in d["attributes"] if "/" not in k},
        "capacity": {k for d in devices for k in d.get("capacity") or {}},
    }
    exprs = [
        sel["cel"]["expression"]
        for doc in manifests() + doc_manifests()
        if doc["kind"] in ("DeviceClass", "ResourceClaim")
        for sel in (
            doc["spec"].get("selectors")
            or [s for r in doc["spec"]["devices"]["requests"] for s in r["exactly"]["selectors"]]
        )
    ]
    refs = {(where, name) for e in exprs for where, name in REF.findall(e)}
    assert refs and all(name in published[where] for where, name in refs), refs
    # "a 1g.10gb on an A100" matches devices of this A100 fleet
    assert any(
        d["attributes"]["profile"]["string"] == "1g.10gb"
        and d["attributes"]["model"]["string"].startswith("NVIDIA A100")
        and d["attributes"]["type"]["string"] == "partition"
        for d in devices
        if "profile" in d["attributes"]
    )
