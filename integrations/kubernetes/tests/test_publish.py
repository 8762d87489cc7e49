"""Publishing ResourceSlices through the real ``kubernetes`` client over real HTTP.

No API server can run here, so the test serves the few ``resource.k8s.io/v1``
resourceslices endpoints the publisher uses (list with a field selector, create,
replace with a resourceVersion check, delete) from a small in-process HTTP server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from accelpool_kubernetes.publish import Publisher, api_sink
from kubernetes import client as k8s

import accelpool

BASE = "/apis/resource.k8s.io/v1/resourceslices"


class FakeApi(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        return obj


class Handler(BaseHTTPRequestHandler):
    server: FakeApi

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": reason, "code": code})  # fmt: skip

    def _body(self) -> dict[str, Any]:
        return dict(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def _name(self) -> str | None:
        path = urlparse(self.path).path
        return path[len(BASE) + 1 :] if path.startswith(BASE + "/") else None

    def do_GET(self) -> None:
        q = parse_qs(urlparse(self.path).query)
        want = dict(f.split("=", 1) for f in q.get("fieldSelector", [""])[0].split(",") if f)
        fields = {"spec.nodeName": "nodeName", "spec.driver": "driver"}
        with self.server.lock:
            self.server.calls.append(("list", ""))
            items = [
                o
                for o in self.server.objects.values()
                if all(o["spec"].get(fields[k]) == v for k, v in want.items())
            ]
            rv = str(self.server.version)
        meta = {"resourceVersion": rv}
        self._send(200, {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSliceList",
                         "metadata": meta, "items": items})  # fmt: skip

    def do_POST(self) -> None:
        body = self._body()
        name = body["metadata"]["name"]
        with self.server.lock:
            self.server.calls.append(("create", name))
            if name in self.server.objects:
                return self._status(409, "AlreadyExists")
            self.server.objects[name] = self.server.stamp(body)
            self._send(201, body)

    def do_PUT(self) -> None:
        body, name = self._body(), self._name()
        with self.server.lock:
            self.server.calls.append(("replace", str(name)))
            old = self.server.objects.get(str(name))
            if old is None:
                return self._status(404, "NotFound")
            if body["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict")
            self.server.objects[str(name)] = self.server.stamp(body)
            self._send(200, body)

    def do_DELETE(self) -> None:
        name = str(self._name())
        with self.server.lock:
            self.server.calls.append(("delete", name))
            gone = self.server.objects.pop(name, None)
            if gone is None:
                return self._status(404, "NotFound")
            self._send(200, gone)  # the API server answers with the deleted object


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _slice(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name, "resourceVersion": "1"},
        "spec": {"driver": "accelpool.dev", "nodeName": node,
                 "pool": {"name": f"{node}/cambricon", "generation": 9,
                          "resourceSliceCount": 1}},
    }  # fmt: skip


def test_publisher_creates_replaces_and_deletes_through_the_client(api: FakeApi) -> None:
    # ours from before a restart (its pool is at generation 9), no longer wanted
    api.objects["n1-stale"] = _slice("n1-stale", "n1")
    api.objects["n2-other"] = _slice("n2-other", "n2")  # another node's: left alone
    conf = k8s.Configuration(host=f"http://127.0.0.1:{api.server_address[1]}")
    with accelpool.discover(sim="mlu370-x8") as inv, k8s.ApiClient(conf) as client:
        pub = Publisher(
            inv,
            node="n1",
            driver="accelpool.dev",
            version="1.35",
            bindings=dict,
            sink=api_sink(client, "n1", "accelpool.dev"),
        )
        assert pub.publish()
        mine = {n for n, o in api.objects.items() if o["spec"]["nodeName"] == "n1"}
        assert "n1-stale" not in mine and "n2-other" in api.objects and mine
        first = {n: api.objects[n]["metadata"]["resourceVersion"] for n in mine}
        # above the generation the server had, so the scheduler takes the new slices
        assert {api.objects[n]["spec"]["pool"]["generation"] for n in mine} == {10}
        assert {c for c, _ in api.calls} == {"list", "create", "delete"}
        calls = len(api.calls)
        assert not pub.publish()  # nothing changed: nothing sent
        assert len(api.calls) == calls
        inv.device("cambricon:0").create_partition("2m.8gb")
        assert pub.publish()
        now = {n for n, o in api.objects.items() if o["spec"]["nodeName"] == "n1"}
        replaced = {n for _, n in api.calls if _ == "replace"}
        assert replaced == mine & now  # kept names went through PUT with their version
        assert all(api.objects[n]["metadata"]["resourceVersion"] != first[n] for n in replaced)
        assert {api.objects[n]["spec"]["pool"]["generation"] for n in now} == {11}
        devices = [d["name"] for n in now for d in api.objects[n]["spec"].get("devices") or []]
        assert any(d.startswith("cambricon-0-mim-2m8gb-") for d in devices)
        # what the server holds loads back as the client's models
        listed = k8s.ResourceV1Api(client).list_resource_slice(field_selector="spec.nodeName=n1")
        assert sorted(s.metadata.name for s in listed.items) == sorted(now)
