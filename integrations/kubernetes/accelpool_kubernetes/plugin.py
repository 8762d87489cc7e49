"""The DRA kubelet plugin: gRPC services on unix sockets, and ResourceSlice publishing.

Two servers, as the kubelet expects them: the plugin registration service
(``pluginregistration.Registration``) in the kubelet's registry folder, which tells
the kubelet the driver name and where the DRA service is; and the DRA service
(``v1.DRAPlugin``, also answered as ``v1beta1.DRAPlugin``) in the driver's plugin
folder. The kubelet sends only a claim's namespace, name and uid; the allocated
devices are read from the ResourceClaim (from the API server, or from a folder of
ResourceClaim files when no cluster is configured).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any, Protocol

import grpc
import yaml

from accelpool.errors import AccelPoolError, InvalidRequest, NotFound
from accelpool_kubernetes.node import Node
from accelpool_kubernetes.proto import dra_pb2, dra_pb2_grpc, pluginregistration_pb2
from accelpool_kubernetes.proto import pluginregistration_pb2_grpc as reg_grpc

log = logging.getLogger("accelpool.kubernetes")
SERVICES = ("v1.DRAPlugin", "v1beta1.DRAPlugin")

#: (request name, pool, device name) of one allocated device
Allocated = tuple[str, str, str]


class ClaimSource(Protocol):
    def allocated(self, namespace: str, name: str, uid: str) -> list[Allocated]: ...


def results_of(claim: dict[str, Any], uid: str, driver: str, node: str) -> list[Allocated]:
    """This node's and driver's allocated devices of a ResourceClaim (as JSON)."""
    meta = claim.get("metadata") or {}
    if meta.get("uid") != uid:
        raise NotFound(
            f"ResourceClaim {meta.get('namespace')}/{meta.get('name')} has uid "
            f"{meta.get('uid')}, not {uid}: it was deleted and made again"
        )
    allocation = (claim.get("status") or {}).get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or []
    mine = [
        (r.get("request", ""), r["pool"], r["device"])
        for r in results
        if r.get("driver") == driver and str(r.get("pool", "")).startswith(f"{node}/")
    ]
    if not mine:
        raise InvalidRequest(f"ResourceClaim of uid {uid} has no device of {driver} on {node}")
    return mine


class DirClaimSource:
    """ResourceClaims as files ``<dir>/<uid>.json`` or ``.yaml`` (``kubectl get -o json``)."""

    def __init__(self, directory: Path, driver: str, node: str) -> None:
        self.directory, self.driver, self.node = Path(directory), driver, node

    def allocated(self, namespace: str, name: str, uid: str) -> list[Allocated]:
        for suffix in (".json", ".yaml", ".yml"):
            path = self.directory / f"{uid}{suffix}"
            if path.is_file():
                text = path.read_text()
                claim = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
                return results_of(claim, uid, self.driver, self.node)
        raise NotFound(f"no ResourceClaim file for uid {uid} in {self.directory}")


class ApiClaimSource:
    """ResourceClaims read from the API server through the ``kubernetes`` client."""

    def __init__(self, api_client: Any, driver: str, node: str) -> None:
        from kubernetes import client as k8s

        self.api = k8s.ResourceV1Api(api_client)
        self.client, self.driver, self.node = api_client, driver, node

    def allocated(self, namespace: str, name: str, uid: str) -> list[Allocated]:
        claim = self.api.read_namespaced_resource_claim(name, namespace)
        return results_of(
            self.client.sanitize_for_serialization(claim), uid, self.driver, self.node
        )


class DraService(dra_pb2_grpc.DRAPluginServicer):
    """``NodePrepareResources`` / ``NodeUnprepareResources`` over :class:`Node`."""

    def __init__(
        self, node: Node, source: ClaimSource, on_change: Callable[[], object] = lambda: None
    ) -> None:
        self.node, self.source, self.on_change = node, source, on_change
        self._lock = threading.Lock()

    def NodePrepareResources(self, request: Any, context: Any) -> Any:
        resp = dra_pb2.NodePrepareResourcesResponse()
        with self._lock:
            for c in request.claims:
                out = resp.claims[c.uid]
                try:
                    allocated = self.source.allocated(c.namespace, c.name, c.uid)
                    names = [d for _, _, d in allocated]
                    ids = dict(
                        zip(
                            dict.fromkeys(names),
                            self.node.prepare(
                                c.uid, names, namespace=c.namespace, claim_name=c.name
                            ),
                            strict=True,
                        )
                    )
                    for req, pool, dev in allocated:
                        out.devices.add(
                            request_names=[req],
                            pool_name=pool,
                            device_name=dev,
                            cdi_device_ids=[ids[dev]],
                        )
                except (AccelPoolError, OSError) as e:
                    out.error = f"{type(e).__name__}: {e}"
            self._changed()
        return resp

    def NodeUnprepareResources(self, request: Any, context: Any) -> Any:
        resp = dra_pb2.NodeUnprepareResourcesResponse()
        with self._lock:
            for c in request.claims:
                out = resp.claims[c.uid]
                try:
                    self.node.unprepare(c.uid)
                except (AccelPoolError, OSError) as e:
                    out.error = f"{type(e).__name__}: {e}"
            self._changed()
        return resp

    def _changed(self) -> None:
        try:
            self.on_change()
        except Exception as e:  # publishing must not fail a prepare that succeeded
            log.warning("republishing ResourceSlices failed: %s", e)


class RegistrationService(reg_grpc.RegistrationServicer):
    def __init__(self, driver: str, endpoint: str) -> None:
        self.driver, self.endpoint = driver, endpoint
        self.status: tuple[bool, str] | None = None

    def GetInfo(self, request: Any, context: Any) -> Any:
        return pluginregistration_pb2.PluginInfo(
            type="DRAPlugin",
            name=self.driver,
            endpoint=self.endpoint,
            supported_versions=list(SERVICES),
        )

    def NotifyRegistrationStatus(self, request: Any, context: Any) -> Any:
        self.status = (request.plugin_registered, request.error)
        if not request.plugin_registered:
            log.warning("the kubelet did not register %s: %s", self.driver, request.error)
        return pluginregistration_pb2.RegistrationStatusResponse()


def _alias(service: DraService, name: str) -> grpc.GenericRpcHandler:
    """``service`` under another service name (v1beta1 has the same messages)."""
    methods = {
        "NodePrepareResources": grpc.unary_unary_rpc_method_handler(
            service.NodePrepareResources,
            request_deserializer=dra_pb2.NodePrepareResourcesRequest.FromString,
            response_serializer=dra_pb2.NodePrepareResourcesResponse.SerializeToString,
        ),
        "NodeUnprepareResources": grpc.unary_unary_rpc_method_handler(
            service.NodeUnprepareResources,
            request_deserializer=dra_pb2.NodeUnprepareResourcesRequest.FromString,
            response_serializer=dra_pb2.NodeUnprepareResourcesResponse.SerializeToString,
        ),
    }
    return grpc.method_handlers_generic_handler(name, methods)


class KubeletPlugin:
    """Both servers; ``start()`` binds the sockets, ``stop()`` removes them."""

    def __init__(
        self, service: DraService, *, driver: str, plugin_socket: Path, registrar_socket: Path
    ) -> None:
        self.service, self.driver = service, driver
        self.plugin_socket, self.registrar_socket = Path(plugin_socket), Path(registrar_socket)
        self.registration = RegistrationService(driver, str(self.plugin_socket))
        self._servers: list[grpc.Server] = []

    def start(self) -> None:
        dra = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        dra_pb2_grpc.add_DRAPluginServicer_to_server(self.service, dra)
        dra.add_generic_rpc_handlers([_alias(self.service, SERVICES[1])])
        reg = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        reg_grpc.add_RegistrationServicer_to_server(self.registration, reg)
        for server, sock in ((dra, self.plugin_socket), (reg, self.registrar_socket)):
            sock.parent.mkdir(parents=True, exist_ok=True)
            sock.unlink(missing_ok=True)
            if server.add_insecure_port(f"unix://{sock}") == 0:
                raise InvalidRequest(f"cannot listen on {sock}; check the folder is writable")
            server.start()
            self._servers.append(server)

    def stop(self) -> None:
        for s in self._servers:
            s.stop(grace=1).wait()
        self._servers.clear()
        for sock in (self.plugin_socket, self.registrar_socket):
            sock.unlink(missing_ok=True)
