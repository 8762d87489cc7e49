"""``accelpool ls``: devices with their live readings, partitions and holders.

The table is built to fit 100 columns on the simulated presets (``--wide`` adds the
full ids); ``--json`` keeps the documented shape and adds ``telemetry``, ``holder``
and ``mode``; ``--watch`` redraws in place, like ``watch nvidia-smi``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from accelpool.cli.output import print_json, render_table
from accelpool.errors import AccelPoolError, DeviceLost

if TYPE_CHECKING:
    from accelpool.cli.app import CliContext
    from accelpool.inventory import Device, Inventory, Partition
    from accelpool.session import Claim
    from accelpool.types import Telemetry

WIDTH = 100
GIB = 1 << 30


def register(sub: Any) -> None:
    p = sub.add_parser("ls", help="list devices, their readings, partitions and holders")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--wide", action="store_true", help="add a column with the full ids")
    p.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="redraw every SECONDS (default 2) until interrupted",
    )
    p.add_argument(
        "--gc",
        action="store_true",
        help="first remove partitions that killed creators left half-made "
        "(as 'accelpool partition gc')",
    )
    p.set_defaults(func=cmd_ls)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid --watch interval {text!r}") from None
    if not math.isfinite(value) or not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(
            f"invalid --watch interval {text!r}: give seconds from 0.1 to 3600"
        )
    return value


def _partitions(d: Device) -> list[Partition] | None:
    """The device's partitions; None when it is lost (then it is shown as lost)."""
    if d.lost:
        return None
    try:
        return d.partitions()
    except DeviceLost:
        return None  # lost since discovery


def _telemetry(d: Device) -> Telemetry | None:
    try:
        return d.telemetry()
    except AccelPoolError:
        return None  # unsupported or failing: the row shows dashes


def _claims() -> dict[str, Claim]:
    """Live claims by target id; an unreadable claim store shows no holders."""
    from accelpool.session import ClaimStore

    try:
        return {c.target: c for c in ClaimStore().claims() if c.holder_alive()}
    except AccelPoolError:
        return {}


def _mode(d: Device) -> str:
    """How the device is split: MIG on/off, vGPU host, a Cambricon mode; ``*`` = pending."""
    a = d.attributes
    mig = a.get("nvidia.com/migMode")
    if a.get("nvidia.com/virtualizationMode") in ("host-vgpu", "host_vgpu"):
        return "vGPU"
    if mig is not None:
        pending = a.get("nvidia.com/migModePending", mig) != mig
        return ("MIG" if mig == "enabled" else "off") + ("*" if pending else "")
    for key in ("cambricon.com/mode",):
        if key in a:
            return str(a[key])
    return "-"


def _short(native: str) -> str:
    """An id short enough for the table: its head and its tail."""
    return native if len(native) <= 14 else f"{native[:7]}…{native[-6:]}"


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GIB:.1f}"


def _memory(t: Telemetry | None, total: int) -> str:
    used = t.memory_used_bytes if t else None
    return f"{_gib(used)}/{_gib(total)}G"


def _holder(c: Claim | None) -> str:
    if c is None:
        return ""
    name = c.holder or ""
    if name.startswith("vfio:"):
        done = (c.owner or "").startswith("passed")
        return "passed through (vfio-pci)" if done else "vfio pending (see vfio status)"
    if name.startswith("vm:"):
        return f"VM {name[3:]} (vfio-pci)"
    return c.describe()


def _model(d: Device) -> str:
    # The vendor is in the id; dropping it keeps the column narrow.
    for prefix in ("NVIDIA ", "Huawei ", "Cambricon "):
        if d.model.startswith(prefix):
            return d.model[len(prefix) :]
    return d.model


