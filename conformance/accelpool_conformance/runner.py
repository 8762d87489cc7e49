"""Running the suite: :func:`run` (Python), also behind the CLI and the pytest options."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from accelpool.errors import AccelPoolError, InvalidRequest
from accelpool_conformance.context import AREAS, PROFILES, InventoryFactory, SuiteContext, Tuning
from accelpool_conformance.expectations import Expectations
from accelpool_conformance.plugin import Injector, area_files, suite_dir
from accelpool_conformance.report import passed

STATE_ENV = "ACCELPOOL_STATE_DIR"


@dataclass
class RunResult:
    """What :func:`run` gives back: the report document and the verdict."""

    report: dict[str, Any]
    exit_code: int
    pytest_exit_code: int
    report_path: Path | None = None
    markdown_path: Path | None = None
    junit_path: Path | None = None

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def status_of(self, test_id: str) -> str:
        """The status of one test by id (KeyError if it did not run)."""
        for t in self.report["tests"]:
            if t["id"] == test_id:
                return str(t["status"])
        raise KeyError(test_id)

    def failures(self) -> list[dict[str, Any]]:
        return [t for t in self.report["tests"] if t["status"] == "fail"]


def _set_env(ctx: SuiteContext, name: str, value: str) -> None:
    old = os.environ.get(name)
    os.environ[name] = value

    def restore() -> None:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old

    ctx.on_close.append(restore)


def isolate_state(ctx: SuiteContext, state_dir: str | Path | None) -> None:
    """Point ``ACCELPOOL_STATE_DIR`` at ``state_dir``, or, for a simulated fleet, at a
    fresh temporary folder removed afterwards: every run starts from a clean fleet."""
    if state_dir is not None:
        _set_env(ctx, STATE_ENV, str(Path(state_dir).expanduser()))
    elif ctx.sim is not None:
        tmp = tempfile.mkdtemp(prefix="accelpool-conformance-")
        ctx.on_close.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
        _set_env(ctx, STATE_ENV, tmp)


def _paths(
    report: str | Path | None, markdown: str | Path | None, junitxml: str | Path | None
) -> tuple[Path | None, Path | None, Path | None]:
    rp = Path(report) if report is not None else None
    md = Path(markdown) if markdown is not None else (rp.with_suffix(".md") if rp else None)
    jx = Path(junitxml) if junitxml is not None else (rp.with_suffix(".xml") if rp else None)
    return rp, md, jx


def narrowing(profile: str, areas: Sequence[str], keyword: str | None) -> list[str]:
    """Why a run is narrower than the full suite (empty when it is the full suite)."""
    why = []
    if profile != "full":
        why.append(f"narrowed to the {profile!r} profile")
    missing = [a for a in PROFILES["full"] if a not in areas]
    if missing and profile == "full":
        why.append(f"narrowed to areas {', '.join(areas) or 'none'}")
    if keyword:
        why.append(f"narrowed by -k {keyword!r}")
    return why


def plugin_narrowing(config: pytest.Config) -> list[str]:
    """Why a pytest-plugin run is narrower than the full suite."""
    why = narrowing(
        config.getoption("accelpool_profile"), PROFILES["full"], config.getoption("keyword", "")
    )
    markexpr = config.getoption("markexpr", "")
    if markexpr:
        why.append(f"narrowed by -m {markexpr!r}")
    if config.getoption("deselect", None):
        why.append("narrowed by --deselect")
    return why


def context_from_options(config: pytest.Config) -> SuiteContext:
    """A context for ``pytest --accelpool-backend NAME ...`` (plugin-owned, closed at exit)."""
    exp = config.getoption("accelpool_expectations")
    rp, md, _ = _paths(config.getoption("accelpool_report"), None, None)
    ctx = SuiteContext(
        backend_name=config.getoption("accelpool_backend"),
        profile=config.getoption("accelpool_profile"),
        sim=config.getoption("accelpool_sim"),
        expectations=Expectations.load(exp) if exp else None,
        certify=bool(config.getoption("accelpool_certify")),
        report_path=rp,
        markdown_path=md,
        owned=True,
    )
    if ctx.certify:
        ctx.narrowed = plugin_narrowing(config)
    isolate_state(ctx, config.getoption("accelpool_state_dir"))
    try:
        ctx.open()
    except BaseException:
        ctx.close()
        raise
    return ctx


def run(
    backend: str,
    *,
    sim: str | None = None,
    profile: str = "full",
    certify: bool = False,
    expectations: str | Path | Expectations | None = None,
    report: str | Path | None = None,
    markdown: str | Path | None = None,
    junitxml: str | Path | None = None,
    inventory_factory: InventoryFactory | None = None,
    state_dir: str | Path | None = None,
    areas: Sequence[str] | None = None,
    keyword: str | None = None,
    tuning: Tuning | None = None,
    quiet: bool = True,
    pytest_args: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Run the conformance suite against one backend and return its report.

    ``backend`` names the backend to test. By default it is discovered through the
    installed plugins (``accelpool.discover(sim=sim, backends=[backend])``); pass
    ``inventory_factory`` (a callable returning an :class:`~accelpool.Inventory`) to
    test a backend built in Python instead. Make the factory a module-level callable
    (picklable) so the cross-process checks can rebuild it in worker processes.

    ``profile`` picks the areas (core, partition, session, full); ``areas`` and
    ``keyword`` (a pytest ``-k`` expression) narrow it further. With ``sim`` and no
    ``state_dir``, the run uses a fresh temporary state directory. ``report`` writes
    the JSON report there, with Markdown (``.md``) and JUnit XML (``.xml``) beside it
    unless ``markdown``/``junitxml`` say otherwise. ``exit_code`` is 0 only when no
    test failed and, with ``certify``, the run certifies the backend.
    """
    if profile not in PROFILES:
        raise InvalidRequest(
            f"unknown conformance profile {profile!r}; choose one of {', '.join(PROFILES)}"
        )
    chosen = tuple(areas) if areas is not None else PROFILES[profile]
    unknown = [a for a in chosen if a not in AREAS]
    if unknown:
        raise InvalidRequest(f"unknown suite areas {unknown}; choose from {', '.join(AREAS)}")
    if isinstance(expectations, str | Path):
        expectations = Expectations.load(expectations)
    rp, md, jx = _paths(report, markdown, junitxml)
    ctx = SuiteContext(
        backend_name=backend,
        profile=profile,
        sim=sim,
        inventory_factory=inventory_factory,
        expectations=expectations,
        certify=certify,
        tuning=tuning or Tuning(),
        report_path=rp,
        markdown_path=md,
        junit_path=jx,
        only_areas=chosen,
        narrowed=narrowing(profile, chosen, keyword),
        progress=progress,
    )
    args = [
        *area_files(chosen),
        "-c",
        str(suite_dir() / "pytest.ini"),
        "--rootdir",
        str(suite_dir()),
        "--confcutdir",
        str(suite_dir()),
        "-p",
        "no:cacheprovider",
        "--assert=plain",
        "-o",
        "junit_family=xunit2",
        "-o",
        "junit_suite_name=accelpool-conformance",
    ]
    # Quiet: no terminal output at all (the report says everything); else progress dots.
    args += ["-p", "no:terminal"] if quiet else ["-q", "--tb=no", "-rN"]
    if keyword:
        args += ["-k", keyword]
    if jx is not None:
        jx.parent.mkdir(parents=True, exist_ok=True)
        args += ["--junitxml", str(jx)]
    args += list(pytest_args)
    saved_path = list(sys.path)
    try:
        isolate_state(ctx, state_dir)
        ctx.open()
        code = int(pytest.main(args, plugins=[Injector(ctx)]))
    finally:
        ctx.close()
        # pytest puts the folders of the modules it imports (extra checks) on sys.path
        sys.path[:] = saved_path
    if ctx.report is None:
        raise AccelPoolError(
            f"the conformance suite could not run (pytest exit status {code}); "
            "rerun with quiet=False to see why"
        )
    exit_code = 0 if passed(ctx.report) and code in (0, 1, 5) else 1
    return RunResult(ctx.report, exit_code, code, rp, md, jx)
