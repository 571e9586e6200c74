"""Benchmarks: `python -m benchmarks.run` (what `make bench` runs) and the parts it reuses."""
