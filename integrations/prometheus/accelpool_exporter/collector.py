"""The custom collector and the HTTP endpoint that serves it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from accelpool_exporter.families import all_families
from accelpool_exporter.readings import Snapshot, take_snapshot


class AccelpoolCollector(Collector):
    """Reports an inventory's backends, devices, partitions and claims on every scrape.

    Readings are taken in one pass per scrape; with ``interval`` > 0 a pass is reused
    for that many seconds, so that many scrapers (or a fast one) do not multiply the
    load on the vendor libraries.
    """

    def __init__(self, inventory: Any, interval: float = 0.0, claims: Any | None = None) -> None:
        self.inventory = inventory
        self.interval = interval
        self.claims = claims
        self._lock = threading.Lock()
        self._cached: tuple[float, Snapshot] | None = None

    def snapshot(self) -> Snapshot:
        """This scrape's readings: fresh, or the cached pass if it is recent enough."""
        with self._lock:  # two concurrent scrapes share one pass instead of racing two
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.interval:
                return self._cached[1]
            snap = take_snapshot(self.inventory, self.claims)
            self._cached = (now, snap)
            return snap

    def collect(self) -> Iterator[Metric]:
        yield from all_families(self.snapshot())


class Server:
    """A running exporter endpoint: where it listens, and how to stop it."""

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def shutdown(self) -> None:
        """Stop serving and free the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve(collector: AccelpoolCollector, port: int = 9400, host: str = "127.0.0.1") -> Server:
    """Serve ``collector`` at ``http://HOST:PORT/metrics`` from a background thread.

    ``port=0`` picks a free port (see :attr:`Server.port`). Only the collector's own
    families are served: no process or Python metrics of the exporter itself.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    return Server(httpd, thread)
