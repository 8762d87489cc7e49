"""accelpool conformance suite."""
