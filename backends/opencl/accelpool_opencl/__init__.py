"""accelpool backend: opencl."""
