"""accelpool backend for Huawei Ascend NPUs.

:mod:`accelpool_ascend.backend` holds the backend, :mod:`accelpool_ascend.dcmi` the
ctypes binding to DCMI (``libdcmi.so``), :mod:`accelpool_ascend.sim` the simulator
and :mod:`accelpool_ascend.models` the chips and their vNPU templates.
"""
