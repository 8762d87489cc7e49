"""``accelpool run`` (an ONNX model on a device or partition) and ``accelpool claims``."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from accelpool.cli.app import CliContext
from accelpool.cli.output import print_json, print_table
from accelpool.errors import InvalidRequest

log = logging.getLogger("accelpool.claims")


def register(sub: Any) -> None:
    """Add the ``run`` and ``claims`` subcommands."""
    p = sub.add_parser(
        "run",
        help="run an ONNX model on a device or partition",
        description="Claim TARGET, run MODEL on it once through onnxruntime, print the "
        "outputs (and save them with --output). The model runs in a worker process that "
        "sees only TARGET, unless --in-process.",
    )
    p.add_argument("model", metavar="MODEL", help="path of an .onnx file")
    p.add_argument(
        "--on", required=True, metavar="TARGET", help="device or partition id, e.g. nvidia:0"
    )
    p.add_argument(
        "--input",
        action="append",
        default=[],
        type=_input_spec,
        metavar="NAME=FILE.npy",
        help="an input tensor from a .npy file (repeat for each input)",
    )
    p.add_argument("--output", metavar="DIR", help="save each output as DIR/NAME.npy")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run in this process instead of an isolated worker (no visibility variables set)",
    )
    p.add_argument(
        "--clean-env",
        action="store_true",
        help="start the worker with only a short allow-list of this environment "
        "(PATH, HOME, locale, library paths, toolkit homes) plus the visibility variables",
    )
    p.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help="with --clean-env, also pass NAME (a name or a * pattern; repeatable)",
    )
    p.add_argument(
        "--allow-fallback",
        action="store_true",
        help="run on the CPU when onnxruntime lacks the target's execution provider",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_run)

    c = sub.add_parser(
        "claims", help="devices and partitions held by sessions and named holders on this host"
    )
    c.add_argument(
        "--reap",
        action="store_true",
        help="first drop stale claims (ended or unprovable processes, expired named holders)",
    )
    c.add_argument(
        "--release",
        metavar="HOLDER",
        default=None,
        help="first release every claim of the named holder HOLDER (e.g. k8s:<uid>)",
    )
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(func=cmd_claims)


def _input_spec(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"an input is NAME=FILE.npy, not {text!r}")
    return name, path


def _load_inputs(specs: list[tuple[str, str]]) -> dict[str, Any]:
    import numpy as np

    feeds: dict[str, Any] = {}
    for name, path in specs:
        if name in feeds:
            raise InvalidRequest(f"input {name!r} is given twice")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
            raise InvalidRequest(
                f"cannot read input {name!r} from {path}: {reason} (a .npy file is needed)"
            ) from None
    return feeds


#: Longest file stem written (a file name may hold 255 bytes; room is left for
#: ``.N.npy`` and the temporary-file prefix).
_MAX_STEM = 200


def _file_name(name: str, taken: set[str]) -> str:
    """A safe, unique, bounded file stem for an output name (names may hold '/' or ':')."""
    import hashlib

    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "output"
    if len(stem) > _MAX_STEM:  # keep it unique: the cut-off part goes into a digest
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        stem = f"{stem[: _MAX_STEM - 13]}-{digest}"
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}"
    taken.add(candidate)
    return candidate


#: ``run --json`` prints the values of outputs up to this many elements (larger: --output)
JSON_VALUES_MAX = 1024


def _values(value: Any) -> Any:
    """An output's values as JSON (nested lists), or None when too big or not an array."""
    import numpy as np

    numeric = isinstance(value, np.ndarray) and value.dtype.kind in "biufU"
    if numeric and value.size <= JSON_VALUES_MAX:
        return value.tolist()
    return None


def _describe(value: Any) -> tuple[str, list[int] | None]:
    import numpy as np

    if isinstance(value, np.ndarray):
        return str(value.dtype), list(value.shape)
    if isinstance(value, list):
        return "sequence", [len(value)]
    if isinstance(value, dict):
        return "map", [len(value)]
    return type(value).__name__, None


