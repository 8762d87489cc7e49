"""``accelpool conformance``: run the suite against one backend from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from accelpool_conformance.context import AREAS, PROFILES


def register(sub: Any) -> None:
    """Add the ``conformance`` subcommand (entry point group ``accelpool.cli``)."""
    p = sub.add_parser(
        "conformance",
        help="run the conformance suite against a backend",
        description="Check that a backend keeps the accelpool contract. Exit status 0 "
        "when no test fails (and, with --certify, the backend certifies).",
    )
    p.add_argument("--backend", required=True, metavar="NAME", help="backend to test")
    p.add_argument(
        "--profile",
        default="full",
        choices=list(PROFILES),
        help="which areas to run (default: full)",
    )
    p.add_argument(
        "--area",
        action="append",
        choices=list(AREAS),
        default=None,
        help="run only this area (repeatable; narrows the profile)",
    )
    p.add_argument(
        "--certify",
        action="store_true",
        help="also fail on any skip or xfail of a capability the backend supports",
    )
    p.add_argument(
        "--expectations",
        metavar="FILE",
        default=None,
        help="the vendor's expectations file (TOML or JSON): xfail ids and tolerances",
    )
    p.add_argument(
        "--report",
        metavar="FILE",
        default=None,
        help="write the JSON report to FILE, with FILE.md and FILE.xml (JUnit) beside it",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        default=None,
        help="simulated state directory (default with --sim: a fresh temporary one)",
    )
    p.add_argument(
        "-k",
        dest="keyword",
        metavar="EXPR",
        default=None,
        help="run only tests matching this pytest -k expression",
    )
    p.add_argument(
        "--max-examples",
        type=_positive,
        default=None,
        metavar="N",
        help="random sequences the state machine tries (default 25; fewer is quicker)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="name each test as it runs, with tracebacks"
    )
    p.add_argument("--json", action="store_true", help="print the JSON report to stdout")
    # --sim is the global accelpool option; also accepted after the subcommand.
    p.add_argument(
        "--sim",
        dest="conformance_sim",
        metavar="PRESET|FILE",
        default=None,
        help="simulated fleet (same as the global --sim)",
    )
    p.set_defaults(func=cmd_conformance)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _line(text: str) -> None:
    print(text, flush=True)


def _full() -> tuple[str, ...]:
    from accelpool_conformance.context import PROFILES

    return PROFILES["full"]


def cmd_conformance(args: argparse.Namespace, ctx: Any) -> int:
    from accelpool_conformance.context import Tuning
    from accelpool_conformance.report import markdown
    from accelpool_conformance.runner import run

    sim = args.conformance_sim or getattr(args, "sim", None)
    if sim is None:
        import os

        sim = os.environ.get("ACCELPOOL_SIM") or None
    if args.certify:
        from accelpool.errors import InvalidRequest
        from accelpool_conformance.runner import narrowing

        narrowed = narrowing(args.profile, args.area or _full(), args.keyword)
        if narrowed:
            raise InvalidRequest(
                f"certification needs the full profile, unnarrowed; this run is {narrowed[0]} "
                "(drop --area/-k/--profile, or drop --certify)"
            )
    result = run(
        args.backend,
        sim=sim,
        profile=args.profile,
        areas=args.area,
        certify=args.certify,
        expectations=args.expectations,
        report=args.report,
        state_dir=args.state_dir,
        keyword=args.keyword,
        quiet=args.json or (not args.verbose and not sys.stdout.isatty()),
        pytest_args=["-v", "--tb=short"] if args.verbose and not args.json else [],
        tuning=Tuning(max_examples=args.max_examples) if args.max_examples else None,
        progress=None if args.json or sys.stdout.isatty() else _line,
    )
    if args.json:
        import json

        print(json.dumps(result.report, indent=2))
    else:
        sys.stdout.write(markdown(result.report))
        if result.report_path is not None:
            print(
                f"\nReport: {result.report_path} (Markdown {result.markdown_path}, "
                f"JUnit {result.junit_path})"
            )
    return result.exit_code
