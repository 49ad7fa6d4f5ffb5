"""Benchmarks of sentiment-stream (issue 6): model-only grid, end-to-end through Kafka, baselines, report.

Entry point: ``sentiment-worker bench`` (``worker/cli/bench_cmds.py``), which calls :func:`benchmarks.suite.run`.
Installed with ``worker`` (a package of this distribution, ``pip install -e .[export,dev]``); it imports ``worker``,
never ``worker.cli``. Modules: ``suite`` (the whole run; ``suite_e2e`` its
end-to-end part, ``sections`` its section timings), ``machine``, ``models``, ``datasets``, ``model_only``
(the grid), ``end_to_end`` and ``harness`` (runs through Kafka), ``baselines``, ``summary`` (ratios, targets),
``report`` and ``plots``.
"""
