"""What ``accelpool`` does at start-up: only the parsers and plugins a command needs."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata

import pytest

from accelpool import entrypoints
from accelpool.cli import app, commands
from accelpool.testing import CliResult, PluginSite

HANGS = """
import time
from accelpool.spi import Backend
class B(Backend):
    def probe(self):
        time.sleep(60)
    def devices(self):
        return []
"""


def _names(only: str | None = None) -> list[str]:
    sub = argparse.ArgumentParser().add_subparsers()
    commands.register(sub, only=only)
    return list(sub.choices)


def test_the_core_table_names_what_each_module_registers() -> None:
    assert _names() == [n for names, _, _ in commands.CORE for n in names]
    for names, _, _ in commands.CORE:
        for name in names:
            assert _names(name) == list(names)


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["ls", "--json"], "ls"),
        (["--sim", "dgx-a100", "ls"], "ls"),
        (["--si", "dgx-a100", "profiles", "x"], "profiles"),
        (["--sim=dgx-a100", "k8s", "slices"], "k8s"),
        (["--", "ls"], "ls"),
        (["--help"], None),
        (["--version"], None),
        ([], None),
    ],
)
def test_the_command_word_is_read_past_the_global_options(
    argv: list[str], word: str | None
) -> None:
    assert app._command_word(argv) == word


def _modules_after(*argv: str) -> set[str]:
    code = (
        "import sys, io, contextlib\n"
        "from accelpool.cli.app import main\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        f"    main({list(argv)!r})\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return set(out.split())


def test_a_core_command_loads_no_cli_plugin_and_no_other_command() -> None:
    mods = _modules_after("--sim", "dgx-a100", "profiles", "nvidia:0")
    plugin_clis = {ep.value.partition(":")[0] for ep in entrypoints.group(app.CLI_GROUP)}
    assert plugin_clis and not (plugin_clis & mods)
    assert (
        not {"yaml", "stevedore", "accelpool.cli.run_command", "accelpool.session._session"} & mods
    )


def test_a_plugin_command_loads_only_its_plugin() -> None:
    mods = _modules_after("nvidia", "--help")
    assert "accelpool_nvidia.cli" in mods
    assert "accelpool_kubernetes.cli" not in mods and "accelpool_ray.cli" not in mods


def test_the_entry_point_scan_agrees_with_importlib_metadata() -> None:
    for group in (app.CLI_GROUP, "accelpool.backends"):
        ours = [(ep.name, ep.value, entrypoints.version(ep)) for ep in entrypoints.group(group)]
        theirs = [(ep.name, ep.value, ep.dist.version) for ep in metadata.entry_points(group=group)]  # type: ignore[union-attr]
        assert ours == theirs and ours


def test_plugins_after_a_hanging_one_are_still_probed(
    plugin_site: PluginSite, cli: Callable[..., CliResult], toy_plugin: str
) -> None:
    plugin_site.backend("ahang", HANGS)  # probed first: names are probed in order
    plugin_site.backend("good", toy_plugin)
    plugin_site.backend("zhang", HANGS)
    result = cli(
        "backends",
        "--json",
        env={"ACCELPOOL_PROBE_TIMEOUT": "1", "ACCELPOOL_BACKENDS": "ahang,good,zhang"},
        timeout=60,
    )
    assert result.code == 0, result.err
    statuses = {s["name"]: s for s in result.json()}
    assert statuses["good"]["available"] is True
    for name in ("ahang", "zhang"):
        assert statuses[name]["available"] is False
        assert "did not answer within 1s" in str(statuses[name]["reason"])
