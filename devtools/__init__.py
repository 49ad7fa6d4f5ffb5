"""Development tools, out of the runtime package: the embedded Kafka-compatible broker (``broker``), loopback port
helpers (``ports``), the load generator (``loadgen``), the self-contained demo (``demo``) and the demo stack behind
``sentiment-worker ui --demo`` (``demo_stack``).

``worker/`` never imports this package (a unit test checks it); only the command line does, lazily, for
``sentiment-worker broker|produce|demo|ui --demo``, besides the tests, the benchmarks and the Space.
"""
