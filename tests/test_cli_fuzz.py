"""Generated command lines, environments and fleet files never get a traceback.

Whatever the input, ``accelpool`` exits 0, 1 or 2 and says at most one printable
line on stderr, with no traceback and no "internal error". Bounded in examples
and time so the suite stays fast; every run draws new inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelpool.cli.app import main

# Words the CLI knows, so generated lines reach past the parser; commands that serve
# or watch forever (exporter, ls --watch) are left out: they have their own tests.
WORDS = [
    "ls", "--json", "--wide", "backends", "profiles", "partition", "create", "destroy",
    "gc", "--force", "--placement", "sim", "reset", "presets", "claims", "--reap",
    "--release", "layout", "run", "--on", "--input", "--output", "--in-process",
    "--allow-fallback", "nvidia", "mig", "enable", "disable", "nvidia:0", "nvidia:7",
    "nvidia:99", "ascend:0", "cambricon:1", "opencl:0", "1g.5gb", "3g.20gb", "7g.40gb",
    "vir02", "-1", "0", "x=x.npy", "model.onnx", "--help", "--version", "--sim",
    "dgx-a100", "mixed", "atlas-300i-310p", "apply", "plan", "--config", "--dry-run",
    "--hosts", "--host",
]  # fmt: skip
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)
ARG = st.one_of(st.sampled_from(WORDS), TEXT, st.sampled_from(["nvidia:", "ascend:"]).map(
    lambda p: p + "0"
))
ENV_VALUES = {
    "ACCELPOOL_LOG": st.one_of(st.sampled_from(["", "debug", "ERROR", "5", "x"]), TEXT),
    "ACCELPOOL_PROBE_TIMEOUT": st.one_of(
        st.sampled_from(["", "nan", "inf", "0", "-1", "1e308", "5"]), TEXT
    ),
    "ACCELPOOL_BACKENDS": st.one_of(
        st.sampled_from(["", "nvidia", "nvidia,ascend", "garbage", ","]), TEXT
    ),
    "ACCELPOOL_WORKER_ENV": st.one_of(st.sampled_from(["", "clean", "inherit"]), TEXT),
}
FLEET_LINES = st.lists(
    st.sampled_from(
        [
            "[[devices]]", 'backend = "nvidia"', 'backend = "ascend"', 'backend = "cambricon"',
            'backend = "x"', 'model = "A100-SXM4-40GB"', 'model = "910B3"', 'model = "310P3"',
            'model = "MLU370-X4"', 'model = ""', "count = 2", "count = 0", "count = -3",
            "count = 100000", "count = 9223372036854775807", 'count = "two"', "count = 1.5",
            "[devices.options]", 'mig = "enabled"', 'mig = "disabled"', "mig = 5",
            'mode = "vnpu"', "chips_per_card = 2", "chips_per_card = 0", 'name = "f"',
            "name = 3", 'description = "d"', "description = []", "devices = 1", "[x]", "=",
        ]
    ),
    max_size=14,
).map("\n".join)


def _check(code: int, err: str) -> None:
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) <= 1, err
    assert all(line.isprintable() for line in lines), err


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


COMMON = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@COMMON
@given(args=st.lists(ARG, max_size=6), sim=st.sampled_from([None, "dgx-a100", "mixed"]))
def test_generated_command_lines(
    args: list[str], sim: str | None, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = (["--sim", sim] if sim else []) + args
    if "--watch" in argv or "exporter" in argv or "conformance" in argv:
        return
    code = main(argv)
    _check(code, capsys.readouterr().err)


@COMMON
@given(env=st.fixed_dictionaries({}, optional=ENV_VALUES), command=st.sampled_from(
    [["ls"], ["backends"], ["profiles", "nvidia:0"], ["claims"], ["layout", "nvidia:0"]]
))
def test_generated_environments(
    env: dict[str, str],
    command: list[str],
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as m:
        for name, value in env.items():
            m.setenv(name, value)
        code = main(["--sim", "dgx-a100", *command])
    _check(code, capsys.readouterr().err)


@COMMON
@given(text=FLEET_LINES, command=st.sampled_from([["ls"], ["ls", "--json"], ["layout"]]))
def test_generated_fleet_files(
    text: str, command: list[str], workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir / f"fleet-{abs(hash(text)) % 10_000}.toml"
    path.write_text(text + "\n")
    try:
        code = main(["--sim", str(path), *command])
    finally:
        os.unlink(path)
    _check(code, capsys.readouterr().err)
