"""accelpool backend: nvidia."""
