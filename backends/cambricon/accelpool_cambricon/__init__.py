"""accelpool backend for Cambricon MLUs.

:mod:`accelpool_cambricon.backend` holds the backend, :mod:`accelpool_cambricon.cndev`
the ctypes binding to CNDev (``libcndev.so``), :mod:`accelpool_cambricon.sim` the
simulator and :mod:`accelpool_cambricon.models` the cards with their MIM profiles and
SMLU shares.
"""
