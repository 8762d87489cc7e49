"""accelpool backend: cambricon."""
