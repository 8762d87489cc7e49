"""Kubernetes DRA driver for every accelpool backend."""
