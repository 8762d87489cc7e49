"""accelpool backend: ascend."""
