"""pytest plugin of the accelpool conformance suite (auto-loaded through ``pytest11``).

It is inert unless ``--accelpool-backend NAME`` is given or a run was started through
:func:`accelpool_conformance.run`: it then only adds its command-line options, and
importing it loads nothing but pytest. Run the suite as a plain pytest session with::

    pytest --pyargs accelpool_conformance.suite --accelpool-backend NAME [--accelpool-sim FLEET]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from accelpool_conformance.context import SuiteContext

#: Where the run's context lives (put there by run(), or built from the options).
CONTEXT_KEY: pytest.StashKey[SuiteContext] = pytest.StashKey()
SUITE_PACKAGE = "accelpool_conformance.suite"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("accelpool", "accelpool conformance suite")
    group.addoption(
        "--accelpool-backend",
        default=None,
        metavar="NAME",
        help="run the accelpool conformance suite against backend NAME",
    )
    group.addoption(
        "--accelpool-sim",
        default=None,
        metavar="FLEET",
        help="conformance: run against a simulated fleet (preset or fleet file)",
    )
    group.addoption(
        "--accelpool-profile",
        default="full",
        choices=("core", "partition", "session", "full"),
        help="conformance: which areas to run (default: full)",
    )
    group.addoption(
        "--accelpool-certify",
        action="store_true",
        default=False,
        help="conformance: fail on any skip or xfail of a supported capability",
    )
    group.addoption(
        "--accelpool-expectations",
        default=None,
        metavar="FILE",
        help="conformance: the vendor's expectations file (xfail ids, tolerances)",
    )
    group.addoption(
        "--accelpool-report",
        default=None,
        metavar="FILE",
        help="conformance: write the JSON report here, the Markdown beside it (suffix .md)",
    )
    group.addoption(
        "--accelpool-state-dir",
        default=None,
        metavar="DIR",
        help="conformance: simulated state directory (default: a fresh temporary one)",
    )


@pytest.hookimpl(specname="pytest_configure", tryfirst=True)
def pytest_configure_xdist_off(config: pytest.Config) -> None:
    """A suite run stays in one process: the checks share one backend, one fleet and
    one report, so ``-n N`` (or an ``addopts`` one) is switched off, not split."""
    if not config.getoption("accelpool_backend", None):
        return
    if getattr(config.option, "numprocesses", None):
        config.option.numprocesses = 0
        config.option.dist = "no"
        config.option.tx = []


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    ctx = config.stash.get(CONTEXT_KEY, None)
    if ctx is None:
        name = config.getoption("accelpool_backend", None)
        if not name:
            return  # inert: an ordinary pytest run
        from accelpool_conformance.runner import context_from_options

        ctx = context_from_options(config)
        config.stash[CONTEXT_KEY] = ctx
    config.addinivalue_line("python_files", "checks_*.py")
    config.addinivalue_line(
        "markers", "requires(*capabilities): run only when the backend supports them"
    )
    config.addinivalue_line("markers", "always_run: run even when the backend is unavailable")
    config.addinivalue_line(
        "markers", "exercises(*capabilities): capabilities a passing check proves (no gating)"
    )
    if "extras" in ctx.areas and ctx.error is None:
        from accelpool_conformance.extras import load_extras

        extras, problems = load_extras(ctx.backend_name)
        ctx.notes.extend(problems)
        ctx.extra_paths = {e.path for e in extras}
        # Collected beside the suite's own modules, as the area ``extras``.
        config.args.extend(str(p) for p in sorted(ctx.extra_paths))
    from accelpool_conformance import fixtures
    from accelpool_conformance.session_hooks import SuitePlugin

    config.pluginmanager.register(fixtures, "accelpool-conformance-fixtures")
    config.pluginmanager.register(SuitePlugin(ctx), "accelpool-conformance-suite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CONTEXT_KEY in config.stash:
        return
    # The suite collected without a backend to test: say how to run it, do not error.
    skip = pytest.mark.skip(reason="pass --accelpool-backend NAME to run the conformance suite")
    for item in items:
        module = getattr(item, "module", None)
        if getattr(module, "__name__", "").startswith(SUITE_PACKAGE):
            item.add_marker(skip)


def suite_dir() -> Path:
    """The folder holding the suite's check modules."""
    return Path(__file__).resolve().parent / "suite"


def area_files(areas: tuple[str, ...] | list[str]) -> list[str]:
    """The suite's own check modules of ``areas`` (``extras`` come from plugins)."""
    return [str(suite_dir() / f"checks_{a}.py") for a in areas if a != "extras"]


class Injector:
    """Hands a prepared :class:`SuiteContext` to the plugin (used by ``run()``)."""

    def __init__(self, ctx: SuiteContext) -> None:
        self.ctx = ctx

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[CONTEXT_KEY] = self.ctx

    def __repr__(self) -> str:
        return f"<accelpool conformance context for {self.ctx.backend_name}>"
