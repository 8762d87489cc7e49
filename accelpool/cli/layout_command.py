"""``accelpool apply`` and ``accelpool plan``: declarative layouts and demand planning.

``accelpool layout apply|plan`` are kept as aliases of these (``accelpool layout
[DEVICE]`` draws the current cut; a device is never named ``apply`` or ``plan``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accelpool.errors import InvalidRequest

if TYPE_CHECKING:
    from accelpool.cli.app import CliContext


def _sim_flag(p: argparse.ArgumentParser) -> None:
    # Also accepted after the command; the global one (before it) is the same setting.
    p.add_argument(
        "--sim",
        metavar="PRESET|FILE",
        default=argparse.SUPPRESS,
        help="use a simulated fleet (as the global --sim)",
    )


#: How long the solver may take per stage, unless --time-limit says otherwise.
TIME_LIMIT_S = 30.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "apply",
        help="make devices hold exactly the partitions a layout names, all-or-nothing",
        description="Apply a layout file (TOML), or with --config NAME a config of a "
        "mig-parted mig-configs YAML file. Keeps what matches, finds placements whatever "
        "the order, switches MIG mode where needed, never destroys claimed partitions, and "
        "undoes every step if one fails. See docs/layouts.md.",
    )
    p.add_argument("file", metavar="FILE", help="layout file, or mig-parted YAML with --config")
    p.add_argument("--config", metavar="NAME", help="the mig-configs entry of a mig-parted file")
    p.add_argument(
        "--host",
        metavar="NAME",
        help="apply the tables of this host of a multi-host layout (from plan --hosts)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--json", action="store_true", help="print JSON")
    _sim_flag(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser(
        "plan",
        help="the layout that serves a demand on the fewest devices",
        description="Read a demand file and propose layouts serving it with the fewest "
        "devices, then the fewest changes to existing partitions, never touching claimed "
        "ones (HiGHS). Prints, and with --out writes, a layout file 'accelpool apply' "
        "accepts. See docs/layouts.md.",
    )
    p.add_argument("demand", metavar="DEMAND", help="demand file (TOML, [[workload]] tables)")
    p.add_argument(
        "--hosts",
        metavar="FILE",
        help="plan for a multi-host fleet: a file of [[host]] name and sim",
    )
    p.add_argument("--out", metavar="FILE", help="write the layout file here")
    p.add_argument(
        "--time-limit",
        type=float,
        default=TIME_LIMIT_S,
        metavar="SECONDS",
        help=f"seconds the solver may take per stage (default {TIME_LIMIT_S:g})",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _sim_flag(p)
    p.set_defaults(func=cmd_plan)


def cmd_apply(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool import layout

    config = getattr(args, "config", None)
    host = getattr(args, "host", None)
    do = not args.dry_run
    inv = ctx.inventory()
    run = layout.apply if do else layout.plan
    plans = run(inv, args.file, layout.live_claims(), config=config, host=host)
    changed = any(dp.changes for dp in plans)
    if args.json:
        print(
            json.dumps(
                {
                    "applied": do and changed,
                    "changed": changed,
                    "devices": [dp.to_json() for dp in plans],
                },
                indent=2,
            )
        )
        return 0
    if not plans:
        print("No device matches the layout.")
    for dp in plans:
        if not dp.changes:
            print(f"{dp.ref}: no change ({len(dp.keep)} kept)")
            continue
        made = ", ".join(f"{n}@{s}" if s is not None else n for n, s in dp.create)
        mode = f"{dp.mig} MIG, " if dp.mig else ""
        print(f"{dp.ref}: {mode}keep {len(dp.keep)}, destroy {len(dp.destroy)}, create [{made}]")
    print(("Applied." if changed else "No change.") if do else "Plan only: nothing changed.")
    return 0


def cmd_plan(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool.layout import demand

    hosts_file = getattr(args, "hosts", None)
    limit = getattr(args, "time_limit", TIME_LIMIT_S)  # absent in the "layout plan" alias
    if limit <= 0:
        raise InvalidRequest("--time-limit must be more than 0 seconds")
    if hosts_file:
        if getattr(args, "sim", None):
            raise InvalidRequest(
                "give --sim or --hosts, not both: a hosts file names each host's fleet"
            )
        from accelpool.inventory import discover

        invs: list[tuple[str | None, Any]] = [
            (name, discover(sim=sim)) for name, sim in demand.load_hosts(hosts_file)
        ]
        try:
            prop = demand.propose_hosts(invs, args.demand, None, limit)
        finally:
            for _, inv in invs:
                inv.close()
    else:
        prop = demand.propose(ctx.inventory(), args.demand, None, limit)
    if args.out:
        try:
            Path(args.out).write_text(prop.to_toml())
        except OSError as e:
            raise InvalidRequest(f"cannot write {args.out}: {e.strerror}") from None
    if args.json:
        print(json.dumps(prop.to_json(), indent=2))
        return 0
    print(prop.to_toml(), end="")
    gap = prop.devices_used - prop.lower_bound
    print(
        f"# {'optimal' if prop.optimal else f'gap {gap:g} device(s) to the bound'}"
        + (f"; written to {args.out}" if args.out else "")
    )
    return 0
