"""Docs that run: every ```python block and CLI example of README.md and docs/**/*.md.

One test per page (its id is the page's path). The page's blocks run in document order
in a fresh temporary folder that holds ``model.onnx`` (input ``x``, float32
1x3x224x224, output ``logits``, 1x10) and ``x.npy``, with a private
``ACCELPOOL_STATE_DIR`` and every other ``ACCELPOOL_*`` variable cleared:

- ```python blocks run one after another in one Python process, so a later block sees
  the names an earlier one made (as a reader pasting them into one session would);
- in ```console, ```sh and unlabelled blocks, each line ``$ accelpool ...`` (or
  ``$ uv run accelpool ...``; in ```sh blocks also without the ``$``) runs as a shell
  command, and ``$ export NAME=VALUE ...`` sets variables for the page's later ones.
  When the output the doc shows under a command begins ``accelpool: `` (an error
  line) it must exit 1 or 2 (2 for ``accelpool: error:``, a usage error), with the
  error class the doc names; otherwise 0.

Shown output must be what the command prints. In a ```console block the lines under a
``$ accelpool ...`` line, up to the next ``$ `` line or the end of the block, are
compared with what the command wrote (its stdout, then its stderr), doctest-ELLIPSIS
style:

- trailing spaces and leading or trailing blank lines do not count, on either side;
- a line that is just ``...`` stands for any number of whole lines, none included
  (so a doc showing only the head of a long listing ends it with a ``...`` line);
- ``...`` inside a line stands for any characters within that line (a uuid, a pid,
  a timing, a reading);
- everything else is literal, ``…`` included (the CLI itself prints ``…`` in short
  ids).

A command shown with no output under it is checked only for its exit code. A mismatch
fails the page with a diff of what the doc shows against what the command printed.

``<!-- docs-test: skip REASON -->`` on the line before a block skips it (the reason is
required and is reported in pytest's summary). A placeholder (``…``, ``...`` as a
statement or argument, ``<NAME>``) in a block that runs fails the page, naming the line.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
PAGE_BUDGET_S = 20.0  # each page, all its blocks together
PYTHON_KINDS = {"python", "py", "python3"}
SHELL_KINDS = {"sh", "bash", "shell"}  # every line is a command (a `$ ` prompt is optional)
PROMPT_KINDS = {"console", "shell-session", ""}  # only `$ ` lines are commands

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_MARKER = re.compile(r"<!--\s*docs-test:\s*skip\b(?P<reason>.*?)-->")
_COMMAND = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:uv\s+run\s+)?accelpool(?:\s|$)")
_EXPORT = re.compile(r"^export\s+(?:[A-Za-z_][A-Za-z0-9_]*=\S*(?:\s+|$))+$")
_ANGLE = re.compile(r"<[A-Za-z][\w .-]*>")
_ERROR_CLASS = re.compile(r"^accelpool: ([A-Z]\w*):")


def pages() -> list[Path]:
    """README.md and every page under docs/, found anew each run (new pages join in)."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in found if p.is_file()]


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the block's first content line
    kind: str
    lines: list[str]
    skip: str | None = None  # the marker's reason


@dataclass
class Command:
    line: int
    text: str
    output: list[str] = field(default_factory=list)

    def expects_error(self) -> bool:
        return bool(self.output) and self.output[0].startswith("accelpool: ")


