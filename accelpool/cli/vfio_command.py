"""``accelpool vfio bind|unbind|status`` and ``accelpool vm hostdev``."""

from __future__ import annotations

import argparse
from typing import Any

from accelpool.cli.app import CliContext
from accelpool.cli.output import print_json, print_table


def register(sub: Any) -> None:
    p = sub.add_parser("vfio", help="pass whole devices through to VMs (vfio-pci)")
    vs = p.add_subparsers(dest="vfio_command", metavar="ACTION", required=True)
    for name, hlp in (("bind", "bind a device to vfio-pci"), ("unbind", "give it back")):
        c = vs.add_parser(name, help=hlp)
        c.add_argument("device", metavar="DEVICE")
        c.add_argument("--json", action="store_true")
        c.set_defaults(func=_cmd_bind if name == "bind" else _cmd_unbind)
    s = vs.add_parser("status", help="host driver, vfio and pending state of each device")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_status)

    v = sub.add_parser("vm", help="hand devices and vGPUs to libvirt VMs")
    vms = v.add_subparsers(dest="vm_command", metavar="ACTION", required=True)
    h = vms.add_parser("hostdev", help="print the libvirt <hostdev> XML for a target")
    h.add_argument("target", metavar="TARGET")
    h.set_defaults(func=_cmd_hostdev)


def _show(args: argparse.Namespace, states: list[Any]) -> int:
    if args.json:
        print_json([s.to_json() for s in states])
        return 0
    print_table(
        ("DEVICE", "PCI", "DRIVER", "HOST DRIVER", "GROUP", "STATE"),
        [
            (
                s.device,
                s.pci,
                s.driver or "-",
                s.host_driver,
                s.iommu_group,
                f"pending {s.pending} (rerun bind or unbind)"
                if s.pending
                else ("passed through" if s.passed_through else "host"),
            )
            for s in states
        ],
    )
    return 0


def _cmd_bind(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool import vfio

    return _show(args, [vfio.bind(ctx.inventory().device(args.device))])


def _cmd_unbind(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool import vfio

    return _show(args, [vfio.unbind(ctx.inventory().device(args.device))])


def _cmd_status(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool import vfio

    return _show(args, vfio.status(ctx.inventory().devices()))


def _cmd_hostdev(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool.vmxml import hostdev_xml

    print(hostdev_xml(ctx.inventory().target(args.target)))
    return 0