def _rows(inv: Inventory, wide: bool) -> tuple[list[str], list[list[str]], list[str]]:
    claims = _claims()
    headers = ["DEVICE", "MODEL / PROFILE", "MODE", "UTIL", "MEMORY", "TEMP", "POWER", "HOLDER"]
    if wide:
        headers.insert(1, "ID")
    rows: list[list[str]] = []
    notes: list[str] = []
    for d in inv.devices():
        ref = f"{d.backend}:{d.index}"
        parts = _partitions(d)
        if parts is None:
            row = [ref, f"{_model(d)} [LOST]", "-", "-", "-", "-", "-", "lost"]
            notes.append(f"device {ref} is lost: every operation on it fails")
        else:
            t = _telemetry(d)
            util = t.utilization_percent if t else None
            temp = t.temperature_c if t else None
            power = t.power_w if t else None
            row = [
                ref,
                _model(d),
                _mode(d),
                "-" if util is None else f"{util:.0f}%",
                _memory(t, d.memory_bytes),
                "-" if temp is None else f"{temp:.0f}C",
                "-" if power is None else f"{power:.0f}W",
                _holder(claims.get(d.id)),
            ]
        if wide:
            row.insert(1, d.id)
        rows.append(row)
        for p in parts or []:
            where = f" @{p.placement.start}" if p.placement else ""
            state = "" if p.complete else " incomplete"
            prow = [
                f" {_short(p.info.native_id)}",
                f" {p.profile}{where}{state}",
                p.kind,
                "",
                f"{_gib(p.memory_bytes)}G",
                "",
                "",
                _holder(claims.get(p.id)),
            ]
            if wide:
                prow.insert(1, p.id)
            rows.append(prow)
        if parts and any(not p.complete for p in parts):
            notes.append(
                f"device {ref} has incomplete partitions: a create was interrupted; "
                "'accelpool partition gc' removes those whose creator is gone"
            )
    fleet = inv.fleet
    for s in inv.backends():
        # Under --sim a backend the fleet does not include is no problem: say nothing.
        if not s.available and (fleet is None or fleet.for_backend(s.name)):
            notes.append(f"backend {s.name}: unavailable: {s.reason}")
    return headers, rows, notes


def _fit(headers: list[str], rows: list[list[str]], width: int) -> None:
    """Shorten the holder column (the last) so the table fits ``width`` columns."""
    others = sum(max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers) - 1))
    room = width - others - 3 * len(headers) - 1
    room = max(room, len(headers[-1]))
    for r in rows:
        if len(r[-1]) > room:
            r[-1] = r[-1][: room - 1] + "…"


def render(inv: Inventory, wide: bool = False) -> str:
    """The ``accelpool ls`` table and its notes, as text."""
    headers, rows, notes = _rows(inv, wide)
    if not rows:
        return "\n".join(["No devices found.", *notes])
    if not wide:
        _fit(headers, rows, WIDTH)
    return "\n".join([render_table(headers, rows), *notes])


def _json(inv: Inventory) -> dict[str, Any]:
    claims = _claims()
    docs = []
    for d in inv.devices():
        parts = _partitions(d)
        doc = d.to_json(with_partitions=False)
        doc["lost"] = parts is None
        t = None if parts is None else _telemetry(d)
        doc["telemetry"] = t.to_json() if t else None
        doc["mode"] = _mode(d)
        doc["holder"] = claims[d.id].to_json() if d.id in claims else None
        held = claims[d.id].holder or "" if d.id in claims else ""
        doc["passed_through"] = held.startswith(("vfio:", "vm:"))
        doc["partitions"] = []
        for p in parts or []:
            pj = p.to_json()
            pj["complete"] = p.complete
            pj["holder"] = claims[p.id].to_json() if p.id in claims else None
            doc["partitions"].append(pj)
        docs.append(doc)
    return {"backends": [s.to_json() for s in inv.backends()], "devices": docs}


def cmd_ls(args: argparse.Namespace, ctx: CliContext) -> int:
    inv = ctx.inventory()
    if args.gc:
        for line in inv.collect_garbage():
            print(f"accelpool: gc: {line}", file=sys.stderr)
    if args.json:
        if args.watch is not None:
            from accelpool.cli.app import UsageError

            raise UsageError("--watch redraws the table; it cannot be combined with --json")
        print_json(_json(inv))
        return 0
    if args.watch is None:
        print(render(inv, args.wide))
        return 0
    return watch(inv, args.watch, args.wide)


def watch(inv: Inventory, seconds: float, wide: bool = False) -> int:
    """Redraw the table every ``seconds`` until interrupted (Ctrl-C exits 0).

    On a terminal each frame homes the cursor and clears below it, so the table is
    redrawn in place. Anywhere else (a pipe, a log file) no escape codes are written:
    each frame is appended, its stamp line first and a blank line after it.
    """
    in_place = sys.stdout.isatty()
    try:
        while True:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            text = render(inv, wide)
            head = "\x1b[H\x1b[J" if in_place else ""
            tail = "" if in_place else "\n"
            sys.stdout.write(f"{head}{stamp}  every {seconds:g}s\n{text}\n{tail}")
            sys.stdout.flush()
            time.sleep(seconds)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `accelpool ls --watch | head`: the reader is gone
        import os

        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
