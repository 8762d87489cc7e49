"""``accelpool layout apply|plan FILE``: declarative layouts, idempotent and all-or-nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import accelpool
from accelpool import claims
from accelpool.testing import run_cli

BALANCED = {  # mig-parted's all-balanced, in the config's own order (small first)
    "dgx-a100": {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1},
    "dgx-a100-80gb": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
    "dgx-h100": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
    "hgx-h200": {"1g.18gb": 2, "2g.35gb": 1, "3g.71gb": 1},
}


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ACCELPOOL_STATE_DIR", str(tmp_path / "state"))
    return dict(os.environ)


def _layout(tmp_path: Path, select: str, parts: dict[str, int]) -> str:
    body = ", ".join(f'"{k}" = {v}' for k, v in parts.items())
    f = tmp_path / "layout.toml"
    f.write_text(f"[[device]]\nselect = {select}\npartitions = {{ {body} }}\n")
    return str(f)


def _shape(preset: str, ref: str) -> list[tuple[str, int | None]]:
    dev = accelpool.discover(sim=preset).device(ref)
    return sorted((p.profile, p.placement.start if p.placement else None)
                  for p in dev.partitions())


@pytest.mark.parametrize("preset", sorted(BALANCED))
def test_all_balanced_applies_in_file_order_then_no_change(
    env: dict[str, str], tmp_path: Path, preset: str
) -> None:
    f = _layout(tmp_path, "0", BALANCED[preset])
    out = run_cli("--sim", preset, "layout", "apply", f, "--json", env=env)
    assert out.code == 0, out.err
    assert json.loads(out.out)["changed"] is True
    got = sorted(p for p, _ in _shape(preset, "nvidia:0"))
    assert got == sorted(p for p, n in BALANCED[preset].items() for _ in range(n))
    again = run_cli("--sim", preset, "layout", "apply", f, "--json", env=env)
    assert json.loads(again.out)["changed"] is False


def test_dry_run_changes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    f = _layout(tmp_path, "0", BALANCED["dgx-a100"])
    out = run_cli("--sim", "dgx-a100", "layout", "apply", f, "--dry-run", env=env)
    assert out.code == 0 and "Plan only" in out.out
    assert _shape("dgx-a100", "nvidia:0") == []


def test_claimed_partition_blocks_and_nothing_changes(
    env: dict[str, str], tmp_path: Path
) -> None:
    dev = accelpool.discover(sim="dgx-a100").device("nvidia:0")
    held = dev.create_partition("7g.40gb")
    claims.claim(held, holder="ray:actor-7", owner="serve")
    f = _layout(tmp_path, "0", BALANCED["dgx-a100"])
    out = run_cli("--sim", "dgx-a100", "layout", "apply", f, env=env)
    assert out.code != 0
    assert held.id in out.err and "claimed" in out.err and "Traceback" not in out.err
    assert _shape("dgx-a100", "nvidia:0") == [("7g.40gb", 0)]


@pytest.mark.parametrize(
    ("preset", "ref", "before", "layout"),
    [
        ("dgx-a100", "nvidia:0", "1g.5gb", BALANCED["dgx-a100"] | {"1g.5gb": 0}),
        ("atlas-800-910b", "ascend:0", "vir05_1c_16g", {"vir10_3c_32g": 1}),
        ("mlu370-x8", "cambricon:0", "1m.4gb", {"2m.8gb": 2}),
    ],
)
def test_fault_midway_rolls_back(
    env: dict[str, str], tmp_path: Path, preset: str, ref: str, before: str,
    layout: dict[str, int],
) -> None:
    dev = accelpool.discover(sim=preset).device(ref)
    dev.create_partition(before)
    shape = _shape(preset, ref)
    dev.backend_instance.inject_fault("create-fails-midway", dev.info)
    f = _layout(tmp_path, str(dev.index), layout)
    out = run_cli("--sim", preset, "layout", "apply", f, env=env)
    assert out.code != 0 and "rolled back" in out.err, out.err
    assert _shape(preset, ref) == shape


@pytest.mark.parametrize(
    ("preset", "ref", "layout"),
    [
        ("atlas-800-910b", "ascend:0", {"vir05_1c_16g": 2, "vir10_3c_32g": 1}),
        ("mlu370-x8", "cambricon:0", {"1m.4gb": 2, "2m.8gb": 1}),
    ],
)
def test_ascend_and_cambricon_layouts(
    env: dict[str, str], tmp_path: Path, preset: str, ref: str, layout: dict[str, int]
) -> None:
    f = _layout(tmp_path, ref.split(":")[1], layout)
    assert run_cli("--sim", preset, "layout", "apply", f, env=env).code == 0
    assert sorted(p for p, _ in _shape(preset, ref)) == sorted(
        p for p, n in layout.items() for _ in range(n))
    again = run_cli("--sim", preset, "layout", "apply", f, env=env)
    assert "No change." in again.out


def test_bad_layout_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[[device]]\nselect = 0\n")
    out = run_cli("--sim", "dgx-a100", "layout", "apply", str(f), env=env)
    assert out.code != 0 and "partitions" in out.err and "Traceback" not in out.err


def test_plan_is_optimal_and_apply_realises_it(env: dict[str, str], tmp_path: Path) -> None:
    demand = tmp_path / "demand.toml"
    demand.write_text('[[workload]]\ncount = 5\nprofile = "3g.20gb"\n\n'
                      "[[workload]]\ncount = 4\nmemory_gib = 4\ncompute = 0.1\n")
    out_file = tmp_path / "planned.toml"
    out = run_cli("--sim", "dgx-a100", "layout", "plan", str(demand), "--out", str(out_file),
                  "--json", env=env)
    assert out.code == 0, out.err
    got = json.loads(out.out)
    assert got["devices_used"] == 3 and got["gap"] == 0  # 5 x 3g.20gb need 3 A100s
    assert run_cli("--sim", "dgx-a100", "layout", "apply", str(out_file), env=env).code == 0
    inv = accelpool.discover(sim="dgx-a100")
    held = [p.profile for d in inv.devices() for p in d.partitions()]
    assert held.count("3g.20gb") == 5 and held.count("1g.5gb") == 4


@pytest.mark.parametrize(
    ("preset", "ref", "held_profile", "layout"),
    [
        ("atlas-800-910b", "ascend:0", "vir05_1c_16g", {"vir10_3c_32g": 1}),
        ("mlu370-x8", "cambricon:0", "1m.4gb", {"2m.8gb": 2}),
    ],
)
def test_claim_blocks_ascend_and_cambricon_layouts(
    env: dict[str, str], tmp_path: Path, preset: str, ref: str, held_profile: str,
    layout: dict[str, int],
) -> None:
    dev = accelpool.discover(sim=preset).device(ref)
    held = dev.create_partition(held_profile)
    claims.claim(held, holder="k8s:pod-7", owner="infer")
    shape = _shape(preset, ref)
    f = _layout(tmp_path, str(dev.index), layout)
    out = run_cli("--sim", preset, "apply", f, env=env)
    assert out.code == 1 and held.id in out.err and "k8s:pod-7" in out.err, out.err
    assert _shape(preset, ref) == shape
