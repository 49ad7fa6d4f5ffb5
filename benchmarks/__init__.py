"""Benchmarks of sentiment-stream (issue 6): model-only grid, end-to-end through Kafka, baselines, report.

Entry point: ``sentiment-worker bench`` (``worker/cli/bench_cmds.py``), which calls :func:`benchmarks.suite.run`.
This package lives in the source checkout (it is not part of the installed ``worker`` package).
"""
