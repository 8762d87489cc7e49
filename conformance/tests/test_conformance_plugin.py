"""The pytest plugin is inert in ordinary runs; the CLI and the plugin options run the suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from accelpool.testing import PluginSite, run_cli

FLEET = """
name = "toy-fleet"
[[devices]]
backend = "toy"
model = "Toy-8S"
count = 2
"""

LEAKY_TOY = """
from accelpool.errors import NotFound
from accelpool.testing import ToyBackend


class B(ToyBackend):
    def destroy_partition(self, partition):
        try:
            super().destroy_partition(partition)
        except NotFound:
            raise KeyError(partition.native_id) from None
"""

BUSY_TOY = """
from accelpool.testing import ToyBackend


class B(ToyBackend):
    def probe(self):
        version = super().probe()
        for d in self.devices():
            if not self.partitions(d):
                self.create_partition(d, "8s")
        return version
"""


@pytest.fixture
def site(tmp_path: Path) -> PluginSite:
    s = PluginSite(tmp_path / "site")
    s.backend("toy", "from accelpool.testing import ToyBackend as B\n")
    s.backend("leaky", LEAKY_TOY)
    leaky = '\n[[devices]]\nbackend = "leaky"\nmodel = "Toy-8S"\ncount = 2\n'
    (tmp_path / "fleet.toml").write_text(FLEET + leaky)
    return s


def _pytest(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_plugin_is_inert_in_an_ordinary_run(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text(
        "def test_plain():\n    pass\n\ndef test_uses_suite_fixture(backend):\n    pass\n"
    )
    proc = _pytest(["-q", "test_x.py"], tmp_path)
    assert "1 passed" in proc.stdout
    # the suite's fixtures exist only while the suite runs
    assert "fixture 'backend' not found" in proc.stdout
    helped = _pytest(["--help"], tmp_path)
    assert "--accelpool-backend" in helped.stdout


def test_suite_without_a_backend_runs_nothing(tmp_path: Path) -> None:
    import accelpool_conformance.suite as suite

    proc = _pytest(["-q", "--pyargs", "accelpool_conformance.suite"], tmp_path)
    assert proc.returncode == 5, proc.stdout + proc.stderr  # "no tests ran"
    # Named explicitly, its checks are collected, and skipped with how to run them.
    checks = Path(suite.__file__).parent / "checks_errors.py"
    proc = _pytest(["-q", "-rs", str(checks)], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pass --accelpool-backend NAME to run the conformance suite" in proc.stdout
    assert " passed" not in proc.stdout


def test_pytest_options_run_the_suite(tmp_path: Path, site: PluginSite) -> None:
    report = tmp_path / "r.json"
    proc = _pytest(
        [
            "-q",
            "--pyargs",
            "accelpool_conformance.suite",
            "--accelpool-backend",
            "toy",
            "--accelpool-sim",
            str(tmp_path / "fleet.toml"),
            "--accelpool-profile",
            "core",
            "--accelpool-report",
            str(report),
        ],
        tmp_path,
        env=site.env(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(report.read_text())
    assert doc["sim"] == str(tmp_path / "fleet.toml") and doc["profile"] == "core"
    assert doc["summary"]["fail"] == 0 and doc["summary"]["pass"] == doc["summary"]["total"] > 0
    assert report.with_suffix(".md").exists()


def test_pytest_certify_sets_the_exit_status(tmp_path: Path, site: PluginSite) -> None:
    # One device, holding a partition the suite did not make: partition checks skip.
    site.backend("busy", BUSY_TOY)
    one = tmp_path / "one.toml"
    one.write_text(FLEET.replace("count = 2", "count = 1").replace('"toy"', '"busy"'))
    args = ["-q", "--pyargs", "accelpool_conformance.suite", "--accelpool-backend", "busy"]
    args += ["--accelpool-sim", str(one), "-k", "leave_others_alone"]
    plain = _pytest(args, tmp_path, env=site.env())
    assert plain.returncode == 0, plain.stdout[-2000:]
    assert "1 skipped" in plain.stdout
    certified = _pytest([*args, "--accelpool-certify"], tmp_path, env=site.env())
    assert certified.returncode == 1, certified.stdout[-2000:]


def test_cli_passes_a_good_backend_and_fails_a_broken_one(tmp_path: Path, site: PluginSite) -> None:
    fleet = str(tmp_path / "fleet.toml")
    good = run_cli(
        "conformance",
        "--backend",
        "toy",
        "--sim",
        fleet,
        "--profile",
        "core",
        "--report",
        str(tmp_path / "good" / "report.json"),
        env=site.env(),
        timeout=300,
    )
    assert good.code == 0, good.out + good.err
    assert "# accelpool conformance: toy — PASSED" in good.out
    for suffix in (".json", ".md", ".xml"):
        assert (tmp_path / "good" / f"report{suffix}").is_file()

    bad = run_cli(
        "--sim",
        fleet,
        "conformance",
        "--backend",
        "leaky",
        "--area",
        "errors",
        "--json",
        env=site.env(),
        timeout=300,
    )
    assert bad.code == 1, bad.out + bad.err
    doc = bad.json()
    failed = [t for t in doc["tests"] if t["status"] == "fail"]
    assert failed and all(
        "invariant 'no vendor exception escapes the accelpool hierarchy' broken" in t["message"]
        for t in failed
    )


def test_certify_refuses_a_narrowed_cli_run() -> None:
    for narrow in (["--area", "faults"], ["--profile", "core"], ["-k", "telemetry"]):
        result = run_cli(
            "--sim", "dgx-a100", "conformance", "--backend", "nvidia", *narrow, "--certify"
        )
        assert result.code != 0
        (line,) = result.err.strip().splitlines()
        assert "certification needs the full profile" in line and "drop --certify" in line


def test_pytest_certify_refuses_k_and_counts_under_xdist(tmp_path: Path, site: PluginSite) -> None:
    report = tmp_path / "r.json"
    args = ["-n", "2", "-q", "--pyargs", "accelpool_conformance.suite"]
    args += ["--accelpool-backend", "toy", "--accelpool-sim", str(tmp_path / "fleet.toml")]
    args += ["-k", "discovery", "--accelpool-certify", "--accelpool-report", str(report)]
    out = _pytest(args, tmp_path, env=site.env())
    assert out.returncode == 1, out.stdout[-2000:]
    doc = json.loads(report.read_text())
    # xdist is switched off inside a suite run: the report counts what ran.
    assert doc["summary"]["pass"] > 0 and doc["summary"]["total"] == len(doc["tests"])
    assert "bringing up nodes" not in out.stdout
    assert any("narrowed by -k 'discovery'" in r for r in doc["certification"]["reasons"])
    # The terminal says the verdict in words, beside the exit status.
    assert "accelpool certification: NOT certified" in out.stdout
    assert "narrowed by -k 'discovery'" in out.stdout


def test_cli_usage_errors_are_one_line(tmp_path: Path) -> None:
    for bad in (["--profile", "everything"], ["--max-examples", "0"]):
        result = run_cli("conformance", "--backend", "x", *bad)
        assert result.code == 2
        assert len(result.err.strip().splitlines()) == 1


def test_plugin_form_runs_from_the_repository_root(tmp_path: Path) -> None:
    # The root conftest.py must not move the state directory the worker processes see.
    root = Path(__file__).resolve().parents[2]
    args = ["-q", "-n", "0", "--pyargs", "accelpool_conformance.suite"]
    args += ["--accelpool-backend", "ascend", "--accelpool-sim", "atlas-300i-310p"]
    args += ["-k", "process", "--accelpool-report", str(tmp_path / "r.json")]
    out = _pytest(args, root)
    assert out.returncode == 0, out.stdout[-3000:]
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["summary"]["fail"] == 0 and doc["summary"]["pass"] >= 3


def test_cli_prints_a_line_per_area_off_a_terminal() -> None:
    out = run_cli("--sim", "dgx-a100", "conformance", "--backend", "nvidia", "--profile", "core")
    assert out.code == 0, out.out + out.err
    lines = out.out.splitlines()
    assert lines[0].startswith("conformance nvidia: discovery done (") and "0 fail" in lines[0]
    assert lines[1].startswith("conformance nvidia: errors done (")
