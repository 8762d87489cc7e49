"""Presence checks (``accelpool.presence``): absence is told before a backend is imported."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from accelpool import registry
from accelpool.errors import BackendUnavailable
from accelpool.spi import BackendContext
from accelpool.testing import CliResult, PluginSite

# A backend module that must not be imported when its presence check says "absent".
EXPLODES = 'raise RuntimeError("the backend module was imported")\n'

ABSENT = """
from accelpool.errors import BackendUnavailable
def presence(context):
    raise BackendUnavailable(f"libacme.so not found for {context.name}: install the Acme driver")
"""

PRESENT = """
def presence(context):
    return None
"""

BROKEN = """
def presence(context):
    raise OSError("the check itself is broken")
"""


def _plugin(site: PluginSite, name: str, backend: str, check: str | None) -> None:
    eps = {"accelpool.backends": {name: f"acme_{name}_backend:B"}}
    modules = {f"acme_{name}_backend": backend}
    if check is not None:
        eps["accelpool.presence"] = {name: f"acme_{name}_presence:presence"}
        modules[f"acme_{name}_presence"] = check
    site.add(f"acme-{name}", eps, modules)


def _statuses(result: CliResult) -> dict[str, dict[str, object]]:
    assert result.code == 0, result.err
    return {s["name"]: s for s in result.json()}


def test_an_absent_library_is_reported_without_importing_the_backend(
    plugin_site: PluginSite, cli: Callable[..., CliResult]
) -> None:
    _plugin(plugin_site, "absent", EXPLODES, ABSENT)
    status = _statuses(cli("backends", "--json"))["absent"]
    assert status == {
        "name": "absent",
        "available": False,
        "reason": "libacme.so not found for absent: install the Acme driver",
        "version": "0.1",
    }


def test_a_check_that_passes_or_breaks_leaves_the_decision_to_the_probe(
    plugin_site: PluginSite, cli: Callable[..., CliResult], toy_plugin: str
) -> None:
    _plugin(plugin_site, "present", toy_plugin, PRESENT)
    _plugin(plugin_site, "brokencheck", toy_plugin, BROKEN)
    _plugin(plugin_site, "nocheck", toy_plugin, None)
    statuses = _statuses(cli("backends", "--json"))
    for name in ("present", "brokencheck", "nocheck"):
        assert statuses[name]["available"] is True, statuses[name]


def test_another_distribution_cannot_mark_a_backend_unavailable(
    plugin_site: PluginSite, cli: Callable[..., CliResult], toy_plugin: str
) -> None:
    _plugin(plugin_site, "victim", toy_plugin, None)
    plugin_site.add(
        "saboteur",
        {"accelpool.presence": {"victim": "saboteur_check:presence"}},
        {"saboteur_check": ABSENT},
    )
    assert _statuses(cli("backends", "--json"))["victim"]["available"] is True


def _with_checks() -> list[str]:
    return sorted(registry._presence_checks(registry.entry_points()))


@pytest.mark.parametrize("name", _with_checks())
def test_an_installed_presence_check_says_what_the_probe_says(name: str) -> None:
    """Where the check reports absence, the full probe reports the very same reason;
    where the probe works, the check does not claim absence."""
    eps = registry.entry_points()
    check = registry._presence_checks(eps)[name]
    said: str | None = None
    try:
        check.load()(BackendContext(name=name))
    except BackendUnavailable as e:
        said = str(e)
    backend = next(ep for ep in eps if ep.name == name).load()(BackendContext(name=name))
    try:
        backend.probe()
    except BackendUnavailable as e:
        if said is not None:
            assert said == str(e)
    else:
        assert said is None, f"{name}: the presence check claims absence of a working backend"
    finally:
        backend.close()


def test_discovery_without_the_vendor_libraries_imports_no_absent_backend() -> None:
    code = (
        "import sys, accelpool\n"
        "with accelpool.discover() as inv:\n"
        "    absent = [s.name for s in inv.backends() if not s.available]\n"
        "mods = {m.split('.')[0] + '.' + m.split('.')[1] for m in sys.modules if '.' in m}\n"
        "print(' '.join(n for n in absent if f'accelpool_{n}.backend' in mods))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert out == []
