"""The active half of the pytest plugin: gating, expectations, outcomes and reports."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from accelpool.capabilities import Support
from accelpool.errors import AccelPoolError
from accelpool_conformance.context import SuiteContext
from accelpool_conformance.invariants import SUPPORTED_SUCCEEDS, InvariantBroken, describe
from accelpool_conformance.report import (
    UNDECLARED_PREFIX,
    UNSUPPORTED_PREFIX,
    TestResult,
    build_report,
    markdown,
    passed,
    write_json,
)

ID_KEY: pytest.StashKey[str] = pytest.StashKey()
AREA_KEY: pytest.StashKey[str] = pytest.StashKey()
PHASES_KEY: pytest.StashKey[dict[str, Any]] = pytest.StashKey()


def area_of(item: pytest.Item) -> str:
    if AREA_KEY in item.stash:
        return item.stash[AREA_KEY]
    module = getattr(item, "module", None)
    name = getattr(module, "__name__", "") or item.path.stem
    stem = name.rsplit(".", 1)[-1]
    return stem.removeprefix("checks_")


def test_id(item: pytest.Item) -> str:
    """``area::test_name[param]``: stable across runs, used in reports and expectations."""
    parts = item.nodeid.split("::")[1:]
    return f"{area_of(item)}::{'::'.join(parts)}"


def required(item: pytest.Item) -> tuple[str, ...]:
    caps: list[str] = []
    for mark in item.iter_markers("requires"):
        caps.extend(str(c) for c in mark.args)
    return tuple(dict.fromkeys(caps))


def exercised_by(item: pytest.Item) -> set[str]:
    """What a check proves when it passes: what it requires and what it says it
    ``exercises`` (a marker that gates nothing)."""
    caps = set(required(item))
    for mark in item.iter_markers("exercises"):
        caps.update(str(c) for c in mark.args)
    return caps


def _message(exc: BaseException) -> str:
    """The failure text: an invariant's own words, else the error, plus hypothesis notes."""
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _message(exc.exceptions[0])
    carried = _carried_invariant(exc)
    if carried is not None and carried is not exc:
        exc = carried
    if isinstance(exc, InvariantBroken):
        text = str(exc)
    elif isinstance(exc, pytest.fail.Exception):
        text = str(exc.msg)
    elif isinstance(exc, AccelPoolError):
        # The backend refused a step the check needed (the device was empty and offered it).
        text = f"invariant {SUPPORTED_SUCCEEDS!r} broken: unexpected {describe(exc)}"
    else:
        text = f"unexpected error: {describe(exc)}"
    notes = [n for n in getattr(exc, "__notes__", []) if isinstance(n, str)]
    if notes:
        text += "\n" + "\n".join(notes)
    return text


