"""The prepared GPU check: ``prepare`` (here, with network) gathers wheels and materials; ``check`` (there, no
network) builds the models, measures and writes a report. benchmarks/gpu/README.md has the exact steps."""
