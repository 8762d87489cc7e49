"""``accelpool exporter``: serve Prometheus metrics for every backend on this host."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from typing import Any

from accelpool.errors import InvalidRequest


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}: give seconds") from None
    if not math.isfinite(value) or value < 0 or value > 86400:
        raise argparse.ArgumentTypeError(
            f"invalid interval {text!r}: give a number of seconds from 0 to 86400"
        )
    return value


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: give a number from 0 to 65535")
    return int(text)


def register(sub: Any) -> None:
    """Add ``exporter`` to the accelpool CLI."""
    p = sub.add_parser("exporter", help="serve Prometheus metrics (dcgm/npu-exporter names too)")
    p.add_argument("--port", type=_port, default=9400, help="TCP port (default 9400; 0: any)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--interval", type=_interval, default=0.0, metavar="SECONDS",
        help="reuse one pass of readings for this long (default 0: read on every scrape)",
    )
    p.set_defaults(func=cmd_exporter)


def cmd_exporter(args: argparse.Namespace, ctx: Any) -> int:
    from accelpool_exporter.collector import AccelpoolCollector, serve

    collector = AccelpoolCollector(ctx.inventory(), interval=args.interval)
    try:
        server = serve(collector, port=args.port, host=args.host)
    except OSError as e:
        raise InvalidRequest(
            f"cannot listen on {args.host}:{args.port}: {e.strerror or e}; "
            "choose another --port or --host"
        ) from None
    print(f"accelpool exporter serving {server.url}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    sys.stdout.flush()
    return 0
