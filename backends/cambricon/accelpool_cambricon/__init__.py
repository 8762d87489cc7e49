"""accelpool backend for Cambricon MLUs.

:mod:`accelpool_cambricon.backend` holds the backend, built from
:mod:`~accelpool_cambricon.discovery` (driver, errors, chips),
:mod:`~accelpool_cambricon.partitions` (MIM and SMLU) and
:mod:`~accelpool_cambricon.visibility`; :mod:`accelpool_cambricon.cndev` is the ctypes
binding to CNDev (``libcndev.so``, structures in :mod:`~accelpool_cambricon.cndev_structs`),
:mod:`accelpool_cambricon.sim` the simulator and :mod:`accelpool_cambricon.models` the
cards with their MIM profiles and SMLU shares.
"""