def _save(outputs: dict[str, Any], directory: Path) -> dict[str, list[str]]:
    """Write outputs as .npy files, all or none; the files of each output by name.

    Every file is written under a temporary name first and renamed only when all
    were written, so a failure (a full disk, say) leaves no partial set behind.
    """
    import numpy as np

    taken: set[str] = set()
    files: dict[str, list[str]] = {}
    planned: dict[str, Any] = {}
    for name, value in outputs.items():
        stem = _file_name(name, taken)
        if isinstance(value, np.ndarray):
            parts = {f"{stem}.npy": value}
        elif isinstance(value, list) and all(isinstance(v, np.ndarray) for v in value):
            parts = {f"{stem}.{i}.npy": v for i, v in enumerate(value)}
        else:
            files[name] = []  # maps and optionals have no .npy form
            continue
        planned.update(parts)
        files[name] = [str(directory / f) for f in parts]
    written: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for file, array in planned.items():
            tmp = directory / f".{file}.partial"
            written.append(tmp)
            with tmp.open("wb") as f:
                np.save(f, array, allow_pickle=False)
        for file in planned:
            (directory / f".{file}.partial").replace(directory / file)
    except OSError as e:
        for tmp in written:
            tmp.unlink(missing_ok=True)
        raise InvalidRequest(
            f"cannot save the outputs in {directory}: {e.strerror or e}; nothing was "
            "written there: choose another --output folder"
        ) from None
    return files


def cmd_run(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool.session import ProviderFallbackWarning, open_session

    feeds = _load_inputs(args.input)
    target = ctx.inventory().target(args.on)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ProviderFallbackWarning)
        with open_session(
            target,
            isolate=not args.in_process,
            allow_fallback=args.allow_fallback,
            clean_env=True if args.clean_env else None,
            pass_env=args.pass_env,
        ) as session:
            loaded = session.load(args.model)
            start = time.perf_counter()
            outputs = session.run(loaded, feeds)
            elapsed = time.perf_counter() - start
            env = dict(session.env)
            providers = list(session.providers)
    files = _save(outputs, Path(args.output)) if args.output else {}
    for w in caught:  # after the last step that can fail: an error stays one line
        print(f"accelpool: warning: {w.message}", file=sys.stderr)
    described = {name: _describe(value) for name, value in outputs.items()}

    if args.json:
        print_json(
            {
                "target": target.id,
                "model": str(args.model),
                "isolated": not args.in_process,
                "env": env,
                "providers": [{"name": n, "options": o} for n, o in providers],
                "used_providers": loaded.providers,
                "seconds": round(elapsed, 6),
                "outputs": [
                    {
                        "name": name,
                        "dtype": dtype,
                        "shape": shape,
                        "values": _values(outputs[name]),
                        "files": files.get(name, []),
                    }
                    for name, (dtype, shape) in described.items()
                ],
            }
        )
        return 0
    rows = []
    for name, (dtype, shape) in described.items():
        saved = ", ".join(files.get(name, [])) or "-"
        rows.append((name, dtype, "x".join(map(str, shape)) if shape else "scalar", saved))
    print_table(("OUTPUT", "DTYPE", "SHAPE", "FILE"), rows)
    mode = "in-process" if args.in_process else "isolated"
    env_text = " ".join(f"{k}={v}" for k, v in env.items()) or "no visibility variables"
    print(
        f"Ran {args.model} on {target.id} ({mode}, {', '.join(loaded.providers)}, {env_text}) "
        f"in {elapsed * 1000:.1f} ms"
    )
    return 0


def cmd_claims(args: argparse.Namespace, ctx: CliContext) -> int:
    from accelpool.session import ClaimStore
    from accelpool.session._claims import check_holder

    store = ClaimStore()
    released = None
    if args.release is not None:
        if args.release.startswith("pid:"):
            raise InvalidRequest(
                f"{args.release} is a process holder: its claims end with the process "
                "(stale ones go with --reap); --release takes a named holder such as k8s:<uid>"
            )
        check_holder(args.release)
        released = store.release_holder(args.release)
        if released:
            log.warning(
                "released %d claim(s) of %s: %s",
                len(released),
                args.release,
                ", ".join(c.target for c in released),
            )
    reaped = store.reap() if args.reap else 0
    claims = store.claims()
    if args.json:
        print_json([c.to_json() for c in claims])
        return 0
    if released is not None:
        what = ", ".join(c.target for c in released) or "nothing"
        print(f"Released {len(released)} claim(s) of {args.release}: {what}.")
    if args.reap:
        print(f"Dropped {reaped} claim(s) of stale holders.")
    if not claims:
        print("No device or partition is claimed on this host.")
        return 0
    rows = [
        (
            c.target,
            c.kind,
            c.holder if c.named else f"pid {c.pid}",
            (c.owner or "") if c.named else (_command(c.pid) or ""),
            "yes" if c.holder_alive() else "no (stale)",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.opened_at)),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.expires_at))
            if c.expires_at is not None
            else "",
        )
        for c in claims
    ]
    print_table(("TARGET", "KIND", "HOLDER", "OWNER", "LIVE", "SINCE", "EXPIRES"), rows)
    return 0


def _command(pid: int) -> str | None:
    from accelpool.session._claims import process_command

    return process_command(pid)
