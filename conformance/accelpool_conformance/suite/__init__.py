"""The conformance checks, one module per area (``checks_<area>.py``).

Run them through ``accelpool conformance``, :func:`accelpool_conformance.run`, or
``pytest --pyargs accelpool_conformance.suite --accelpool-backend NAME``.
"""
