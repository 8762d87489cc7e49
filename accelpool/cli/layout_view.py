"""``accelpool layout``: a picture of how each partitionable device is cut.

Devices whose profiles have placements (MIG memory slices, Cambricon MIM clusters)
are drawn slot by slot: which partition holds which slots, which are free, and
which profiles still fit where. Devices without placements (vNPU, SMLU, vGPU) are
drawn as the shares of compute and memory their partitions take.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from accelpool.errors import AccelPoolError, InvalidRequest

if TYPE_CHECKING:
    from accelpool.cli.app import CliContext
    from accelpool.inventory import Device
    from accelpool.session import Claim

GIB = 1 << 30
WIDTH = 100  # the terminal picture fits this many columns


@dataclass(frozen=True)
class Piece:
    """One live partition as the picture shows it."""

    id: str
    short: str
    profile: str
    start: int | None
    size: int
    memory_bytes: int
    compute_units: int
    holder: str


@dataclass
class View:
    """What is drawn for one device."""

    ref: str
    id: str
    model: str
    memory_bytes: int
    compute_units: int
    slots: int  # 0: a share-based device
    pieces: list[Piece] = field(default_factory=list)
    fits: list[tuple[str, int, list[int]]] = field(default_factory=list)  # profile, n, starts
    compute_shared: bool = True  # False where every partition time-slices all of it (vGPU)

    @property
    def used_compute(self) -> int:
        return sum(p.compute_units for p in self.pieces)

    @property
    def used_memory(self) -> int:
        return sum(p.memory_bytes for p in self.pieces)

    def owner(self, slot: int) -> Piece | None:
        """The partition that holds ``slot``, if any."""
        for p in self.pieces:
            if p.start is not None and p.start <= slot < p.start + p.size:
                return p
        return None


def _short(native: str) -> str:
    return native if len(native) <= 14 else f"{native[:7]}…{native[-6:]}"


def build_view(d: Device, claims: dict[str, Claim]) -> View | None:
    """The picture's model of ``d``; None when it offers no partitions."""
    profiles = d.profiles()
    if not profiles:
        return None
    slots = max((pl.start + pl.size for p in profiles for pl in p.placements), default=0)
    view = View(f"{d.backend}:{d.index}", d.id, d.model, d.memory_bytes, d.compute_units, slots)
    for p in d.partitions():
        c = claims.get(p.id)
        view.pieces.append(
            Piece(
                p.id,
                _short(p.info.native_id),
                p.profile,
                p.placement.start if p.placement else None,
                p.placement.size if p.placement else 0,
                p.memory_bytes,
                p.compute_units,
                c.describe() if c else "",
            )
        )
    view.compute_shared = all(p.compute_units * p.max_count <= d.compute_units for p in profiles)
    taken = {
        s for pc in view.pieces if pc.start is not None for s in range(pc.start, pc.start + pc.size)
    }
    for prof in profiles:
        n = prof.available if prof.available is not None else 0
        if n <= 0:
            continue
        starts = [
            pl.start
            for pl in prof.placements
            if not taken.intersection(range(pl.start, pl.start + pl.size))
        ]
        view.fits.append((prof.name, n, starts))
    return view


def _cells(view: View, width: int) -> list[str]:
    """Three text lines of slot cells: profile, partition id, holder (or 'free')."""
    lines = ["", "", ""]
    slot = 0
    while slot < view.slots:
        piece = view.owner(slot)
        span = piece.size if piece else 1
        w = span * (width + 1) - 1
        texts = [piece.profile, piece.short, piece.holder] if piece else ["free", "", ""]
        for i, t in enumerate(texts):
            if len(t) > w:
                # An id keeps its tail (where ids differ); other text keeps its head.
                t = "…" + piece.id[-(w - 1) :] if piece and i == 1 else t[: w - 1] + "…"
            lines[i] += "|" + t.ljust(w)
        slot += span
    return [line + "|" for line in lines]


