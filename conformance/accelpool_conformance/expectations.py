"""Vendor-side expectations: known failures (xfail) and numeric tolerances.

As onnxruntime keeps its backend-test exclusions in its own files, a vendor keeps
what it knows about its backend next to the backend, not in edits to the suite::

    # expectations.toml
    [[xfail]]
    test = "partitions::test_exhaustion_gives_insufficient_capacity[1g.5gb]"
    reason = "driver 550 miscounts 1g.5gb capacity; fixed in 555"

    [[xfail]]
    test = "sessions::*"          # a glob matches several tests
    reason = "no onnxruntime provider for this chip yet"

    [tolerances]                  # for ONNX output comparisons
    rtol = 1e-3
    atol = 1e-5

The same document may be written as JSON.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelpool.errors import InvalidRequest, NotFound

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


@dataclass(frozen=True)
class Expectation:
    """One expected failure: a test id (or glob) and why."""

    test: str
    reason: str

    def matches(self, test_id: str) -> bool:
        return test_id == self.test or fnmatch.fnmatchcase(test_id, self.test)


@dataclass
class Expectations:
    """What a vendor expects of its backend in this suite."""

    xfail: list[Expectation] = field(default_factory=list)
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    source: str | None = None
    used: set[str] = field(default_factory=set)

    def xfail_reason(self, test_id: str) -> str | None:
        """The reason ``test_id`` is expected to fail, or None."""
        for e in self.xfail:
            if e.matches(test_id):
                self.used.add(e.test)
                return e.reason
        return None

    def unmatched(self) -> list[str]:
        """Entries that matched no test of the run (stale, or a typo)."""
        return [e.test for e in self.xfail if e.test not in self.used]

    @classmethod
    def load(cls, path: str | Path) -> Expectations:
        p = Path(path)
        if not p.is_file():
            raise NotFound(f"expectations file {p} does not exist")
        text = p.read_text(encoding="utf-8")
        try:
            doc = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InvalidRequest(f"expectations file {p} cannot be parsed: {first}") from None
        return cls.from_doc(doc, source=str(p))

    @classmethod
    def from_doc(cls, doc: Any, source: str = "<expectations>") -> Expectations:
        def bad(problem: str) -> InvalidRequest:
            return InvalidRequest(f"expectations {source}: {problem}")

        if not isinstance(doc, dict):
            raise bad("the top level must be a table of 'xfail' and 'tolerances'")
        unknown = set(doc) - {"xfail", "tolerances"}
        if unknown:
            raise bad(f"unknown keys {sorted(unknown)}; use 'xfail' and 'tolerances'")
        entries = doc.get("xfail", [])
        if not isinstance(entries, list):
            raise bad("'xfail' must be a list of {test, reason} entries")
        xfail = []
        for i, e in enumerate(entries):
            if not isinstance(e, dict):
                raise bad(f"xfail[{i}] must be a table with 'test' and 'reason'")
            test = e.get("test", e.get("id"))
            reason = e.get("reason")
            if not isinstance(test, str) or not test:
                raise bad(f"xfail[{i}] needs a 'test' id such as 'partitions::test_...'")
            if not isinstance(reason, str) or not reason.strip():
                raise bad(f"xfail[{i}] ({test}) needs a 'reason' saying why it fails")
            xfail.append(Expectation(test, reason.strip()))
        tol = doc.get("tolerances", {})
        if not isinstance(tol, dict) or set(tol) - {"rtol", "atol"}:
            raise bad("'tolerances' may hold only 'rtol' and 'atol'")
        rtol = tol.get("rtol", DEFAULT_RTOL)
        atol = tol.get("atol", DEFAULT_ATOL)
        for name, value in (("rtol", rtol), ("atol", atol)):
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise bad(f"tolerances.{name} must be a non-negative number")
        return cls(xfail=xfail, rtol=float(rtol), atol=float(atol), source=source)
