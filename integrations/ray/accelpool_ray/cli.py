"""``accelpool ray resources``: this host's accelpool resources for ``ray start``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    """Add ``ray`` to the accelpool CLI."""
    p = sub.add_parser("ray", help="Ray integration: this host's accelpool resources")
    rsub = p.add_subparsers(dest="ray_command", metavar="COMMAND")
    r = rsub.add_parser(
        "resources",
        help="print the custom resources as the JSON 'ray start --resources' takes",
    )
    r.add_argument(
        "--table", action="store_true", help="a table (name, count, memory) instead of JSON"
    )
    r.set_defaults(func=cmd_resources)
    p.set_defaults(func=lambda args, ctx: (p.print_help(), 2)[1])


def cmd_resources(args: argparse.Namespace, ctx: Any) -> int:
    from accelpool_ray.resources import families

    found = [f for f in families(ctx.inventory()) if f.count]
    if args.table:
        print(f"{'RESOURCE':<48} {'COUNT':>5} {'MEMORY':>10}")
        for f in found:
            print(f"{f.name:<48} {f.count:>5} {f.memory_bytes / 1024**3:>7.1f} GiB")
        return 0
    print(json.dumps({f.name: f.count for f in found}, sort_keys=True))
    return 0
