"""Measured runs (never timed tests): `python -m benchmarks.train_step`, `python -m benchmarks.experiment`."""