def _bar(used: int, total: int, width: int = 30) -> str:
    filled = 0 if total <= 0 else min(width, round(width * used / total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def render_text(view: View, cell: int = 10) -> str:
    """The terminal picture of one device."""
    out = [
        f"{view.ref}  {view.model}  {view.compute_units} compute units, "
        f"{view.memory_bytes / GIB:.1f} GiB"
    ]
    if view.slots:
        out.append("  slot " + "".join(f" {i:<{cell}}" for i in range(view.slots)).rstrip())
        out += ["       " + line for line in _cells(view, cell)]
    else:
        if view.compute_shared:
            pct = 100 * view.used_compute / max(view.compute_units, 1)
            out.append(
                f"  compute {_bar(view.used_compute, view.compute_units)} "
                f"{view.used_compute}/{view.compute_units} ({pct:.0f}%)"
            )
        else:
            out.append("  compute time-sliced: every partition runs on the whole device")
        pct = 100 * view.used_memory / max(view.memory_bytes, 1)
        out.append(
            f"  memory  {_bar(view.used_memory, view.memory_bytes)} "
            f"{view.used_memory / GIB:.1f}/{view.memory_bytes / GIB:.1f} GiB ({pct:.0f}%)"
        )
        for p in view.pieces:
            holder = f"  held by {p.holder}" if p.holder else ""
            out.append(
                f"    {p.short}  {p.profile}  {p.compute_units} cu, "
                f"{p.memory_bytes / GIB:.1f} GiB{holder}"
            )
    if view.fits:
        fits = []
        for name, n, starts in view.fits:
            where = f" at {','.join(map(str, starts))}" if starts else ""
            fits.append(f"{name} x{n}{where}")
        out += _wrap("  fits: ", fits)
    else:
        out.append("  fits: nothing more")
    return "\n".join(out)


def _wrap(head: str, items: list[str], width: int = WIDTH) -> list[str]:
    """``head`` and the ``;``-separated items, in lines of at most ``width`` columns."""
    lines, line = [], head
    for i, item in enumerate(items):
        text = item + (";" if i < len(items) - 1 else "")
        if line != head and len(line) + 1 + len(text) > width:
            lines.append(line)
            line = " " * len(head) + text
        else:
            line += ("" if line == head else " ") + text
    return [*lines, line]


def register(sub: Any) -> None:
    p = sub.add_parser("layout", help="draw how each partitionable device is cut")
    p.add_argument("device", nargs="?", metavar="DEVICE", help="one device (default: all)")
    p.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="with 'apply' or 'plan' (aliases of 'accelpool apply|plan'): the file",
    )
    p.add_argument("--svg", metavar="FILE", help="also write the picture as an SVG file")
    p.add_argument("--dry-run", action="store_true", help="apply: print the plan only")
    p.add_argument("--json", action="store_true", help="apply/plan: print JSON")
    p.add_argument("--out", metavar="FILE", help="plan: write the layout file here")
    p.set_defaults(func=cmd_layout)


def cmd_layout(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool.cli.ls_command import _claims

    if args.device in ("apply", "plan"):  # the old spelling of 'accelpool apply|plan'
        from accelpool.cli import layout_command

        if not args.file:
            raise InvalidRequest(f"layout {args.device} needs a FILE (see docs/layouts.md)")
        if args.device == "plan":
            args.demand = args.file
            return layout_command.cmd_plan(args, ctx)
        return layout_command.cmd_apply(args, ctx)
    inv = ctx.inventory()
    devices = [inv.device(args.device)] if args.device else inv.devices()
    claims = _claims()
    views = []
    for d in devices:
        if d.lost:
            print(f"{d.backend}:{d.index} is lost: no layout to draw")
            continue
        try:
            v = build_view(d, claims)
        except AccelPoolError as e:
            if args.device:
                raise
            print(f"{d.backend}:{d.index}: {e}")
            continue
        if v is not None:
            views.append(v)
    if args.device and not views:
        raise InvalidRequest(f"{args.device} offers no partition profiles: nothing to draw")
    if not views:
        print("No partitionable devices found.")
    print("\n\n".join(render_text(v) for v in views))
    if args.svg:
        from accelpool.cli.layout_svg import write_svg

        write_svg(views, args.svg)
        print(f"Wrote {args.svg}")
    return 0
