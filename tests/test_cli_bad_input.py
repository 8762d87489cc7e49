"""Bad settings, fleet files and state files: one clear line and a non-zero exit.

Each case used to print a traceback, an "internal error", or nothing at all with
exit 0 (issue 10, items 10-15).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accelpool.cli.app import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert lines[0].isprintable(), err
    return lines[0]


@pytest.mark.parametrize("value", ["garbage", "5", "debugg"])
def test_a_bad_log_level_is_one_line(
    value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELPOOL_LOG", value)
    code, _, err = _run(capsys, "--sim", "dgx-a100", "ls")
    assert code == 1 and f"ACCELPOOL_LOG={value!r} is not a log level" in _line(err)


def test_an_empty_or_lower_case_log_level_works(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for value in ("", "warning"):
        monkeypatch.setenv("ACCELPOOL_LOG", value)
        assert _run(capsys, "--sim", "dgx-a100", "ls")[0] == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "0", "-1", "soon"])
def test_a_probe_timeout_that_is_not_a_sane_number_of_seconds_is_refused(
    value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELPOOL_PROBE_TIMEOUT", value)
    code, out, err = _run(capsys, "--sim", "dgx-a100", "ls")
    assert code == 1 and out == ""
    assert f"ACCELPOOL_PROBE_TIMEOUT={value!r} is not a number of seconds" in _line(err)


def test_a_sane_probe_timeout_is_honoured(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELPOOL_PROBE_TIMEOUT", "30")
    assert _run(capsys, "--sim", "dgx-a100", "ls")[0] == 0


@pytest.mark.parametrize("value", ["garbage", "nvidia,nope", ","])
def test_backends_that_are_not_installed_are_refused(
    value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELPOOL_BACKENDS", value)
    code, out, err = _run(capsys, "--sim", "dgx-a100", "ls")
    assert code == 1 and "No devices found" not in out
    assert "ACCELPOOL_BACKENDS" in _line(err)


def _fleet(tmp_path: Path, body: str | bytes) -> str:
    path = tmp_path / "f.toml"
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body)
    return str(path)


ONE = '[[devices]]\nbackend = "nvidia"\nmodel = "A100-SXM4-40GB"\n'


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (b"\xff\xfe\x00garbage", "is not UTF-8 text"),
        (ONE + "count = 100000\n", "more than 4096 devices on one host"),
        (ONE + f"count = {2**63 - 1}\n", "more than 4096 devices on one host"),
        (ONE + "count = 4000\n" + ONE + "count = 200\n", "devices[1].count = 200"),
        (ONE + "count = true\n", "count must be a positive integer"),
        ('name = "x\\u001b[31m"\n' + ONE, "'name' must be a short printable string"),
        ('[[devices]]\nbackend = "nvidia"\nmodel = "NOPE"\n', "unknown NVIDIA model 'NOPE'"),
        ('[[devices]]\nbackend = "nosuch"\nmodel = "X"\n', "no backend plugin 'nosuch'"),
        ("[[devices]\n", "is not valid TOML"),
    ],
)
def test_a_bad_fleet_file_is_one_line_naming_the_problem(
    body: str | bytes, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "--sim", _fleet(tmp_path, body), "ls")
    assert code == 1 and "No devices found" not in out
    assert expect in _line(err)


def test_a_fleet_name_too_long_for_the_file_system_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _run(capsys, "--sim", "f" * 300 + ".toml", "ls")
    assert code == 1 and "File name too long" in _line(err)


def _state_file(capsys: pytest.CaptureFixture[str], state: Path) -> Path:
    code, _, err = _run(capsys, "--sim", "dgx-a100", "partition", "create", "nvidia:0", "1g.5gb")
    assert code == 0, err
    path = state / "sim" / "dgx-a100" / "state.json"
    assert path.is_file()
    return path


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[1, 2]", "does not hold a JSON object"),
        (b'{"nvidia": {"gpus": {"0": {"gis": [1]}}}}', "was changed outside accelpool"),
        (b'{"nvidia": []}', "was changed outside accelpool"),
        (b"\x93\x11\xfe binary", "is not UTF-8 text"),
        (b'{"nvidia": ', "is not valid JSON"),
        (b"[" * 100000, "is nested too deeply"),
    ],
)
@pytest.mark.parametrize("command", [["ls"], ["partition", "create", "nvidia:1", "1g.5gb"]])
def test_a_damaged_simulated_state_names_the_file_and_the_reset(
    content: bytes,
    problem: str,
    command: list[str],
    capsys: pytest.CaptureFixture[str],
    _isolated_accelpool_env: Path,
) -> None:
    path = _state_file(capsys, _isolated_accelpool_env)
    path.write_bytes(content)
    code, out, err = _run(capsys, "--sim", "dgx-a100", *command)
    line = _line(err)
    assert code == 1 and "No devices found" not in out
    assert str(path) in line and problem in line
    assert "accelpool --sim dgx-a100 sim reset" in line
    assert path.read_bytes() == content  # refused, not rewritten
    assert _run(capsys, "--sim", "dgx-a100", "sim", "reset")[0] == 0
    code, out, _ = _run(capsys, "--sim", "dgx-a100", "ls", "--json")
    assert code == 0 and len(json.loads(out)["devices"]) == 8


def test_the_state_survives_its_own_writes_and_reads(
    capsys: pytest.CaptureFixture[str], _isolated_accelpool_env: Path
) -> None:
    _state_file(capsys, _isolated_accelpool_env)
    code, out, _ = _run(capsys, "--sim", "dgx-a100", "ls", "--json")
    assert code == 0
    (part,) = json.loads(out)["devices"][0]["partitions"]
    assert part["profile"] == "1g.5gb"


def test_control_characters_in_an_argument_are_escaped_on_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _run(capsys, "--sim", "dgx-a100", "profiles", "nvidia:\x1b[31m\nX")
    line = _line(err)
    assert code == 1 and "\x1b" not in err and "\\x1b" in line


@pytest.mark.parametrize("ref", ["nvidia:\u00b2", "nvidia:\u0663", "nvidia:-1", "nvidia:0x1"])
def test_device_indexes_are_ascii_digits_only(
    ref: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "--sim", "dgx-a100", "profiles", ref)
    assert code == 1 and "no device" in _line(err)
