"""Plugin loading and isolation: a broken plugin never breaks accelpool or the others."""

from __future__ import annotations

from collections.abc import Callable

from accelpool.testing import CliResult, PluginSite

RAISES_AT_IMPORT = """
raise RuntimeError("vendor SDK exploded while importing")
"""

PROBE_RAISES = """
from accelpool.spi import Backend
class B(Backend):
    def probe(self):
        raise OSError("libvendor.so: cannot open shared object file")
    def devices(self):
        return []
"""

PROBE_HANGS = """
import time
from accelpool.spi import Backend
class B(Backend):
    def probe(self):
        time.sleep(60)
    def devices(self):
        return []
"""

LIBRARY_MISSING = """
from accelpool.errors import BackendUnavailable
from accelpool.spi import Backend
class B(Backend):
    def probe(self):
        raise BackendUnavailable("vendor library not found (libvendor.so)")
    def devices(self):
        return []
"""

NOT_A_BACKEND = """
class B:
    pass
"""


def _statuses(result: CliResult) -> dict[str, dict[str, object]]:
    assert result.code == 0, result.err
    return {s["name"]: s for s in result.json()}


def test_broken_plugins_are_reported_and_the_others_keep_working(
    plugin_site: PluginSite, cli: Callable[..., CliResult], toy_plugin: str
) -> None:
    plugin_site.backend("good", toy_plugin)
    plugin_site.backend("explodes", RAISES_AT_IMPORT)
    plugin_site.backend("badprobe", PROBE_RAISES)
    plugin_site.backend("nolib", LIBRARY_MISSING)
    plugin_site.backend("notabackend", NOT_A_BACKEND)
    statuses = _statuses(cli("backends", "--json"))

    assert statuses["good"]["available"] is True
    assert statuses["good"]["version"] == "0.1"
    assert statuses["explodes"]["available"] is False
    assert "failed to load" in str(statuses["explodes"]["reason"])
    assert "vendor SDK exploded" in str(statuses["explodes"]["reason"])
    assert statuses["badprobe"]["available"] is False
    assert "libvendor.so: cannot open shared object file" in str(statuses["badprobe"]["reason"])
    assert statuses["nolib"] == {
        "name": "nolib",
        "available": False,
        "reason": "vendor library not found (libvendor.so)",
        "version": "0.1",
    }
    assert "not an accelpool.spi.Backend subclass" in str(statuses["notabackend"]["reason"])

    ls = cli("ls", "--json")
    assert ls.code == 0, ls.err
    ids = [d["id"] for d in ls.json()["devices"] if d["backend"] == "good"]
    assert ids == ["good:toy-0", "good:toy-1"]


def test_a_hanging_probe_is_bounded(
    plugin_site: PluginSite, cli: Callable[..., CliResult], toy_plugin: str
) -> None:
    plugin_site.backend("good", toy_plugin)
    plugin_site.backend("hangs", PROBE_HANGS)
    result = cli("backends", "--json", env={"ACCELPOOL_PROBE_TIMEOUT": "1"}, timeout=30)
    statuses = _statuses(result)
    assert statuses["good"]["available"] is True
    assert statuses["hangs"]["available"] is False
    assert "did not answer within 1s" in str(statuses["hangs"]["reason"])


def test_accelpool_backends_env_restricts_loading(
    plugin_site: PluginSite, cli: Callable[..., CliResult], toy_plugin: str
) -> None:
    plugin_site.backend("good", toy_plugin)
    plugin_site.backend("explodes", RAISES_AT_IMPORT)
    statuses = _statuses(cli("backends", "--json", env={"ACCELPOOL_BACKENDS": "good,nosuch"}))
    assert set(statuses) == {"good", "nosuch"}
    assert statuses["nosuch"]["reason"] == "no such backend plugin is installed"


def test_import_accelpool_survives_broken_plugins(
    plugin_site: PluginSite, cli: Callable[..., CliResult]
) -> None:
    plugin_site.backend("explodes", RAISES_AT_IMPORT)
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import accelpool; inv = accelpool.discover(backends=['explodes']); "
            "print(inv.backends()[0].available)",
        ],
        capture_output=True,
        text=True,
        env=plugin_site.env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