def parse(page: Path) -> tuple[list[Block], list[str]]:
    """The page's fenced blocks, and the problems with its markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    pending: tuple[int, str] | None = None  # a marker waiting for its block
    i = 0
    while i < len(lines):
        text = lines[i]
        m = _MARKER.search(text)
        if m:
            if pending:
                problems.append(f"{_where(page, pending[0])}: skip marker with no block after it")
            reason = m.group("reason").strip()
            if not reason:
                problems.append(
                    f"{_where(page, i + 1)}: skip marker without a reason: "
                    "write <!-- docs-test: skip WHY IT CANNOT RUN -->"
                )
            pending = (i + 1, reason)
            i += 1
            continue
        fence = _FENCE.match(text)
        if not fence:
            if text.strip() and pending:
                problems.append(f"{_where(page, pending[0])}: skip marker with no block after it")
                pending = None
            i += 1
            continue
        indent, mark = len(fence.group("indent")), fence.group("fence")
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(mark):
            line = lines[i]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            i += 1
        i += 1  # the closing fence
        kind = fence.group("info").lower()
        blocks.append(Block(page, start + 1, kind, body, pending[1] if pending else None))
        pending = None
    if pending:
        problems.append(f"{_where(page, pending[0])}: skip marker with no block after it")
    return blocks, problems


def commands(block: Block) -> list[Command]:
    """The accelpool command lines of a shell block, each with the output shown under it."""
    if block.kind not in SHELL_KINDS | PROMPT_KINDS:
        return []
    found: list[Command] = []
    current: Command | None = None
    joined = ""
    for n, raw in enumerate(block.lines, block.line):
        prompt = raw.startswith("$ ")
        text = raw[2:].strip() if prompt else raw.strip()
        if joined:  # a continued command line
            text, joined = joined + " " + text, ""
        if (prompt or block.kind in SHELL_KINDS) and text.endswith("\\"):
            joined = text[:-1].strip()
            continue
        if prompt or (block.kind in SHELL_KINDS and text and not text.startswith("#")):
            runs = _COMMAND.match(text) or _EXPORT.match(text)
            current = Command(n, text) if runs else None
            if current:
                found.append(current)
        elif current is not None:
            current.output.append(raw)
    return found


def _normal(lines: list[str]) -> list[str]:
    """Lines without trailing spaces, leading and trailing blank lines dropped."""
    out = [line.rstrip() for line in lines]
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return out


def _pattern(shown: list[str]) -> re.Pattern[str]:
    """The regular expression the shown lines stand for (see the module's rule)."""
    parts = []
    for line in shown:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")  # any number of whole lines
        else:
            parts.append(r"[^\n]*".join(map(re.escape, line.split("..."))) + r"\n")
    return re.compile("".join(parts))


def output_mismatch(shown: list[str], printed: str) -> str | None:
    """None when ``printed`` is what ``shown`` shows (by the rule above), else a diff."""
    want, got = _normal(shown), _normal(printed.splitlines())
    if not want:
        return None
    if _pattern(want).fullmatch("".join(line + "\n" for line in got)):
        return None
    diff = difflib.unified_diff(want, got, "the doc shows", "the command printed", lineterm="")
    return "\n".join(list(diff)[:80])


def placeholders(block: Block) -> list[str]:
    """Placeholders in a block that runs, as 'line: what' messages."""
    found: list[str] = []
    if block.kind in PYTHON_KINDS:
        depth: list[str] = []
        source = "\n".join(block.lines) + "\n"
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        except (tokenize.TokenError, SyntaxError) as e:
            return [f"{_where(block.page, block.line)}: does not tokenize: {e}"]
        for tok in tokens:
            n = block.line + tok.start[0] - 1
            if tok.type == tokenize.OP and tok.string in "([{":
                depth.append(tok.string)
            elif tok.type == tokenize.OP and tok.string in ")]}" and depth:
                depth.pop()
            elif tok.type == tokenize.OP and tok.string == "..." and depth[-1:] != ["["]:
                found.append(f"{_where(block.page, n)}: `...` stands in for code")
            elif tok.type == tokenize.STRING and ("…" in tok.string or _ANGLE.search(tok.string)):
                found.append(f"{_where(block.page, n)}: placeholder in {tok.string}")
    for cmd in commands(block):
        try:
            words = shlex.split(cmd.text, comments=True)
        except ValueError as e:
            found.append(f"{_where(block.page, cmd.line)}: cannot split `{cmd.text}`: {e}")
            continue
        for word in words:
            if "…" in word or word == "..." or _ANGLE.search(word):
                where = _where(block.page, cmd.line)
                found.append(f"{where}: placeholder {word!r} in `{cmd.text}`")
    return found


def _where(page: Path, line: int) -> str:
    name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name
    return f"{name}:{line}"


# -- the folder a page runs in ----------------------------------------------------------
def write_fixtures(folder: Path) -> None:
    """model.onnx (x: float32 1x3x224x224 -> logits: float32 1x10) and x.npy."""
    weights = np.linspace(-1.0, 1.0, 30, dtype=np.float32).reshape(3, 10)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        ],
        "docs_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [onnx.numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.random((1, 3, 224, 224), dtype=np.float32))


