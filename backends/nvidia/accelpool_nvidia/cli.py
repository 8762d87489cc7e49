"""``accelpool nvidia ...``: NVIDIA-specific commands (MIG mode)."""

from __future__ import annotations

import argparse
from typing import Any

from accelpool.errors import InvalidRequest


def register(sub: Any) -> None:
    """Add ``nvidia mig enable|disable DEVICE`` to the accelpool CLI."""
    p = sub.add_parser("nvidia", help="NVIDIA-specific operations (MIG mode)")
    nsub = p.add_subparsers(dest="nvidia_command", metavar="ACTION", required=True)
    mig = nsub.add_parser("mig", help="switch MIG mode on a GPU")
    msub = mig.add_subparsers(dest="mig_command", metavar="MODE", required=True)
    for action in ("enable", "disable"):
        a = msub.add_parser(action, help=f"{action} MIG mode on a GPU")
        a.add_argument("device", metavar="DEVICE", help="GPU id or nvidia:INDEX, e.g. nvidia:0")
        a.add_argument(
            "--force",
            action="store_true",
            help="change it even if a session or a named holder claims the GPU (logged)",
        )
        a.add_argument("--json", action="store_true", help="print JSON instead of a sentence")
        a.set_defaults(func=cmd_mig, mig_enable=action == "enable")


def cmd_mig(args: argparse.Namespace, ctx: Any) -> int:
    from accelpool.cli.output import print_json
    from accelpool_nvidia.backend import NvidiaBackend

    device = ctx.inventory().device(args.device)
    backend = device.backend_instance
    if not isinstance(backend, NvidiaBackend):
        raise InvalidRequest(f"{device.id} is not an NVIDIA GPU; MIG mode applies to NVIDIA GPUs")
    change = backend.set_mig_mode(device.info, args.mig_enable, force=args.force)
    if args.json:
        print_json(change.to_json())
        return 0
    mode = "enabled" if change.requested else "disabled"
    if change.status == "unchanged":
        print(f"MIG mode is already {mode} on {change.device_id}")
    elif change.status == "applied":
        print(f"MIG mode {mode} on {change.device_id}")
    else:
        print(f"MIG mode on {change.device_id} is pending ({mode} after reset): {change.reason}")
    return 0
