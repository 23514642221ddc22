"""coolie's benchmarks: throughput, memory, no-op runs and Dagster load time against raw baselines.

Run everything with ``python -m benchmarks.run`` (``--quick`` for a smoke run); see BENCHMARKS.md.
"""
