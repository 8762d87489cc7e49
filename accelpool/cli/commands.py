"""The core subcommands: backends, ls, profiles, partition, sim."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from accelpool.capabilities import Capability
from accelpool.cli.app import CliContext, UsageError
from accelpool.cli.output import human_bytes, print_json, print_table
from accelpool.errors import AccelPoolError, UnsupportedOperation

if TYPE_CHECKING:
    pass


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


#: The core subcommands in help order: the names each module function registers.
#: ``accelpool ls`` builds only the ``ls`` parser (and imports only its module); help
#: and unknown commands build them all.
CORE: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("backends",), "accelpool.cli.commands", "register_backends"),
    (("ls",), "accelpool.cli.ls_command", "register"),
    (("layout",), "accelpool.cli.layout_view", "register"),
    (("apply", "plan"), "accelpool.cli.layout_command", "register"),
    (("profiles", "partition", "sim"), "accelpool.cli.commands", "register_devices"),
    (("vfio", "vm"), "accelpool.cli.vfio_command", "register"),
    (("run", "claims"), "accelpool.cli.run_command", "register"),
)
CORE_NAMES = frozenset(n for names, _, _ in CORE for n in names)


def register(sub: Any, only: str | None = None) -> None:
    """Add the core subcommands to ``sub``: all, or only the group that has ``only``."""
    import importlib

    for names, module, function in CORE:
        if only is None or only in names:
            getattr(importlib.import_module(module), function)(sub)


def register_backends(sub: Any) -> None:
    p = sub.add_parser("backends", help="installed backend plugins and whether they can run here")
    _json_flag(p)
    p.set_defaults(func=cmd_backends)


def register_devices(sub: Any) -> None:
    p = sub.add_parser("profiles", help="partition profiles a device offers")
    p.add_argument("device", metavar="DEVICE", help="device id or BACKEND:INDEX, e.g. nvidia:0")
    _json_flag(p)
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser("partition", help="create or destroy partitions")
    psub = p.add_subparsers(dest="partition_command", metavar="ACTION", required=True)
    c = psub.add_parser("create", help="create a partition on a device")
    c.add_argument("device", metavar="DEVICE")
    c.add_argument("profile", metavar="PROFILE", help="profile name, see 'accelpool profiles'")
    c.add_argument(
        "--placement",
        type=_placement,
        default=None,
        metavar="N",
        help="start position the profile offers (default: the one that hurts least)",
    )
    _json_flag(c)
    c.set_defaults(func=cmd_partition_create)
    d = psub.add_parser("destroy", help="destroy a partition")
    d.add_argument("partition", metavar="PARTITION", help="partition id, see 'accelpool ls'")
    d.add_argument(
        "--force",
        action="store_true",
        help="destroy it even if a session or a named holder claims it (logged)",
    )
    _json_flag(d)
    d.set_defaults(func=cmd_partition_destroy)
    g = psub.add_parser(
        "gc",
        help="remove partitions left half-made by creators that were killed",
        description="A create killed between its vendor steps (kill -9) can leave a "
        "half-made partition, shown as 'incomplete' by 'accelpool ls'. This finishes or "
        "removes what creators that are gone left behind; a create still running in "
        "another process is never touched.",
    )
    _json_flag(g)
    g.set_defaults(func=cmd_partition_gc)

    p = sub.add_parser("sim", help="simulated fleets")
    ssub = p.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    r = ssub.add_parser("reset", help="start the simulated fleet (--sim or $ACCELPOOL_SIM) afresh")
    r.set_defaults(func=cmd_sim_reset)
    lp = ssub.add_parser("presets", help="list the fleet presets")
    _json_flag(lp)
    lp.set_defaults(func=cmd_sim_presets)


def _placement(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"placement must be an integer, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"placement must be 0 or more, not {value}")
    return value


def cmd_backends(args: argparse.Namespace, ctx: CliContext) -> int:
    statuses = ctx.inventory(strict=False).backends()
    if args.json:
        print_json([s.to_json() for s in statuses])
        return 0
    rows = [
        (s.name, "yes" if s.available else "no", s.version or "-", s.reason or "") for s in statuses
    ]
    print_table(("BACKEND", "AVAILABLE", "VERSION", "REASON"), rows)
    return 0


def cmd_profiles(args: argparse.Namespace, ctx: CliContext) -> int:
    device = ctx.inventory().device(args.device)
    profiles = device.profiles()
    if args.json:
        print_json([p.to_json() for p in profiles])
        return 0
    if not profiles:
        print(f"Device {device.id} offers no partition profiles.")
        return 0
    rows = [
        (
            p.name,
            p.kind,
            human_bytes(p.memory_bytes),
            p.compute_units,
            p.max_count,
            "-" if p.available is None else p.available,
            ",".join(str(pl.start) for pl in p.placements) or "-",
        )
        for p in profiles
    ]
    print_table(("PROFILE", "KIND", "MEMORY", "COMPUTE", "MAX", "AVAILABLE", "PLACEMENTS"), rows)
    return 0


def cmd_partition_create(args: argparse.Namespace, ctx: CliContext) -> int:
    device = ctx.inventory().device(args.device)
    if not device.capabilities.supports(Capability.PARTITION_DEVICE_SCOPE):
        raise UnsupportedOperation(
            f"partitions of backend {device.backend} live only inside the process that "
            "creates them (scope 'process'), so one made by this command would vanish when "
            "it exits; create it from Python with Device.create_partition() instead"
        )
    part = device.create_partition(args.profile, placement=args.placement)
    if args.json:
        print_json(part.to_json())
    else:
        print(f"Created partition {part.id} ({part.profile}) on {device.id}")
    return 0


def cmd_partition_destroy(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool.claims import blockers

    part = ctx.inventory().partition(args.partition)
    overridden = blockers(part) if args.force else []
    part.destroy(force=args.force)
    if args.json:
        doc: dict[str, object] = {"destroyed": part.id}
        if args.force:
            doc["forced_past"] = [c.to_json() for c in overridden]
        print_json(doc)
        return 0
    print(f"Destroyed partition {part.id}")
    for c in overridden:
        print(f"Forced: {c.target} was claimed by {c.describe()}, which may still be using it")
    return 0


def cmd_partition_gc(args: argparse.Namespace, ctx: CliContext) -> int:
    done = ctx.inventory().collect_garbage()
    if args.json:
        print_json({"removed": done})
    elif done:
        print("\n".join(done))
    else:
        print("Nothing half-made to clean up.")
    return 0


def cmd_sim_reset(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool.inventory import resolve_fleet

    fleet = resolve_fleet(args.sim)
    if fleet is None:
        raise UsageError("no simulated fleet given: pass --sim PRESET|FILE or set ACCELPOOL_SIM")
    had = fleet.reset()
    print(f"Simulated fleet {fleet.name} reset" + ("" if had else " (it had no state)"))
    return 0


def cmd_sim_presets(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool.sim.fleet import load_fleet, preset_names

    fleets = []
    for n in preset_names():
        try:
            fleets.append(load_fleet(n))
        except AccelPoolError as e:  # a plugin's broken preset: said once, not fatal
            print(f"accelpool: preset {n} skipped: {e}", file=sys.stderr)
    if args.json:
        print_json(
            [
                {
                    "name": f.name,
                    "description": f.description,
                    "devices": [
                        {"backend": d.backend, "model": d.model, "count": d.count}
                        for d in f.devices
                    ],
                }
                for f in fleets
            ]
        )
        return 0
    print_table(
        ("PRESET", "DEVICES", "DESCRIPTION"),
        [
            (
                f.name,
                ", ".join(f"{d.count}x {d.backend} {d.model}" for d in f.devices),
                f.description,
            )
            for f in fleets
        ],
    )
    return 0
