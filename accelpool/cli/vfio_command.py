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
    h.add_argument("--domain", metavar="NAME", help="attach it to this libvirt domain")
    h.add_argument("--connect", metavar="URI", default=None, help="libvirt connection URI")
    h.set_defaults(func=_cmd_hostdev)
    pl = vms.add_parser("plan", help="how many VMs of each flavour this host holds now")
    pl.add_argument("flavours", metavar="FILE", help="TOML with [[flavour]] entries")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=_cmd_plan)
    d = vms.add_parser("detach", help="detach a target from a libvirt domain")
    d.add_argument("target", metavar="TARGET")
    d.add_argument("--domain", metavar="NAME", required=True)
    d.add_argument("--connect", metavar="URI", default=None)
    d.set_defaults(func=_cmd_detach)


def _state_word(s: Any) -> str:
    if s.pending:
        return f"pending {s.pending} (rerun vfio bind or unbind)"
    if s.passed_through:
        if s.holder and s.holder.startswith("vm:"):
            return f"passed through, attached to VM {s.holder[3:]}"
        return "passed through" if s.holder else "passed through (not by accelpool)"
    if s.group_blockers:
        return "host; group partner on a host driver: " + ", ".join(s.group_blockers)
    return "host" if s.driver else "no driver"


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
                s.host_driver or "-",
                s.iommu_group or "-",
                _state_word(s),
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

    target = ctx.inventory().target(args.target)
    if args.domain:
        from accelpool.vmattach import attach

        how = attach(target, args.domain, args.connect)
        print(f"Attached {target.id} to domain {args.domain} ({how})")
        return 0
    print(hostdev_xml(target))
    return 0


def _cmd_detach(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool.vmattach import detach

    target = ctx.inventory().target(args.target)
    print(f"{target.id}: {detach(target, args.domain, args.connect)} from {args.domain}")
    return 0


def _cmd_plan(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool import vmplan

    rows = vmplan.plan(ctx.inventory(), vmplan.load(args.flavours))
    if args.json:
        print_json([r.to_json() for r in rows])
        return 0
    print_table(
        ("FLAVOUR", "VMS", "DEVICES", "NOTE"),
        [
            (
                r.flavour,
                r.vms,
                ", ".join(f"{d} x{n}" if n > 1 else d for d, n in r.devices.items()) or "-",
                r.reason,
            )
            for r in rows
        ],
    )
    return 0
