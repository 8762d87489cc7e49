"""Publishing this node's ResourceSlices: to the API server, or to a file.

The generation of a pool goes up by one whenever its content changes, so the
scheduler takes the new slices as one step; slices of the node and driver that are
no longer wanted are deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from accelpool.inventory import Inventory
from accelpool_kubernetes.cdi import write_atomic
from accelpool_kubernetes.slices import host_slices, to_dict


class Publisher:
    """Regenerates the slices and hands them to ``sink`` when they change."""

    def __init__(
        self,
        inv: Inventory,
        *,
        node: str,
        driver: str,
        version: str,
        bindings: Callable[[], dict[str, str]],
        sink: Callable[[list[dict[str, Any]]], None],
    ) -> None:
        self.inv, self.node, self.driver, self.version = inv, node, driver, version
        self.bindings, self.sink = bindings, sink
        self.generation = 0
        self._last: list[dict[str, Any]] | None = None

    def slices(self, generation: int) -> list[dict[str, Any]]:
        return [
            to_dict(s)
            for s in host_slices(
                self.inv,
                node=self.node,
                driver=self.driver,
                version=self.version,
                generation=generation,
                bindings=self.bindings(),
            )
        ]

    def publish(self) -> bool:
        """Publish if anything changed; whether it did. The slices are rendered once a
        round and compared without their generation, which goes up only on a change."""
        current = self.slices(self.generation or 1)
        if current == self._last:
            return False
        self.generation += 1
        for s in current:
            s["spec"]["pool"]["generation"] = self.generation
        self.sink(current)
        self._last = [json.loads(json.dumps(s)) for s in current]
        for s in self._last:
            s["spec"]["pool"]["generation"] = self.generation
        return True


def file_sink(path: Path) -> Callable[[list[dict[str, Any]]], None]:
    def write(slices: list[dict[str, Any]]) -> None:
        write_atomic(path, yaml.safe_dump_all(slices, sort_keys=False))

    return write


def api_sink(api_client: Any, node: str, driver: str) -> Callable[[list[dict[str, Any]]], None]:
    """Create, replace and delete ResourceSlices through the ``kubernetes`` client."""
    from kubernetes import client as k8s

    # The client's models type every field as optional; slices listed back from the
    # API server always carry their metadata, so they are handled untyped here.
    api: Any = k8s.ResourceV1Api(api_client)

    def write(slices: list[dict[str, Any]]) -> None:
        selector = f"spec.nodeName={node},spec.driver={driver}"
        existing = {
            s.metadata.name: s for s in api.list_resource_slice(field_selector=selector).items
        }
        # after a restart the pools on the server may be ahead of us: go above them, or
        # the scheduler would take our new slices for old ones
        ahead = max(
            (s.spec.pool.generation for s in existing.values() if s.spec and s.spec.pool),
            default=0,
        )
        for body in slices:
            pool = body["spec"]["pool"]
            if pool["generation"] <= ahead:
                pool["generation"] = ahead + 1
        for body in slices:
            name = body["metadata"]["name"]
            model: Any = k8s.V1ResourceSlice.from_dict(body)
            if name in existing:
                model.metadata.resource_version = existing.pop(name).metadata.resource_version
                api.replace_resource_slice(name, model)
            else:
                api.create_resource_slice(model)
        for name in existing:
            api.delete_resource_slice(name)

    return write