def page_env(state: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ACCELPOOL_")
        and not k.endswith("_VISIBLE_DEVICES")
        and not k.startswith("PYTEST_")
        and k != "PYTHONPATH"
    }
    env["ACCELPOOL_STATE_DIR"] = str(state)
    bindir = str(Path(sys.executable).parent)  # the project's accelpool and python first
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- running -------------------------------------------------------------------------------
_DRIVER = r"""
import json, os, sys, traceback
out = os.fdopen(int(sys.argv[1]), "w", buffering=1)
scope = {"__name__": "__main__"}
for request in sys.stdin:
    req = json.loads(request)
    try:
        exec(compile("\n" * (req["line"] - 1) + req["code"], req["file"], "exec"), scope)
    except BaseException as e:
        text = "".join(traceback.format_exception(type(e), e, e.__traceback__.tb_next))
        out.write(json.dumps({"error": text}) + "\n")
    else:
        out.write(json.dumps({"error": None}) + "\n")
    sys.stdout.flush(); sys.stderr.flush()
"""


class PageRun:
    """Runs one page's blocks in order, in ``folder``, within :data:`PAGE_BUDGET_S`."""

    def __init__(self, folder: Path, env: dict[str, str], budget: float = PAGE_BUDGET_S) -> None:
        self.folder, self.env = folder, env
        self.deadline = time.monotonic() + budget
        self.log = folder / ".python-output.log"
        self._proc: subprocess.Popen[str] | None = None
        self._results: int | None = None

    def remaining(self) -> float:
        return max(0.5, self.deadline - time.monotonic())

    def python(self, block: Block) -> str | None:
        """Run a python block in the page's interpreter; the failure, or None."""
        if self._proc is None:
            read, write = os.pipe()
            with self.log.open("w") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-c", _DRIVER, str(write)],
                    cwd=self.folder,
                    env=self.env,
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                    pass_fds=(write,),
                    start_new_session=True,
                )
            os.close(write)
            self._results = read
        assert self._proc.stdin is not None and self._results is not None
        request = {"file": str(block.page), "line": block.line, "code": "\n".join(block.lines)}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        reply, why = self._reply()
        if why:
            self.close()
            return f"{_where(block.page, block.line)}: python block {why}\n{self._tail()}"
        error = json.loads(reply)["error"]
        if error:
            return f"{_where(block.page, block.line)}: python block failed:\n{error}{self._tail()}"
        return None

    def _reply(self) -> tuple[str, str | None]:
        """The driver's one-line answer, or why none came."""
        assert self._results is not None
        data = b""
        while not data.endswith(b"\n"):
            left = max(0.0, self.deadline - time.monotonic())
            ready, _, _ = select.select([self._results], [], [], left)
            if not ready:
                return "", "ran past the page's time budget"
            chunk = os.read(self._results, 1 << 16)
            if not chunk:
                return "", "ended its interpreter (or it died)"
            data += chunk
        return data.decode(), None

    def command(self, page: Path, cmd: Command) -> str | None:
        """Run a CLI example (an ``export`` sets variables for the page's later ones)."""
        if _EXPORT.match(cmd.text):
            for word in shlex.split(cmd.text, comments=True)[1:]:
                name, _, value = word.partition("=")
                self.env[name] = os.path.expandvars(value)
            return None
        text = re.sub(r"(^|\s)uv\s+run\s+accelpool(?=\s|$)", r"\1accelpool", cmd.text)
        proc = subprocess.Popen(
            ["bash", "-c", text],
            cwd=self.folder,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=self.remaining())
        except subprocess.TimeoutExpired:
            _kill(proc)
            return (
                f"{_where(page, cmd.line)}: `{cmd.text}` ran past the page's time budget "
                "(a command that runs until stopped needs a skip marker)"
            )
        shown = f"\n--- stdout\n{out[-2000:]}--- stderr\n{err[-2000:]}"
        if cmd.expects_error():
            if proc.returncode not in (1, 2):
                return (
                    f"{_where(page, cmd.line)}: `{cmd.text}` exited {proc.returncode}, but the "
                    f"doc shows an error (exit 1 or 2): {cmd.output[0]}{shown}"
                )
            usage = cmd.output[0].startswith("accelpool: error:")
            if usage and proc.returncode != 2:
                return (
                    f"{_where(page, cmd.line)}: `{cmd.text}` exited {proc.returncode}, but the "
                    f"doc shows a usage error (exit 2): {cmd.output[0]}{shown}"
                )
            cls = _ERROR_CLASS.match(cmd.output[0])
            if cls and f"accelpool: {cls.group(1)}" not in err:
                return (
                    f"{_where(page, cmd.line)}: `{cmd.text}` failed, but not with the "
                    f"{cls.group(1)} the doc shows{shown}"
                )
        elif proc.returncode != 0:
            return f"{_where(page, cmd.line)}: `{cmd.text}` exited {proc.returncode}{shown}"
        diff = output_mismatch(cmd.output, out + err)
        if diff:
            return (
                f"{_where(page, cmd.line)}: `{cmd.text}` printed other output than the doc "
                f"shows ('...' stands for what varies; see tests/test_docs.py):\n{diff}"
            )
        return None

    def _tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- output\n{text[-3000:]}" if text.strip() else ""

    def close(self) -> str | None:
        """End the page's interpreter (sessions close at its exit); a problem, or None."""
        if self._proc is None:
            return None
        proc, self._proc = self._proc, None
        try:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=self.remaining())
        except (subprocess.TimeoutExpired, BrokenPipeError):
            _kill(proc)
            return "the page's python process did not exit after its last block"
        finally:
            if self._results is not None:
                os.close(self._results)
                self._results = None
        return None


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_runs(page: Path, tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    blocks, problems = parse(page)
    runnable = [b for b in blocks if b.skip is None]
    for b in blocks:
        if b.skip:
            record_property("docs-skip", f"{_where(page, b.line)}: {b.skip}")
    problems += [msg for b in runnable for msg in placeholders(b)]
    assert not problems, "\n".join(problems)

    folder, state = tmp_path / "cwd", tmp_path / "state"
    folder.mkdir()
    state.mkdir(mode=0o700)
    write_fixtures(folder)
    run = PageRun(folder, page_env(state))
    failure, ended = run_page(run, runnable)
    assert failure is None, failure
    assert ended is None, ended


def run_page(run: PageRun, runnable: list[Block]) -> tuple[str | None, str | None]:
    """Run the blocks in order until one fails: (the failure, a problem closing)."""
    failure: str | None = None
    try:
        for b in runnable:
            if b.kind in PYTHON_KINDS:
                failure = run.python(b)
            else:
                for cmd in commands(b):
                    failure = run.command(b.page, cmd)
                    if failure:
                        break
            if failure:
                break
    finally:
        ended = run.close()
    return failure, ended


# -- the harness itself ---------------------------------------------------------------------
def test_markers_placeholders_and_expected_exits(tmp_path: Path) -> None:
    doc = tmp_path / "page.md"
    doc.write_text(
        "<!-- docs-test: skip needs a real GPU -->\n"
        "```python\nimport nothing_here\n```\n"
        "<!-- docs-test: skip -->\n\n"
        "```console\n$ accelpool profiles nvidia:9\naccelpool: NotFound: no device\n"
        "$ accelpool --sim dgx-a100 ls\nDEVICE ...\n$ echo hi\n```\n"
        "```sh\nuv run accelpool run model.onnx --on … \\\n  --json\n```\n"
        "```python\nf(...)\narr[...] = 1\ns = 'nvidia:MIG-…'\n```\n"
        "<!-- docs-test: skip nothing follows -->\ntext\n"
    )
    blocks, problems = parse(doc)
    assert [b.kind for b in blocks] == ["python", "console", "sh", "python"]
    assert blocks[0].skip == "needs a real GPU" and blocks[1].skip == ""
    assert any("without a reason" in p for p in problems)
    assert any("no block after it" in p for p in problems)
    cmds = commands(blocks[1])
    assert [c.text for c in cmds] == ["accelpool profiles nvidia:9", "accelpool --sim dgx-a100 ls"]
    assert cmds[0].expects_error() and not cmds[1].expects_error()
    assert [c.text for c in commands(blocks[2])] == [
        "uv run accelpool run model.onnx --on … --json"
    ]
    assert any("'…'" in p for p in placeholders(blocks[2]))
    found = placeholders(blocks[3])
    assert len(found) == 2 and "`...`" in found[0] and "MIG-…" in found[1]
    assert found[0].startswith("page.md:19:") and found[1].startswith("page.md:21:")


def _run_doc(tmp_path: Path, text: str, budget: float = PAGE_BUDGET_S) -> str | None:
    tmp_path.mkdir(parents=True, exist_ok=True)
    doc = tmp_path / "page.md"
    doc.write_text(text)
    folder, state = tmp_path / "cwd", tmp_path / "state"
    folder.mkdir()
    state.mkdir(mode=0o700)
    write_fixtures(folder)
    blocks, _ = parse(doc)
    failure, ended = run_page(PageRun(folder, page_env(state), budget), blocks)
    assert ended is None
    return failure


def test_blocks_share_names_and_failures_name_their_line(tmp_path: Path) -> None:
    ok = "```python\nimport numpy as np\nx = np.load('x.npy')\n```\n"
    ok += "```python\nassert x.shape == (1, 3, 224, 224)\n```\n"
    ok += "```console\n$ accelpool --sim dgx-a100 profiles nvidia:0\n"
    ok += "$ accelpool --sim dgx-a100 profiles nvidia:9\naccelpool: NotFound: no device ...\n```\n"
    assert _run_doc(tmp_path / "ok", ok) is None

    failure = _run_doc(tmp_path / "py", "text\n```python\nx = 1\nraise KeyError(x)\n```\n")
    assert failure is not None and failure.startswith("page.md:3: python block failed")
    assert "line 4" in failure and "KeyError: 1" in failure

    bad = "```console\n$ accelpool profiles\naccelpool: NotFound: x\n```\n"
    failure = _run_doc(tmp_path / "cls", bad)
    assert failure is not None and "not with the NotFound" in failure
    bad = "```sh\naccelpool --sim dgx-a100 profiles nvidia:9\n```\n"
    failure = _run_doc(tmp_path / "rc", bad)
    assert failure is not None and "exited 1" in failure and "NotFound" in failure


@pytest.mark.parametrize(
    ("shown", "printed", "matches"),
    [
        (["a", "b"], "a  \nb\n\n", True),  # trailing spaces and blank lines do not count
        (["", "a", ""], "a", True),
        (["a"], "a\nb", False),  # a shown head must end in a `...` line
        (["a", "..."], "a\nb\nc", True),
        (["a", "...", "c"], "a\nc", True),  # `...` lines: none included
        (["...", "c"], "a\nb", False),
        (["id MIG-... pid ..."], "id MIG-4a57-9b pid 4242", True),  # within a line
        (["id MIG-... pid ..."], "id MIG-4a57\n pid 4242", False),  # only within it
        (["x ... y"], "x y", False),  # the spaces beside it are literal
        (["MIG-fda…9f178d"], "MIG-fda167a1-9f178d", False),  # `…` is literal
        (["MIG-fda…9f178d"], "MIG-fda…9f178d", True),
        (["a.b (c)"], "aXb (c)", False),  # no other pattern syntax
        ([], "anything", True),  # nothing shown: only the exit code counts
    ],
)
def test_shown_output_rule(shown: list[str], printed: str, matches: bool) -> None:
    assert (output_mismatch(shown, printed) is None) is matches


def test_shown_output_is_compared(tmp_path: Path) -> None:
    ok = "```console\n$ accelpool sim presets\n+-...-+\n| PRESET ... |\n...\n"
    ok += "| dgx-a100 ... | 8x nvidia A100-SXM4-40GB ... |\n...\n```\n"
    assert _run_doc(tmp_path / "ok", ok) is None
    stale = "```console\n$ accelpool --sim dgx-a100 profiles nvidia:9\n"
    stale += "accelpool: NotFound: no such device\n```\n"
    failure = _run_doc(tmp_path / "stale", stale)
    assert failure is not None and "page.md:2:" in failure and "other output" in failure
    assert "-accelpool: NotFound: no such device" in failure  # a diff: shown, printed
    assert "+accelpool: NotFound: no device 'nvidia:9'" in failure


def test_a_command_that_never_ends_fails_in_budget(tmp_path: Path) -> None:
    start = time.monotonic()
    failure = _run_doc(tmp_path, "```sh\naccelpool --sim dgx-a100 ls --watch 1\n```\n", 3)
    assert failure is not None and "needs a skip marker" in failure
    assert time.monotonic() - start < 10


def test_every_page_is_collected() -> None:
    names = {str(p.relative_to(ROOT)) for p in pages()}
    assert {"README.md", "docs/cli.md", "docs/sessions.md"} <= names
    assert any(n.startswith("docs/backends/") for n in names)
