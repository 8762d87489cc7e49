"""mig-parted's default config through ``accelpool apply --config``, and MIG mode in apply."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

import accelpool
from accelpool import claims, layout
from accelpool.inventory import resolve_fleet
from accelpool.testing import run_cli

CONFIG = str(Path(__file__).parent / "data" / "mig-parted-default.yaml")
COMMON_80 = [
    "all-disabled",
    "all-enabled",
    "all-1g.10gb",
    "all-1g.10gb.me",
    "all-1g.20gb",
    "all-2g.20gb",
    "all-3g.40gb",
    "all-4g.40gb",
    "all-7g.80gb",
    "all-balanced",
]
#: The per-GPU layouts of mig-parted's default config, by the comments that head them.
PER_GPU = {
    "dgx-a100": [
        "all-disabled",
        "all-enabled",
        "all-1g.5gb",
        "all-1g.5gb.me",
        "all-2g.10gb",
        "all-3g.20gb",
        "all-4g.20gb",
        "all-7g.40gb",
        "all-1g.10gb",
        "all-balanced",
    ],
    "dgx-a100-80gb": COMMON_80,
    "dgx-h100": COMMON_80,
    "hgx-h200": [
        "all-disabled",
        "all-enabled",
        "all-balanced",
        "all-1g.18gb",
        "all-1g.18gb.me",
        "all-1g.35gb",
        "all-2g.35gb",
        "all-3g.71gb",
        "all-4g.71gb",
        "all-7g.141gb",
    ],
}


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(tmp_path / "state"))
    return dict(os.environ)


def _held(sim: str) -> list[tuple[Counter[str], str]]:
    """Per device: the profiles held, and the MIG mode."""
    inv = accelpool.discover(sim=sim)
    try:
        return [
            (Counter(p.profile for p in d.partitions()), str(d.attributes["nvidia.com/migMode"]))
            for d in inv.devices()
        ]
    finally:
        inv.close()


def _wanted(sim: str, name: str) -> tuple[Counter[str], bool]:
    """What config ``name`` asks of device 0 of ``sim``: partitions and MIG mode."""
    inv = accelpool.discover(sim=sim)
    try:
        d = inv.device("nvidia:0")
        entries = [e for e in layout.load(CONFIG, name) if e.matches(d)]
    finally:
        inv.close()
    assert entries, f"{name} selects no {sim} GPU"
    return Counter(entries[-1].partitions or {}), bool(entries[-1].mig)


def test_fixture_lists_the_configs_in_the_config_order() -> None:
    names = layout.config_names(CONFIG)
    for wanted in PER_GPU.values():
        assert [n for n in names if n in wanted] == wanted


@pytest.mark.parametrize("sim", sorted(PER_GPU))
def test_every_default_layout_applies_on_a_fresh_gpu_then_no_change(
    env: dict[str, str], sim: str
) -> None:
    fleet = resolve_fleet(sim)
    assert fleet is not None
    for name in PER_GPU[sim]:
        fleet.reset()
        parts, mig = _wanted(sim, name)
        inv = accelpool.discover(sim=sim)
        try:
            first = layout.apply(inv, CONFIG, {}, config=name)
        finally:
            inv.close()
        assert len(first) == 8, name  # devices: all
        assert any(dp.changes for dp in first) == (bool(parts) or not mig), name
        for held, mode in _held(sim):
            assert held == parts, name
            assert mode == ("enabled" if mig else "disabled"), name
        inv = accelpool.discover(sim=sim)
        try:
            again = layout.apply(inv, CONFIG, {}, config=name)
        finally:
            inv.close()
        assert not any(dp.changes for dp in again), name


def test_cli_config_dry_run_then_apply_then_no_change(env: dict[str, str]) -> None:
    args = ("--sim", "dgx-a100", "apply", CONFIG, "--config", "all-balanced")
    dry = run_cli(*args, "--dry-run", "--json", env=env)
    assert dry.code == 0, dry.err
    doc = json.loads(dry.out)
    assert doc["changed"] is True and doc["applied"] is False and len(doc["devices"]) == 8
    assert all(c == Counter() for c, _ in _held("dgx-a100"))
    assert run_cli(*args, env=env).code == 0
    assert "No change." in run_cli(*args, env=env).out
    bad = run_cli("--sim", "dgx-a100", "apply", CONFIG, "--config", "all-nope", env=env)
    assert bad.code == 1 and "all-nope" in bad.err and "Traceback" not in bad.err


def _mig_off_fleet(tmp_path: Path, count: int = 2) -> str:
    f = tmp_path / "off.toml"
    f.write_text(
        f'name = "mig-off"\n[[devices]]\nbackend = "nvidia"\n'
        f'model = "A100-SXM4-40GB"\ncount = {count}\n[devices.options]\nmig = false\n'
    )
    return str(f)


def test_apply_enables_mig_where_the_layout_needs_it(env: dict[str, str], tmp_path: Path) -> None:
    sim = _mig_off_fleet(tmp_path)
    out = run_cli("--sim", sim, "apply", CONFIG, "--config", "all-3g.20gb", env=env)
    assert out.code == 0, out.err
    assert "enable MIG" in out.out
    assert _held(sim) == [(Counter({"3g.20gb": 2}), "enabled")] * 2
    again = run_cli("--sim", sim, "apply", CONFIG, "--config", "all-3g.20gb", env=env)
    assert "No change." in again.out
    off = run_cli("--sim", sim, "apply", CONFIG, "--config", "all-disabled", env=env)
    assert off.code == 0, off.err
    assert _held(sim) == [(Counter(), "disabled")] * 2


def test_failure_midway_undoes_the_mode_change_too(env: dict[str, str], tmp_path: Path) -> None:
    sim = _mig_off_fleet(tmp_path)
    inv = accelpool.discover(sim=sim)
    dev = inv.device("nvidia:1")  # device 0 is changed first, then device 1 fails
    dev.backend_instance.inject_fault("create-fails-midway", dev.info)
    inv.close()
    out = run_cli("--sim", sim, "apply", CONFIG, "--config", "all-balanced", env=env)
    assert out.code == 1 and "rolled back" in out.err, out.err
    assert _held(sim) == [(Counter(), "disabled")] * 2


def test_claim_blocks_disabling_and_nothing_changes(env: dict[str, str]) -> None:
    inv = accelpool.discover(sim="dgx-a100")
    held = inv.device("nvidia:3").create_partition("2g.10gb")
    claims.claim(held, holder="k8s:pod-42", owner="inference")
    inv.close()
    out = run_cli("--sim", "dgx-a100", "apply", CONFIG, "--config", "all-disabled", env=env)
    assert out.code == 1 and held.id in out.err and "k8s:pod-42" in out.err
    assert [c for c, _ in _held("dgx-a100")][3] == Counter({"2g.10gb": 1})
    assert all(m == "enabled" for _, m in _held("dgx-a100"))