def _carried_invariant(exc: BaseException) -> InvariantBroken | None:
    """The broken invariant an exception carries in its cause or context chain (an error
    raised while a check reported its finding must not hide the finding)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, InvariantBroken):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class SuitePlugin:
    """Registered when the suite runs: one per pytest session."""

    def __init__(self, ctx: SuiteContext) -> None:
        self.ctx = ctx

    # -- collection ------------------------------------------------------------
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            if item.path.resolve() in self.ctx.extra_paths:
                item.stash[AREA_KEY] = "extras"
            area = area_of(item)
            (keep if area in self.ctx.areas else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
        for item in items:
            tid = test_id(item)
            item.stash[ID_KEY] = tid
            reason = self.ctx.expectations.xfail_reason(tid) if self.ctx.expectations else None
            if reason is not None:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=False))

    # -- gating ------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.ctx.touched = set()
        if self.ctx.error is not None and item.get_closest_marker("always_run") is None:
            pytest.skip(self.ctx.error)
        unsupported, undeclared = [], []
        for cap in required(item):
            support = self.ctx.capabilities.support(cap)
            if support is Support.UNSUPPORTED:
                unsupported.append(cap)
            elif support is Support.NOT_DECLARED:
                undeclared.append(cap)
        if unsupported:
            pytest.skip(
                f"{UNSUPPORTED_PREFIX}the backend declares {', '.join(unsupported)} unsupported"
            )
        if undeclared:
            pytest.skip(UNDECLARED_PREFIX + ", ".join(undeclared))

    # -- outcomes ----------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        phases = item.stash.setdefault(PHASES_KEY, {})
        phases[call.when] = (report, call.excinfo)
        if call.when == "teardown":
            result = self._result(item, phases)
            prev = self.ctx.results[-1].area if self.ctx.results else None
            if prev is not None and prev != result.area:
                self._area_done(prev)
            self.ctx.results.append(result)
            if result.status == "pass":
                self.ctx.exercised |= exercised_by(item) | self.ctx.touched
            report.user_properties.append(("accelpool_status", result.status))
        return report

    def _area_done(self, area: str) -> None:
        """One progress line for a finished area (the CLI asks for it off a terminal)."""
        if self.ctx.progress is None:
            return
        mine = [r.status for r in self.ctx.results if r.area == area]
        counts = ", ".join(
            f"{mine.count(k)} {k}" for k in ("pass", "fail", "unsupported", "skip", "xfail")
        )
        self.ctx.progress(f"conformance {self.ctx.backend_name}: {area} done ({counts})")

    def _result(self, item: pytest.Item, phases: dict[str, Any]) -> TestResult:
        caps = required(item)
        supported = all(self.ctx.capabilities.supports(c) for c in caps)
        status, message, duration = "pass", "", 0.0
        for when in ("setup", "call", "teardown"):
            if when not in phases:
                continue
            report, excinfo = phases[when]
            duration += report.duration
            wasxfail = getattr(report, "wasxfail", None)
            if report.skipped:
                if wasxfail is not None:
                    status = "xfail"
                    detail = _message(excinfo.value) if excinfo is not None else ""
                    message = f"expected failure: {wasxfail}" + (
                        f"; failed with: {detail}" if detail else ""
                    )
                else:
                    reason = self._skip_reason(report, excinfo)
                    if reason.startswith(UNSUPPORTED_PREFIX):
                        status, message = "unsupported", reason[len(UNSUPPORTED_PREFIX) :]
                    else:
                        status, message = "skip", reason
                break
            if report.failed:
                if status == "pass":
                    status = "fail"
                    text = _message(excinfo.value) if excinfo is not None else str(report.longrepr)
                    message = text if when == "call" else f"in {when}: {text}"
                break
            if report.passed and wasxfail is not None and when == "call":
                message = f"XPASS: passed although expected to fail ({wasxfail}); " + (
                    "remove it from the expectations file"
                )
        return TestResult(
            id=item.stash.get(ID_KEY, item.nodeid),
            area=area_of(item),
            status=status,
            message=message,
            duration=duration,
            requires=caps,
            supported=supported,
        )

    @staticmethod
    def _skip_reason(report: pytest.TestReport, excinfo: Any) -> str:
        if excinfo is not None:
            msg = getattr(excinfo.value, "msg", None)
            if isinstance(msg, str):
                return msg
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            return str(longrepr[2]).removeprefix("Skipped: ")
        return str(longrepr)

    # -- reports -------------------------------------------------------------------
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        ctx = self.ctx
        if ctx.results:
            self._area_done(ctx.results[-1].area)
        exp = None
        if ctx.expectations is not None:
            exp = {"file": ctx.expectations.source, "unmatched": ctx.expectations.unmatched()}
        report = build_report(
            ctx.describe(),
            ctx.results,
            certify_requested=ctx.certify,
            expectations=exp,
            notes=ctx.notes,
            narrowed=ctx.narrowed,
            untested=ctx.untested(),
        )
        ctx.report = report
        if ctx.owned and not passed(report) and session.exitstatus == 0:
            # Run as a plain pytest session: certification decides the exit status too.
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if ctx.report_path is not None:
            write_json(report, ctx.report_path)
        if ctx.markdown_path is not None:
            path = Path(ctx.markdown_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(markdown(report), encoding="utf-8")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.ctx.owned:
            with contextlib.suppress(Exception):
                self.ctx.close()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.ctx.report is None:
            return
        s = self.ctx.report["summary"]
        terminalreporter.write_sep(
            "-",
            f"accelpool conformance {self.ctx.backend_name}: "
            + ", ".join(f"{s[k]} {k}" for k in ("pass", "fail", "unsupported", "skip", "xfail"))
            # pytest counts unsupported and skip together as skipped
            + f" (pytest: {s['pass']} passed, {s['fail']} failed, "
            + f"{s['unsupported'] + s['skip']} skipped, {s['xfail']} xfailed)",
        )
        cert = self.ctx.report["certification"]
        if cert["requested"]:
            # The verdict the exit status carries, said in words (an xdist run included).
            verdict = "certified" if cert["certified"] else "NOT certified"
            terminalreporter.write_line(f"accelpool certification: {verdict}")
            for reason in cert["reasons"]:
                terminalreporter.write_line(f"  - {reason}")
