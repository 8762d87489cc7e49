"""The ``accelpool`` command line. Installed distributions add subcommands through
the entry point group ``accelpool.cli`` (see :mod:`accelpool.cli.app`)."""
