"""An out-of-tree backend, a project of its own with only an entry point, plugs in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from accelpool.testing import run_cli

PYPROJECT = """
[project]
name = "acme-accel-plugin"
version = "2.3.4"
requires-python = ">=3.11"

[project.entry-points."accelpool.backends"]
acme = "accelpool.testing:ToyBackend"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
bypass-selection = true
"""


def test_installed_out_of_tree_plugin_appears_in_backends_and_ls(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv must be on PATH to install the throwaway plugin (see README prerequisites)"
    project = tmp_path / "acme"
    project.mkdir()
    (project / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    target = tmp_path / "site"
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            sys.executable,
            "--no-deps",
            "--target",
            str(target),
            str(project),
        ],
        check=True,
        timeout=300,
    )
    env = dict(os.environ, PYTHONPATH=str(target))

    backends = run_cli("backends", "--json", env=env)
    assert backends.code == 0, backends.err
    acme = [b for b in backends.json() if b["name"] == "acme"]
    assert acme == [{"name": "acme", "available": True, "reason": None, "version": "2.3.4"}]

    ls = run_cli("ls", "--json", env=env)
    assert ls.code == 0, ls.err
    assert [d["id"] for d in ls.json()["devices"] if d["backend"] == "acme"] == [
        "acme:toy-0",
        "acme:toy-1",
    ]
