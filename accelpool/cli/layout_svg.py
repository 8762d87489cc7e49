"""The ``accelpool layout`` picture as an SVG document, for docs and dashboards."""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from accelpool.cli.layout_view import GIB, Piece, View
from accelpool.errors import InvalidRequest

SLOT_W, ROW_H, PAD = 90, 46, 12
BAR_W = 720
FREE, HELD, USED = "#eeeeee", "#f4a261", "#8ecae6"


def _text(parent: ET.Element, x: float, y: float, text: str, size: int = 11) -> None:
    t = ET.SubElement(parent, "text", x=f"{x:.0f}", y=f"{y:.0f}", attrib={"font-size": str(size)})
    t.set("font-family", "monospace")
    t.text = text


def _rect(
    parent: ET.Element, x: float, y: float, w: float, h: float, fill: str, title: str
) -> None:
    r = ET.SubElement(
        parent,
        "rect",
        x=f"{x:.0f}",
        y=f"{y:.0f}",
        width=f"{w:.0f}",
        height=f"{h:.0f}",
        fill=fill,
        stroke="#333333",
    )
    ET.SubElement(r, "title").text = title


def _piece_title(p: Piece) -> str:
    held = f", held by {p.holder}" if p.holder else ""
    return f"{p.id} {p.profile}{held}"


def _device(svg: ET.Element, v: View, y: float) -> float:
    """Draw one device from ``y``; returns the next free y."""
    g = ET.SubElement(svg, "g", id=v.ref.replace(":", "-"))
    _text(g, PAD, y + 14, f"{v.ref}  {v.model}", 13)
    y += 24
    if v.slots:
        slot = 0
        while slot < v.slots:
            p = v.owner(slot)
            span = p.size if p else 1
            x = PAD + slot * SLOT_W
            if p is None:
                _rect(g, x, y, SLOT_W, ROW_H, FREE, f"slot {slot} free")
                _text(g, x + 4, y + 16, "free")
            else:
                _rect(g, x, y, span * SLOT_W, ROW_H, HELD if p.holder else USED, _piece_title(p))
                _text(g, x + 4, y + 16, p.profile)
                _text(g, x + 4, y + 30, p.short, 9)
                if p.holder:
                    _text(g, x + 4, y + 42, p.holder[:18], 9)
            slot += span
        y += ROW_H + 6
    else:
        for label, total, values in (
            ("compute", v.compute_units, [p.compute_units for p in v.pieces]),
            ("memory", v.memory_bytes, [p.memory_bytes for p in v.pieces]),
        ):
            if label == "compute" and not v.compute_shared:
                _text(g, PAD, y + 14, "compute time-sliced: every partition runs on all of it")
                y += 22
                continue
            _text(g, PAD, y + 14, label)
            x0 = PAD + 70
            _rect(g, x0, y, BAR_W, 20, FREE, f"{label}: {sum(values)} of {total} in use")
            bx = float(x0)
            for p, value in zip(v.pieces, values, strict=True):
                bw = BAR_W * value / max(total, 1)
                _rect(g, bx, y, bw, 20, HELD if p.holder else USED, _piece_title(p))
                if bw > 60:
                    _text(g, bx + 3, y + 14, p.profile, 9)
                bx += bw
            y += 26
        for p in v.pieces:
            _text(g, PAD + 70, y + 12, f"{p.short} {p.profile} {p.memory_bytes / GIB:.1f} GiB", 9)
            y += 14
    fits = "; ".join(f"{n} x{c}" for n, c, _ in v.fits) or "nothing more"
    _text(g, PAD, y + 14, f"fits: {fits}", 10)
    return y + 34


def render_svg(views: list[View]) -> str:
    """The SVG document of the given device views."""
    width = PAD * 2 + max([BAR_W + 70] + [v.slots * SLOT_W for v in views])
    svg = ET.Element("svg", xmlns="http://www.w3.org/2000/svg", version="1.1")
    y = float(PAD)
    for v in views:
        y = _device(svg, v, y)
    svg.set("width", str(width))
    svg.set("height", f"{y + PAD:.0f}")
    return ET.tostring(svg, encoding="unicode", xml_declaration=False)


def write_svg(views: list[View], path: str) -> None:
    """Write the SVG to ``path`` atomically (a reader never sees half a picture)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidRequest(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".layout-", suffix=".svg", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write('<?xml version="1.0" encoding="UTF-8"?>\n' + render_svg(views) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as e:
        raise InvalidRequest(f"cannot write {path}: {e.strerror or e}") from None
