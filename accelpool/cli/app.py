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
from typing import TYPE_CHECKING, Any, NoReturn

from accelpool.errors import AccelPoolError, InvalidRequest

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

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

    def inventory(self, *, strict: bool = True) -> Any:
        """The inventory for this invocation (``--sim`` honoured), discovered once.

        Under a simulated fleet every backend the fleet names must load: one that
        cannot (a bad model or option in the fleet file, a plugin not installed) is
        the user's error unless ``strict=False`` (``accelpool backends`` shows why).
        """
        if self._inventory is None:
            from accelpool.envconfig import check_selected_installed
            from accelpool.inventory import discover
            from accelpool.registry import entry_points

            installed = {ep.name for ep in entry_points()}
            if strict:
                check_selected_installed(installed)
            self._inventory = discover(sim=getattr(self.args, "sim", None))
            fleet = self._inventory.fleet
            for name in fleet.backends() if fleet is not None else ():
                if name not in installed:
                    raise InvalidRequest(
                        f"simulated fleet {fleet.name!r} has {name} devices, but no backend "
                        f"plugin {name!r} is installed (installed: {', '.join(sorted(installed))})"
                    )
        fleet = self._inventory.fleet
        if strict and fleet is not None:
            for s in self._inventory.backends():
                if not s.available and fleet.for_backend(s.name):
                    why = (s.reason or "").removeprefix(f"simulated fleet {fleet.name!r}: ")
                    raise InvalidRequest(
                        f"simulated fleet {fleet.name!r}: backend {s.name} cannot run: "
                        f"{why} (fix the fleet, or see 'accelpool backends')"
                    )
        return self._inventory

    def close(self) -> None:
        if self._inventory is not None:
            self._inventory.close()


def _command_word(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names, read as argparse reads the global options; or None."""
    words = iter(argv)
    for word in words:
        if word == "--":
            return next(words, None)
        if word.startswith("-") and word != "-":
            # --sim takes a value (argparse also accepts an abbreviation such as --si)
            if "=" not in word and len(word) > 2 and "--sim".startswith(word):
                next(words, None)
            continue
        return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``accelpool`` parser; with ``argv``, only as much of it as ``argv`` needs.

    Core subcommands are always there. A plugin's are added only when ``argv`` names
    the plugin's entry point (plugins register under their command's name); with no
    ``argv``, with no command or ``--help``, or with a command nobody has claimed yet,
    every plugin is loaded, so the help and the "invalid choice" error list them all.
    """
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
    word = None if argv is None else _command_word(argv)
    if word is not None and word in commands.CORE_NAMES:
        commands.register(sub, only=word)
        return parser  # a core command: no other parser, no plugin needed
    commands.register(sub)
    from accelpool.entrypoints import group

    plugins = group(CLI_GROUP)
    if word is not None:
        named = [ep for ep in plugins if ep.name == word]
        _load_cli_plugins(sub, named)
        if word in sub.choices:
            return parser
        plugins = [ep for ep in plugins if ep not in named]
    _load_cli_plugins(sub, plugins)
    return parser


def _load_cli_plugins(sub: Any, plugins: Sequence[EntryPoint]) -> None:
    for ep in plugins:
        try:
            ep.load()(sub)
        except Exception as e:  # a broken plugin must not take the core CLI down with it
            log.warning("CLI plugin %s failed to load: %s", ep.name, e)


def printable(text: str) -> str:
    """``text`` on one line, control characters (terminal escapes, newlines) escaped."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _say(message: str) -> None:
    # An error is one line: what the user typed may hold newlines or escapes.
    print(f"accelpool: {printable(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``accelpool`` console script; returns the exit status."""
    ctx: CliContext | None = None
    try:
        from accelpool.envconfig import log_level

        logging.basicConfig(level=log_level(), format="accelpool: %(levelname)s: %(message)s")
        words = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(words)
        args = parser.parse_args(words)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        ctx = CliContext(args)
        return int(args.func(args, ctx) or 0)
    except UsageError as e:
        _say(f"error: {e}")
        return 2
    except AccelPoolError as e:
        _say(f"{type(e).__name__}: {e}")
        return 1
    except SystemExit as e:  # argparse's --help and --version: a status, not an error
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        print("accelpool: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:
        if os.environ.get("ACCELPOOL_DEBUG"):
            traceback.print_exc()
        _say(
            f"internal error: {type(e).__name__}: {e} "
            "(set ACCELPOOL_DEBUG=1 for a traceback, and please report it)"
        )
        return 1
    finally:
        if ctx is not None:
            ctx.close()
