"""Parser, dispatch and error handling of the ``accelpool`` command.

A subcommand is a function ``register(subparsers) -> None`` that adds a parser and
sets ``func=handler`` on it, where ``handler(args, ctx: CliContext) -> int``.
Core subcommands live in :mod:`accelpool.cli.commands`; other distributions
register theirs under the entry point group ``accelpool.cli``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import metadata
from typing import Any, NoReturn

from accelpool.errors import AccelPoolError

CLI_GROUP = "accelpool.cli"
log = logging.getLogger("accelpool.cli")


class UsageError(Exception):
    """Bad command-line usage: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: errors must be easy to read and to grep.
        raise UsageError(f"{message} (see '{self.prog} --help')")


class CliContext:
    """What every subcommand handler gets besides its arguments."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._inventory: Any = None

    def inventory(self) -> Any:
        """The inventory for this invocation (``--sim`` honoured), discovered once."""
        if self._inventory is None:
            from accelpool.inventory import discover

            self._inventory = discover(sim=getattr(self.args, "sim", None))
        return self._inventory

    def close(self) -> None:
        if self._inventory is not None:
            self._inventory.close()


def build_parser() -> argparse.ArgumentParser:
    from accelpool import __version__
    from accelpool.cli import commands

    parser = _Parser(
        prog="accelpool",
        description="See, partition and run work on AI accelerators, whatever the vendor.",
    )
    parser.add_argument("--version", action="version", version=f"accelpool {__version__}")
    parser.add_argument(
        "--sim",
        metavar="PRESET|FILE",
        default=None,
        help="use a simulated fleet (a preset such as dgx-a100, or a fleet file); "
        "default: $ACCELPOOL_SIM",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.register(sub)
    for ep in metadata.entry_points(group=CLI_GROUP):
        try:
            ep.load()(sub)
        except Exception as e:  # a broken plugin must not take the core CLI down with it
            log.warning("CLI plugin %s failed to load: %s", ep.name, e)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``accelpool`` console script; returns the exit status."""
    logging.basicConfig(
        level=os.environ.get("ACCELPOOL_LOG", "ERROR").upper(),
        format="accelpool: %(levelname)s: %(message)s",
    )
    ctx: CliContext | None = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        ctx = CliContext(args)
        return int(args.func(args, ctx) or 0)
    except UsageError as e:
        print(f"accelpool: error: {e}", file=sys.stderr)
        return 2
    except AccelPoolError as e:
        print(f"accelpool: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("accelpool: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:
        if os.environ.get("ACCELPOOL_DEBUG"):
            traceback.print_exc()
        first = (str(e).splitlines() or [""])[0]
        print(
            f"accelpool: internal error: {type(e).__name__}: {first} "
            "(set ACCELPOOL_DEBUG=1 for a traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        if ctx is not None:
            ctx.close()
