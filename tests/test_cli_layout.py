"""``accelpool layout``: the terminal picture and the SVG, on MIG, vNPU, MIM and SMLU."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import accelpool
from accelpool import claims
from accelpool.testing import run_cli

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(tmp_path / "state"))
    return dict(os.environ)


def _svg_texts(path: Path) -> str:
    root = ET.parse(path).getroot()  # parses as XML, or raises
    assert root.tag == f"{SVG}svg"
    parts = [t.text or "" for t in root.iter(f"{SVG}text")]
    parts += [t.text or "" for t in root.iter(f"{SVG}title")]
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("preset", "device", "profiles"),
    [
        ("dgx-a100", "nvidia:0", ["3g.20gb", "1g.5gb"]),  # MIG
        ("atlas-800-910b", "ascend:0", ["vir05_1c_16g", "vir10_3c_32g"]),  # vNPU
        ("mlu370-x8", "cambricon:0", ["2m.8gb", "1m.4gb"]),  # MIM
        ("mlu370-x8", "cambricon:7", ["smlu-25-6gb", "smlu-10-2304mb"]),  # SMLU
    ],
)
def test_picture_and_svg_show_every_partition(
    env: dict[str, str], tmp_path: Path, preset: str, device: str, profiles: list[str]
) -> None:
    inv = accelpool.discover(sim=preset)
    dev = inv.device(device)
    parts = [dev.create_partition(p) for p in profiles]
    svg = tmp_path / "layout.svg"
    out = run_cli("--sim", preset, "layout", device, "--svg", str(svg), env=env)
    assert out.code == 0, out.err
    for p in parts:
        assert p.profile in out.out
    texts = _svg_texts(svg)
    for p in parts:
        assert p.id in texts and p.profile in texts
    assert "fits:" in out.out


def test_slots_free_and_where_profiles_fit(env: dict[str, str]) -> None:
    inv = accelpool.discover(sim="dgx-a100")
    dev = inv.device("nvidia:0")
    part = dev.create_partition("4g.20gb")
    assert part.placement is not None and part.placement.start == 0
    out = run_cli("--sim", "dgx-a100", "layout", "nvidia:0", env=env).out
    cells = next(line for line in out.splitlines() if "4g.20gb" in line)
    assert cells.count("free") == 4  # slots 4-7
    # A 3g.20gb fits only at 4 now, 1g.5gb at 4, 5 and 6 — as NVML's placements say.
    assert "3g.20gb x1 at 4" in out
    assert "1g.5gb x3 at 4,5,6" in out


@pytest.mark.parametrize("preset", ["dgx-a100", "mlu370-x8"])
def test_picture_fits_100_columns_and_narrow_cells_keep_the_ids_tail(
    env: dict[str, str], preset: str
) -> None:
    inv = accelpool.discover(sim=preset)
    dev = inv.devices()[0]
    small = min(dev.profiles(), key=lambda p: p.placements[0].size)
    part = dev.create_partition(small.name)  # one slot wide: its id does not fit the cell
    out = run_cli("--sim", preset, "layout", env=env).out
    assert max(len(line) for line in out.splitlines()) <= 100, out
    assert "…" + part.id[-9:] in out
    fits = [line for line in out.splitlines() if line.startswith("  fits: ")]
    assert len(fits) == len(inv.devices())  # wrapped lines continue under, not as new ones


def test_holder_is_drawn(env: dict[str, str], tmp_path: Path) -> None:
    inv = accelpool.discover(sim="atlas-800-910b")
    part = inv.device("ascend:1").create_partition("vir05_1c_16g")
    claims.claim(part, holder="ray:actor-7", owner="serve replica")
    svg = tmp_path / "a.svg"
    out = run_cli("--sim", "atlas-800-910b", "layout", "--svg", str(svg), env=env)
    assert "held by ray:actor-7" in out.out
    assert "ray:actor-7" in _svg_texts(svg)


def test_device_without_profiles_and_bad_svg_path(env: dict[str, str], tmp_path: Path) -> None:
    out = run_cli("--sim", "dgx-a100", "layout", "--svg", str(tmp_path / "no" / "x.svg"), env=env)
    assert out.code == 1 and "does not exist" in out.err
    assert len(out.err.strip().splitlines()) == 1
