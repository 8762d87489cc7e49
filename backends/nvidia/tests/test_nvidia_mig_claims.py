"""A MIG mode change on a claimed GPU is refused, naming the holder, unless forced."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

import accelpool
from accelpool import claims
from accelpool.cli.app import main


def test_mig_mode_change_on_a_claimed_gpu(
    fleet_file: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = fleet_file("A100-SXM4-40GB", count=2, mig=False)
    with accelpool.discover(sim=fleet, backends=["nvidia"]) as inv:
        gpu = inv.device("nvidia:0")
        backend = gpu.backend_instance
        with accelpool.open_session(gpu, isolate=False):
            with pytest.raises(accelpool.InUse, match=rf"change MIG mode of {gpu.id}.*pid"):
                backend.set_mig_mode(gpu.info, True)  # type: ignore[attr-defined]
            # Another GPU is not affected.
            other = inv.device("nvidia:1")
            assert backend.set_mig_mode(other.info, True).status == "applied"  # type: ignore[attr-defined]

        claims.claim(gpu, holder="k8s:uid-5", owner="pod ns/trainer")
        assert main(["--sim", fleet, "nvidia", "mig", "enable", "nvidia:0"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "InUse" in err and "k8s:uid-5 (pod ns/trainer)" in err
        with caplog.at_level(logging.WARNING, logger="accelpool.claims"):
            assert main(["--sim", fleet, "nvidia", "mig", "enable", "nvidia:0", "--force"]) == 0
        assert "MIG mode enabled" in capsys.readouterr().out
        assert "forced: change MIG mode of" in caplog.text and "k8s:uid-5" in caplog.text

        # A claimed partition blocks the GPU's mode change too (before NVML's own refusal).
        claims.release("k8s:uid-5")
        part = gpu.create_partition("1g.5gb")
        claims.claim(part, holder="ray:actor-1")
        with pytest.raises(accelpool.InUse, match=f"through partition {part.id}.*ray:actor-1"):
            backend.set_mig_mode(gpu.info, False)  # type: ignore[attr-defined]
