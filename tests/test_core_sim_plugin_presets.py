"""A plugin ships a simulated fleet preset through the ``accelpool.presets`` group."""

from __future__ import annotations

from pathlib import Path

from accelpool.testing import PluginSite, run_cli

LUMEN = '''
LUMEN_BOX = """
name = "lumen-box"
description = "Lumen test box: 2x A100 with MIG"
[[devices]]
backend = "nvidia"
model = "A100-SXM4-40GB"
count = 2
[devices.options]
mig = true
"""


def broken():
    raise RuntimeError("preset data missing")
'''


def _site(tmp_path: Path) -> PluginSite:
    site = PluginSite(tmp_path / "site")
    site.add(
        "lumen-accelpool",
        {
            "accelpool.presets": {
                "lumen-box": "lumen_presets:LUMEN_BOX",
                "lumen-broken": "lumen_presets:broken",
            }
        },
        {"lumen_presets": LUMEN},
    )
    return site


def test_a_plugin_preset_is_listed_and_usable_with_sim(tmp_path: Path) -> None:
    env = _site(tmp_path).env(ACCELPOOL_STATE_DIR=str(tmp_path / "state"))
    listed = run_cli("sim", "presets", "--json", env=env)
    assert listed.code == 0, listed.err
    names = [p["name"] for p in listed.json()]
    assert "lumen-box" in names and "dgx-a100" in names
    assert "lumen-broken" not in names and "lumen-broken" in listed.err  # skipped, said
    box = next(p for p in listed.json() if p["name"] == "lumen-box")
    assert box["devices"] == [{"backend": "nvidia", "model": "A100-SXM4-40GB", "count": 2}]

    ls = run_cli("--sim", "lumen-box", "ls", "--json", env=env)
    assert ls.code == 0, ls.err
    assert [d["id"].split(":")[0] for d in ls.json()["devices"]] == ["nvidia", "nvidia"]


def test_a_plugin_preset_that_fails_to_load_is_one_clear_line(tmp_path: Path) -> None:
    env = _site(tmp_path).env(ACCELPOOL_STATE_DIR=str(tmp_path / "state"))
    bad = run_cli("--sim", "lumen-broken", "ls", env=env)
    assert bad.code != 0
    assert "lumen-broken" in bad.err and "Traceback" not in bad.err
