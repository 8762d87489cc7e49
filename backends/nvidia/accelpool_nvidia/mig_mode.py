"""MIG mode: switching it on a GPU and reporting whether it applied or waits for a reset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pynvml

from accelpool.errors import UnsupportedOperation
from accelpool.types import DeviceInfo
from accelpool_nvidia import nvml_codes as rc
from accelpool_nvidia.errors import from_nvml, nvml_errors, nvml_text
from accelpool_nvidia.mig_recovery import MigRecovery


@dataclass(frozen=True)
class MigModeChange:
    """The outcome of switching MIG mode on one GPU, told honestly.

    ``status`` is ``"applied"`` (current mode is what was asked), ``"pending"`` (the
    driver accepted it but it waits for a GPU reset: see ``reason``) or
    ``"unchanged"`` (the GPU was already in that mode).
    """

    device_id: str
    requested: bool
    current: bool
    pending: bool
    status: str
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device_id,
            "requested": "enabled" if self.requested else "disabled",
            "current": "enabled" if self.current else "disabled",
            "pending": "enabled" if self.pending else "disabled",
            "status": self.status,
            "reason": self.reason,
        }


class MigModeSwitch(MigRecovery):
    """Switching MIG mode on a GPU, with claims checked and the outcome told honestly."""

    # -- MIG mode --------------------------------------------------------------------------------
    def set_mig_mode(
        self, device: DeviceInfo, enabled: bool, *, force: bool = False
    ) -> MigModeChange:
        """Switch MIG mode on ``device`` and report what really happened.

        Raises :class:`InUse` when a session or a named holder claims the GPU or one of
        its partitions (unless ``force``, which is logged), when the GPU refuses (MIG
        partitions or vGPUs exist, or, on Hopper, processes run), :class:`PermissionDenied`
        without root and :class:`UnsupportedOperation` on a GPU without MIG.
        """
        from accelpool.claims import guard  # claims pull in the session package

        dev_id = self._dev_id(device)
        want = 1 if enabled else 0
        verb = "enabling" if enabled else "disabling"
        with self._nvml(f"{verb} MIG mode on {dev_id}"):
            h = self._handle(device)
            try:
                current, pending = pynvml.nvmlDeviceGetMigMode(h)
            except pynvml.NVMLError_NotSupported as e:
                raise UnsupportedOperation(
                    f"{dev_id} ({device.model}) does not support MIG",
                    vendor_code=rc.NOT_SUPPORTED,
                    vendor_message=nvml_text(e),
                ) from e
            if current == want and pending == want:
                return MigModeChange(dev_id, enabled, bool(current), bool(pending), "unchanged")
            in_use_hint = "stop the processes using the GPU and retry"
            if not enabled and self._mig_on(h):
                count = len(self._mig_partitions(device, h))
                if count:
                    in_use_hint = f"destroy its {count} MIG partition(s) first"
            with (
                guard(dev_id, "change MIG mode of", device=dev_id, force=force),
                nvml_errors(f"{verb} MIG mode on {dev_id}", {rc.IN_USE: in_use_hint}),
            ):
                status = pynvml.nvmlDeviceSetMigMode(h, want)
            current, pending = pynvml.nvmlDeviceGetMigMode(h)
        if current == want:
            return MigModeChange(dev_id, enabled, bool(current), bool(pending), "applied")
        if pending != want and status != rc.SUCCESS:
            # Refused outright (Hopper while busy): nothing is pending, nvml.h says to
            # idle the device and retry.
            raise from_nvml(pynvml.NVMLError(status), f"{verb} MIG mode on {dev_id}", in_use_hint)
        reason = rc.text(status) if status != rc.SUCCESS else "the GPU needs a reset"
        return MigModeChange(
            dev_id,
            enabled,
            bool(current),
            bool(pending),
            "pending",
            f"{reason}: the change takes effect after a GPU reset (stop every process "
            "on it, then 'nvidia-smi -r') or a reboot",
        )
